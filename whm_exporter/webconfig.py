"""``--web.config.file`` in exporter-toolkit's format (its web/tls_config.go and web/handler.go):
TLS for the exporter's own listener, basic auth with bcrypt hashes, extra answer headers and a
rate limit, as node_exporter and blackbox_exporter read them.

Like the toolkit, the file and the files it names are read again for every connection and
request, so rotated certificates and passwords apply at once; a broken new version is logged
and the last good one keeps serving."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import os
import re
import ssl
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import bcrypt
import yaml
from aiohttp import BasicAuth, web
from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, SecretStr, ValidationError

from whm_exporter.yamlconf import (
    ConfigError,
    StrictModel,
    load_yaml,
    validation_messages,
    yaml_problem,
)

log = logging.getLogger("whm_exporter.webconfig")

_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# Go's crypto/tls CipherSuites(), the names the toolkit accepts, with OpenSSL's name for each.
_CIPHERS = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
}
# Neither Go nor Python's ssl lets TLS 1.3 suites be chosen: listed, they change nothing.
_TLS13_CIPHERS = {
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
}
# Go's net/http refuses to serve HTTP/2 with a TLS 1.2 suite list lacking both of these.
_HTTP2_CIPHERS = {
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
}
# Go's curve names, as OpenSSL calls them.
_CURVES = {
    "CurveP256": "prime256v1",
    "CurveP384": "secp384r1",
    "CurveP521": "secp521r1",
    "X25519": "X25519",
}
# What Python's ssl can do with each client_auth_type: it verifies every certificate it asks
# for, so the toolkit's unverified modes have no equivalent.
_VERIFY_MODES = {
    "": ssl.CERT_NONE,
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
# "RequireClientCert" is the toolkit's old name for RequireAnyClientCert.
_UNVERIFIED_AUTH = {"RequestClientCert", "RequireAnyClientCert", "RequireClientCert"}
# exporter-toolkit web/handler.go extraHTTPHeaders: the only headers a web config may set, and
# the values allowed where the header has a fixed set.
_HEADERS: dict[str, frozenset[str] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": frozenset({"nosniff"}),
    "X-Frame-Options": frozenset({"deny", "sameorigin"}),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}
_BCRYPT = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
_GO_DURATION = re.compile(r"(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:ns|us|µs|μs|ms|s|m|h))+")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
_AUTH_CACHE_SIZE = 100  # as the toolkit's web/cache.go


def _cipher(name: str) -> str:
    if name not in _CIPHERS and name not in _TLS13_CIPHERS:
        raise ValueError(
            f"unknown cipher suite {name!r} (Go's crypto/tls names, such as"
            " TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)"
        )
    return name


def _go_duration(value: object) -> float:
    """Seconds in a Go duration as the toolkit's YAML reads it: ``1m30s``, ``0``, or an
    integer count of nanoseconds."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value * 1e-9
    if isinstance(value, str) and value == "0":
        return 0.0
    if not isinstance(value, str) or not _GO_DURATION.fullmatch(value):
        raise ValueError("not a duration (Go syntax, such as 1s, 500ms or 1m30s)")
    return sum(float(n) * _GO_UNITS[u] for n, u in re.findall(r"([0-9.]+)([^0-9.]+)", value))


TLSVersionName = Literal["TLS10", "TLS11", "TLS12", "TLS13"]


