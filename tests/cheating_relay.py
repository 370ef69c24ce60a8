"""A relay that cheats: the real relay with some of its operations replaced.

A real cheating relay cannot run here, so this stands in for one.  Run as a
script by the tests:

    cheating_relay.py [--record FILE] [--swap pake|request-key|ack-key]
                      [--forge-done bare|wrong|replay] HOST:PORT REDIS_URL

--record FILE      writes every command the relay sends to Redis, with all its
                   arguments, to FILE (JSON lines, values in base64): all it
                   stores, for the offline-guessing test.
--swap pake        replaces each receiver's SPAKE2 message with its own, made
                   with a guessed code (a man in the middle).
--swap request-key replaces the receiver's X25519 public key in file requests.
--swap ack-key     replaces the sender's X25519 public key in its answers.
--forge-done bare  as soon as the sender lets a receiver in, writes that receiver's
                   ``done`` itself: "all", without a MAC (the format before MACs).
--forge-done wrong the same with a MAC of the right form that is not the key's.
--forge-done replay
                   passes the first real ``done`` it sees, and writes it into each
                   later receiver's record as soon as the sender lets it in.

--withhold-first   never gives the receiver a chunk the sender queued: each take of a request
                   gets a chunk of garbage numbered after the one it waits for (first + 1, + 2 ...
                   up to the file's last), then nothing (round 63b (2)); the Redis key
                   ``cheat.served:<rid>`` is set once every number was given.

``offline_guesses`` is the relay operator's dictionary attack on a record.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import sys
import threading

import redis
import trio
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from spake2 import SPAKE2_A

from fusevault.encoding import b64e
from fusevault.relay import app
from fusevault.relay import keys as relay_keys
from fusevault.relay.limits import Refused
from fusevault.relay.state import RelayState
from fusevault.transfer import crypto

ATTACKER = b64e(crypto.public_bytes(X25519PrivateKey.generate()))
GUESS = "0-acid-acid"


def record_to(path: str) -> None:
    lock = threading.Lock()
    out = open(path, "a", buffering=1)  # noqa: SIM115 - open for the life of the process

    def write(args: tuple) -> None:
        values = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        with lock:
            out.write(json.dumps([base64.b64encode(v).decode() for v in values]) + "\n")

    plain, piped = redis.Redis.execute_command, redis.client.Pipeline.pipeline_execute_command

    def execute_command(self, *args, **options):
        write(args)
        return plain(self, *args, **options)

    def pipeline_execute_command(self, *args, **options):
        write(args)
        return piped(self, *args, **options)

    redis.Redis.execute_command = execute_command
    redis.client.Pipeline.pipeline_execute_command = pipeline_execute_command


def swap(what: str) -> None:
    if what == "pake":
        honest = RelayState.post_handshake

        def post_handshake(self, sid, uid, role, fields):
            if role == "receiver" and "pake.a" in fields:
                session = self.session(sid)
                ida = b"receiver|" + crypto.aead.ad(crypto.PROTOCOL, sid, session["code"], uid)
                idb = b"sender|" + crypto.aead.ad(crypto.PROTOCOL, sid, session["code"], uid)
                fields = {**fields, "pake.a": b64e(SPAKE2_A(GUESS.encode(), idA=ida, idB=idb).start())}
            return honest(self, sid, uid, role, fields)

        RelayState.post_handshake = post_handshake
    elif what == "request-key":
        honest_add = RelayState.add_requests

        def add_requests(self, sid, uid, requests):
            return honest_add(self, sid, uid, [{**r, "public_key": ATTACKER} for r in requests])

        RelayState.add_requests = add_requests
    elif what == "ack-key":
        honest_ack = RelayState.acknowledge

        def acknowledge(self, sid, owner, ack):
            return honest_ack(self, sid, owner, {**ack, "public_key": ATTACKER})

        RelayState.acknowledge = acknowledge


def forge_done(how: str) -> None:
    honest = RelayState.post_handshake
    seen: list[str] = []  # the first real done, for replay

    def post_handshake(self, sid, uid, role, fields):
        if role == "receiver" and "done" in fields and not seen:
            seen.append(fields["done"])
        honest(self, sid, uid, role, fields)
        if role != "sender" or "manifest" not in fields:
            return
        if how == "bare":
            forged = "all"
        elif how == "wrong":
            forged = "all " + b64e(hashlib.sha256(sid.encode() + uid.encode()).digest())
        elif seen:
            forged = seen[0]
        else:
            return  # nothing to replay yet: this session runs honestly
        self.r.hsetnx(relay_keys.handshake(sid, uid), "done", forged)

    RelayState.post_handshake = post_handshake


# --- the offline attack


def _variants(code: str) -> list[bytes]:
    norm = crypto.normalize_code(code)
    return [v.encode() for v in {code, norm, norm.upper(), norm.replace("-", " "), norm.replace("-", "")}]


def _digests(data: bytes) -> list[bytes]:
    out = []
    for name in ("md5", "sha1", "sha256", "sha512", "blake2b", "blake2s", "sha3_256"):
        raw = hashlib.new(name, data).digest()
        out += [raw, raw.hex().encode(), base64.b64encode(raw)]
    return out


def _exchanges(commands: list[list[bytes]]) -> tuple[dict[str, str], dict[tuple[str, str], dict]]:
    """From the record: each session's salt, and each receiver's key-exchange fields."""
    salts, exchanges = {}, {}
    for command in commands:
        if len(command) < 4 or command[0].upper() not in (b"HSET", b"HSETNX"):
            continue
        key, pairs = command[1].decode(errors="replace"), command[2:]
        fields = {pairs[i].decode(errors="replace"): pairs[i + 1] for i in range(0, len(pairs) - 1, 2)}
        if key.startswith("session:") and "code" in fields:
            salts[key.split(":", 1)[1]] = fields["code"].decode(errors="replace")
        elif key.startswith("session.receiver:"):
            _, sid, uid = key.split(":", 2)
            record = exchanges.setdefault((sid, uid), {})
            record.update({f: v.decode(errors="replace") for f, v in fields.items()})
    return salts, exchanges


def offline_guesses(commands: list[list[bytes]], candidates: list[str]) -> list[tuple[str, str]]:
    """Every (candidate, how) that something the relay stored lets it test offline.

    The relay operator's best tries, for each candidate code: the code and its
    hashes (md5 ... sha3, plain, salted with every stored value before or
    after, HMAC keyed with every stored value; raw, hex or base64) against
    every stored value; and the protocol itself: SPAKE2 as the sender against
    each stored receiver message, and as the receiver against each stored
    sender message, with the ids and salt the relay holds, checking the
    confirmation values and sealed messages it stored."""
    values = {v for command in commands for v in command[1:] if v}
    small = [v for v in values if len(v) <= 512]
    salts, exchanges = _exchanges(commands)
    hits = []
    for candidate in candidates:
        for variant in _variants(candidate):
            found = set(_digests(variant)) | {variant}
            for salt in small:
                found.update(_digests(salt + variant) + _digests(variant + salt))
                for name in ("sha256", "sha512"):
                    mac = hmac.new(salt, variant, name).digest()
                    found.update((mac, mac.hex().encode(), base64.b64encode(mac)))
            if found & values:
                hits.append((candidate, "a hash of the code"))
        for (sid, uid), fields in exchanges.items():
            salt = salts.get(sid, "")
            if "pake.a" in fields:
                try:
                    keys, _ = crypto.sender_handshake(candidate, sid, salt, uid, fields["pake.a"])
                    if fields.get("confirm.a") == b64e(keys.confirm_receiver):
                        hits.append((candidate, "the receiver's confirmation"))
                    keys.open_hello(fields.get("hello", ""))
                    hits.append((candidate, "the receiver's hello"))
                except (crypto.KeyMismatch, ValueError):
                    pass
            if "pake.b" in fields:
                try:
                    keys = crypto.ReceiverHandshake(candidate, sid, salt, uid).finish(fields["pake.b"])
                    if fields.get("confirm.b") == b64e(keys.confirm_sender):
                        hits.append((candidate, "the sender's confirmation"))
                    keys.open_manifest(fields.get("manifest", ""))
                    hits.append((candidate, "the sender's manifest"))
                except (crypto.KeyMismatch, ValueError):
                    pass
    return hits


def read_record(path: str) -> list[list[bytes]]:
    with open(path) as f:
        return [[base64.b64decode(v) for v in json.loads(line)] for line in f]


def withhold_first() -> None:
    """Each take gets garbage numbered past the chunk the receiver waits for: never that one."""
    garbage = b"\0" * crypto.CHUNK

    def pop_chunk(self, rid, uid, ip=""):
        if not self.member(rid, uid):
            raise Refused(404, "the transfer was cancelled")
        first, chunks = (int(v) for v in self.r.hmget(relay_keys.prep(rid), ["first", "amount.of.chunks"]))
        nr = first + int(self.r.incr(f"cheat.next:{rid}"))
        if nr >= chunks:
            self.r.set(f"cheat.served:{rid}", "1")
            return None
        return nr, "AAAAAAAAAAAAAAAA", garbage

    RelayState.pop_chunk = pop_chunk


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--record")
    parser.add_argument("--swap", choices=("pake", "request-key", "ack-key"))
    parser.add_argument("--forge-done", choices=("bare", "wrong", "replay"))
    parser.add_argument("--withhold-first", action="store_true")
    parser.add_argument("listen")
    parser.add_argument("redis")
    args = parser.parse_args()
    if args.record:
        record_to(args.record)
    if args.swap:
        swap(args.swap)
    if args.forge_done:
        forge_done(args.forge_done)
    if args.withhold_first:
        withhold_first()
    host, _, port = args.listen.rpartition(":")
    trio.run(app.serve, args.redis, host, int(port))


if __name__ == "__main__":
    sys.exit(main())
