"""HTTP: routes, content negotiation and serialisation. Decisions live in exporter.py."""

from __future__ import annotations

import html
import logging
import time
import zlib
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import aiohttp.web_response
from aiohttp import web
from prometheus_client.exposition import choose_encoder, gzip_accepted

from whm_exporter import __version__
from whm_exporter.durations import format_duration
from whm_exporter.exporter import Exporter
from whm_exporter.exposition import WithoutCreated, render_text, write
from whm_exporter.families import EXPOSED
from whm_exporter.metrics import families
from whm_exporter.request import BadRequest, probe_timeout
from whm_exporter.series import Family
from whm_exporter.snapshot import Snapshot
from whm_exporter.webconfig import WebSecurity

log = logging.getLogger("whm_exporter")

# Paths the app serves under its route prefix (beside the telemetry path).
ROUTES = ("/", "/probe", "/-/healthy", "/-/ready", "/-/reload")


@dataclass(frozen=True)
class WebOptions:
    """How the app is reached: the flags of the same names. ``route_prefix`` starts and ends
    with a slash."""

    route_prefix: str = "/"
    telemetry_path: str = "/metrics"
    timeout_offset: float = 0.5
    # Recent probes listed on the landing page.
    history_limit: int = 25


@dataclass(frozen=True, slots=True)
class ProbeSummary:
    """A line of the landing page's recent probes. Only figures: keeping whole snapshots would
    hold tens of MB of samples per large target."""

    target: str
    up: bool
    duration: float
    timeout: float
    calls: int
    errors: int
    deadline_exceeded: bool
    at: float

    @classmethod
    def of(cls, target: str, s: Snapshot) -> ProbeSummary:
        calls, errors = sum(s.calls.values()), sum(s.errors.values())
        return cls(
            target, s.up, s.duration, s.timeout, calls, errors, s.deadline_exceeded, time.time()
        )


# Level 1: on 36 MB of exposition (20,000 addresses x 8 folders) it costs 0.14 s of CPU for
# 3.0 MB, where the default level 6 costs 0.56 s for 2.6 MB (benchmarks/bench.py --render).
GZIP_LEVEL = 1
GZIP_WBITS = 16 + zlib.MAX_WBITS  # a gzip header and trailer, not a bare zlib stream

EXPORTER: web.AppKey[Exporter] = web.AppKey("exporter", Exporter)
OPTIONS: web.AppKey[WebOptions] = web.AppKey("options", WebOptions)
# The landing page's recent probes, newest first.
HISTORY: web.AppKey[deque[ProbeSummary]] = web.AppKey("history")


async def _send(
    request: web.Request, content_type: str, chunks: Iterable[bytes]
) -> web.StreamResponse:
    """Stream ``chunks`` as they are made, gzip'd when the scraper accepts it (Prometheus
    always does): a large answer is never whole in memory, compressed or not."""
    headers = {"Content-Type": content_type, "Vary": "Accept-Encoding"}
    gzip = None
    if gzip_accepted(request.headers.get("Accept-Encoding", "")):
        gzip = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, GZIP_WBITS)
        headers["Content-Encoding"] = "gzip"
    resp = web.StreamResponse(headers=headers)
    try:
        await resp.prepare(request)
        for chunk in chunks:
            data = gzip.compress(chunk) if gzip else chunk
            if data:
                # Waits while the client is slower than the writer: /-/healthy gets through.
                await resp.write(data)
        if gzip:
            await resp.write(gzip.flush())
        await resp.write_eof()
    except ConnectionError:
        # The scraper went away before or during the answer (its own timeout, or it stopped
        # while the probe collected): nobody is left to tell.
        log.debug(
            "scraper disconnected before the whole answer was sent", extra={"path": request.path}
        )
    return resp


def _negotiate(request: web.Request) -> tuple[bool, str]:
    """OpenMetrics when the scraper asks for it, else text: prometheus_client's negotiation."""
    _, content_type = choose_encoder(request.headers.get("Accept", ""))
    return content_type.startswith("application/openmetrics-text"), content_type


async def _exposition(request: web.Request, fams: Sequence[Family]) -> web.StreamResponse:
    openmetrics, content_type = _negotiate(request)
    return await _send(request, content_type, write(fams, openmetrics))


def _bad_request(reason: str) -> web.Response:
    return web.Response(status=400, text=reason + "\n")


async def probe(request: web.Request) -> web.StreamResponse:
    exporter = request.app[EXPORTER]
    query = request.query
    try:
        target = exporter.resolve(query.get("target"), query.get("module"))
        timeout = probe_timeout(
            target.module,
            request.headers.get("X-Prometheus-Scrape-Timeout-Seconds"),
            request.app[OPTIONS].timeout_offset,
        )
    except BadRequest as err:
        return _bad_request(str(err))
    debug = query.get("debug", "").lower() in ("true", "1")
    # A person looking must not take the calls and errors Prometheus' next scrape counts.
    snapshot = await exporter.probe(target, timeout, look=debug)
    request.app[HISTORY].appendleft(ProbeSummary.of(target.name, snapshot))
    fams = families(snapshot)
    if debug:
        text = _debug_text(target.name, timeout, snapshot, fams)
        return web.Response(text=text, content_type="text/plain")
    return await _exposition(request, fams)