class TLSServerConfig(StrictModel):
    model_config = ConfigDict(coerce_numbers_to_str=True)

    cert: str = ""
    key: SecretStr = SecretStr("")
    client_ca: str = ""
    cert_file: str = ""
    key_file: str = ""
    client_ca_file: str = ""
    # Checked with the other keys (_tls_problems), so that every problem is reported at once.
    client_auth_type: str = ""
    client_allowed_sans: list[str] | None = None
    min_version: TLSVersionName = "TLS12"
    max_version: TLSVersionName = "TLS13"
    cipher_suites: list[Annotated[str, AfterValidator(_cipher)]] = Field(default_factory=list)
    curve_preferences: list[Literal["CurveP256", "CurveP384", "CurveP521", "X25519"]] = Field(
        default_factory=list
    )
    prefer_server_cipher_suites: bool = True

    def enabled(self) -> bool:
        """The toolkit's TLSConfig.IsEnabled: a key that only TLS makes sense for is set."""
        return any(
            (
                self.cert,
                self.key.get_secret_value(),
                self.client_ca,
                self.cert_file,
                self.key_file,
                self.client_ca_file,
                self.client_auth_type,
            )
        )


class HTTPServerConfig(StrictModel):
    model_config = ConfigDict(coerce_numbers_to_str=True)

    headers: dict[str, str] = Field(default_factory=dict)
    # Accepted for the toolkit's sake; aiohttp serves HTTP/1.1 whatever it says (docs/security.md).
    http2: bool = True


class RateLimit(StrictModel):
    interval: Annotated[float, BeforeValidator(_go_duration)] = 0.0
    burst: int = Field(default=0, ge=0)


class WebConfigFile(StrictModel):
    model_config = ConfigDict(coerce_numbers_to_str=True)

    tls_server_config: TLSServerConfig | None = None
    http_server_config: HTTPServerConfig | None = None
    basic_auth_users: dict[str, SecretStr] | None = None
    rate_limit: RateLimit | None = None


def _tls_problems(tls: TLSServerConfig, http2: bool) -> list[str]:
    p = "tls_server_config"
    out = []
    inline = {"cert": tls.cert, "key": tls.key.get_secret_value(), "client_ca": tls.client_ca}
    for name, text in inline.items():
        if text and getattr(tls, f"{name}_file"):
            out.append(f"{p}.{name}_file: give {name}_file or {name}, not both")
    if not (tls.cert or tls.cert_file):
        out.append(f"{p}.cert_file: missing (give cert_file, or the PEM text as cert)")
    if not (tls.key_file or tls.key.get_secret_value()):
        out.append(f"{p}.key_file: missing (give key_file, or the PEM text as key)")
    auth = tls.client_auth_type
    if auth in _UNVERIFIED_AUTH:
        out.append(
            f"{p}.client_auth_type: {auth} is not supported: Python's ssl verifies every client"
            " certificate it asks for; use VerifyClientCertIfGiven or RequireAndVerifyClientCert"
        )
    elif auth not in _VERIFY_MODES:
        out.append(
            f"{p}.client_auth_type: unknown value {auth!r} (NoClientCert,"
            " VerifyClientCertIfGiven or RequireAndVerifyClientCert)"
        )
    elif (tls.client_ca_file or tls.client_ca) and _VERIFY_MODES[auth] == ssl.CERT_NONE:
        out.append(
            f"{p}.client_ca_file: client CAs are set but client_auth_type is not, so no client"
            " certificate would be asked for (set client_auth_type: RequireAndVerifyClientCert)"
        )
    if tls.client_allowed_sans is not None and _VERIFY_MODES.get(auth) in (None, ssl.CERT_NONE):
        out.append(
            f"{p}.client_allowed_sans: needs client_auth_type RequireAndVerifyClientCert"
            " (or VerifyClientCertIfGiven)"
        )
    low, high = _VERSIONS[tls.min_version], _VERSIONS[tls.max_version]
    if high < low:
        out.append(f"{p}.max_version: {tls.max_version} is below min_version {tls.min_version}")
    tls12 = [c for c in tls.cipher_suites if c in _CIPHERS]
    if tls.cipher_suites and not tls12 and high < ssl.TLSVersion.TLSv1_3:
        out.append(f"{p}.cipher_suites: names no TLS 1.2 suite, and max_version allows no other")
    if http2 and tls12 and low < ssl.TLSVersion.TLSv1_3 and not _HTTP2_CIPHERS & set(tls12):
        out.append(
            f"{p}.cipher_suites: HTTP/2 needs TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 or"
            " TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 (as in the toolkit); add one, or set"
            " http_server_config.http2: false"
        )
    return out


