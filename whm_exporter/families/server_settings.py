"""Server settings: get_tweaksetting (module Main), one call per key: cPanel's own outbound-spam
detection (on or off, its threshold of unique recipients per sender per hour, its action) and
its send limits (the hourly cap per domain, the share of deferred and failed mail that blocks a
domain, and the minimum count before that share counts). With each account's own caps from
listaccts (discovery's answer), the caps cPanel enforces per user. Read seldom; a key the token
may not read (a reseller's) is asked again at the section's refresh, not at every probe.
Config section ``server_settings``."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from whm_exporter.collect.state import SETTING_KEYS, Item, Kind, TargetState
from whm_exporter.families.base import Call, Family, Fields, Served
from whm_exporter.series import Family as MetricFamily
from whm_exporter.snapshot import Snapshot
from whm_exporter.whm import parse
from whm_exporter.whm.errors import WHMError

ENABLE, THRESHOLD, ACTION, MAX_EMAILS, MAX_DEFER_FAIL, MIN_DEFER_FAIL = SETTING_KEYS
# email_outbound_spam_detect_action's values (WHM's Tweak Settings, Mail tab).
ACTIONS = ("noaction", "hold", "block")
# A kept answer: the key and the value as WHM sent it (None: unset).
ROWS: Fields[parse.TweakSetting] = Fields(parse.TweakSetting)
# A setting's value as it means: a bool, a number, an action, or None (unset, or for the
# limits: no limit).
Value = bool | int | str | None


def _whole(key: str, text: str, low: int, high: int | None = None) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 15:
        raise WHMError("protocol", f"{key}: {text[:40]!r} is not a whole number")
    number = int(text)
    if number < low or (high is not None and number > high):
        bounds = f"{low} to {high}" if high is not None else f"{low} or more"
        raise WHMError("protocol", f"{key}: {number} is out of range ({bounds})")
    return number


def _enable(key: str, text: str | None) -> Value:
    if text is None:
        return None
    if text not in ("0", "1"):
        raise WHMError("protocol", f"{key}: {text[:40]!r} is neither 0 nor 1")
    return text == "1"


def _threshold(key: str, text: str | None) -> Value:
    return None if text is None else _whole(key, text, 1)


def _action(key: str, text: str | None) -> Value:
    if text is not None and text not in ACTIONS:
        raise WHMError("protocol", f"{key}: {text[:40]!r} is not one of {', '.join(ACTIONS)}")
    return text


def _hourly_cap(key: str, text: str | None) -> Value:
    # Unset or 0: no cap (cPanel's Tweak Settings say "unlimited").
    return None if text is None else _whole(key, text, 0) or None


def _percentage(key: str, text: str | None) -> Value:
    # Unset: off. cPanel's documentation does not say what 0 does; like the hourly cap's 0 it is
    # taken as off (a limit of 0% would block a domain at its first bounce).
    return None if text is None else _whole(key, text, 0, 100) or None


def _minimum(key: str, text: str | None) -> Value:
    return None if text is None else _whole(key, text, 0)


# What each key allows: a value outside it is an error naming the key, and that setting counts
# as unread (the others stand).
READERS: dict[str, Callable[[str, str | None], Value]] = {
    ENABLE: _enable,
    THRESHOLD: _threshold,
    ACTION: _action,
    MAX_EMAILS: _hourly_cap,
    MAX_DEFER_FAIL: _percentage,
    MIN_DEFER_FAIL: _minimum,
}
assert tuple(READERS) == SETTING_KEYS


def read(setting: parse.TweakSetting) -> Value:
    """A setting's value as it means; raises WHMError (protocol) naming the key."""
    reader = READERS.get(setting.key)
    if reader is None:
        raise WHMError("protocol", f"{setting.key}: not a setting this exporter reads")
    return reader(setting.key, setting.value)


@dataclass(frozen=True, slots=True)
class UserCaps:
    """The caps cPanel enforces on a user's domains: messages per hour, and the share of
    deferred and failed mail (0 to 1) that blocks them; None where there is none, or where it
    comes from a server setting the exporter cannot read."""

    user: str
    hourly: int | None
    defer_fail_ratio: float | None


@dataclass(frozen=True, slots=True)
class Settings:
    """What a probe serves: the settings read within max_age (a key absent: unread)."""

    values: Mapping[str, Value]
    users: tuple[UserCaps, ...]
    min_defer_fail: int | None


