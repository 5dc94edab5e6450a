"""Kept state on disk (storage.py, --storage.path): the file format and its atomic write, a
kill in the middle of a write, modes, and the exporter that reads its state at start, writes
what changed, sets unreadable files aside, removes those of removed targets, and goes on
collecting when the disk refuses."""

from __future__ import annotations

import functools
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import zlib
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import TOKEN, WHM, Running, module, samples, series, value, wait_until

from whm_exporter import storage
from whm_exporter.collect import persist
from whm_exporter.collect.persist import Unusable
from whm_exporter.metrics import ExporterMetrics
from whm_exporter.simulator import Dataset

DATASET = Dataset(accounts=24, users=6, folders=3)
MAILBOX = "get_mailbox_status_list"
DISCOVERY = ("listaccts", "list_pops_for")


def every_account() -> set[str]:
    return {
        a for u in DATASET.user_names if not DATASET.suspended(u) for a in (*DATASET.pops[u], u)
    }


def accounts_of(found: Any) -> set[str]:
    return {dict(k)["account"] for k in series(found, "whm_mailbox_messages")}


# --- the file ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["whm1", "whm1.example.com:2087", "../../etc/passwd", "a/b\\c", "", "é" * 300, " ", "A"],
)
def test_file_names_are_safe_for_any_target_name(name: str) -> None:
    file = storage.file_name(name)
    assert storage._OURS.fullmatch(file)
    assert "/" not in file
    assert not file.startswith(".")
    assert len(file) < 100


def test_file_names_are_distinct_and_readable() -> None:
    names = ["whm1", "WHM1", "whm1.", "whm1/", "whm1_", "whm2"]
    assert len({storage.file_name(n) for n in names}) == len(names)
    assert storage.file_name("whm1.example.com").startswith("whm1_example_com-")


def test_a_payload_comes_back_and_a_damaged_one_is_refused() -> None:
    payload = b'{"target": "t"}' * 100
    data = storage.pack(payload)
    assert storage.unpack(data) == payload
    damaged = [
        b"",
        b"WHMSTATE",
        b"something else entirely",
        data[: len(data) // 2],
        data[:-1],
        data + b"x",
        data[:-6] + bytes([data[-6] ^ 1]) + data[-5:],
        storage._HEADER.pack(storage.MAGIC, storage.VERSION + 1) + zlib.compress(payload),
    ]
    for bad in damaged:
        with pytest.raises(Unusable):
            storage.unpack(bad)


def test_files_are_0600_whatever_the_umask_and_a_leftover_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / storage.file_name("t")
    leftover = path.with_name(path.name + ".tmp")
    leftover.write_bytes(b"half a file")
    leftover.chmod(0o666)
    old = os.umask(0)
    try:
        storage.write_atomic(path, b"one")
        storage.write_atomic(path, b"two")
    finally:
        os.umask(old)
    assert path.read_bytes() == b"two"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not leftover.exists()


def test_the_directory_is_created_0700_and_an_open_one_tightened(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        storage.Keeper.open(tmp_path / "a" / "state", ExporterMetrics().state_writes)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a" / "state").stat().st_mode) == 0o700
    existing = tmp_path / "b"
    existing.mkdir(mode=0o755)
    existing.chmod(0o755)
    (existing / f"{storage.file_name('t')}.tmp").write_bytes(b"left by a crash")
    (existing / "unrelated.txt").write_bytes(b"not ours")
    storage.Keeper.open(existing, ExporterMetrics().state_writes)
    assert stat.S_IMODE(existing.stat().st_mode) == 0o700
    assert sorted(p.name for p in existing.iterdir()) == ["unrelated.txt"]


# A writer that stops (and says so) at a chosen point of its second write: the test kills it
# there, as kill -9 would at any moment.
_WRITER = """
import os, sys
from pathlib import Path
from whm_exporter import storage

path, point = Path(sys.argv[1]), sys.argv[2]
storage.write_atomic(path, storage.pack(b"first" * 1000))

def stop_here(*_):
    print("stopped", flush=True)
    sys.stdin.read()

real_write, real_fsync, real_replace = os.write, os.fsync, os.replace
if point == "write":
    def write(fd, data):
        real_write(fd, bytes(data[: len(data) // 2]))
        stop_here()
    os.write = write
elif point == "fsync":
    os.fsync = lambda fd: stop_here()
else:
    def replace(a, b):
        real_replace(a, b)
        stop_here()
    os.replace = replace
storage.write_atomic(path, storage.pack(b"second" * 1000))
"""


@pytest.mark.parametrize(
    ("point", "left"),
    [("write", b"first"), ("fsync", b"first"), ("rename", b"second")],
)
def test_a_kill_in_the_middle_of_a_write_leaves_a_whole_snapshot(
    tmp_path: Path, point: str, left: bytes
) -> None:
    path = tmp_path / storage.file_name("t")
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), point],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline() == "stopped\n"
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=10)
    finally:
        if writer.poll() is None:
            writer.kill()
        writer.communicate()
    assert storage.unpack(path.read_bytes()) == left * 1000
    # The next start removes what the killed write left.
    storage.Keeper.open(tmp_path, ExporterMetrics().state_writes)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


