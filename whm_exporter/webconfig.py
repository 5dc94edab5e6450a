"""``--web.config.file`` in the exporter-toolkit format: TLS for the exporter's own listener and
basic auth with bcrypt hashes, as node_exporter and blackbox_exporter read it."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import bcrypt
import yaml
from aiohttp import web
from pydantic import Field, ValidationError

from whm_exporter.yamlconf import ConfigError, StrictModel, validation_messages

ClientAuth = Literal[
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
]
_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}


class TLSServerConfig(StrictModel):
    cert_file: Path
    key_file: Path
    client_auth_type: ClientAuth = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: Literal["TLS12", "TLS13"] = "TLS12"


class HTTPServerConfig(StrictModel):
    headers: dict[str, str] = Field(default_factory=dict)
    # exporter-toolkit's switch; aiohttp serves HTTP/1.1 whatever it says (README).
    http2: bool = True


class WebConfigFile(StrictModel):
    tls_server_config: TLSServerConfig | None = None
    basic_auth_users: dict[str, str] = Field(default_factory=dict)
    http_server_config: HTTPServerConfig = HTTPServerConfig()


@dataclass
class WebSecurity:
    ssl_context: ssl.SSLContext | None
    users: dict[str, bytes]
    headers: dict[str, str] = field(default_factory=dict)
    # Digests of credentials already checked: bcrypt is slow on purpose, scrapes are frequent.
    _verified: set[bytes] = field(default_factory=set)

    def allows(self, header: str | None) -> bool:
        if not self.users:
            return True
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        digest = hashlib.sha256(f"{user}\0{password}".encode()).digest()
        if any(hmac.compare_digest(digest, d) for d in self._verified):
            return True
        hashed = self.users.get(user)
        if hashed is None or not bcrypt.checkpw(password.encode(), hashed):
            return False
        self._verified.add(digest)
        return True

    def middleware(self) -> Callable[..., Awaitable[web.StreamResponse]]:
        """Basic auth on every endpoint (as exporter-toolkit does) and the configured headers
        on every answer."""

        @web.middleware
        async def secure(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            if self.allows(request.headers.get("Authorization")):
                resp = await handler(request)
            else:
                resp = web.Response(
                    status=401,
                    text="Unauthorized\n",
                    headers={"WWW-Authenticate": 'Basic realm="whm-exporter"'},
                )
            resp.headers.update(self.headers)
            return resp

        return secure


def _ssl_context(tls: TLSServerConfig) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _VERSIONS[tls.min_version]
    ctx.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.client_ca_file is not None:
        ctx.load_verify_locations(cafile=tls.client_ca_file)
    ctx.verify_mode = {
        "NoClientCert": ssl.CERT_NONE,
        "RequestClientCert": ssl.CERT_OPTIONAL,
        "RequireAnyClientCert": ssl.CERT_REQUIRED,
        "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
        "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
    }[tls.client_auth_type]
    return ctx


def load_web_config(path: str | Path) -> WebSecurity:
    """Read and check a web config file; raises ConfigError naming the key."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        parsed = WebConfigFile.model_validate(data)
    except OSError as err:
        raise ConfigError([f"{path}: cannot read: {err.strerror}"]) from None
    except yaml.YAMLError:
        raise ConfigError([f"{path}: not valid YAML"]) from None
    except ValidationError as err:
        raise ConfigError([f"{path}: {m}" for m in validation_messages(err)]) from None
    users = {}
    for user, hashed in parsed.basic_auth_users.items():
        if not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise ConfigError([f"{path}: basic_auth_users.{user}: not a bcrypt hash"])
        users[user] = hashed.encode()
    ctx = None
    if parsed.tls_server_config is not None:
        try:
            ctx = _ssl_context(parsed.tls_server_config)
        except (OSError, ssl.SSLError) as err:
            raise ConfigError([f"{path}: tls_server_config: {err}"]) from None
    return WebSecurity(ctx, users, dict(parsed.http_server_config.headers))