class ServerSettings(Family):
    section = "server_settings"
    kinds = (Kind.SETTING,)
    exposition_rank = 5
    # Six cheap calls, right after the inventory (discovery has the same rank and comes first
    # in the registry) and before thousands of mailboxes: they make the alerts right.
    first_rank = 0
    failure_waits_refresh = True
    renewed_when_due = True

    def plan(self, item: Item[Any], state: TargetState, wall: float) -> Call:
        return Call(
            "get_tweaksetting",
            item.subject,
            {"key": item.subject, "module": "Main"},
            lambda b, now: _keep(state, item, b, now),
        )

    def items(self, state: TargetState) -> Iterator[Item[Any]]:
        return iter(state.settings.values())

    def find(self, state: TargetState, kind: Kind, user: str, subject: str) -> Item[Any] | None:
        return state.settings.get(subject)

    def wire_type(self, kind: Kind) -> Any:
        return ROWS.wire

    def dump(self, kind: Kind, answer: parse.TweakSetting) -> Any:
        return ROWS.out(answer)

    def load(self, kind: Kind, value: Any, user: str, subject: str) -> Any:
        setting = ROWS.into(value)
        if setting.key != subject:
            raise WHMError("protocol", f"{subject}: kept with the key {setting.key!r}")
        # A value the live answer would have refused is not restored either.
        read(setting)
        return setting

    def serve(self, state: TargetState, served: Served) -> Mapping[str, Any]:
        cfg = state.module.server_settings
        # Switched off, the accounts' own caps are served all the same.
        answers = (
            served.take(state.settings.values(), Kind.SETTING.value, cfg.max_age)
            if cfg.enabled
            else []
        )
        values = {a.key: read(a) for a in answers}
        listing = state.listaccts.answer if state.listaccts is not None else None
        accounts = [a for u, a in sorted((listing or {}).items()) if u in state.accounts]
        minimum = values.get(MIN_DEFER_FAIL)
        if not isinstance(minimum, int):
            # Unread or unset: listaccts repeats the server's value on every account.
            found = (a.min_defer_fail for a in accounts if a.min_defer_fail is not None)
            minimum = next(found, None)
        users = tuple(
            UserCaps(
                a.user,
                _cap(a.max_emails_per_hour, values, MAX_EMAILS),
                _ratio(_cap(a.max_defer_fail_percentage, values, MAX_DEFER_FAIL)),
            )
            for a in accounts
        )
        return {"server_settings": Settings(values, users, minimum)}

    def render(self, s: Snapshot) -> list[MetricFamily]:
        settings: Settings = s.server_settings
        values = settings.values
        enabled, threshold, action = (values.get(k) for k in (ENABLE, THRESHOLD, ACTION))
        return [
            MetricFamily(
                "whm_outbound_spam_detection_enabled",
                "1 when cPanel's own outbound-spam detection is on"
                " (Tweak Setting email_outbound_spam_detect_enable).",
                samples=[((), int(enabled))] if isinstance(enabled, bool) else [],
            ),
            MetricFamily(
                "whm_outbound_spam_threshold_recipients",
                "Unique recipients per sender per hour at which cPanel's check (:05, :20, :35,"
                " :50) flags a sender (Tweak Setting email_outbound_spam_detect_threshold).",
                samples=[((), threshold)] if isinstance(threshold, int) else [],
            ),
            MetricFamily(
                "whm_outbound_spam_action",
                "1 for what cPanel does to a flagged sender, 0 for the others: noaction, hold"
                " or block (Tweak Setting email_outbound_spam_detect_action).",
                ("action",),
                [((a,), int(a == action)) for a in ACTIONS] if action is not None else [],
            ),
            MetricFamily(
                "whm_user_hourly_email_limit_messages",
                "Messages per hour cPanel lets each of the user's domains send: the account's"
                " own max_email_per_hour (listaccts), else the server's maxemailsperhour;"
                " absent when unlimited or not readable.",
                ("user",),
                [((u.user,), u.hourly) for u in settings.users if u.hourly is not None],
            ),
            MetricFamily(
                "whm_user_defer_fail_limit_ratio",
                "Share of deferred and failed mail per hour at which cPanel blocks the user's"
                " domains: the account's own max_defer_fail_percentage (listaccts), else the"
                " server's email_send_limits_max_defer_fail_percentage, as a ratio; absent when"
                " off or not readable.",
                ("user",),
                [
                    ((u.user,), u.defer_fail_ratio)
                    for u in settings.users
                    if u.defer_fail_ratio is not None
                ],
            ),
            MetricFamily(
                "whm_defer_fail_min_messages",
                "Deferrals and failures a domain has in an hour before its share can trigger"
                " cPanel's protection (Tweak Setting"
                " email_send_limits_min_defer_fail_to_trigger_protection, else listaccts').",
                samples=[((), settings.min_defer_fail)]
                if settings.min_defer_fail is not None
                else [],
            ),
        ]


def _cap(own: parse.Cap, values: Mapping[str, Value], key: str) -> int | None:
    """The cap cPanel enforces: the account's own, none for "unlimited", else the server's
    (None when unset, off, or unread)."""
    if own == parse.UNLIMITED:
        return None
    if isinstance(own, int):
        return own
    server = values.get(key)
    return server if isinstance(server, int) and not isinstance(server, bool) else None


def _ratio(percentage: int | None) -> float | None:
    return None if percentage is None else percentage / 100


def _keep(state: TargetState, item: Item[Any], body: object, now: float) -> None:
    setting = parse.tweak_setting(body)
    if setting.key != item.subject:
        raise WHMError("protocol", f"{item.subject}: answered for the key {setting.key!r}")
    read(setting)
    state.answered(item, setting, now)


FAMILY = ServerSettings()
