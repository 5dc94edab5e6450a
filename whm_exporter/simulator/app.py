"""A WHM API 1 look-alike on aiohttp.web, serving a generated :class:`Dataset`.

It answers like the official reference: the {data, metadata} envelope, 401 with an HTML body for
bad credentials, validation failures as HTTP 200 with ``result: 0`` and the reason wording of
cPanel's code (Whostmgr/API/1/Data/Wrapper.pm prefixes "API failure: "), unordered payloads.
Knobs add latency, cores shared by the calls in service and a slow-down (``load.py``), faults,
string-typed counters and disabled server roles; ``/_sim/stats`` counts calls, the most that
were ever in flight, and the time WHM spent on them.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import secrets
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from whm_exporter.simulator import queue
from whm_exporter.simulator.dataset import HOSTNAME, Dataset
from whm_exporter.simulator.faults import FAULTS
from whm_exporter.simulator.load import Server, slowdown_at
from whm_exporter.whm.parse import Folder

# A call's parameters: a name may repeat (validate_current_spfs: domain=a&domain=b).
Params = MultiMapping[str]
# Function -> server role that disables it (cPanel's Whostmgr/API/1/Mailboxes.pm and Email.pm
# need MailReceive, Exim.pm needs MailSend; each function's reference page notes the role).
ROLES = {
    "get_mailbox_status": "MailReceive",
    "get_mailbox_status_list": "MailReceive",
    "list_pops_for": "MailReceive",
    "get_unique_recipient_count_per_sender_for_user": "MailSend",
    "get_unique_sender_recipient_count_per_user": "MailSend",
    "emailtrack_user_stats": "MailSend",
}
# Email::list_pops_with_disk through uapi_cpanel: the Receive Mail role (UAPI Email module).
UAPI_ROLE = "MailReceive"
# get_tweaksetting's answer for a key or module it does not know.
INVALID_KEY = "Invalid tweaksetting key"
# The get_cphulk_* answer with cPHulk off (cPanel's Cpanel/Hulk/Admin.pm): result 0, no prefix.
CPHULK_OFF = "cPHulk is disabled on the server."
# How long cPHulk holds each list's rows (its defaults, in seconds): failed logins, user
# blocks, address blocks, addresses blocked for a day.
CPHULK_HOLDS = {
    "get_cphulk_failed_logins": 6 * 3600,
    "get_cphulk_user_brutes": 300,
    "get_cphulk_brutes": 900,
    "get_cphulk_excessive_brutes": 86400,
}
# exim -bpra reads every message's header file: its time on the server grows with the queue
# (with --latency, which models time at all).
EXIM_SECONDS_PER_MESSAGE = 20e-6
# Each row carries the country of its address (real servers' rows, not the reference's).
# The server's address as validate_current_* report it (a documentation range, RFC 5737).
SERVER_IP = "198.51.100.10"
COUNTRIES = {
    "203.0.113.": ("NL", "Netherlands"),
    "198.51.100.": ("US", "United States"),
    "192.0.2.": ("DE", "Germany"),
}


@dataclass
class Knobs:
    # Seconds per call: the median, and the spread of a lognormal around it (sigma of its
    # logarithm; 0 = always the median). Real WHM mailbox calls take 100-300 ms.
    latency: float = 0.0
    latency_spread: float = 0.0
    # Calls the server works on at once (0: no limit); the rest queue, as on a busy cpsrvd.
    capacity: int = 0
    # Cores (0: no limit): past this many calls in service, each gets cores / in service of
    # one, so every call in flight slows, as on a loaded server. Read at each arrival and end.
    cores: int = 0
    # (monotonic time, factor): from then on every call needs factor times its work (a spam
    # wave, a backup). Change it while serving through Simulator.slow_down.
    slowdown: tuple[float, float] = (0.0, 1.0)
    error_rate: float = 0.0
    string_counters: bool = False
    disabled_role: str | None = None
    no_list_function: bool = False
    # "function:subject", subject (account or user) or function -> a kind from FAULTS.
    faults: dict[str, str] = field(default_factory=dict)
    # Function -> a body served as it is (an official example, say), whatever the parameters.
    canned: dict[str, dict[str, Any]] = field(default_factory=dict)
    # emailtrack_user_stats cuts its record list and says so (metadata.overflowed).
    mail_flow_overflow: bool = False
    # Address -> (monotonic time it starts, unique recipients per hour): spammers that appear.
    spammers: dict[str, tuple[float, int]] = field(default_factory=dict)


@dataclass
class Stats:
    calls: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0
    # Over the calls answered, seconds from arrival to answer (queueing included): the load
    # the exporter's own call durations measure.
    busy_seconds: float = 0.0
    # Set when a call arrives: tests wait on it rather than on time.
    called: asyncio.Event = field(default_factory=asyncio.Event)

    def as_json(self) -> dict[str, Any]:
        return {
            "calls": dict(self.calls),
            "total": sum(self.calls.values()),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "busy_seconds": self.busy_seconds,
        }


def _envelope(function: str, data: object = None, *, reason: str = "OK") -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"command": function, "reason": reason, "result": 1, "version": 1}
    }
    if data is not None:
        body["data"] = data
    return body


def _failure(function: str, reason: str) -> dict[str, Any]:
    xid = secrets.token_hex(3)
    return {
        "metadata": {
            "command": function,
            "reason": f"API failure: (XID {xid}) {reason}",
            "result": 0,
            "version": 1,
        }
    }


def _uapi_result(data: object, errors: list[str] | None) -> dict[str, Any]:
    """A UAPI result as uapi_cpanel wraps it (uapi_cpanel reference: data.uapi)."""
    return {
        "data": data,
        "errors": errors,
        "messages": None,
        "metadata": {"transformed": 1},
        "status": 0 if errors else 1,
        "warnings": None,
    }


# The service behind each login service cPHulk names (its rows' authservice).
_AUTH = {"imap": "dovecot", "pop3": "dovecot", "smtp": "dovecot", "cpaneld": "system"}


def _local(at: float) -> str:
    """A time as cPHulk's rows give it: the server's local time, YYYY-MM-DD HH:MM:SS."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


