"""Command line: Prometheus-style flags (each also an environment variable), logging, and the
three ways to run: serve, ``--config.check`` and ``--demo``."""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import logging
import math
import os
import platform
import re
import secrets
import signal
import socket
import sys
from collections.abc import Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from aiohttp import web

from whm_exporter import __version__, logs
from whm_exporter.config import Loaded, build_config, load_config
from whm_exporter.exporter import Exporter
from whm_exporter.metrics import ExporterMetrics
from whm_exporter.server import ROUTES, WebOptions, make_app
from whm_exporter.storage import Keeper
from whm_exporter.webconfig import load_web_config
from whm_exporter.yamlconf import ConfigError

log = logging.getLogger("whm_exporter")
DEFAULT_LISTEN = ":10087"
# The demo serves a throw-away token's data: nobody but this machine needs to see it.
DEMO_LISTEN = "127.0.0.1:10087"
SHUTDOWN_GRACE = 5.0
# sd_listen_fds(3): systemd passes the sockets from file descriptor 3 on.
SD_LISTEN_FDS_START = 3


class UsageError(Exception):
    """A bad flag or environment value: one line, said before anything starts."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _env(flag: str) -> str:
    """``config.file`` -> ``WHM_EXPORTER_CONFIG_FILE``."""
    return "WHM_EXPORTER_" + flag.upper().replace(".", "_").replace("-", "_")


def split_listen(address: str) -> tuple[str | None, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{address!r} is not [HOST]:PORT (port 0-65535)")
    return (host.strip("[]") or None), int(port)


def _listen_address(value: str) -> str:
    try:
        split_listen(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return value


# What a URL path may hold unescaped (RFC 3986 pchar and "/"): no spaces, and no braces,
# which aiohttp would read as a variable part of the route.
_PATH = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@%/-]*")


def _url_path(value: str) -> str:
    if not _PATH.fullmatch(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a URL path")
    return value


def _telemetry_path(value: str) -> str:
    if not value.startswith("/") or value in ROUTES:
        raise argparse.ArgumentTypeError(
            f"{value!r} must be a path starting with / and not one of {', '.join(ROUTES)}"
        )
    return _url_path(value)


def _external_url(value: str) -> str:
    # As Prometheus' computeExternalURL: an absolute URL, not quoted (a systemd unit's quotes
    # are easily kept by mistake).
    if not value:  # an empty variable: not set
        return value
    parts = urlsplit(value)
    if value[0] in "\"'" or value[-1] in "\"'" or parts.scheme not in ("http", "https"):
        raise argparse.ArgumentTypeError(f"{value!r} is not an http:// or https:// URL")
    if not parts.netloc:
        raise argparse.ArgumentTypeError(f"{value!r} has no host")
    _url_path(parts.path)
    return value


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds >= 0")
    return seconds


def _count(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number >= 0")
    return int(value)


# strconv.ParseBool's spellings, as kingpin reads a boolean flag's environment variable.
_BOOLEAN = {"1": True, "t": True, "true": True, "0": False, "f": False, "false": False}


def parse_args(argv: Sequence[str] | None, env: dict[str, str] | None = None) -> argparse.Namespace:
    """Flags, then environment variables for the flags not given, each checked the same way.
    Raises UsageError with a one-line reason."""
    env = dict(os.environ) if env is None else env
    p = _Parser(
        prog="whm-exporter",
        description="Prometheus exporter for cPanel & WHM mail. Every flag with a variable in"
        " brackets can also be set through that environment variable.",
        allow_abbrev=False,
    )
    from_env: list[tuple[str, argparse.Action]] = []

    def flag(name: str, default: object, text: str, **kw: Any) -> None:
        shown = f" (default: {default})" if default not in (None, False) else ""
        action = p.add_argument(
            f"--{name}",
            dest=name.replace(".", "_").replace("-", "_"),
            default=default,
            help=f"{text}{shown} [{_env(name)}]",
            **kw,
        )
        from_env.append((name, action))

    web = WebOptions()
    flag("config.file", "whm_exporter.yml", "configuration file (YAML)", metavar="FILE")
    flag(
        "web.listen-address",
        None,
        f"address to listen on, [HOST]:PORT (default: {DEFAULT_LISTEN}; with --demo:"
        f" {DEMO_LISTEN})",
        type=_listen_address,
        metavar="[HOST]:PORT",
    )
    flag(
        "web.systemd-socket",
        False,
        "listen on the sockets systemd passes (socket activation) instead of --web.listen-address",
        action="store_true",
    )
    flag("web.config.file", None, "exporter-toolkit web config (TLS, basic auth)", metavar="FILE")
    flag(
        "web.telemetry-path",
        web.telemetry_path,
        "path of the exporter's own metrics",
        type=_telemetry_path,
        metavar="PATH",
    )
    flag(
        "web.external-url",
        None,
        "URL under which the exporter is reached (behind a reverse proxy); its path prefixes"
        " every endpoint unless --web.route-prefix says otherwise",
        type=_external_url,
        metavar="URL",
    )
    flag(
        "web.route-prefix",
        None,
        "prefix of every endpoint (default: the path of --web.external-url, else /)",
        type=_url_path,
        metavar="PATH",
    )
    flag(
        "timeout-offset",
        web.timeout_offset,
        "seconds taken off Prometheus' scrape timeout for a probe's deadline",
        type=_seconds,
        metavar="SECONDS",
    )
    flag(
        "history.limit",
        web.history_limit,
        "recent probes listed on the landing page",
        type=_count,
        metavar="N",
    )
    flag(
        "storage.path",
        None,
        "directory where each target's collected state is kept across restarts (default: none,"
        " nothing is written)",
        metavar="DIR",
    )
    flag(
        "log.level",
        "info",
        "debug, info, warn or error",
        choices=list(logs.LEVELS),
        metavar="LEVEL",
    )
    flag("log.format", "logfmt", "logfmt or json", choices=["logfmt", "json"], metavar="FORMAT")
    p.add_argument(
        "--config.check",
        dest="config_check",
        action="store_true",
        help="validate the configuration and its token sources (and --web.config.file), then exit",
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
    # Environment values go through the parser as the flag would, so they are checked alike;
    # flags on the command line then win over them.
    args = argparse.Namespace()
    for name, action in from_env:
        var = _env(name)
        if var not in env:
            continue
        value = env[var]
        if action.nargs == 0:  # a switch
            if value.lower() not in _BOOLEAN:
                raise UsageError(f"{var}={value!r}: not a boolean (true or false)")
            argv_env = [f"--{name}"] if _BOOLEAN[value.lower()] else []
        else:
            argv_env = [f"--{name}={value}"]
        try:
            p.parse_args(argv_env, namespace=args)
        except UsageError as err:
            raise UsageError(f"{var}={value!r}: {err}") from None
    return p.parse_args(argv, namespace=args)


def listen_address(args: argparse.Namespace) -> str:
    if args.web_listen_address:
        return str(args.web_listen_address)
    return DEMO_LISTEN if args.demo else DEFAULT_LISTEN


def web_options(args: argparse.Namespace) -> WebOptions:
    """The route prefix as Prometheus and blackbox_exporter derive it: --web.route-prefix, else
    the path of --web.external-url, else /; always with a slash at both ends."""
    prefix = args.web_route_prefix
    if prefix is None:
        prefix = urlsplit(args.web_external_url or "").path
    prefix = "/" + prefix.strip("/")
    return WebOptions(
        route_prefix=prefix if prefix == "/" else prefix + "/",
        telemetry_path=args.web_telemetry_path,
        timeout_offset=args.timeout_offset,
        history_limit=args.history_limit,
    )


def systemd_sockets(env: MutableMapping[str, str]) -> list[socket.socket]:
    """The listening sockets systemd passed (sd_listen_fds(3)); the variables are removed, as
    sd_listen_fds(unset_environment=1) does, so no child process takes them for its own."""
    pid, count = env.get("LISTEN_PID", ""), env.get("LISTEN_FDS", "")
    for var in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        env.pop(var, None)
    if pid != str(os.getpid()) or not count.isdigit() or int(count) < 1:
        raise ValueError(
            "--web.systemd-socket: no socket passed by systemd (LISTEN_PID/LISTEN_FDS unset or"
            " for another process); start through a .socket unit"
        )
    socks = [
        socket.socket(fileno=fd)
        for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(count))
    ]
    for sock in socks:
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"--web.systemd-socket: descriptor {sock.fileno()} is not a stream")
    return socks


def _address(sockname: object) -> str:
    """A bound socket's name as an operator types it: ``127.0.0.1:10087``, ``[::]:10087``."""
    if isinstance(sockname, tuple):
        host, port = sockname[0], sockname[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(sockname)  # a unix socket's path


def tune_gc() -> None:
    """Collect less often. A probe allocates tens of thousands of short-lived records; with
    CPython's default threshold (700) the collector ran dozens of times per probe and cost about
    a tenth of the exporter's CPU (benchmarks/bench.py). Objects alive at start are frozen out
    of every collection."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (``pip install whm-exporter[uvloop]``), else
    asyncio's: docs/performance.md has the difference it makes."""
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def check(path: str, web_config: str | None = None) -> int:
    """--config.check: the config file and, when given, the web config, as start-up reads
    them; every problem printed, nothing contacted."""
    failed = False
    try:
        loaded = load_config(path)
    except ConfigError as err:
        _print_problems(path, err)
        failed = True
    else:
        for warning in loaded.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        config = loaded.config
        print(f"{path}: OK ({len(config.modules)} module(s), {len(config.targets)} target(s))")
    if web_config:
        try:
            load_web_config(web_config)
        except ConfigError as err:
            _print_problems(web_config, err)
            failed = True
        else:
            print(f"{web_config}: OK")
    return 1 if failed else 0


def _print_problems(path: str, err: ConfigError) -> None:
    print(f"{path}: {len(err.problems)} problem(s):", file=sys.stderr)
    for problem in err.problems:
        print(f"  {problem}", file=sys.stderr)


def _browse_url(sockname: object, tls: bool, prefix: str) -> str:
    """Where a person on this machine opens the exporter bound at ``sockname``."""
    address = _address(sockname)
    for unspecified in ("0.0.0.0:", "[::]:"):
        address = address.replace(unspecified, "localhost:", 1)
    return f"{'https' if tls else 'http'}://{address}{prefix}"


async def _serve(exporter: Exporter, args: argparse.Namespace, sim_url: str | None) -> None:
    web_config = args.web_config_file
    security = load_web_config(web_config) if web_config else None
    options = web_options(args)
    app = make_app(exporter, security, options)
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE
    )
    await runner.setup()
    ssl_context = security.ssl_context if security else None
    sites: list[web.BaseSite]
    if args.web_systemd_socket:
        sites = [
            web.SockSite(runner, sock, ssl_context=ssl_context)
            for sock in systemd_sockets(os.environ)
        ]
    else:
        host, port = split_listen(listen_address(args))
        sites = [web.TCPSite(runner, host, port, ssl_context=ssl_context)]
    for site in sites:
        await site.start()
    # The addresses really bound: the port the system chose when 0 was asked, each family.
    bound = runner.addresses
    log.info(
        "listening",
        extra={
            "address": ", ".join(_address(a) for a in bound),
            "tls": ssl_context is not None,
            "route_prefix": options.route_prefix,
            "event_loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
        },
    )
    if sim_url is not None:
        base = args.web_external_url or _browse_url(
            bound[0], ssl_context is not None, options.route_prefix
        )
        print(_demo_banner(sim_url, base.rstrip("/")), flush=True)
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


