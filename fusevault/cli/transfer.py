"""``fusevault send | receive | relay``: handing files to someone through a relay."""

from __future__ import annotations

import argparse
import functools
import logging
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fusevault import passphrase
from fusevault.cli.options import Command, default_relay, relay_option
from fusevault.errors import InvalidInput, VaultError
from fusevault.shortening import shortened

log = logging.getLogger("fusevault")

ENV_CODE = "FUSEVAULT_CODE"


def _words(text: str) -> int:
    from fusevault.transfer.crypto import MAX_WORDS

    if not text.isdigit() or not 2 <= int(text) <= MAX_WORDS:
        raise argparse.ArgumentTypeError(f"a code has 2 to {MAX_WORDS} words")
    return int(text)


def _count(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high``; else a usage error.  The relay's
    limits took any int: ``--join-names 0`` (or -5) let no receiver in, a huge one let a scan of the
    session names run unbounded (attack round 53d)."""
    def parsed(text: str) -> int:
        if not (text.isascii() and text.isdigit() and low <= int(text) <= high):
            raise argparse.ArgumentTypeError(f"a whole number from {low} to {high}")
        return int(text)
    return parsed


def add_commands(command: Command) -> None:
    p = command("send", "offer files to someone: prints a session name and a code to read to them",
                "fusevault send report.pdf photos/")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.add_argument("--keep", action="store_true",
                   help="also serve other receivers, asking (or printing their verification words) "
                        "for each, until Ctrl-C (default: one receiver, then stop)")
    p.add_argument("--code-length", type=_words, default=2, metavar="N",
                   help="words in the code (default 2: 1 chance in 65 million for a guess; each word "
                        "makes it 256 times harder)")
    p.add_argument("--verify", action="store_true",
                   help="show verification words and ask whether the receiver sees the same")
    relay_option(p)

    p = command("receive", "fetch files someone is sending (asks for their code)",
                "fusevault receive 482113 --output ~/Downloads")
    p.add_argument("name", help="the session name the sender read to you")
    p.add_argument("--output", "-o", type=Path,
                   help="where files go (default: target_dir_to_dump of the vault given with "
                        "--vault, or of the mounted one; else here)")
    p.add_argument("--file", action="append", dest="only", metavar="NAME",
                   help="fetch only this file or folder (repeatable)")
    p.add_argument("--list", action="store_true", help="only list the session's files")
    p.add_argument("--verify", action="store_true",
                   help="show verification words and ask whether the sender sees the same")
    p.add_argument("--vault", type=Path,
                   help="use this vault user's target_dir_to_dump (asks for the passphrase: the folder "
                        "this device confirmed, never one a writer of the vault folder put there)")
    p.add_argument("--user", help="with --vault: which user")
    p.add_argument("--passphrase-fd", type=int, metavar="N",
                   help="with --vault: read the passphrase from fd N")
    p.add_argument("--passphrase-file", metavar="FILE", help="with --vault: read the passphrase from FILE")
    p.add_argument("--code-fd", type=int, metavar="N", help=f"read the code from fd N (or ${ENV_CODE})")
    p.add_argument("--code-file", metavar="FILE", help="read the code from FILE")
    relay_option(p)

    p = command("relay", "run the relay that send and receive go through",
                "fusevault relay --listen 127.0.0.1:4080 --redis redis://127.0.0.1:6379/0")
    p.add_argument("--listen", default="127.0.0.1:4080", metavar="HOST:PORT")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/0", metavar="URL")
    p.add_argument("--session-ttl", type=_count(1, 7 * 86400), default=3600, metavar="S",
                   help="an idle session's keys expire after S seconds")
    p.add_argument("--join-attempts", type=_count(1, 100), default=5, metavar="N",
                   help="attempts to join one session per address")
    p.add_argument("--join-names", type=_count(1, 1000), default=16, metavar="N",
                   help="session names per address per 10 minutes that it was not let in at "
                        "(misses included): a scan of the names finds a live one by chance only")
    p.add_argument("--calls-per-second", type=_count(1, 100_000), default=400, metavar="N",
                   help="requests per second per address")
    p.add_argument("--max-queue", type=_count(1, 1024), default=8, metavar="N",
                   help="chunks waiting per session (over all its files and receivers)")
    p.add_argument("--trusted-proxy", nargs="+", action="extend", default=[], metavar="CIDR",
                   help="reverse proxies whose X-Forwarded-For names the client (limits count real "
                        "clients, not the proxy)")
    p.add_argument("--token-key", type=Path, metavar="FILE",
                   help="the key that signs session tokens, made if missing, so they survive a "
                        "restart (default: relay-token.key in the state folder)")
    p.add_argument("--couchdb", metavar="URL", default=os.environ.get("FUSEVAULT_RELAY_COUCHDB"),
                   help="a CouchDB database for capability links (default: $FUSEVAULT_RELAY_COUCHDB; "
                        "none: no links); credentials from $FUSEVAULT_COUCHDB_USER/_PASSWORD")


SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
GRACE_SECONDS = 15  # a stopped send or receive gets this long to end its session before it is left behind


def _grace() -> float:
    """``GRACE_SECONDS``, or shorter (1 s at least) where FUSEVAULT_STOP_GRACE_SECONDS says so: the
    tests whose scenes wait out a relay that no longer answers (tests/services/test_relay.py) shorten
    it, as FUSEVAULT_LONGPOLL_SECONDS shortens the pull's longpoll.  Shorter only leaves a session to
    expire on the relay sooner (what a second Ctrl-C does at once); anything else (longer, zero, not a
    number) is the default."""
    return float(shortened("FUSEVAULT_STOP_GRACE_SECONDS", GRACE_SECONDS))


GRACE = _grace()


def interruptible(work: Callable[[threading.Event], int]) -> int:
    """``work(interrupt)`` in a thread of its own; Ctrl-C, SIGTERM and SIGHUP only set ``interrupt``.

    Python raises KeyboardInterrupt wherever the main thread happens to be: in the middle of httpx's
    and h11's bookkeeping of a request, or of a thread pool's, it left a connection or a lock half
    changed, and the cleanup that should close the session on the relay failed, or never ended (a
    ``send --keep`` that Ctrl-C did not stop).  Here the transfer stops where it looks
    (RelayClient.interrupted), between calls, and this thread only waits.  SIGTERM and SIGHUP
    (kill, timeout, systemd, a closed terminal) end it the way Ctrl-C does; a second signal, or a
    relay that does not answer within GRACE, leaves the session to expire on the relay."""
    interrupt = threading.Event()
    caught: list[int] = []
    outcome: dict[str, Any] = {}

    def on_signal(signum: int, frame) -> None:
        caught.append(signum)
        interrupt.set()

    def body() -> None:
        try:
            outcome["code"] = work(interrupt)
        except BaseException as err:  # noqa: BLE001 - raised again in the main thread, below
            outcome["error"] = err

    worker = threading.Thread(target=body, name="transfer", daemon=True)
    saved = {sig: signal.signal(sig, on_signal) for sig in SIGNALS}
    try:
        worker.start()
        deadline = None
        while worker.is_alive() and len(caught) < 2:
            worker.join(0.2)  # a timeout: a signal only sets the event, it does not end a join
            if caught and deadline is None:
                deadline = time.monotonic() + GRACE
            if deadline is not None and time.monotonic() > deadline:
                break
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    if worker.is_alive():
        log.warning("stopped before the relay confirmed it: the session expires there on its own")
        _left_behind(caught[0])
    if "code" in outcome:
        return outcome["code"]
    err = outcome["error"]
    if caught:  # what asked to stop it says how it ended (a relay away is not waited for then)
        if not isinstance(err, KeyboardInterrupt):
            log.debug("stopping: %s", err)
        _stopped(caught[0])
    raise err


def _stopped(signum: int) -> None:
    """End as the signal says: 130 for Ctrl-C (cli/guard.py), 128 + its number for SIGTERM and SIGHUP."""
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    log.error("stopped by %s", signal.Signals(signum).name)
    raise SystemExit(128 + signum)


def _left_behind(signum: int) -> None:
    """Exit now, leaving the transfer's threads (waiting for a relay that does not answer) behind."""
    if signum == signal.SIGINT:
        log.error("interrupted")
    else:
        log.error("stopped by %s", signal.Signals(signum).name)
    sys.stdout.flush()
    logging.shutdown()
    os._exit(128 + signum)


def _ask(interrupt: threading.Event) -> Callable[[str], bool] | None:
    """A yes/no question on the terminal, or None when there is no one to ask.

    It is asked in the transfer's thread (interruptible): the answer is awaited in short looks, so
    that Ctrl-C at the question ends the command at once."""
    if not sys.stdin.isatty():
        return None

    def ask(question: str) -> bool:
        print(question, end="", flush=True)
        while not select.select([sys.stdin], [], [], 0.2)[0]:
            if interrupt.is_set():
                print(flush=True)
                raise KeyboardInterrupt
        return sys.stdin.readline().strip().lower() in ("y", "yes")  # "" at the end of the input: no
    return ask


def cmd_send(args: argparse.Namespace) -> int:
    from fusevault.transfer.send import send

    def announce(name: str, code: str) -> None:
        relay = "" if args.relay == default_relay() else f" --relay {args.relay}"
        print(f"Session {name}, code {code}", flush=True)
        print(f"On the other computer: fusevault receive {name}{relay}", flush=True)
        print("(then type the code; waiting for them... Ctrl-C to cancel)", flush=True)

    def say(text: str) -> None:
        print(text, flush=True)

    return interruptible(lambda interrupt: send(
        args.relay, args.paths, announce, words=args.code_length, keep=args.keep, verify=args.verify,
        ask=_ask(interrupt), say=say, interrupt=interrupt))


def cmd_receive(args: argparse.Namespace) -> int:
    from fusevault.transfer.output import check_output
    from fusevault.transfer.receive import receive

    output = args.output or _dump_dir(args) or Path.cwd()
    if not args.list:
        check_output(output)  # before asking for the code
    code = passphrase.get(args.code_fd, args.code_file, env=ENV_CODE, prompt="Code: ")
    code = code.decode(errors="replace")
    return interruptible(lambda interrupt: receive(
        args.relay, args.name, code, output, only=args.only, list_only=args.list, verify=args.verify,
        ask=_ask(interrupt), interrupt=interrupt))


def _dump_dir(args: argparse.Namespace) -> Path | None:
    from fusevault.target import named_vault

    args.vault = named_vault(args)  # $FUSEVAULT_VAULT as --vault: never the only mount instead
    if args.vault is None:  # the mounted vault this runs in, or the only one mounted
        from fusevault.target import ask

        try:
            target = ask(args, {"cmd": "config"})["settings"]["target_dir_to_dump"]
        except VaultError:
            return None
        return Path(target) if target else None
    from fusevault.vault.model import confirmed
    from fusevault.vault.services.opening import unlock_vault

    # Her key, and the folder this device confirmed: a writer of the vault folder can sign a user
    # document of hers with a key of his naming any folder (an autostart folder, /etc/cron.d), so
    # the document's own signature says nothing (tests/mount/test_trust_attack_round22b.py, hole 5).
    secret = passphrase.get(args.passphrase_fd, args.passphrase_file, about=str(args.vault))
    unlocked = unlock_vault(args.vault, args.user, secret)
    try:
        target = confirmed.load(unlocked.store, unlocked.key, unlocked.layout.root).target_dir_to_dump
    finally:
        unlocked.store.close()
    return Path(target) if target else None


def cmd_relay(args: argparse.Namespace) -> int:
    import trio

    from fusevault.relay.app import serve
    from fusevault.relay.state import Limits

    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:  # bind() raised OverflowError: 49t (4)
        raise InvalidInput("--listen takes HOST:PORT, a port from 0 to 65535, e.g. 127.0.0.1:4080")
    limits = Limits(session_ttl=args.session_ttl, join_attempts=args.join_attempts,
                    join_names=args.join_names, calls_per_second=args.calls_per_second,
                    max_queue=args.max_queue)
    import redis

    from fusevault.errors import RelayUnavailable
    from fusevault.relay.guards import ClientAddress

    try:
        ClientAddress(args.trusted_proxy)
    except ValueError as err:
        raise InvalidInput(str(err)) from None
    signing_key = _token_key(args.token_key)
    try:
        trio.run(_until_stopped, functools.partial(
            serve, args.redis, host, int(port), limits, args.couchdb,
            trusted_proxies=tuple(args.trusted_proxy), signing_key=signing_key))
    except KeyboardInterrupt:
        pass
    except (redis.RedisError, OSError, BaseExceptionGroup) as err:
        # Hypercorn's nursery wraps what went wrong (trio's strict exception groups).
        while isinstance(err, BaseExceptionGroup) and len(err.exceptions) == 1:
            err = err.exceptions[0]
        if isinstance(err, redis.RedisError):
            raise RelayUnavailable(f"the relay cannot reach Redis at {args.redis}: {err}") from None
        if isinstance(err, OSError):  # the port is taken, or not ours to bind
            raise RelayUnavailable(f"the relay cannot listen on {args.listen}: {err.strerror}") from None
        if isinstance(err, VaultError):  # e.g. its CouchDB is not there: one line
            raise err from None
        raise
    print("relay stopped", file=sys.stderr)
    return 0


async def _until_stopped(run) -> None:
    """Serve until SIGINT (Ctrl-C) or SIGTERM (systemctl stop), then stop cleanly."""
    import trio

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(run)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


def _token_key(path: Path | None):
    """The relay's token key: from --token-key (an error if unusable), else from the state folder."""
    from fusevault import paths
    from fusevault.errors import RelayUnavailable
    from fusevault.relay.app import load_signing_key

    if path is not None:
        return load_signing_key(path)
    try:
        return load_signing_key(paths.state_dir() / "relay-token.key")
    except (OSError, RelayUnavailable) as err:
        log.warning("session tokens will not survive a restart of the relay: %s", err)
        return None


COMMANDS = {"send": cmd_send, "receive": cmd_receive, "relay": cmd_relay}
