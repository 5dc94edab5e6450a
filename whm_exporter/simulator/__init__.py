"""A WHM API 1 look-alike for the demo, the tests and the benchmark."""

from whm_exporter.simulator.app import Knobs, Simulator, serve
from whm_exporter.simulator.dataset import Dataset

__all__ = ["Dataset", "Knobs", "Simulator", "serve"]
