"""python -m whm_exporter.simulator: serve a generated WHM server on loopback."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import sys
import time
from collections.abc import Callable

from whm_exporter.simulator.app import Knobs, Simulator, serve
from whm_exporter.simulator.dataset import SPAM_ACTIONS, Dataset
from whm_exporter.simulator.faults import FAULTS


def _factor(text: str) -> float:
    value = float(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"{text}: a factor must be a positive number")
    return value


def _cores(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text}: cores must be 0 (no limit) or more")
    return value


def _whole(low: int, high: int | None = None) -> Callable[[str], int]:
    def whole(text: str) -> int:
        value = int(text)
        if value < low or (high is not None and value > high):
            bounds = f"{low} to {high}" if high is not None else f"{low} or more"
            raise argparse.ArgumentTypeError(f"{text}: must be {bounds}")
        return value

    return whole


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m whm_exporter.simulator", description="A WHM API 1 look-alike on loopback."
    )
    p.add_argument("--listen", default="127.0.0.1:2087", help="host:port (port 0 picks a free one)")
    p.add_argument("--username", default="root")
    p.add_argument("--token", default="simulator-token", help="the API token it accepts")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--accounts", type=int, default=20, help="email accounts in all")
    p.add_argument("--users", type=int, default=0, help="cPanel users (default: accounts/4)")
    p.add_argument("--folders", type=int, default=5, help="folders per mailbox")
    p.add_argument("--latency", type=float, default=0.0, help="median seconds per call")
    p.add_argument(
        "--latency-spread",
        type=float,
        default=0.0,
        help="sigma of the lognormal call time around the median (0: constant)",
    )
    p.add_argument(
        "--capacity", type=int, default=0, help="calls served at once, the rest queue (0: any)"
    )
    p.add_argument(
        "--cores",
        type=_cores,
        default=0,
        help="cores (0: no limit): past this many calls in service every call slows, sharing them",
    )
    p.add_argument(
        "--slow-down",
        type=_factor,
        default=1.0,
        metavar="FACTOR",
        help="every call needs FACTOR times its work from --slow-down-after on"
        " (or at any time: POST /_sim/slowdown?factor=F; 1 ends it)",
    )
    p.add_argument(
        "--slow-down-after",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="when the slow-down starts, after the start (default: at once)",
    )
    p.add_argument(
        "--nobody-sends",
        action="store_true",
        help="the system user nobody sends mail: in the per-user totals and the mail flow,"
        " not in listaccts",
    )
    p.add_argument(
        "--suspended-sends",
        action="store_true",
        help="a suspended user (the tenth, or the last) still sends to 150 recipients an hour",
    )
    p.add_argument(
        "--jump-after",
        type=float,
        default=None,
        metavar="SECONDS",
        help="the first address of the third user goes from 20 to 200 unique recipients an hour"
        " after this long (or at any time: POST /_sim/jump)",
    )
    p.add_argument(
        "--filling-mailbox",
        action="store_true",
        help="the first address of the fourth user fills its quota in two days",
    )
    p.add_argument(
        "--between-sender",
        action="store_true",
        help="the first address of the fifth user reaches 300 unique recipients an hour: over a"
        " lowered --spam-threshold, under cPanel's default 500",
    )
    p.add_argument(
        "--no-brute-force",
        action="store_true",
        help="no brute force: by default the first address of the second user is guessed at"
        " over IMAP and SMTP (36 failed logins in cPHulk), and cPHulk blocks it and the"
        " addresses guessing",
    )
    p.add_argument(
        "--cphulk-off",
        action="store_true",
        help="cPHulk is off: cphulk_status says 0, its lists answer 'cPHulk is disabled'",
    )
    p.add_argument(
        "--dns-all-valid",
        action="store_true",
        help="every mail DNS record valid: by default the first user's domain has an invalid SPF"
        " record, the third user's no DKIM record, and the second user's PTR does not name"
        " its HELO (validate_current_spfs, validate_current_dkims, validate_current_ptrs)",
    )
    settings = p.add_argument_group("the server's Tweak Settings (get_tweaksetting)")
    settings.add_argument(
        "--spam-threshold",
        type=_whole(1),
        default=500,
        help="email_outbound_spam_detect_threshold: unique recipients per sender per hour",
    )
    settings.add_argument(
        "--spam-action",
        choices=SPAM_ACTIONS,
        default="noaction",
        help="email_outbound_spam_detect_action",
    )
    settings.add_argument(
        "--spam-detection-off",
        action="store_true",
        help="email_outbound_spam_detect_enable 0",
    )
    settings.add_argument(
        "--max-emails-per-hour",
        type=_whole(0),
        default=None,
        help="maxemailsperhour: each domain's hourly cap (default: unset, unlimited)",
    )
    settings.add_argument(
        "--max-defer-fail-percentage",
        type=_whole(0, 100),
        default=None,
        help="email_send_limits_max_defer_fail_percentage (default: unset, off)",
    )
    p.add_argument(
        "--queue-messages",
        type=_whole(0, 200_000),
        default=30,
        metavar="N",
        help="messages in Exim's queue (fetch_mail_queue), a third of them the heavy sender's"
        " backlog to gmail.com, with bounces and frozen messages; up to 200,000",
    )
    p.add_argument(
        "--new-spammer-after",
        type=float,
        default=None,
        metavar="SECONDS",
        help="a quiet address starts sending to 2000 unique recipients per hour after this long"
        " (or at any time: POST /_sim/spammer?rate=N[&address=A])",
    )
    p.add_argument("--error-rate", type=float, default=0.0, help="fraction of calls answering 500")
    p.add_argument("--string-counters", action="store_true", help="send counters as strings")
    p.add_argument("--disable-role", choices=["MailReceive", "MailSend"], default=None)
    p.add_argument(
        "--no-list-function",
        action="store_true",
        help="act as a server without get_mailbox_status_list",
    )
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME=KIND",
        help=f"answer calls for an account, user or function with a fault ({', '.join(FAULTS)})",
    )
    return p.parse_args(argv)


def build(args: argparse.Namespace) -> Simulator:
    """The simulator the parsed flags describe, its moments counted from now."""
    faults = dict(f.split("=", 1) for f in args.fault if "=" in f)
    unknown = sorted(set(faults.values()) - set(FAULTS)) + [f for f in args.fault if "=" not in f]
    if unknown:
        raise SystemExit(
            f"unknown --fault {', '.join(unknown)}: use NAME=KIND, KIND one of {', '.join(FAULTS)}"
        )
    sim = Simulator(
        Dataset(
            seed=args.seed,
            accounts=args.accounts,
            users=args.users or max(1, args.accounts // 4),
            folders=args.folders,
            nobody_sends=args.nobody_sends,
            suspended_sends=args.suspended_sends,
            jump_after=args.jump_after,
            filling_mailbox=args.filling_mailbox,
            between_sender=args.between_sender,
            brute_force=not args.no_brute_force,
            cphulk=not args.cphulk_off,
            dns_all_valid=args.dns_all_valid,
            spam_detection=not args.spam_detection_off,
            spam_threshold=args.spam_threshold,
            spam_action=args.spam_action,
            max_emails_per_hour=args.max_emails_per_hour,
            max_defer_fail_percentage=args.max_defer_fail_percentage,
            queue_messages=args.queue_messages,
        ),
        username=args.username,
        token=args.token,
        knobs=Knobs(
            latency=args.latency,
            latency_spread=args.latency_spread,
            capacity=args.capacity,
            cores=args.cores,
            slowdown=(time.monotonic() + args.slow_down_after, args.slow_down),
            error_rate=args.error_rate,
            string_counters=args.string_counters,
            disabled_role=args.disable_role,
            no_list_function=args.no_list_function,
            faults=faults,
        ),
        seed=args.seed,
    )
    if args.new_spammer_after is not None:
        sim.start_spammer(sim.quiet_address(), 2000, time.monotonic() + args.new_spammer_after)
    return sim


async def _run(args: argparse.Namespace) -> None:
    sim = build(args)
    host, _, port = args.listen.rpartition(":")
    runner, url = await serve(sim, host or "127.0.0.1", int(port))
    print(f"WHM simulator serving {url} (user {args.username})", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