class Failure(Exception):
    """A WHM validation failure: HTTP 200, ``result: 0``, this reason."""


class Refusal(Failure):
    """A failure whose reason WHM sends as it is, without the "API failure" prefix."""


class Simulator:
    def __init__(
        self,
        dataset: Dataset | None = None,
        *,
        username: str = "root",
        token: str = "simulator-token",
        knobs: Knobs | None = None,
        seed: int = 1,
    ) -> None:
        self.dataset = dataset or Dataset()
        self.username = username
        self.token = token
        self.knobs = knobs or Knobs()
        self.stats = Stats()
        self.started = time.monotonic()  # the clock of the dataset's scenarios (uptime)
        # The queue's arrival times count back from here.
        self.started_wall = int(time.time())
        self._queue_body: tuple[Dataset, bytes] | None = None
        self.load = Server(self.knobs)
        self._random = random.Random(seed)
        self._folder_cache: dict[tuple[Dataset, str], list[Folder]] = {}
        self._capacity: tuple[int, asyncio.Semaphore] | None = None
        self._handlers: dict[str, Callable[[Params], object]] = {
            "listaccts": self._listaccts,
            "list_pops_for": self._list_pops_for,
            "get_mailbox_status": self._mailbox_status,
            "get_mailbox_status_list": self._mailbox_status_list,
            "get_unique_recipient_count_per_sender_for_user": self._senders,
            "get_unique_sender_recipient_count_per_user": self._user_totals,
            "emailtrack_user_stats": self._mail_flow,
            "uapi_cpanel": self._uapi,
            "get_tweaksetting": self._tweak_setting,
            "cphulk_status": self._cphulk_status,
            "get_cphulk_failed_logins": self._cphulk_failed_logins,
            "get_cphulk_user_brutes": self._cphulk_user_brutes,
            "get_cphulk_brutes": self._cphulk_brutes,
            "get_cphulk_excessive_brutes": self._cphulk_excessive_brutes,
            "validate_current_spfs": self._spfs,
            "validate_current_dkims": self._dkims,
            "validate_current_ptrs": self._ptrs,
        }

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/json-api/{function}", self._serve)
        app.router.add_get("/_sim/stats", self._stats)
        app.router.add_post("/_sim/spammer", self._new_spammer)
        app.router.add_post("/_sim/slowdown", self._slowdown)
        app.router.add_post("/_sim/jump", self._jump)
        return app

    def uptime(self) -> float:
        return time.monotonic() - self.started

    async def _slowdown(self, request: web.Request) -> web.Response:
        """``POST /_sim/slowdown?factor=F``: every call needs F times its work from now on
        (1 ends a slow-down)."""
        try:
            factor = float(request.query.get("factor", ""))
        except ValueError:
            factor = math.nan
        if not 0 < factor < math.inf:
            raise web.HTTPBadRequest(text="factor must be a positive number\n")
        self.slow_down(factor)
        return web.json_response({"slowdown": factor})

    def slow_down(self, factor: float, at: float | None = None) -> None:
        """From ``at`` (monotonic; default now) every call needs ``factor`` times its work."""
        self.load.slow_down(factor, time.monotonic() if at is None else at)

    async def _jump(self, request: web.Request) -> web.Response:
        """``POST /_sim/jump``: the jumper goes from its usual rate to its jump now."""
        self.dataset = replace(self.dataset, jump_after=self.uptime())
        return web.json_response(
            {"address": self.dataset.jumper_address, "user": self.dataset.jumper_user}
        )

    async def _new_spammer(self, request: web.Request) -> web.Response:
        """``POST /_sim/spammer?rate=N[&address=A]``: a sender starts reaching N unique
        recipients per hour now (by default the first address of the last user)."""
        address = request.query.get("address") or self.quiet_address()
        self.start_spammer(address, int(request.query.get("rate", "2000")))
        return web.json_response({"address": address, "user": self.dataset.owner(address)})

    def quiet_address(self) -> str:
        """The first address of the last user that is not suspended."""
        ds = self.dataset
        user = next(u for u in reversed(ds.user_names) if not ds.suspended(u))
        return ds.pops[user][0] if ds.pops[user] else user

    def start_spammer(self, address: str, rate: int, at: float | None = None) -> None:
        self.knobs.spammers[address] = (time.monotonic() if at is None else at, rate)

    async def _stats(self, request: web.Request) -> web.Response:
        """The call counts and the time WHM spent: ``busy_seconds`` exceeds ``work_seconds``
        (the service demand served) by the time calls waited for a core or in the queue."""
        now = time.monotonic()
        body = {
            **self.stats.as_json(),
            "work_seconds": self.load.work_seconds(),
            "uptime_seconds": now - self.started,
            "slowdown": slowdown_at(self.knobs.slowdown, now),
        }
        return web.json_response(body)

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        function = request.match_info["function"]
        expected = f"whm {self.username}:{self.token}"
        if not secrets.compare_digest(request.headers.get("Authorization", ""), expected):
            # cpsrvd refuses bad credentials with 401 and an HTML page, not the JSON envelope.
            return web.Response(
                status=401, text="<html><body>Access denied</body></html>", content_type="text/html"
            )
        arrived = time.monotonic()
        self.stats.calls[function] += 1
        self.stats.called.set()
        self.stats.in_flight += 1
        self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
        try:
            response = await self._respond(request, function)
        finally:
            self.stats.in_flight -= 1
        self.stats.busy_seconds += time.monotonic() - arrived
        return response

    async def _respond(self, request: web.Request, function: str) -> web.StreamResponse:
        if self.knobs.latency:
            await self._work()
        params = request.query
        fault = self._fault(function, params)
        if fault:
            return await FAULTS[fault](request, function)
        if function in self.knobs.canned:
            return web.json_response(self.knobs.canned[function])
        if function == "fetch_mail_queue" and params.get("api.version") == "1":
            return await self._mail_queue()
        return web.json_response(self.answer(function, params))

    async def _mail_queue(self) -> web.Response:
        """fetch_mail_queue: the whole queue at every call, as exim -bpra lists it, its cost
        growing with it (the body is made once: 200,000 messages are about 34 MB)."""
        ds = self.dataset
        if self.knobs.latency:
            await self.load.serve(ds.queue_messages * EXIM_SECONDS_PER_MESSAGE)
        if self._queue_body is None or self._queue_body[0] != ds:
            self._queue_body = (ds, queue.body(ds, self.started_wall))
        return web.Response(body=self._queue_body[1], content_type="application/json")

    async def _work(self) -> None:
        knobs = self.knobs
        seconds = knobs.latency * math.exp(knobs.latency_spread * self._random.gauss(0.0, 1.0))
        if not knobs.capacity:
            await self.load.serve(seconds)
            return
        if self._capacity is None or self._capacity[0] != knobs.capacity:
            self._capacity = (knobs.capacity, asyncio.Semaphore(knobs.capacity))
        async with self._capacity[1]:
            await self.load.serve(seconds)

    def answer(self, function: str, params: Params) -> dict[str, Any]:
        """The JSON body WHM would send for this call."""
        if params.get("api.version") != "1":
            return {"metadata": {"result": 0, "reason": "WHM API 0 is not served here"}}
        handler = self._handlers.get(function)
        if handler is None or (
            self.knobs.no_list_function and function == "get_mailbox_status_list"
        ):
            # The reference does not document this answer; the wording is that of cPanel's own
            # dispatcher (Whostmgr/XMLUI/Meta.pm, find_api, for API 0) with API 1's number.
            return {
                "metadata": {
                    "command": function,
                    "reason": f"Unknown app ({function}) requested for this version (1)"
                    " of the API.",
                    "result": 0,
                    "version": 1,
                }
            }
        role = ROLES.get(function)
        if role is not None and role == self.knobs.disabled_role:
            return _failure(
                function,
                f"This functionality is not available because the “{role}” role is disabled"
                " on this server.",
            )
        try:
            body = _envelope(function, handler(params))
        except Failure as err:
            if isinstance(err, Refusal):
                return {
                    "metadata": {"command": function, "reason": str(err), "result": 0, "version": 1}
                }
            return _failure(function, str(err))
        if function == "emailtrack_user_stats" and self.knobs.mail_flow_overflow:
            body["metadata"].update({"__chunked": 1, "overflowed": 1})
        return body

    def _fault(self, function: str, params: Params) -> str | None:
        subject = params.get("account") or params.get("user") or params.get("cpanel.user")
        for key in (f"{function}:{subject}", subject, function):
            if key and key in self.knobs.faults:
                return self.knobs.faults[key]
        if self.knobs.error_rate and self._random.random() < self.knobs.error_rate:
            return "http500"
        return None

    def _count(self, value: int) -> int | str:
        # Legacy servers send counters as strings (the 2018 get_mailbox_status example).
        return str(value) if self.knobs.string_counters else value

    @staticmethod
    def _required(params: Params, name: str) -> str:
        value = params.get(name, "")
        if not value:
            raise Failure(f"Provide the “{name}” parameter.")
        return value

    def _listaccts(self, params: Params) -> object:
        ds = self.dataset
        accts = [
            {
                "user": user,
                "domain": ds.domain(user),
                "owner": "root",
                "suspended": int(ds.suspended(user)),
                "outgoing_mail_hold": int(ds.outgoing_held(user)),
                "outgoing_mail_suspended": int(ds.outgoing_suspended(user)),
                **ds.listed_caps(user),
                "min_defer_fail_to_trigger_protection": str(ds.min_defer_fail),
            }
            for user in ds.user_names
        ]
        return {"acct": accts}

    def _tweak_setting(self, params: Params) -> object:
        """get_tweaksetting as its reference answers (its official example's shape): an unset
        key has no ``value`` member; a key or module it does not know is "Invalid tweaksetting
        key" (result 0, without the "API failure" prefix, as real servers word it)."""
        key = self._required(params, "key")
        settings = self.dataset.tweak_settings()
        if params.get("module", "Main") != "Main" or key not in settings:
            raise Refusal(INVALID_KEY)
        value = settings[key]
        return {"tweaksetting": {"key": key} if value is None else {"key": key, "value": value}}

    def _cphulk_status(self, params: Params) -> object:
        return {"is_enabled": int(self.dataset.cphulk), "service": "cPHulk"}

    def _cphulk_rows(self, function: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """cPHulk rows as real servers send them: server-local times (the last row the most
        recent, a row a minute before it, and so on), with its address's country."""
        if not self.dataset.cphulk:
            raise Refusal(CPHULK_OFF)
        now, hold = int(time.time()), CPHULK_HOLDS[function]
        out = []
        for n, row in enumerate(reversed(rows)):
            at = now - 60 * n
            code, name = next(c for prefix, c in COUNTRIES.items() if row["ip"].startswith(prefix))
            out.append(
                {
                    **row,
                    "logintime": _local(at),
                    "exptime": _local(at + hold),
                    "timeleft": (hold - 60 * n) // 60,
                    "country_code": code,
                    "country_name": name,
                }
            )
        return out

    def _failures(self, function: str, failures: list[tuple[str, str, str]]) -> list[Any]:
        rows = [
            {"user": user, "service": service, "authservice": _AUTH[service], "ip": ip}
            for user, service, ip in failures
        ]
        return self._cphulk_rows(function, rows)

    def _cphulk_failed_logins(self, params: Params) -> object:
        function = "get_cphulk_failed_logins"
        return {"failed_logins": self._failures(function, self.dataset.login_failures())}

    def _cphulk_user_brutes(self, params: Params) -> object:
        blocked = [(u, "imap", ip) for u, ip in self.dataset.login_blocks()[0]]
        return {"user_brutes": self._failures("get_cphulk_user_brutes", blocked)}

    def _blocked(self, function: str, addresses: list[str]) -> list[Any]:
        return self._cphulk_rows(function, [{"ip": ip, "notes": ""} for ip in addresses])

    def _cphulk_brutes(self, params: Params) -> object:
        return {"brutes": self._blocked("get_cphulk_brutes", self.dataset.login_blocks()[1])}

    def _cphulk_excessive_brutes(self, params: Params) -> object:
        function = "get_cphulk_excessive_brutes"
        return {"excessive_brutes": self._blocked(function, self.dataset.login_blocks()[2])}

    def _checked(self, params: Params, record: str) -> list[tuple[str, str]]:
        """validate_current_*: (domain, state) of each ``domain`` asked (the parameter repeated),
        in no stable order. A domain the server does not have fails the whole call, as real
        servers do."""
        domains = params.getall("domain", [])
        if not domains:
            raise Failure("Provide the “domain” parameter.")
        for domain in domains:
            if domain.lower() not in self.dataset.hosted_domains:
                raise Failure(
                    f"The user “{self.username}” does not control a domain named “{domain}”."
                )
        checked = [(d, self.dataset.mail_auth(d.lower())[record]) for d in domains]
        self._random.shuffle(checked)
        return checked

    def _spfs(self, params: Params) -> object:
        """validate_current_spfs as real servers answer: state INVALID for a record that does not
        name the server."""
        payload = []
        for domain, state in self._checked(params, "spf"):
            valid = f"v=spf1 +a +mx +ip4:{SERVER_IP} ~all"
            current = valid if state == "VALID" else "v=spf1 +a +mx ip4:203.0.113.0/24 -all"
            payload.append(
                {
                    "domain": domain,
                    "ip_address": SERVER_IP,
                    "ip_version": 4,
                    "records": [{"current": current, "state": state}],
                    "state": state,
                }
            )
        return {"payload": payload}

    def _dkims(self, params: Params) -> object:
        """validate_current_dkims: each item names the record, default._domainkey.<domain>."""
        payload = []
        for domain, state in self._checked(params, "dkim"):
            key = "v=DKIM1; k=rsa; p=MIIB..."
            payload.append(
                {
                    "domain": f"default._domainkey.{domain}",
                    "expected": key,
                    "records": [] if state == "MISSING" else [{"current": key, "state": state}],
                    "state": state,
                    "validity_cache_update": "valid" if state == "VALID" else "invalid",
                }
            )
        return {"payload": payload}

    def _ptrs(self, params: Params) -> object:
        """validate_current_ptrs as real servers answer: HELO_MISMATCH when the PTR resolves back
        to the address but does not name the domain's HELO."""
        payload = []
        for domain, state in self._checked(params, "ptr"):
            payload.append(
                {
                    "arpa_domain": "10.100.51.198.in-addr.arpa",
                    "domain": domain,
                    "helo": HOSTNAME if state == "VALID" else f"mail.{domain}",
                    "ip_address": SERVER_IP,
                    "ip_version": 4,
                    "nameservers": [f"ns1.{HOSTNAME}"],
                    "ptr_records": [
                        {"domain": HOSTNAME, "forward_records": [SERVER_IP], "state": "VALID"}
                    ],
                    "state": state,
                }
            )
        return {"payload": payload}

    def _list_pops_for(self, params: Params) -> object:
        user = self._required(params, "user")
        if user not in self.dataset.pops:
            raise Failure(f"The “{user}” user does not exist.")
        return {"pops": list(self.dataset.pops[user])}

    def _folders(self, params: Params) -> list[dict[str, Any]]:
        account = self._required(params, "account")
        if self.dataset.owner(account) is None:
            raise Failure(f"“{account}” is not a valid email account.")
        folders = [
            {
                "guid": self._guid(account, f.name),
                "mailbox": f.name,
                "messages": self._count(f.messages),
                "vsize": self._count(f.vsize),
            }
            for f in self._mailbox(account)
        ]
        # Real servers build these from a Perl hash: the order is not stable.
        self._random.shuffle(folders)
        return folders

    def _mailbox(self, account: str) -> list[Folder]:
        if account == self.dataset.filling_address:
            return self.dataset.mailbox(account, self.uptime())  # it changes: not kept
        # Generated once per account: the benchmark's floor should measure the exporter's
        # client, not the simulator's data generation.
        key = (self.dataset, account)
        found = self._folder_cache.get(key)
        if found is None:
            found = self._folder_cache[key] = self.dataset.mailbox(account)
        return found

    @staticmethod
    def _guid(account: str, folder: str) -> str:
        return hashlib.md5(f"{account}/{folder}".encode(), usedforsecurity=False).hexdigest()

    def _mailbox_status_list(self, params: Params) -> object:
        return {"mailboxes": self._folders(params)}

    def _mailbox_status(self, params: Params) -> object:
        return {f.pop("mailbox"): f for f in self._folders(params)}

    def _window(self, params: Params, names: tuple[str, str] = ("start_time", "end_time")) -> float:
        first, last = names
        start_text = self._required(params, first)
        end_text = self._required(params, last)
        if not (start_text.isdigit() and end_text.isdigit()):
            raise Failure(f"The “{first}” and “{last}” must be valid UNIX epoch timestamps.")
        start, end, now = int(start_text), int(end_text), int(time.time())
        if start >= end:
            raise Failure(f"The “{first}” parameter must be less than the “{last}” parameter.")
        if end > now:
            raise Failure(
                f"The “{last}” parameter cannot be greater than the current time (“{now}”)."
            )
        return float(end - start)

    def _spamming(self, user: str) -> bool:
        now = time.monotonic()
        return any(
            now >= at and self.dataset.owner(address) == user
            for address, (at, _) in self.knobs.spammers.items()
        )

    def _mail_flow(self, params: Params) -> object:
        window = self._window(params, ("starttime", "endtime"))
        delivery = params.get("deliverytype")
        if delivery not in (None, "remote", "remote-or-faildefer", "local"):
            raise Failure(f"Invalid “deliverytype”: “{delivery}”.")
        records = []
        uptime = self.uptime()
        for user in self.dataset.mail_users:
            spamming = self._spamming(user)
            flow = self.dataset.mail_flow(user, window, spamming=spamming, uptime=uptime)
            if not flow.sent:
                continue  # only users with mail in the window
            emails, defer_fail = self.dataset.marker_texts(user, spamming=spamming, uptime=uptime)
            records.append(
                {
                    "USER": user,
                    "DOMAIN": self.dataset.domain(user),
                    "PRIMARY_DOMAIN": self.dataset.domain(user),
                    "OWNER": "root",
                    "SENDCOUNT": self._count(flow.sent),
                    "SUCCESSCOUNT": self._count(flow.delivered),
                    "DEFERCOUNT": self._count(flow.deferrals),
                    "FAILCOUNT": self._count(flow.failures),
                    "DEFERFAILCOUNT": self._count(flow.defer_failures),
                    "TOTALSIZE": self._count(flow.sent_bytes),
                    "REACHED_MAXEMAILS": emails,
                    "REACHED_MAXDEFERFAIL": defer_fail,
                }
            )
        if self.knobs.mail_flow_overflow:
            records = records[: len(records) // 2]
        return {"records": records}

    def _uapi(self, params: Params) -> object:
        """uapi_cpanel: WHM answers for the passthrough; the UAPI result says how it went."""
        user = self._required(params, "cpanel.user")
        module = self._required(params, "cpanel.module")
        function = self._required(params, "cpanel.function")
        if user not in self.dataset.pops:
            raise Failure(f"The “{user}” user does not exist.")
        if (module, function) != ("Email", "list_pops_with_disk"):
            return {"uapi": _uapi_result(None, [f"Unknown function “{module}::{function}”."])}
        if self.knobs.disabled_role == UAPI_ROLE:
            text = (
                f"This functionality is not available because the “{UAPI_ROLE}” role is"
                " disabled on this server."
            )
            return {"uapi": _uapi_result(None, [text])}
        ds = self.dataset
        rows = []
        uptime = self.uptime()
        for address in ds.pops[user]:
            used, quota = ds.disk(address, uptime)
            local, _, domain = address.partition("@")
            rows.append(
                {
                    "email": address,
                    "login": address,
                    "user": local,
                    "domain": domain,
                    "_diskused": self._count(used),
                    "_diskquota": self._count(quota),
                    "diskquota": "unlimited" if not quota else quota // 2**20,
                    "txtdiskquota": "unlimited" if not quota else quota // 2**20,
                    "humandiskquota": "None" if not quota else f"{quota // 2**20}\u00a0MB",
                    "humandiskused": f"{used}\u00a0bytes",
                    "suspended_incoming": 0,
                    "suspended_login": 0,
                    "mtime": 1415894498,
                }
            )
        return {"uapi": _uapi_result(rows, None)}

    def sender_counts(self, user: str, window: float) -> dict[str, int]:
        """The dataset's senders of ``user``, with the spammers that have appeared by now."""
        counts = self.dataset.senders(user, window, self.uptime())
        now = time.monotonic()
        for address, (at, rate) in self.knobs.spammers.items():
            if now >= at and self.dataset.owner(address) == user:
                counts[address] = round(rate * window / 3600)
        return counts

    def _senders(self, params: Params) -> object:
        user = self._required(params, "user")
        window = self._window(params)
        counts = self.sender_counts(user, window)
        return {
            "payload": [
                {"sender": s, "unique_recipient_count": self._count(c)} for s, c in counts.items()
            ]
        }

    def _user_totals(self, params: Params) -> object:
        window = self._window(params)
        rows = []
        for user in self.dataset.mail_users:
            total = sum(self.sender_counts(user, window).values())
            if total:
                rows.append({"user": user, "unique_sender_recipient_count": self._count(total)})
        return {"payload": rows}


async def serve(
    simulator: Simulator,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[web.AppRunner, str]:
    """Start the simulator on loopback; returns its runner (to clean up) and base URL."""
    # Stalled answers (the "slow" fault) must not hold a test's clean-up for a minute.
    runner = web.AppRunner(simulator.app(), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
    bound = runner.addresses[0][1]
    scheme = "https" if ssl_context else "http"
    return runner, f"{scheme}://{host}:{bound}"
