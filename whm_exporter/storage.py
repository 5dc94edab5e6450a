"""Kept state on disk (``--storage.path``): one file per configured target, written atomically
at most every ``INTERVAL`` seconds (only the targets whose state changed) and at shutdown, read
once at start.

The format: a 10-byte header (``MAGIC``, then the format ``VERSION``, big-endian) and the
document of collect/persist.py as JSON, zlib-compressed. Why not sqlite3: a target's state is
read whole once and written whole, never queried, so a database would only add a row-by-row
Python loop (tens of thousands of rows) to every write. orjson (already a dependency) encodes in
C, zlib compresses in C with the GIL released, and the zlib stream's own length and Adler-32
checksum tell a truncated or damaged file from a good one; the header tells another program's
file and another format version. Nothing in the document is secret but the addresses: the token
is never part of it (the identity digest covers the username and the collection settings only).

Safety: a file is written to a temporary file in the same directory, fsync'd, renamed over the
previous one and the directory fsync'd, so a crash or ``kill -9`` at any moment leaves the
previous snapshot or the new one, whole. Files are 0600 and a directory the exporter creates is
0700 (they hold addresses). A file that cannot be read is logged with its target's name, moved
aside (``NAME.state.corrupt-<UTC time>``, for the operator to look at or delete) and that target
starts cold; one of an earlier format version (an upgrade) is logged and that target starts
cold, the file left for the next write to replace. A write that fails (a read-only or full
disk) is counted in ``whm_exporter_state_writes_total{result="error"}`` and logged once per
problem; collection goes on, and the next round tries again. So does one whose state cannot be
captured (a bug): the other targets are written all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import stat
import struct
import time
import zlib
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path

from prometheus_client import Counter

from whm_exporter.collect import persist
from whm_exporter.collect.persist import Unusable
from whm_exporter.collect.state import TargetState
from whm_exporter.config import ModuleConfig

log = logging.getLogger("whm_exporter.storage")

MAGIC = b"WHMSTATE"
# 2: listaccts keeps each account's caps, the mail flow the limit markers' numbers, and the
# server settings (get_tweaksetting) are kept.
VERSION = 2
_HEADER = struct.Struct(">8sH")
# zlib level 1: at 20,000 addresses it takes 48 ms for 2.0 MB, level 6 171 ms for 1.6 MB
# (docs/performance.md).
LEVEL = 1
INTERVAL = 60.0
SUFFIX = ".state"
RESULTS = ("success", "error")
# A target name's readable part in its file name; the digest makes the name unique.
_SLUG_LENGTH = 40
_OURS = re.compile(rf"[A-Za-z0-9_-]{{0,{_SLUG_LENGTH}}}-[0-9a-f]{{12}}\.state")
_TEMPORARY = re.compile(_OURS.pattern + r"\.tmp")

# (name, identity, state) of each target to keep.
Targets = Callable[[], Iterable[tuple[str, str, TargetState]]]


def file_name(target: str) -> str:
    """A file name safe for any target name: a readable slug and a digest of the whole name
    (``whm1.example.com`` -> ``whm1_example_com-3f1c0a9d2b4e.state``)."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", target)[:_SLUG_LENGTH]
    digest = hashlib.sha256(target.encode()).hexdigest()[:12]
    return f"{slug}-{digest}{SUFFIX}"


def pack(payload: bytes) -> bytes:
    return _HEADER.pack(MAGIC, VERSION) + zlib.compress(payload, LEVEL)


class OlderFormat(Unusable):
    """A state file an earlier release wrote: not damaged, only of a format this one does not
    read (the next write replaces it)."""

    def __init__(self, version: int) -> None:
        super().__init__(f"format version {version}; this exporter reads version {VERSION}")
        self.version = version