def _header_problems(headers: Mapping[str, str]) -> list[str]:
    out = []
    for name, value in headers.items():
        where = f"http_server_config.headers.{name}"
        if name not in _HEADERS:
            out.append(f"{where}: cannot be set (allowed: {', '.join(_HEADERS)})")
        elif (allowed := _HEADERS[name]) is not None and value not in allowed:
            out.append(f"{where}: must be one of {', '.join(sorted(allowed))}")
        elif any((c < " " and c != "\t") or c == "\x7f" for c in value):
            out.append(f"{where}: contains a control character")
    return out


def _user_problems(users: Mapping[str, SecretStr]) -> list[str]:
    out = []
    for user, hashed in users.items():
        if ":" in user:
            out.append(f"basic_auth_users.{user}: a user name cannot hold ':' in basic auth")
        if not _BCRYPT.fullmatch(hashed.get_secret_value()):
            # Never quote it: a value that is not a hash may well be a plain password.
            out.append(
                f"basic_auth_users.{user}: not a bcrypt hash (make one with"
                " htpasswd -nBC 10 \"\" | tr -d ':\\n')"
            )
    return out


class _Reader:
    """Reads the files of one load and keeps what it read, to notice any later change."""

    def __init__(self) -> None:
        self.seen: list[tuple[Path, bytes | None]] = []

    def read(self, path: Path) -> bytes:
        try:
            data = path.read_bytes()
        except OSError:
            self.seen.append((path, None))
            raise
        self.seen.append((path, data))
        return data


def _unchanged(seen: tuple[tuple[Path, bytes | None], ...]) -> bool:
    for path, data in seen:
        try:
            if path.read_bytes() != data:
                return False
        except OSError:
            if data is not None:
                return False
    return True


def _pem(reader: _Reader, folder: Path, key: str, file: str, inline: str) -> bytes:
    """A PEM from its file (relative to the web config's folder, as in the toolkit) or inline."""
    if not file:
        return inline.encode()
    path = folder / file
    try:
        return reader.read(path)
    except OSError as err:
        raise ConfigError(
            [f"tls_server_config.{key}: cannot read {path}: {err.strerror}"]
        ) from None


@contextmanager
def _as_file(pem: bytes) -> Iterator[str]:
    """Python's ssl loads a certificate and key from files only. Loading the bytes already read
    (not the file again) keeps what is served equal to what is compared for changes; they go
    through an anonymous in-memory file (Linux: no disk, works on a read-only root), elsewhere
    through a private temporary folder, removed at once."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("whm-exporter-pem")
        try:
            with open(fd, "wb", closefd=False) as out:
                out.write(pem)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
    else:
        with tempfile.TemporaryDirectory(prefix="whm-exporter-") as folder:
            Path(folder, "pem").write_bytes(pem)
            yield str(Path(folder, "pem"))


def _load_chain(ctx: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    with _as_file(cert) as cert_path, _as_file(key) as key_path:
        # An empty password: an encrypted key fails instead of prompting on the terminal.
        ctx.load_cert_chain(cert_path, key_path, password=b"")


def _reason(err: Exception) -> str:
    """OpenSSL's reason without the library tag and the C source position."""
    return re.sub(r"^\[[^]]*\] *| *\(_ssl\.c:[0-9]+\)$", "", str(err))