# --- the exporter ------------------------------------------------------------------------------


@pytest.fixture
def kept(start_exporter: Callable[..., Awaitable[Running]], tmp_path: Path) -> Any:
    """Start an exporter from a config file with --storage.path (tmp_path/state); stop it as
    SIGTERM does (the app's cleanup: probes answered, the last write)."""
    return functools.partial(start_exporter, config_file=True, storage=tmp_path / "state")


async def stop(running: Running) -> None:
    await running.session.close()
    await running.runner.cleanup()


def state_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "state").iterdir())


async def whole(running: Running, target: str = "t") -> Any:
    """Probe until the target's state is whole."""
    await running.probe(target)
    await running.exporter.targets[target].collection.settled()
    found = await running.probe(target)
    assert accounts_of(found) == every_account()
    return found


async def test_a_restart_serves_every_answer_and_asks_no_discovery(
    start_whm, kept, tmp_path: Path
) -> None:
    whm: WHM = await start_whm(DATASET)
    document = module(whm.url)
    first = await kept(document)
    await whole(first)
    await stop(first)
    files = state_files(tmp_path)
    assert [f.name for f in files] == [storage.file_name("t")]
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    before = dict(whm.sim.stats.calls)
    again = await kept(document)
    found = await again.probe()
    asked = {f: n - before.get(f, 0) for f, n in whm.sim.stats.calls.items()}
    assert accounts_of(found) == every_account()
    assert value(found, "whm_data_items", function=MAILBOX, state="missing") == 0
    assert value(found, "whm_discovery_complete") == 1
    assert value(found, "whm_up") == 1
    for function in (*DISCOVERY, MAILBOX):
        assert asked.get(function, 0) == 0, function
    for file in (tmp_path / "state").iterdir():
        assert TOKEN.encode() not in storage.unpack(file.read_bytes())
        assert TOKEN.encode() not in file.read_bytes()