def _debug_text(name: str, timeout: float, s: Snapshot, fams: Sequence[Family]) -> str:
    lines = [
        f"Probe of {name} (timeout {timeout:.1f}s): {'up' if s.up else 'DOWN'},"
        f" {s.duration:.3f}s{', answered with work pending' if s.deadline_exceeded else ''}",
        "",
        "Calls that ended while this probe waited (still counted for the next scrape):",
    ]
    for c in s.log:
        subject = f" {c.subject}" if c.subject else ""
        detail = f" ({c.detail})" if c.detail else ""
        lines.append(f"  {c.function}{subject}: {c.outcome} in {c.seconds * 1000:.0f}ms{detail}")
    for family in EXPOSED:
        if said := family.debug(s):
            lines += ["", *said]
    lines += ["", "Metrics:", render_text(fams).decode()]
    return "\n".join(lines)


async def metrics(request: web.Request) -> web.StreamResponse:
    """The exporter's own registry: small, so prometheus_client writes it."""
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    body = encoder(WithoutCreated(request.app[EXPORTER].metrics.registry))
    return await _send(request, content_type, [body])


async def healthy(request: web.Request) -> web.Response:
    return web.Response(text="Healthy\n")


async def ready(request: web.Request) -> web.Response:
    return web.Response(text="Ready\n")


async def reload(request: web.Request) -> web.Response:
    if request.app[EXPORTER].reload():
        return web.Response(text="Reloaded\n")
    return web.Response(status=500, text="Reload failed: see the exporter's log\n")


def _e(value: object) -> str:
    return html.escape(str(value))


async def landing(request: web.Request) -> web.Response:
    exporter = request.app[EXPORTER]
    config = exporter.loaded.config
    # Links are relative to the page (served at the route prefix), so they also hold behind a
    # reverse proxy that strips or adds a prefix.
    metrics_link = request.app[OPTIONS].telemetry_path.lstrip("/")
    rows = "".join(
        f"<tr><td>{_e(name)}</td><td>{_e(t.url)}</td><td>{_e(t.module)}</td>"
        f'<td><a href="probe?target={_e(name)}">probe</a> · '
        f'<a href="probe?target={_e(name)}&amp;debug=true">debug</a></td></tr>'
        for name, t in config.targets.items()
    )
    modules = "".join(
        f"<tr><td>{_e(name)}</td><td>{_e(m.username)}</td><td>{format_duration(m.timeout)}</td>"
        f"<td>{m.max_concurrency}</td>"
        f"<td>{_e(', '.join(p.pattern for p in m.allowed_targets)) or '—'}</td></tr>"
        for name, m in config.modules.items()
    )
    recent = "".join(
        f"<tr><td>{time.strftime('%H:%M:%S', time.gmtime(r.at))}</td>"
        f"<td>{_e(r.target)}</td><td>{'up' if r.up else 'DOWN'}</td>"
        f"<td>{r.duration:.3f}s / {r.timeout:.1f}s</td>"
        f"<td>{r.calls}</td><td>{r.errors}</td>"
        f"<td>{'yes' if r.deadline_exceeded else ''}</td></tr>"
        for r in request.app[HISTORY]
    )
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>WHM Exporter</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:left}}</style></head>
<body><h1>WHM Exporter</h1>
<p>Prometheus exporter for cPanel &amp; WHM mail · version {_e(__version__)}</p>
<ul><li><a href="{_e(metrics_link)}">Metrics</a> (the exporter's own)</li>
<li><a href="-/healthy">Health</a> · <a href="-/ready">Readiness</a></li></ul>
<h2>Targets</h2><table><tr><th>name</th><th>url</th><th>module</th><th></th></tr>{rows}</table>
<h2>Modules</h2><table><tr><th>name</th><th>username</th><th>timeout</th>
<th>max_concurrency</th><th>allowed_targets</th></tr>{modules}</table>
<h2>Recent probes</h2><table><tr><th>time (UTC)</th><th>target</th><th>result</th>
<th>duration / timeout</th>
<th>calls</th><th>errors</th><th>work pending</th></tr>{recent}</table>
</body></html>
"""
    return web.Response(text=page, content_type="text/html")


async def _without_banner(request: web.Request, response: web.StreamResponse) -> None:
    """No Server header, as the Go exporters: aiohttp's names the Python and aiohttp versions,
    a gift to a scanner."""
    response.headers.popall("Server", None)


# A request too malformed to route (a garbage request line, a bad Content-Length) is answered
# by aiohttp before any hook of the app runs, with the default it keeps in this module
# variable: our own name there, without versions. If aiohttp renames it, test_server notices.
aiohttp.web_response.SERVER_SOFTWARE = "whm-exporter"  # type: ignore[attr-defined]


def make_app(
    exporter: Exporter, security: WebSecurity | None = None, options: WebOptions | None = None
) -> web.Application:
    options = options or WebOptions()
    app = web.Application()
    if security:
        security.install(app)
    app.on_response_prepare.append(_without_banner)
    app[EXPORTER] = exporter
    app[OPTIONS] = options
    app[HISTORY] = deque(maxlen=options.history_limit)
    prefix = options.route_prefix
    handlers = {"/": landing, "/probe": probe, "/-/healthy": healthy, "/-/ready": ready}
    for route, handler in handlers.items():
        app.router.add_get(prefix + route.lstrip("/"), handler)
    app.router.add_post(prefix + "-/reload", reload)
    app.router.add_get(prefix + options.telemetry_path.lstrip("/"), metrics)
    if prefix != "/":
        # As blackbox_exporter: the bare root and the prefix without its slash lead to the
        # landing page (whose relative links need the slash).
        async def to_prefix(request: web.Request) -> web.Response:
            raise web.HTTPFound(prefix)

        app.router.add_get("/", to_prefix)
        app.router.add_get(prefix.rstrip("/"), to_prefix)

    async def start(app: web.Application) -> None:
        exporter.start()

    async def close(app: web.Application) -> None:
        await exporter.close()

    app.on_startup.append(start)
    app.on_cleanup.append(close)
    return app