def _ssl_context(tls: TLSServerConfig, folder: Path, reader: _Reader) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        # Python deprecates TLS 1.0/1.1; the toolkit still accepts them (docs/security.md).
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = _VERSIONS[tls.min_version]
        ctx.maximum_version = _VERSIONS[tls.max_version]
    if tls.cipher_suites:
        tls12 = [_CIPHERS[c] for c in tls.cipher_suites if c in _CIPHERS]
        if tls12:
            ctx.set_ciphers(":".join(tls12))
        else:
            # Only TLS 1.3 suites named: as in Go, no TLS 1.2 handshake can succeed.
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if tls.prefer_server_cipher_suites:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    if len(tls.curve_preferences) == 1:
        ctx.set_ecdh_curve(_CURVES[tls.curve_preferences[0]])
    cert = _pem(reader, folder, "cert_file", tls.cert_file, tls.cert)
    key = _pem(reader, folder, "key_file", tls.key_file, tls.key.get_secret_value())
    try:
        _load_chain(ctx, cert, key)
    except ssl.SSLError as err:
        raise ConfigError(
            [f"tls_server_config: cannot use the certificate and key: {_reason(err)}"]
        ) from None
    ctx.verify_mode = _VERIFY_MODES[tls.client_auth_type]
    if tls.client_ca or tls.client_ca_file:
        ca = _pem(reader, folder, "client_ca_file", tls.client_ca_file, tls.client_ca)
        try:
            ctx.load_verify_locations(cadata=ca.decode("ascii", "replace"))
        except (ssl.SSLError, ValueError) as err:
            raise ConfigError(
                [f"tls_server_config.client_ca_file: no usable CA certificate: {_reason(err)}"]
            ) from None
    elif ctx.verify_mode != ssl.CERT_NONE:
        # Go verifies against the system's roots when no client CA is given.
        ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    return ctx


def _tls_warnings(tls: TLSServerConfig) -> list[str]:
    out = []
    p = "tls_server_config"
    if len(tls.curve_preferences) > 1:
        out.append(
            f"{p}.curve_preferences: Python's ssl can limit the curves to one only; with several"
            " listed, OpenSSL's default set (which holds them all) is used"
        )
    if _VERIFY_MODES[tls.client_auth_type] != ssl.CERT_NONE and not (
        tls.client_ca or tls.client_ca_file
    ):
        out.append(
            f"{p}.client_ca_file: not set, so client certificates are checked against the"
            " system's trusted CAs (as in the toolkit); set it to trust your own CA only"
        )
    if tls.min_version in ("TLS10", "TLS11"):
        out.append(
            f"{p}.min_version: {tls.min_version} is set, but OpenSSL 3 at its default security"
            " level still refuses TLS 1.0 and 1.1"
        )
    return out


@dataclass(frozen=True, slots=True)
class WebConfig:
    """One good version of the web config, with what was read to make it."""

    sources: tuple[tuple[Path, bytes | None], ...]
    ssl_context: ssl.SSLContext | None
    users: Mapping[str, bytes]
    # Checked in place of an unknown user's hash, at the users' cost, so that a wrong user
    # name takes as long as a wrong password (no user enumeration by timing).
    dummy_hash: bytes
    headers: Mapping[str, str]
    allowed_sans: frozenset[str] | None
    # (seconds between requests, burst), or None for no limit.
    rate_limit: tuple[float, int] | None
    warnings: tuple[str, ...]