@pytest.mark.parametrize(
    "spoil",
    [
        lambda data: data[: len(data) // 2],
        lambda data: b"garbage",
        lambda data: storage._HEADER.pack(storage.MAGIC, storage.VERSION + 1) + data[10:],
        lambda data: storage.pack(storage.unpack(data).replace(b'"target":"t"', b'"target":"u"')),
        lambda data: storage.pack(storage.unpack(data).replace(b'"mailbox":[', b'"mailbox":[1,')),
    ],
    ids=["truncated", "garbage", "other version", "other target", "bad row"],
)
async def test_an_unreadable_file_is_set_aside_and_the_target_starts_cold(
    start_whm, kept, tmp_path: Path, caplog: pytest.LogCaptureFixture, spoil: Any
) -> None:
    whm: WHM = await start_whm(DATASET)
    document = module(whm.url)
    first = await kept(document)
    await whole(first)
    await stop(first)
    [file] = state_files(tmp_path)
    file.write_bytes(spoil(file.read_bytes()))
    before = dict(whm.sim.stats.calls)
    with caplog.at_level(logging.INFO, logger="whm_exporter.storage"):
        again = await kept(document)
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.getMessage() == "kept state unreadable; the target starts cold"
    assert warning.__dict__["target"] == "t"
    aside = [f for f in state_files(tmp_path) if ".corrupt-" in f.name]
    assert len(aside) == 1
    assert aside[0].name.startswith(file.name)
    found = await again.probe()
    assert value(found, "whm_up") == 1
    assert whm.sim.stats.calls["listaccts"] == before["listaccts"] + 1
    await again.exporter.targets["t"].collection.settled()
    await stop(again)
    # The cold start's own state replaced it.
    assert storage.unpack(file.read_bytes())


async def test_another_identity_starts_cold(start_whm, kept, tmp_path: Path, caplog) -> None:
    whm: WHM = await start_whm(DATASET)
    first = await kept(module(whm.url))
    await whole(first)
    await stop(first)
    # A change of what is collected: the kept answers are not for this configuration.
    changed = module(whm.url, mailboxes={"exclude_folders": ["INBOX.Trash"]})
    with caplog.at_level(logging.INFO, logger="whm_exporter.storage"):
        again = await kept(changed)
    assert "kept state is of another configuration" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    listaccts = again.exporter.targets["t"].state.listaccts
    assert listaccts is not None
    assert listaccts.answer is None
    # The file stays, for the next write to replace: nothing is set aside.
    assert [f.name for f in state_files(tmp_path)] == [storage.file_name("t")]


def _two_targets(url: str) -> dict[str, Any]:
    document = module(url)
    document["targets"]["u"] = {"url": url.replace("127.0.0.1", "localhost")}
    return document


async def test_a_removed_target_loses_its_file_at_start_and_at_reload(
    start_whm, kept, tmp_path: Path
) -> None:
    whm: WHM = await start_whm(DATASET)
    document = _two_targets(whm.url)
    first = await kept(document)
    await whole(first, "t")
    await whole(first, "u")
    await stop(first)
    names = {storage.file_name("t"), storage.file_name("u")}
    assert {f.name for f in state_files(tmp_path)} == names
    del document["targets"]["u"]
    again = await kept(document)
    assert [f.name for f in state_files(tmp_path)] == [storage.file_name("t")]
    # A reload that removes "t" and adds "v": "t"'s file goes (after any write in progress).
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({**document, "targets": {"v": {"url": whm.url}}}))
    assert again.exporter.reload()
    await wait_until(lambda: not state_files(tmp_path), "t's file to be removed")


async def test_a_reload_keeps_the_state_and_the_file_follows(
    start_whm, kept, tmp_path: Path
) -> None:
    whm: WHM = await start_whm(DATASET)
    document = module(whm.url)
    running = await kept(document)
    await whole(running)
    state = running.exporter.targets["t"].state
    # A new timeout: the same items, the same state (in memory, and in the file).
    document["modules"]["default"]["timeout"] = "20s"
    (tmp_path / "config.yml").write_text(yaml.safe_dump(document))
    assert running.exporter.reload()
    assert running.exporter.targets["t"].state is state
    await stop(running)
    before = dict(whm.sim.stats.calls)
    again = await kept(document)
    found = await again.probe()
    assert accounts_of(found) == every_account()
    assert whm.sim.stats.calls["listaccts"] == before["listaccts"]


async def test_only_the_targets_that_changed_are_written(start_whm, kept, tmp_path: Path) -> None:
    whm: WHM = await start_whm(DATASET)
    running = await kept(_two_targets(whm.url), interval=0.05)
    keeper = running.exporter._keeper
    assert keeper is not None

    def written() -> float:
        found = running.exporter.metrics.registry.get_sample_value(
            "whm_exporter_state_writes_total", {"result": "success"}
        )
        assert found is not None
        return float(found)

    await whole(running, "t")
    await wait_until(lambda: state_files(tmp_path) != [], "t's state written")
    # "u" learned nothing yet: no file for it.
    await keeper.flush(running.exporter.kept())
    assert [f.name for f in state_files(tmp_path)] == [storage.file_name("t")]
    # Rounds go by: nothing changed, nothing written.
    count = written()
    for _ in range(3):
        await keeper.flush(running.exporter.kept())
    assert written() == count
    await running.probe("t")
    await running.exporter.targets["t"].collection.settled()
    await keeper.flush(running.exporter.kept())
    assert written() > count
    assert len(state_files(tmp_path)) == 1


