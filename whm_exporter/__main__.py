import sys

from whm_exporter.cli import main

sys.exit(main())