def _parse(path: Path, reader: _Reader) -> WebConfig:
    try:
        text = reader.read(path).decode("utf-8")
    except OSError as err:
        raise ConfigError([f"cannot read: {err.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError(["not UTF-8 text"]) from None
    try:
        parsed = WebConfigFile.model_validate(load_yaml(text) or {})
    except yaml.YAMLError as err:
        raise ConfigError([yaml_problem(err)]) from None
    except ValidationError as err:
        raise ConfigError(validation_messages(err)) from None
    http = parsed.http_server_config or HTTPServerConfig()
    users = parsed.basic_auth_users or {}
    tls = parsed.tls_server_config
    problems = _header_problems(http.headers) + _user_problems(users)
    if tls is not None and not tls.enabled():
        if tls.model_fields_set:
            problems.append(
                "tls_server_config: cert_file and key_file (or cert and key) are needed;"
                " without them this exporter would serve plain HTTP"
            )
        tls = None
    if tls is not None:
        problems += _tls_problems(tls, http.http2)
    if problems:
        raise ConfigError(problems)
    ctx = None if tls is None else _ssl_context(tls, path.parent, reader)
    # "$2b$12$...": the cost is the third field (checked by _user_problems).
    costs = [int(h.get_secret_value()[4:6]) for h in users.values()]
    limit = parsed.rate_limit or RateLimit()
    return WebConfig(
        sources=(),
        ssl_context=ctx,
        users={u: h.get_secret_value().encode() for u, h in users.items()},
        dummy_hash=bcrypt.gensalt(max(costs, default=10)) + b"." * 31,
        headers={k: v for k, v in http.headers.items() if v},
        allowed_sans=None
        if tls is None or tls.client_allowed_sans is None
        else frozenset(tls.client_allowed_sans),
        rate_limit=(limit.interval, limit.burst) if limit.interval > 0 else None,
        warnings=tuple(_tls_warnings(tls)) if tls is not None else (),
    )


def _load(path: Path, reader: _Reader) -> WebConfig:
    """Read and check the web config; raises ConfigError naming the file and the key."""
    try:
        config = _parse(path, reader)
    except ConfigError as err:
        raise ConfigError([f"{path}: {p}" for p in err.problems]) from None
    return replace(config, sources=tuple(reader.seen))


class _TokenBucket:
    """The toolkit's rate limit (golang.org/x/time/rate): ``burst`` requests at once, then one
    per ``interval``; a burst of 0 lets nothing through."""

    def __init__(self, interval: float, burst: int) -> None:
        self._interval, self._burst = interval, burst
        self._tokens = float(burst)
        self._at = time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._at) / self._interval)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class _LiveContext(ssl.SSLContext):
    """The context the listener holds. asyncio (and uvloop) wrap each new connection with
    ``wrap_bio``; handing that to the context of the web config as it is now applies a rotated
    certificate, CA or TLS setting to every new connection, as the toolkit's
    GetConfigForClient does."""

    _current: Callable[[], ssl.SSLContext]

    def __new__(cls, current: Callable[[], ssl.SSLContext]) -> _LiveContext:
        self = super().__new__(cls, ssl.PROTOCOL_TLS_SERVER)
        self._current = current
        return self

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        return self._current().wrap_bio(incoming, outgoing, server_side, server_hostname, session)


def _peer_sans(peercert: Mapping[str, Any] | None) -> set[str]:
    """The client certificate's DNS, e-mail, IP and URI names, IPs written as Go writes them."""
    out = set()
    for kind, value in (peercert or {}).get("subjectAltName", ()):
        if kind == "IP Address":
            out.add(ipaddress.ip_address(value.strip()).compressed)
        elif kind in ("DNS", "email", "URI"):
            out.add(value)
    return out


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# The web config a request was checked with, for the headers of its answer.
_CONFIG: web.RequestKey[WebConfig] = web.RequestKey("web_config", WebConfig)


