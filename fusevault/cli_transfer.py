"""``fusevault send | receive | relay``: handing files to someone through a relay."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

from fusevault import passphrase
from fusevault.errors import InvalidInput

log = logging.getLogger("fusevault")

ENV_RELAY = "FUSEVAULT_RELAY"
ENV_CODE = passphrase.ENV_CODE


def relay_option(p: argparse.ArgumentParser) -> None:
    from fusevault.transfer.client import DEFAULT_RELAY

    p.add_argument("--relay", metavar="URL", default=os.environ.get(ENV_RELAY, DEFAULT_RELAY),
                   help=f"the relay (default: ${ENV_RELAY} or {DEFAULT_RELAY})")


def add_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    p = command("send", "offer files to someone: prints a session name and a code to read to them",
                "fusevault send report.pdf photos/")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.add_argument("--keep", action="store_true",
                   help="keep serving more receivers until Ctrl-C (default: stop after one)")
    relay_option(p)

    p = command("receive", "fetch files someone is sending (asks for their code)",
                "fusevault receive 4821 --output ~/Downloads")
    p.add_argument("name", help="the session name the sender read to you")
    p.add_argument("--output", "-o", type=Path,
                   help="where files go (default: target_dir_to_dump of the vault given with "
                        "--vault, or of the mounted one; else here)")
    p.add_argument("--file", action="append", dest="only", metavar="NAME",
                   help="fetch only this file or folder (repeatable)")
    p.add_argument("--list", action="store_true", help="only list the session's files")
    p.add_argument("--vault", type=Path, help="use this vault user's target_dir_to_dump")
    p.add_argument("--user", help="with --vault: which user")
    p.add_argument("--code-fd", type=int, metavar="N", help=f"read the code from fd N (or ${ENV_CODE})")
    p.add_argument("--code-file", metavar="FILE", help="read the code from FILE")
    relay_option(p)

    p = command("relay", "run the relay that send and receive go through",
                "fusevault relay --listen 127.0.0.1:4080 --redis redis://127.0.0.1:6379/0")
    p.add_argument("--listen", default="127.0.0.1:4080", metavar="HOST:PORT")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/0", metavar="URL")
    p.add_argument("--session-ttl", type=int, default=3600, metavar="S",
                   help="an idle session's keys expire after S seconds")
    p.add_argument("--join-attempts", type=int, default=5, metavar="N",
                   help="attempts to join one session per address")
    p.add_argument("--calls-per-second", type=int, default=400, metavar="N",
                   help="requests per second per address")
    p.add_argument("--max-queue", type=int, default=8, metavar="N", help="chunks waiting per transfer")
    p.add_argument("--couchdb", metavar="URL", default=os.environ.get("FUSEVAULT_RELAY_COUCHDB"),
                   help="a CouchDB database for capability links (default: $FUSEVAULT_RELAY_COUCHDB; "
                        "none: no links); credentials from $FUSEVAULT_COUCHDB_USER/_PASSWORD")


def cmd_send(args: argparse.Namespace) -> int:
    from fusevault.transfer.send import send

    def announce(name: str, code: str) -> None:
        relay = "" if args.relay == _default_relay() else f" --relay {args.relay}"
        print(f"Session {name}, code {code}", flush=True)
        print(f"On the other computer: fusevault receive {name}{relay}", flush=True)
        print("(then type the code; waiting for them... Ctrl-C to cancel)", flush=True)

    return send(args.relay, args.paths, announce, keep=args.keep)


def cmd_receive(args: argparse.Namespace) -> int:
    from fusevault.transfer.receive import check_output, receive

    output = args.output or _dump_dir(args) or Path.cwd()
    if not args.list:
        check_output(output)  # before asking for the code
    code = passphrase.get(args.code_fd, args.code_file, env=ENV_CODE, prompt="Code: ")
    code = code.decode(errors="replace")
    return receive(args.relay, args.name, code, output, only=args.only, list_only=args.list)


def _dump_dir(args: argparse.Namespace) -> Path | None:
    if args.vault is None:  # the mounted vault this runs in, or the only one mounted
        from fusevault.errors import VaultError
        from fusevault.target import ask

        try:
            target = ask(args, {"cmd": "config"})["settings"]["target_dir_to_dump"]
        except VaultError:
            return None
        return Path(target) if target else None
    from fusevault.vault import users
    from fusevault.vault.opening import open_vault

    _, store = open_vault(args.vault)
    try:
        target = users.find_user(store, args.user).get("target_dir_to_dump")
    finally:
        store.close()
    return Path(target) if target else None


def cmd_relay(args: argparse.Namespace) -> int:
    import redis
    import trio

    from fusevault.errors import RelayUnavailable
    from fusevault.relay.state import Limits

    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        raise InvalidInput("--listen takes HOST:PORT, e.g. 127.0.0.1:4080")
    limits = Limits(session_ttl=args.session_ttl, join_attempts=args.join_attempts,
                    calls_per_second=args.calls_per_second, max_queue=args.max_queue)
    try:
        trio.run(_relay_until_stopped, args, host, int(port), limits)
    except BaseException as group:  # trio's nurseries wrap what went wrong in groups
        err = _leaf(group)
        if isinstance(err, redis.RedisError):
            raise RelayUnavailable(f"the relay cannot reach Redis at {args.redis}: {err}") from None
        if isinstance(err, OSError):  # the port is taken, or not ours to bind
            raise RelayUnavailable(f"the relay cannot listen on {args.listen}: {err.strerror}") from None
        raise err from None
    print("relay stopped", file=sys.stderr)
    return 0


async def _relay_until_stopped(args: argparse.Namespace, host: str, port: int, limits) -> None:
    """Serve until SIGINT (Ctrl-C) or SIGTERM (systemctl stop), then stop cleanly."""
    import trio

    from fusevault.relay.app import serve

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(serve, args.redis, host, port, limits, args.couchdb))
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


def _leaf(err: BaseException) -> BaseException:
    """The one exception inside nested exception groups (the group itself when there are several)."""
    while isinstance(err, BaseExceptionGroup) and len(err.exceptions) == 1:
        err = err.exceptions[0]
    return err


def _default_relay() -> str:
    from fusevault.transfer.client import DEFAULT_RELAY

    return os.environ.get(ENV_RELAY, DEFAULT_RELAY)


COMMANDS = {"send": cmd_send, "receive": cmd_receive, "relay": cmd_relay}
