"""Command line: Prometheus-style flags (each also an environment variable), logging, and the
three ways to run: serve, ``--config.check`` and ``--demo``."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import platform
import secrets
import signal
import sys
from collections.abc import Sequence

from aiohttp import web

from whm_exporter import __version__, logs
from whm_exporter.config import Loaded, build_config, load_config
from whm_exporter.exporter import Exporter
from whm_exporter.metrics import ExporterMetrics
from whm_exporter.server import make_app
from whm_exporter.webconfig import load_web_config
from whm_exporter.yamlconf import ConfigError

log = logging.getLogger("whm_exporter")
DEFAULT_LISTEN = ":10087"
SHUTDOWN_GRACE = 5.0


def _env(flag: str) -> str:
    """``config.file`` -> ``WHM_EXPORTER_CONFIG_FILE``."""
    return "WHM_EXPORTER_" + flag.upper().replace(".", "_").replace("-", "_")


def parse_args(argv: Sequence[str] | None, env: dict[str, str] | None = None) -> argparse.Namespace:
    env = dict(os.environ) if env is None else env
    p = argparse.ArgumentParser(
        prog="whm-exporter",
        description="Prometheus exporter for cPanel & WHM mail. Every flag can also be set"
        " through the environment variable shown in brackets.",
    )

    def flag(name: str, default: str | None, text: str, **kw: object) -> None:
        p.add_argument(
            f"--{name}",
            dest=name.replace(".", "_").replace("-", "_"),
            default=env.get(_env(name), default),
            help=f"{text} [{_env(name)}]",
            **kw,  # type: ignore[arg-type]
        )

    flag("config.file", "whm_exporter.yml", "configuration file (YAML)")
    flag("web.listen-address", DEFAULT_LISTEN, "address to listen on, [HOST]:PORT")
    flag("web.config.file", None, "exporter-toolkit web config (TLS, basic auth)")
    flag(
        "log.level",
        "info",
        "debug, info, warn or error",
        choices=["debug", "info", "warn", "error"],
    )
    flag("log.format", "logfmt", "logfmt or json", choices=["logfmt", "json"])
    p.add_argument(
        "--config.check",
        dest="config_check",
        action="store_true",
        help="validate the configuration and its token sources, then exit",
    )
    p.add_argument(
        "--demo",
        action="store_true",
        help="serve a built-in WHM simulator and a config that points at it",
    )
    p.add_argument(
        "--version",
        action="version",
        version=f"whm-exporter {__version__} (python {platform.python_version()})",
    )
    return p.parse_args(argv)


def split_listen(address: str) -> tuple[str | None, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--web.listen-address {address!r} is not [HOST]:PORT")
    return (host.strip("[]") or None), int(port)


def tune_gc() -> None:
    """Collect less often. A probe allocates tens of thousands of short-lived records; with
    CPython's default threshold (700) the collector ran dozens of times per probe and cost about
    a tenth of the exporter's CPU (benchmarks/bench.py). Objects alive at start are frozen out
    of every collection."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def check(path: str) -> int:
    try:
        loaded = load_config(path)
    except ConfigError as err:
        print(f"{path}: {len(err.problems)} problem(s):", file=sys.stderr)
        for problem in err.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    config = loaded.config
    print(f"{path}: OK ({len(config.modules)} module(s), {len(config.targets)} target(s))")
    return 0


async def _serve(exporter: Exporter, listen: str, web_config: str | None, banner: str) -> None:
    host, port = split_listen(listen)
    security = load_web_config(web_config) if web_config else None
    app = make_app(exporter, security)
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=security.ssl_context if security else None)
    await site.start()
    log.info("listening", extra={"address": listen, "tls": bool(security and security.ssl_context)})
    if banner:
        print(banner, flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGHUP, exporter.reload)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    # Answer the probes in flight with what they have, then stop accepting and wait (at most
    # SHUTDOWN_GRACE) for those answers to leave.
    exporter.cancel_probes()
    await runner.cleanup()


async def _demo(listen: str) -> tuple[Loaded, web.AppRunner, str]:
    """The simulator on a free loopback port, a config pointing at it, and what to print."""
    from whm_exporter.simulator import Dataset, Knobs, Simulator, serve

    token = secrets.token_hex(16)
    sim = Simulator(
        Dataset(accounts=24, users=6, folders=6), token=token, knobs=Knobs(latency=0.02)
    )
    runner, sim_url = await serve(sim)
    loaded = build_config(
        {
            "modules": {
                "default": {"token": token, "unique_recipients": {"windows": ["1h", "24h"]}}
            },
            "targets": {"demo": {"url": sim_url}},
        }
    )
    host, port = split_listen(listen)
    base = f"http://{host or 'localhost'}:{port}"
    banner = (
        f"Demo: a simulated WHM server runs at {sim_url}.\n"
        f"  Mailbox and sender metrics:  {base}/probe?target=demo\n"
        f"  What the probe did:          {base}/probe?target=demo&debug=true\n"
        f"  Landing page:                {base}/\n"
        "Stop with Ctrl-C."
    )
    return loaded, runner, banner


async def _run(args: argparse.Namespace, loaded: Loaded | None) -> None:
    """Serve ``loaded`` (read from --config.file), or the demo when there is none."""
    sim_runner = None
    banner = ""
    if loaded is None:
        loaded, sim_runner, banner = await _demo(args.web_listen_address)
    exporter = Exporter(loaded, ExporterMetrics(), None if sim_runner else args.config_file)
    try:
        await _serve(exporter, args.web_listen_address, args.web_config_file, banner)
    finally:
        if sim_runner is not None:
            await sim_runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.config_check:
        return check(args.config_file)
    logs.setup("warning" if args.log_level == "warn" else args.log_level, args.log_format)
    loaded = None
    if not args.demo:
        try:
            loaded = load_config(args.config_file)
        except ConfigError as err:
            for problem in err.problems:
                log.error("bad configuration", extra={"problem": problem})
            return 1
        for warning in loaded.warnings:
            log.warning(warning)
    try:
        split_listen(args.web_listen_address)
        tune_gc()
        asyncio.run(_run(args, loaded))
    except ConfigError as err:
        for problem in err.problems:
            log.error("bad web configuration", extra={"problem": problem})
        return 1
    except (ValueError, OSError) as err:
        log.error("cannot start", extra={"err": str(err)})
        return 1
    return 0