def _mount(directory: Path, options: str) -> None:
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)],
        check=True,
        capture_output=True,
    )


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Any]:
    """Make tmp_path/state refuse writes: a read-only or a full file system (a tmpfs; root is
    not refused by a directory's mode), and give it back."""
    directory = tmp_path / "state"
    directory.mkdir(mode=0o700)
    mounted = False

    def refuse(how: str) -> None:
        nonlocal mounted
        if os.geteuid() != 0 or not shutil.which("mount"):
            if how == "full":
                pytest.skip("SKIPPED: a full disk needs root (a tmpfs mount); CI runs it")
            directory.chmod(0o500)
            return
        try:
            _mount(directory, "ro,size=1m" if how == "read-only" else "size=8k")
        except subprocess.CalledProcessError as err:
            if os.environ.get("CI"):
                raise
            pytest.skip(f"SKIPPED: cannot mount a tmpfs here ({err.stderr.strip()})")
        mounted = True

    def heal() -> None:
        if mounted:
            subprocess.run(["mount", "-o", "remount,rw,size=64m", str(directory)], check=True)
        else:
            directory.chmod(0o700)

    yield refuse, heal
    if mounted:
        subprocess.run(["umount", str(directory)], check=False)
    directory.chmod(0o700)


@pytest.mark.parametrize("how", ["read-only", "full"])
async def test_a_disk_that_refuses_is_counted_logged_once_and_collection_goes_on(
    start_whm, kept, disk, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    refuse, heal = disk
    refuse(how)
    whm: WHM = await start_whm(Dataset(accounts=400, users=40, folders=8))
    with caplog.at_level(logging.INFO, logger="whm_exporter.storage"):
        running = await kept(_two_targets(whm.url), interval=0.05)
        _, text = await running.get("/metrics")
        assert value(samples(text), "whm_exporter_state_writes_total", result="error") == 0
        assert value(samples(text), "whm_exporter_state_writes_total", result="success") == 0
        for target in ("t", "u"):
            found = await running.probe(target)
            assert value(found, "whm_up") == 1

        async def errors() -> float:
            _, text = await running.get("/metrics")
            return value(samples(text), "whm_exporter_state_writes_total", result="error") or 0

        async def several() -> bool:
            return await errors() >= 4

        await wait_until(several, "failed writes to be counted")
        refused = [r for r in caplog.records if r.getMessage().startswith("cannot write")]
        assert len(refused) == 1, [r.getMessage() for r in refused]
        # Collection goes on.
        await running.exporter.targets["t"].collection.settled()
        assert accounts_of(await running.probe("t"))

        async def successes() -> float:
            _, text = await running.get("/metrics")
            return value(samples(text), "whm_exporter_state_writes_total", result="success") or 0

        # On a full disk a small file may still fit: count from here.
        before = await successes()
        heal()
        await wait_until(
            lambda: "kept state written again" in caplog.text, "every target written again"
        )
        assert await successes() >= before + 2


async def test_a_capture_that_raises_is_counted_logged_once_and_the_writer_goes_on(
    start_whm, kept, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch
) -> None:
    whm: WHM = await start_whm(DATASET)
    with caplog.at_level(logging.INFO, logger="whm_exporter.storage"):
        running = await kept(_two_targets(whm.url), interval=0.05)
        broken = running.exporter.targets["t"].state
        capture = persist.capture

        def failing(state: Any, identity: str, offset: float) -> Any:
            if state is broken:
                raise RuntimeError("capture broke")
            return capture(state, identity, offset)

        monkeypatch.setattr(persist, "capture", failing)
        await whole(running, "t")
        await whole(running, "u")

        def count(result: str) -> float:
            found = running.exporter.metrics.registry.get_sample_value(
                "whm_exporter_state_writes_total", {"result": result}
            )
            return found or 0

        # Several rounds failed on "t": the writer outlived the first; "u" was written.
        await wait_until(lambda: count("error") >= 3, "failed captures to be counted")
        assert [f.name for f in state_files(tmp_path)] == [storage.file_name("u")]
        refused = [r for r in caplog.records if r.getMessage().startswith("cannot write")]
        assert len(refused) == 1, [r.getMessage() for r in refused]
        assert refused[0].__dict__["target"] == "t"
        assert "capture broke" in caplog.text
        # Mended: the next round writes "t" too.
        monkeypatch.setattr(persist, "capture", capture)
        await wait_until(
            lambda: storage.file_name("t") in {f.name for f in state_files(tmp_path)},
            "t's state written",
        )
        await wait_until(lambda: "kept state written again" in caplog.text, "the recovery logged")
