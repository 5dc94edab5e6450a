"""YAML configuration -> typed, validated, frozen objects.

Every key has a default, unknown keys are errors, and every problem is reported with its YAML path
(``modules.default.timeout: ...``) so an operator can fix a file in one pass. Tokens are resolved
here, once per load, and are only ever held as :class:`pydantic.SecretStr`.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import math
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple
from urllib.parse import urlsplit

import orjson
import yaml
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from whm_exporter.durations import parse_duration
from whm_exporter.yamlconf import (
    ConfigError,
    StrictModel,
    load_yaml,
    validation_messages,
    yaml_problem,
)


class Window(NamedTuple):
    """A unique-recipients window: the label as written (``1h``) and its length."""

    label: str
    seconds: float


def _window(value: object) -> Window:
    seconds = parse_duration(value)
    if seconds < 1:
        raise ValueError("a window must be at least 1s")
    return Window(str(value), seconds)


def _pattern(value: object) -> re.Pattern[str]:
    if not isinstance(value, str):
        raise ValueError("must be a regular expression string")
    try:
        return re.compile(value)
    except re.error as err:
        raise ValueError(f"bad regular expression {value!r}: {err}") from None


def _positive(seconds: float) -> float:
    if seconds <= 0:
        raise ValueError("must be longer than 0s")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
PositiveDuration = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_positive)]
Pattern = Annotated[re.Pattern[str], BeforeValidator(_pattern)]
Patterns = tuple[Pattern, ...]


class TLSConfig(StrictModel):
    insecure_skip_verify: bool = False
    ca_file: Path | None = None
    server_name: str | None = None


class DiscoveryConfig(StrictModel):
    enabled: bool = True
    # list_pops_with_disk (Email::list_pops_with_disk through uapi_cpanel, one call per user as
    # well) adds each address's disk use and quota.
    function: Literal["list_pops_for", "list_pops_with_disk"] = "list_pops_for"
    refresh: Duration = 600.0
    include_users: Patterns = ()
    exclude_users: Patterns = ()
    include_accounts: Patterns = ()
    exclude_accounts: Patterns = ()
    skip_suspended: bool = True
    main_account: bool = True


MailboxFunction = Literal["auto", "get_mailbox_status_list", "get_mailbox_status"]


class MailboxesConfig(StrictModel):
    enabled: bool = True
    function: MailboxFunction = "auto"
    include_folders: Patterns = ()
    exclude_folders: Patterns = ()
    # Every mailbox call runs doveadm on the server: an answer this young is not asked again.
    # On a big server the load budget sets a slower pace (the design's §8).
    refresh: Duration = 60.0
    max_age: Duration = 3600.0


def _distinct(windows: tuple[Window, ...]) -> tuple[Window, ...]:
    labels = [w.label for w in windows]
    if len(set(labels)) != len(labels):
        raise ValueError("windows must be distinct")
    return windows


Windows = Annotated[
    tuple[Annotated[Window, BeforeValidator(_window)], ...], AfterValidator(_distinct)
]


class UniqueRecipientsConfig(StrictModel):
    enabled: bool = True
    windows: Windows = (Window("1h", 3600.0),)
    end_time_lag: Duration = 60.0
    per_user_totals: bool = True
    min_count: int = Field(default=1, ge=0)
    # 0 means no limit.
    max_senders_per_user: int = Field(default=50, ge=0)
    # Users whose total reaches this get their senders asked first (0: every user is hot).
    priority_threshold: int = Field(default=100, ge=0)
    # The spam signal: asked again at every probe unless set (HA scrapers, README).
    refresh: Duration = 0.0
    max_age: Duration = 3600.0


class MailFlowConfig(StrictModel):
    """emailtrack_user_stats: one call per window for the whole server."""

    enabled: bool = True
    windows: Windows = (Window("1h", 3600.0),)
    # Absent from the call when "all" (emailtrack_user_stats: deliverytype).
    delivery_type: Literal["all", "remote", "remote-or-faildefer", "local"] = "all"
    # Users at or above this (or past a cPanel limit) get their senders asked first.
    defer_fail_threshold: int = Field(default=50, ge=0)
    refresh: Duration = 0.0
    max_age: Duration = 3600.0


class ServerSettingsConfig(StrictModel):
    """get_tweaksetting: cPanel's own outbound-spam detection and send limits, one call per key.
    They change seldom; a key the token may not read (a reseller's) is asked again at this pace
    too, not at every probe."""

    enabled: bool = True
    refresh: Duration = 600.0
    max_age: Duration = 3600.0


class LoginsConfig(StrictModel):
    """cPHulk: whether it is on, the failed logins it holds and what it blocks, one call per
    function. A function the token may not call (a reseller's) is asked again at this pace."""

    enabled: bool = True
    refresh: Duration = 120.0
    # cPHulk's figures are of now (its rows expire within minutes to a day): older than this,
    # an answer is no longer served.
    max_age: Duration = 900.0
    # The users or addresses with the most failures, all services together (0: no limit).
    max_users: int = Field(default=20, ge=0)


class MailQueueConfig(StrictModel):
    """fetch_mail_queue: Exim's queue, the whole of it in one call (WHM runs ``exim -bpra``
    over every message at each call, so it is asked rarely). Its answer is read as it arrives
    and reduced to figures: its own answer limit and timeout, sized for big queues."""

    enabled: bool = True
    refresh: Duration = 300.0
    max_age: Duration = 900.0
    # The senders and recipient domains with the most queued messages (0: no limit).
    max_senders: int = Field(default=20, ge=0)
    max_domains: int = Field(default=20, ge=0)
    # Messages queued longer than each of these are counted.
    age_buckets: Windows = (Window("1h", 3600.0), Window("6h", 21600.0), Window("1d", 86400.0))
    # About 170 bytes a message: 64 MiB holds some 390,000. Read as a stream: memory does not
    # grow with it.
    max_response_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    # exim -bpra over a queue of 100,000 messages takes seconds on the server.
    request_timeout: PositiveDuration = 60.0


class DnsAuthConfig(StrictModel):
    """validate_current_spfs, validate_current_dkims and validate_current_ptrs: whether cPanel
    finds each mail domain's SPF, DKIM and PTR records valid, the domains in batches. The checks
    make cPanel ask DNS for every domain: read seldom, and no probe waits for them."""

    enabled: bool = True
    refresh: Duration = 21600.0
    max_age: Duration = 86400.0
    # Domains per call (each call repeats its domain parameter).
    domains_per_call: int = Field(50, ge=1, le=1000)
    # cPanel looks up every domain of a batch in DNS, some behind slow nameservers: longer than
    # the module's request_timeout.
    request_timeout: PositiveDuration = 120.0


# Keys of earlier versions and what replaced them: named in the error instead of "unknown key".
RENAMED = {
    "cache": "`cache` was replaced by `refresh` (an answer this young is not asked again) and"
    " `max_age` (an answer this old is no longer served)",
}


class ModuleConfig(StrictModel):
    username: str = "root"
    token_file: Path | None = None
    token_env: str | None = None
    token: SecretStr | None = None
    tls: TLSConfig = TLSConfig()
    timeout: PositiveDuration = 30.0
    request_timeout: PositiveDuration = 10.0
    max_concurrency: int = Field(default=8, ge=1, le=1024)
    # Seconds of WHM time per second this exporter may cost the server, on average (§8 of the
    # design: 1.0 is about one call in flight); 0 is no budget.
    load_budget: float = 1.0
    # Bodies above this are refused unread: a WHM answer for one mailbox is a few KiB.
    max_response_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    allowed_targets: Patterns = ()
    discovery: DiscoveryConfig = DiscoveryConfig()
    mailboxes: MailboxesConfig = MailboxesConfig()
    unique_recipients: UniqueRecipientsConfig = UniqueRecipientsConfig()
    mail_flow: MailFlowConfig = MailFlowConfig()
    server_settings: ServerSettingsConfig = ServerSettingsConfig()
    logins: LoginsConfig = LoginsConfig()
    mail_queue: MailQueueConfig = MailQueueConfig()
    dns_auth: DnsAuthConfig = DnsAuthConfig()

    _secret: SecretStr = PrivateAttr(default=SecretStr(""))

    @field_validator("load_budget")
    @classmethod
    def _budget(cls, value: float) -> float:
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(
                "must be a number of 0 or more: the seconds of WHM time per second of wall time"
                " this exporter may cost the server, on average (1.0 is about one call in"
                " flight; 0 = no budget)"
            )
        return value

    @model_validator(mode="after")
    def _one_token_source(self) -> ModuleConfig:
        given = [k for k in ("token_file", "token_env", "token") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "exactly one of token_file, token_env or token must be set"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if not self.username:
            raise ValueError("username must not be empty")
        return self

    @property
    def secret(self) -> SecretStr:
        """The resolved API token (set by :func:`load_config`)."""
        return self._secret


# The module sections that decide which items are asked and how their answers are kept.
STATE_SECTIONS = (
    "discovery",
    "mailboxes",
    "unique_recipients",
    "mail_flow",
    "server_settings",
    "logins",
    "mail_queue",
    "dns_auth",
)


# A section's keys that say how its calls are made, not what they ask or keep: like the
# module's own timeout and answer limit, changing them keeps the state.
_CALL_LIMITS = frozenset({"request_timeout", "max_response_bytes"})


def _shaping(module: ModuleConfig, section: str) -> dict[str, Any]:
    """What a collection section decides of the state: all of it but its calls' limits."""
    shaping: dict[str, Any] = getattr(module, section).model_dump(mode="json", exclude=_CALL_LIMITS)
    return shaping


def shapes_state(a: ModuleConfig, b: ModuleConfig) -> bool:
    """Whether two modules collect the same items the same way, so that what one learned
    serves the other (a new token, timeout or bound keeps the state)."""
    return all(_shaping(a, k) == _shaping(b, k) for k in STATE_SECTIONS)


def state_identity(
    server: tuple[str, str, int], module: ModuleConfig, users: Mapping[str, tuple[str, ...]]
) -> str:
    """A digest of what decides what is asked and how it is labelled: the server (its URL as
    the concurrency bound knows it), the username, the explicit users and the module's
    collection sections. A kept state of another identity is not restored."""
    scheme, host, port = server
    described = {
        "server": f"{scheme}://{host}:{port}",
        "username": module.username,
        "users": {user: sorted(accounts) for user, accounts in users.items()},
        **{k: _shaping(module, k) for k in STATE_SECTIONS},
    }
    return hashlib.sha256(orjson.dumps(described, option=orjson.OPT_SORT_KEYS)).hexdigest()


class TargetConfig(StrictModel):
    url: str
    module: str = "default"
    users: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http(s) URL with a host")
        try:
            port = parts.port
        except ValueError:
            port = 0
        if port == 0:
            raise ValueError(f"{url!r} has a bad port (1 to 65535)")
        if parts.path not in ("", "/") or parts.query:
            raise ValueError("url is the server only (https://host:2087), without a path")
        return url.rstrip("/")

    @field_validator("users")
    @classmethod
    def _names(cls, users: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for user, accounts in users.items():
            if not user or any(not a for a in accounts):
                raise ValueError("user names and accounts must not be empty")
        return users


class Config(StrictModel):
    modules: dict[str, ModuleConfig] = Field(default_factory=dict)
    targets: dict[str, TargetConfig] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Loaded:
    """A usable configuration and what the operator should hear about it."""

    config: Config
    warnings: list[str] = field(default_factory=list)


def _unknown_module_refs(data: Mapping[str, Any]) -> list[str]:
    """Targets naming a module that is not defined (checked on the raw document so that these are
    reported together with every schema problem, not one run later)."""
    modules, targets = data.get("modules") or {}, data.get("targets") or {}
    if not isinstance(modules, dict) or not isinstance(targets, dict):
        return []
    return [
        f"targets.{name}.module: no module named {target.get('module', 'default')!r}"
        for name, target in targets.items()
        if isinstance(target, dict) and target.get("module", "default") not in modules
    ]


def _read_secret(name: str, module: ModuleConfig, env: Mapping[str, str]) -> tuple[str, str]:
    """The token and a problem text (empty when fine), never echoing the token. Whatever its
    source, it is stripped, and an empty one is refused: it would be sent, and refused, at every
    call."""
    where = f"modules.{name}"
    if module.token is not None:
        value, source = module.token.get_secret_value(), f"{where}.token: the token"
    elif module.token_env is not None:
        if module.token_env not in env:
            return "", f"{where}.token_env: environment variable {module.token_env} is not set"
        value = env[module.token_env]
        source = f"{where}.token_env: environment variable {module.token_env}"
    else:
        assert module.token_file is not None
        try:
            value = module.token_file.read_text(encoding="utf-8")
        except OSError as err:
            return "", f"{where}.token_file: cannot read {module.token_file}: {err.strerror}"
        except UnicodeDecodeError:
            return "", f"{where}.token_file: {module.token_file} is not UTF-8 text"
        source = f"{where}.token_file: {module.token_file}"
    value = value.strip()
    if not value:
        return "", f"{source} is empty"
    # A token is one word (WHM's are 32 letters and digits): a space, line break or control
    # character inside would break the Authorization header at every call.
    if not value.isprintable() or any(c.isspace() for c in value):
        return "", f"{source} holds a space, line break or control character"
    return value, ""


def _token_in_clear(url: str) -> bool:
    """A plain http:// URL to a host off this machine: the token would cross the network in clear
    text. Loopback (the simulator, an SSH tunnel) is fine."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme != "http" or host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def _ca_file_problem(name: str, tls: TLSConfig) -> str:
    """Whether ``tls.ca_file`` gives a trust store, checked by building the very context the
    client will build: a bad file is a load error, not a failure in every probe."""
    if tls.ca_file is None:
        return ""
    where = f"modules.{name}.tls.ca_file"
    try:
        ssl.create_default_context(cafile=str(tls.ca_file))
    except ssl.SSLError as err:  # before OSError, its base class
        return f"{where}: {tls.ca_file} holds no usable PEM certificate ({err.reason})"
    except OSError as err:
        return f"{where}: cannot read {tls.ca_file}: {err.strerror}"
    return ""


def _file_problems(
    name: str, module: ModuleConfig, env: Mapping[str, str]
) -> tuple[str, list[str]]:
    """The module's token (and what is wrong with its source or its CA file)."""
    value, problem = _read_secret(name, module, env)
    return value, [p for p in (problem, _ca_file_problem(name, module.tls)) if p]


def build_config(data: object, env: Mapping[str, str] | None = None) -> Loaded:
    """Validate a parsed YAML document and resolve its tokens."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(["(top level): must be a mapping with modules and targets"])
    problems = _unknown_module_refs(data)
    env = os.environ if env is None else env
    try:
        config = Config.model_validate(data)
    except ValidationError as err:
        # The token and CA file of every module that is valid on its own are checked too: one
        # run of --config.check names every problem.
        modules = data.get("modules")
        valid = []
        for name, doc in modules.items() if isinstance(modules, dict) else ():
            with contextlib.suppress(ValidationError):
                valid.append((str(name), ModuleConfig.model_validate(doc)))
        later = [p for name, module in valid for p in _file_problems(name, module, env)[1]]
        raise ConfigError(validation_messages(err, RENAMED) + problems + later) from None
    warnings: list[str] = []
    for name, module in config.modules.items():
        value, found = _file_problems(name, module, env)
        problems += found
        module._secret = SecretStr(value)
        if module.token is not None:
            warnings.append(
                f"modules.{name}.token: the token is inline in the config file;"
                " prefer token_file or token_env"
            )
        if module.tls.insecure_skip_verify:
            warnings.append(f"modules.{name}.tls.insecure_skip_verify: TLS is not verified")
    for name, target in config.targets.items():
        if _token_in_clear(target.url):
            warnings.append(
                f"targets.{name}.url: plain http:// to a host that is not loopback:"
                " the API token travels unencrypted; use https://"
            )
    if problems:
        raise ConfigError(problems)
    return Loaded(config, warnings)


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Loaded:
    """Read, validate and resolve a config file; raises :class:`ConfigError`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError([f"{path}: cannot read: {err.strerror}"]) from None
    except UnicodeDecodeError as err:
        line = err.object[: err.start].count(b"\n") + 1
        raise ConfigError([f"{path}: not UTF-8 text (line {line})"]) from None
    try:
        data: Any = load_yaml(text)
    except yaml.YAMLError as err:
        raise ConfigError([f"{path}: {yaml_problem(err)}"]) from None
    if data is None:
        # Most likely the wrong file, or one truncated by a failed deployment.
        raise ConfigError([f"{path}: the file is empty (or only comments): no modules, no targets"])
    return build_config(data, env)