def _demo_banner(sim_url: str, base: str) -> str:
    return (
        f"Demo: a simulated WHM server runs at {sim_url}.\n"
        f"  Mailbox and sender metrics:  {base}/probe?target=demo\n"
        f"  What the probe did:          {base}/probe?target=demo&debug=true\n"
        f"  Landing page:                {base}/\n"
        "Stop with Ctrl-C."
    )


async def _demo() -> tuple[Loaded, web.AppRunner, str]:
    """The simulator on a free loopback port and a config pointing at it."""
    from whm_exporter.simulator import Knobs, Simulator, serve
    from whm_exporter.simulator.dataset import DEMO

    token = secrets.token_hex(16)
    sim = Simulator(DEMO, token=token, knobs=Knobs(latency=0.02))
    runner, sim_url = await serve(sim)
    loaded = build_config(
        {
            "modules": {
                "default": {
                    "token": token,
                    "unique_recipients": {"windows": ["1h", "24h"]},
                    # Disk use and quota too: the demo has a mailbox filling up.
                    "discovery": {"function": "list_pops_with_disk"},
                }
            },
            "targets": {"demo": {"url": sim_url}},
        }
    )
    return loaded, runner, sim_url


async def _run(args: argparse.Namespace, loaded: Loaded | None) -> None:
    """Serve ``loaded`` (read from --config.file), or the demo when there is none."""
    sim_runner = sim_url = None
    if loaded is None:
        loaded, sim_runner, sim_url = await _demo()
    metrics = ExporterMetrics()
    keeper = None
    if args.storage_path and sim_runner:
        log.warning("--storage.path is ignored with --demo: the demo writes nothing")
    elif args.storage_path:
        keeper = Keeper.open(Path(args.storage_path), metrics.state_writes)
    exporter = Exporter(
        loaded,
        metrics,
        None if sim_runner else args.config_file,
        keeper=keeper,
    )
    try:
        await _serve(exporter, args, sim_url)
    finally:
        if sim_runner is not None:
            await sim_runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except UsageError as err:
        # One line, as kingpin says it for the Go exporters; nothing has started yet.
        print(f"whm-exporter: error: {err} (see --help)", file=sys.stderr)
        return 1
    if args.config_check:
        return check(args.config_file, args.web_config_file)
    logs.setup(args.log_level, args.log_format)
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
        tune_gc()
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(_run(args, loaded))
    except ConfigError as err:
        for problem in err.problems:
            log.error("bad web configuration", extra={"problem": problem})
        return 1
    except (ValueError, OSError) as err:
        log.error("cannot start", extra={"err": str(err)})
        return 1
    return 0
