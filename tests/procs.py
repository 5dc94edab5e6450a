"""The exporter and the simulator as child processes, on ports they choose themselves: each is
started with port 0 and its URL read from what it says once it serves (the exporter's
``msg=listening address=...`` log record on stderr, the simulator's "WHM simulator serving URL"
on stdout). A port found free and handed over would race any other process binding it between
the two steps.

Both pipes of a child are read to their end in threads from the start, so a child never blocks
on a full pipe, however much it logs, and what it wrote is all there when it is stopped."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import IO

START_SECONDS = 30.0
_LOGFMT_LISTENING = re.compile(r"\bmsg=listening address=(\S+)")
_SIM_SERVING = re.compile(r"WHM simulator serving (\S+)")


class Output:
    """One pipe of a child, read line by line in a thread until the child closes it."""

    def __init__(self, pipe: IO[str]) -> None:
        self._lines: list[str] = []
        self._ended = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe: IO[str]) -> None:
        with pipe:
            for line in pipe:
                with self._changed:
                    self._lines.append(line)
                    self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def find(self, found: Callable[[str], str | None], timeout: float) -> str | None:
        """The first answer of ``found`` for a line, waiting for lines to come; None when the
        pipe ends (the child exited) or ``timeout`` passes first."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for line in self._lines[seen:]:
                    if (answer := found(line)) is not None:
                        return answer
                seen = len(self._lines)
                left = deadline - time.monotonic()
                if self._ended or left <= 0:
                    return None
                self._changed.wait(left)

    def text(self) -> str:
        """Everything read so far (all of it once the child exited and :meth:`join` returned)."""
        with self._changed:
            return "".join(self._lines)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


class Child:
    """A child process whose stdout and stderr are read as it writes them."""

    def __init__(self, argv: Sequence[str], env: dict[str, str] | None) -> None:
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self.stdout = Output(self.proc.stdout)
        self.stderr = Output(self.proc.stderr)

    def url(self, output: Output, found: Callable[[str], str | None]) -> str:
        """``http://`` and the address ``found`` reads in ``output``; fails with what the
        child wrote when it exits or takes too long first."""
        address = output.find(found, START_SECONDS)
        if address is None:
            self.kill()
            raise AssertionError(
                f"{self.proc.args!r} did not say where it serves (exit {self.proc.returncode}):"
                f"\n{self.stdout.text()}\n{self.stderr.text()}"
            )
        return address if "://" in address else f"http://{address}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> tuple[int, str, str]:
        """Send ``sig`` and wait for the exit: the exit code, then all it wrote to each pipe."""
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        return code, *self._outputs(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._outputs(15)

    def _outputs(self, timeout: float) -> tuple[str, str]:
        self.stdout.join(timeout)
        self.stderr.join(timeout)
        return self.stdout.text(), self.stderr.text()


def _listening(line: str) -> str | None:
    """The address of the exporter's "listening" record, in logfmt or JSON."""
    if line.startswith("{"):
        try:
            record = json.loads(line)
        except ValueError:  # not a log record: something else the child printed
            return None
        return str(record["address"]) if record.get("msg") == "listening" else None
    found = _LOGFMT_LISTENING.search(line)
    return found[1] if found else None


def _serving(line: str) -> str | None:
    found = _SIM_SERVING.search(line)
    return found[1] if found else None


def start_exporter(flags: Sequence[str], env: dict[str, str] | None = None) -> tuple[Child, str]:
    """``python -m whm_exporter`` with ``flags`` on a loopback port of its choosing, and its
    URL once it listens."""
    argv = [sys.executable, "-m", "whm_exporter", "--web.listen-address=127.0.0.1:0", *flags]
    child = Child(argv, env)
    return child, child.url(child.stderr, _listening)


def start_simulator(flags: Sequence[str]) -> tuple[Child, str]:
    """``python -m whm_exporter.simulator`` with ``flags`` on a loopback port of its choosing,
    and its URL once it serves."""
    argv = [sys.executable, "-m", "whm_exporter.simulator", "--listen=127.0.0.1:0", *flags]
    child = Child(argv, None)
    return child, child.url(child.stdout, _serving)


@contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port where a connection is refused, for a config that must name one (a URL's
    port 0 is a config error). Bound but never listening for as long as it is used: a port
    found free and released could be taken by another process meanwhile."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield int(held.getsockname()[1])