class WebSecurity:
    """The web config in force: checked again on each request and new connection."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._config = _load(path, _Reader())
        self._refused: tuple[tuple[Path, bytes | None], ...] | None = None
        self._limiter = self._bucket(self._config)
        # Digests of (user, hash, password) already checked: bcrypt is slow on purpose, and
        # scrapes are frequent. Bounded, as the toolkit's cache is.
        self._checked: dict[bytes, bool] = {}
        # One bcrypt at a time (as the toolkit's bcryptMtx), in a thread: the event loop stays
        # free for other requests while wrong passwords are being checked.
        self._bcrypt_slot = asyncio.Semaphore(1)
        self._ssl = _LiveContext(self._ssl_now) if self._config.ssl_context else None
        for warning in self._config.warnings:
            log.warning(warning)

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """For the listener; None when the web config has no TLS."""
        return self._ssl

    def _ssl_now(self) -> ssl.SSLContext:
        ctx = self.current().ssl_context
        assert ctx is not None  # switching TLS off is refused by current()
        return ctx

    @staticmethod
    def _bucket(config: WebConfig) -> _TokenBucket | None:
        return _TokenBucket(*config.rate_limit) if config.rate_limit else None

    def current(self) -> WebConfig:
        """The config as the files are now; a broken change is logged once and the last good
        config stays."""
        old = self._config
        if _unchanged(old.sources) or (self._refused is not None and _unchanged(self._refused)):
            return old
        reader = _Reader()
        try:
            new = _load(self.path, reader)
            if (new.ssl_context is None) != (old.ssl_context is None):
                raise ConfigError(
                    [f"{self.path}: tls_server_config: turning TLS on or off needs a restart"]
                )
        except ConfigError as err:
            self._refused = tuple(reader.seen)
            for problem in err.problems:
                log.error(
                    "web config change refused; keeping the previous one",
                    extra={"problem": problem},
                )
            return old
        self._config, self._refused = new, None
        if new.rate_limit != old.rate_limit:
            self._limiter = self._bucket(new)
        log.info("web config reloaded", extra={"file": str(self.path)})
        for warning in new.warnings:
            log.warning(warning)
        return new

    async def _authorised(self, config: WebConfig, header: str | None) -> bool:
        if header is None:
            return False
        try:
            creds = BasicAuth.decode(header, encoding="utf-8")
        except ValueError:
            return False
        known = creds.login in config.users
        hashed = config.users.get(creds.login, config.dummy_hash)
        password = creds.password.encode()
        key = hashlib.sha256(b"\0".join((creds.login.encode(), hashed, password))).digest()
        ok = self._checked.get(key)
        if ok is None:
            async with self._bcrypt_slot:
                ok = await asyncio.to_thread(_checkpw, password, hashed) and known
            if len(self._checked) >= _AUTH_CACHE_SIZE:
                del self._checked[next(iter(self._checked))]
            self._checked[key] = ok
        return ok

    async def _answer(
        self, config: WebConfig, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        if config.allowed_sans is not None:
            transport = request.transport
            peer = transport.get_extra_info("peercert") if transport else None
            if not config.allowed_sans & _peer_sans(peer):
                # Python's ssl has no hook between verifying the chain and ending the
                # handshake (Go's VerifyPeerCertificate), so the refusal comes as an answer.
                return web.Response(
                    status=403, text="Forbidden: client certificate name not allowed\n"
                )
        if self._limiter is not None and not self._limiter.allow():
            return web.Response(status=429, text="Too Many Requests\n")
        if config.users and not await self._authorised(
            config, request.headers.get("Authorization")
        ):
            return web.Response(
                status=401,
                text="Unauthorized\n",
                headers={"WWW-Authenticate": 'Basic realm="whm-exporter"'},
            )
        return await handler(request)

    def install(self, app: web.Application) -> None:
        """Client names, rate limit and basic auth on every endpoint (as exporter-toolkit
        does), and the configured headers on every answer."""

        @web.middleware
        async def secure(request: web.Request, handler: Handler) -> web.StreamResponse:
            config = request[_CONFIG] = self.current()
            return await self._answer(config, request, handler)

        async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
            # At prepare, not after the handler: a streamed answer (/metrics, /probe) has sent
            # its headers by then, and a raised one (a redirect, a 404) never comes back.
            # Headers of the config the request was checked with; aiohttp answers some (a 417
            # to an unknown Expect) before any middleware, with the config in force.
            config = request.get(_CONFIG) or self.current()
            response.headers.update(config.headers)

        app.middlewares.append(secure)
        app.on_response_prepare.append(add_headers)


def _checkpw(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:  # bcrypt >= 5 refuses passwords over 72 bytes; Go's never match either
        return False


def load_web_config(path: str | Path) -> WebSecurity:
    """Read and check a web config file; raises ConfigError naming the key."""
    return WebSecurity(Path(path))