def unpack(data: bytes) -> bytes:
    """The payload of a state file; raises :class:`Unusable` (:class:`OlderFormat` for a file
    of an earlier format)."""
    if len(data) < _HEADER.size or data[: len(MAGIC)] != MAGIC:
        raise Unusable("not a whm-exporter state file")
    version = _HEADER.unpack_from(data)[1]
    if version < VERSION:
        raise OlderFormat(version)
    if version != VERSION:
        raise Unusable(f"format version {version}; this exporter reads version {VERSION}")
    stream = zlib.decompressobj()
    try:
        payload = stream.decompress(data[_HEADER.size :])
    except zlib.error as err:
        raise Unusable(f"corrupt: {err}") from None
    if not stream.eof:
        raise Unusable("truncated")
    if stream.unused_data:
        raise Unusable("corrupt: data after the end")
    return payload


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` so that a crash at any moment leaves the old file or the new
    one, whole: a temporary file beside it, fsync, rename, fsync of the directory."""
    temporary = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            # A temporary file a crash left keeps its mode through O_TRUNC.
            os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class Keeper:
    """The state files of one exporter process in one directory (one process per directory)."""

    def __init__(self, directory: Path, writes: Counter, *, interval: float = INTERVAL) -> None:
        self.directory = directory
        self._writes = writes
        for result in RESULTS:
            writes.labels(result)
        self._interval = interval
        # The fingerprint of the capture last written, per target.
        self._written: dict[str, int] = {}
        # The problem of each target whose last write failed: each problem is logged once
        # while some target has it.
        self._failing: dict[str, str] = {}
        # Writes and removals never overlap (they share temporary and final file names).
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._targets: Targets | None = None
        self._pruning: set[asyncio.Task[None]] = set()

    @classmethod
    def open(cls, directory: Path, writes: Counter, *, interval: float = INTERVAL) -> Keeper:
        """The keeper of ``directory``, created 0700 when missing; a directory others may read
        is tightened to 0700 when this process owns it. Temporary files a crash left are
        removed. A directory that cannot be made is logged: writes then fail and are counted."""
        keeper = cls(directory, writes, interval=interval)
        keeper._prepare()
        return keeper

    def _prepare(self) -> None:
        where = {"path": str(self.directory)}
        try:
            self.directory.mkdir(mode=0o700, parents=True)
            # The umask may have taken bits away, never added any: make it exactly 0700.
            os.chmod(self.directory, 0o700)
        except FileExistsError:
            self._check_mode()
        except OSError as err:
            log.error(
                "cannot create the storage directory; kept state will not be written",
                extra={**where, "err": err.strerror},
            )
            return
        try:
            for entry in os.scandir(self.directory):
                if _TEMPORARY.fullmatch(entry.name):
                    os.unlink(entry.path)
        except OSError as err:
            log.warning("cannot clean the storage directory", extra={**where, "err": err.strerror})

    def _check_mode(self) -> None:
        where = {"path": str(self.directory)}
        try:
            st = os.stat(self.directory)
            if not stat.S_ISDIR(st.st_mode):
                log.error("--storage.path is not a directory", extra=where)
                return
            if not st.st_mode & 0o077:
                return
            mode = f"{stat.S_IMODE(st.st_mode):04o}"
            if st.st_uid == os.geteuid():
                os.chmod(self.directory, 0o700)
                log.info("storage directory tightened to 0700", extra={**where, "was": mode})
            else:
                # A Kubernetes emptyDir is root's (group: the pod's fsGroup): the files in it
                # are 0600 all the same.
                log.info(
                    "storage directory is another user's and open to others; its files are 0600",
                    extra={**where, "mode": mode},
                )
        except OSError as err:
            log.warning("cannot check the storage directory", extra={**where, "err": err.strerror})

    # --- start ---------------------------------------------------------------------------------

    def load(
        self,
        name: str,
        identity: str,
        module: ModuleConfig,
        users: Mapping[str, tuple[str, ...]],
    ) -> TargetState | None:
        """Target ``name``'s kept state, when its file holds one of this identity; else None
        (cold start), having logged why and moved an unreadable file aside."""
        path = self.directory / file_name(name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as err:
            log.warning(
                "cannot read the kept state; the target starts cold",
                extra={"target": name, "path": str(path), "err": err.strerror},
            )
            return None
        try:
            document = persist.parse(unpack(data))
            if document.target != name:
                raise Unusable(f"written for target {document.target!r}")
        except OlderFormat as err:
            # An upgrade, not a damaged file: nothing for the operator to look at.
            log.info(
                "kept state is of an earlier release's format; the target starts cold",
                extra={"target": name, "version": err.version, "reads_version": VERSION},
            )
            return None
        except Unusable as err:
            self._set_aside(name, path, str(err))
            return None
        if document.identity != identity:
            log.info(
                "kept state is of another configuration of this target (URL, username, users"
                " or collection settings changed); the target starts cold",
                extra={"target": name},
            )
            return None
        now, wall = time.monotonic(), time.time()
        try:
            state = persist.restore(document, module, users, now, wall)
        except Exception as err:  # whatever a damaged document causes: a cold start
            self._set_aside(name, path, str(err) or type(err).__name__)
            return None
        log.info(
            "kept state restored",
            extra={
                "target": name,
                "users": len(state.accounts),
                "accounts": sum(len(a) for a in state.accounts.values()),
                "written_seconds_ago": round(wall - document.written, 1),
            },
        )
        return state

    def _set_aside(self, name: str, path: Path, problem: str) -> None:
        when = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = path.with_name(f"{path.name}.corrupt-{when}")
        try:
            path.rename(aside)
        except OSError as err:
            moved = f"not moved: {err.strerror}"
        else:
            moved = str(aside)
        log.warning(
            "kept state unreadable; the target starts cold",
            extra={"target": name, "path": str(path), "problem": problem, "moved_to": moved},
        )

    def configured(self, names: Collection[str]) -> None:
        """The targets configured now: the files of any other are removed (at start at once,
        later after the write in progress)."""
        wanted = frozenset(names)
        for gone in self._written.keys() - wanted:
            del self._written[gone]
        for gone in self._failing.keys() - wanted:
            del self._failing[gone]
        if self._task is None:
            self._prune(wanted)
            return

        async def later() -> None:
            async with self._lock:
                self._prune(wanted)

        task = asyncio.get_running_loop().create_task(later())
        self._pruning.add(task)
        task.add_done_callback(self._pruning.discard)

    def _prune(self, wanted: frozenset[str]) -> None:
        keep = {file_name(name) for name in wanted}
        try:
            entries = [e for e in os.scandir(self.directory) if _OURS.fullmatch(e.name)]
            for entry in entries:
                if entry.name not in keep:
                    os.unlink(entry.path)
                    log.info(
                        "removed the kept state of a target no longer configured",
                        extra={"path": entry.path},
                    )
        except OSError as err:
            log.warning(
                "cannot remove the kept state of targets no longer configured",
                extra={"path": str(self.directory), "err": err.strerror},
            )

    # --- writing -------------------------------------------------------------------------------

    def start(self, targets: Targets) -> None:
        """Write the changed targets every ``interval`` seconds from now on."""
        self._targets = targets
        self._task = asyncio.get_running_loop().create_task(self._run(targets))

    async def close(self, targets: Targets) -> None:
        """The last write, after the round in progress (at shutdown, once probes answered)."""
        self._stop.set()
        if self._task is not None:
            await self._task
        else:
            await self.flush(targets())
        if self._pruning:
            await asyncio.wait(self._pruning)

    async def _run(self, targets: Targets) -> None:
        while True:
            stopping = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self._interval)
                stopping = True
            await self.flush(targets())
            if stopping:
                return

    async def flush(self, targets: Iterable[tuple[str, str, TargetState]]) -> None:
        """Write each target whose state changed since its last write. The state is read on
        the event loop (references only); encoding, compressing and writing run in a thread."""
        async with self._lock:
            for name, identity, state in targets:
                try:
                    taken = persist.capture(state, identity, time.time() - time.monotonic())
                    fingerprint = taken.fingerprint()
                except Exception as err:  # a bug here must not end the writer of every target
                    self._failed(name, err)
                    continue
                unknown = not taken.rows and name not in self._written
                if unknown or self._written.get(name) == fingerprint:
                    # Unchanged (or nothing learned yet): let the loop run before the next
                    # target's capture.
                    await asyncio.sleep(0)
                    continue
                try:
                    await asyncio.to_thread(self._write, name, taken)
                except Exception as err:  # a failed write must not stop collection
                    self._failed(name, err)
                    continue
                self._writes.labels("success").inc()
                self._written[name] = fingerprint
                if self._failing.pop(name, None) is not None and not self._failing:
                    log.info("kept state written again", extra={"path": str(self.directory)})

    def _write(self, name: str, taken: persist.Capture) -> None:
        payload = persist.dump(taken, name, time.time())
        write_atomic(self.directory / file_name(name), pack(payload))

    def _failed(self, name: str, err: Exception) -> None:
        self._writes.labels("error").inc()
        problem = err.strerror if isinstance(err, OSError) and err.strerror else repr(err)
        known = problem in self._failing.values()
        self._failing[name] = problem
        if known:
            return
        log.warning(
            "cannot write the kept state; collection goes on, and a restart would start from"
            " the last state written",
            extra={"target": name, "path": str(self.directory), "err": problem},
            # Anything but the disk's refusal is a bug: where it happened is worth the lines.
            exc_info=None if isinstance(err, OSError) else err,
        )
