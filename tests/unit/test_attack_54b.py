"""Attack round 54b: http_answers' own reading (53d (1), (2)), FUSEVAULT_VAULT (53t (4)), the key mirror's
pins (53c (1), (4)).

(1), (2): attacker: a hostile sync peer, relay or link store (or whoever is on its path without TLS),
answering the requests of fusevault/http_answers.py ``capped_request`` (couch_api, transfer/client,
links/client).
Every scene is a tiny server on a local socket (tests/unit/test_http_answers.py ``answering``).

(1) medium: the whole-answer deadline does not cover the answer's head.
    Steps: answer ``HTTP/1.1 200 OK`` then the header lines a byte at a time (each within httpx's read
    timeout), or an endless run of ``HTTP/1.1 100 Continue`` interim answers, then a final head with
    ``Content-Length: 0``.  Seen: ``capped_request(..., seconds=0.5)`` waits the 3 s the head takes and
    returns the 200 (no ReadTimeout); the deadline is looked at only in the body's loop
    (http_answers.py:77-80, ``for raw in streamed.iter_raw()``), after ``client.stream`` has read the
    whole head.  Expected: httpx.ReadTimeout at the deadline, head included (the docstring of
    ``answer_seconds`` says "headers to last byte").  Impact: a thread held as long as the server likes:
    a head of up to httpcore's 100 KiB at a byte per 29 s is over a month; interim 1xx answers are each
    a new head, so without end at all, and they may come at full speed (CPU and bandwidth, unbounded).
    Where the thread is not abandoned this is 53d (2) again: links/owner.py ``_publish`` (``link push``,
    ``link create``) runs in a thread no cancel abandons, under the links' ``lock``, "bounded by each
    answer's deadline" (its ``_network`` docstring): a hostile link store holds that lock (every other
    link command of hers waits) and the thread without end; abandoned ones (couch_api, ``_network``)
    leak a thread each time.  With a
    body the deadline fires at its first byte; with none (Content-Length: 0, a 204, a HEAD) never.
    Fix: run the request under a deadline that covers the head too: e.g. a watchdog that closes the
    stream / the client's connection at the deadline (``threading.Timer`` calling
    ``streamed.close()`` is not reachable before ``stream`` returns: close the transport, or use
    httpx's ``Timeout(pool=..., read=...)`` with read shrinking as the deadline nears via a custom
    transport), or send the request through a network stream whose every read is given
    ``min(read timeout, deadline - now)``.

(2) low: packed answers' raw bytes are not counted: what comes after the packing's end (trailing
    bytes past a gzip member's end, or a second member), or packing that unpacks to nothing (a zlib
    stream of empty stored blocks), is read without end within the deadline.
    Steps: ``Content-Encoding: gzip``, no length (Connection: close), ``gzip(b"{}")`` then 16 MiB of
    anything; or ``deflate``: a zlib header, 16 MiB of empty stored blocks ``00 00 00 ff ff``, then a
    final block of ``{}``.  Seen: with a cap of 64 KiB both are read whole (16 MiB) and given as ``{}``
    (http_answers.py ``_Unpacker.parts``: past ``eof`` nothing is unpacked nor counted, and an empty
    block unpacks to nothing counted; ``capped_request`` counts only the unpacked parts).  Expected:
    refused once the raw bytes are past the cap (raw never needs to exceed the unpacked cap for an
    honest server's JSON), and bytes past the packing's end refused (DecodingError) or the read stopped.
    Impact: an answer of a 256 MiB cap (any couch request) may be a stream of raw bytes at line speed for
    answer_seconds(JSON_LIMIT) = 70 min: bandwidth and CPU, memory flat.  Fix: count raw bytes too (e.g.
    refuse raw > cap), and refuse data after ``eof`` (``unused_data``) as broken packing.

(3) low: $FUSEVAULT_VAULT is not --vault for a command given a path (53t (4)'s fix, target.py).
    Attacker: none (honest use).  Steps: no vault mounted (or she is outside its mount), she sets
    FUSEVAULT_VAULT=VAULT and runs ``fusevault history docs/a.txt`` (or restore, trash PLACE, share,
    links create/push), as ``fusevault history --vault VAULT docs/a.txt`` works, whose help says
    "paths are then relative to its root; default: $FUSEVAULT_VAULT".  Seen: MountPointError "docs/a.txt
    is not inside a mounted vault (or give --vault VAULT)": ``_from_env`` (target.py:97-103) sets
    ``args.vault`` only when the command names no path; with one it takes the path as a path in a mount
    (``_mount_for``), and refuses it when it is in none.  (cli/sharing.py ``_path`` and cli/links.py
    ``_create`` also make the path absolute when ``args.vault`` is None, before ``ask`` sees the
    variable.)  Expected: the path relative to the named vault's root, as with --vault (opened here, or
    sent to its mount), or the help and README saying the variable does not do that.  Impact: honest use
    refused with a message pointing at --vault; no wrong vault acted on (the refusal is the safe side).
    Fix: in ``_from_env``, when the path is in no mount (or not in the named vault's mount when it is
    mounted elsewhere), take it as relative to the vault's root as --vault does; and have
    ``_path``/``_create`` look at ``named_vault(args)``.

(4) medium: the key mirror's pin (53c (1), (4)'s fix) is per key document, so every new key of hers is
    trust on first use again, under whatever user document of hers the store holds, though this device
    already pinned her signing key for her other keys.
    Attacker: the CouchDB server (no key of anyone's).  Steps: her key for bob of one file is held here
    and pinned to her signing key (``key-signers/<doc id>``); the server replaces her user document by
    one self-signed under a key of its own (53c (4)'s move); she shares a new file with bob (her signed
    node here); the server serves bob's key document of it first as a record signed under its key, then
    her own record, and her user document again.  Seen: the server's record is written to bob's key file
    and pinned to the server's key (``_genuine`` -> ``genuine_in_store``, key_mirror.py:661, no pin for
    that document yet; ``_pin``, key_mirror.py:758-772, takes the store's user document); her record is
    refused under that pin, for good (her user document back and a walk change nothing) (run:
    ``test_a_new_key_of_hers_is_not_pinned_to_a_key_that_replaced_hers``; control
    ``test_a_new_key_signed_by_another_key_is_refused_control``: her user document left, the server's
    record refused and hers written).  The same for a key re-granted at a document whose key was gone
    on both sides (``_unpin`` drops the pin with it: read, not run).  Expected: her new key judged under
    the signing key this device pinned for her already (the server's record refused), as 53c (4)
    refuses it for a key held before.  Impact: bob's key of each new file she shares while the server
    serves its user document in place of hers is the server's, for good on that device (he reads
    nothing of the file there until the key is gone on both sides); SECURITY.md's 53c limit names the
    first hold with the server's node before her real one, not this (her node here, her key known).
    Fix: pin per signer too (``key-signers`` by owner id: the first key held of hers pins her signing
    key for all her key documents, and a pin dropped with a key leaves hers), or judge a new key under
    the signing key of any pinned key of the same owner.
    Fixed since (docs/SECURITY.md "Round 54b (4)"): ``key-owners/<owner id>``, her signing key pinned at
    her first key pinned here; tests added for the re-grant, a restart, 53c's pins adopted.

Tried, held (controls kept): an honest gzip answer split at every byte is given whole
(``test_an_honest_gzip_answer_split_at_every_byte_is_given_whole``); deflate raw is taken when the
zlib header does not read; two ``Content-Encoding`` headers are refused unread (test_http_answers);
a body trickled past the deadline is refused at its next read (test_http_answers); the variable with
no path is --vault (``test_the_vault_variable_takes_a_command_with_no_path_as_vault_does``); a path in
another vault's mount is refused (read: ``_from_env``, ``_vault_of``).
Read, held: the spread of values (``loads_untrusted(spread=...)``) applies to the relay and link store
only, whose answers hold no names in clear (the relay gets file ids and sizes, transfer/send.py); the
couch answers, which do, take no spread (53d (3) limit).  Not tried in the time: a real pouchdb-server
sync of a big vault (machine busy).
"""

from __future__ import annotations

import argparse
import gzip
import os
import struct
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fusevault.encoding import b64e
from fusevault.http_answers import AnswerTooLarge, capped_request
from fusevault.store import replica
from fusevault.sync import key_mirror
from fusevault.sync.key_mirror import place
from fusevault.vault.model import sharing
from fusevault.vault.model.grants import record_doc
from unit.test_attack_42a_keys import _next_revision
from unit.test_attack_43b_keys import _gwens_group
from unit.test_attack_53c import _public_of
from unit.test_http_answers import CAP, answering
from unit.test_key_mirror import Owner, clock, pair, put  # noqa: F401 (fixtures)


def _slowly(pieces: list[bytes], every: float) -> Iterator[bytes]:
    for piece in pieces:
        time.sleep(every)
        yield piece



def test_a_trickled_head_is_held_to_the_answers_deadline() -> None:
    trickled = [bytes([b]) for b in b"X-Slow: " + b"a" * 30 + b"\r\nContent-Length: 0\r\n\r\n"]
    # 60 bytes at 0.05 s: 3 s for the head, each read well within httpx's 10 s timeout.
    with answering(b"HTTP/1.1 200 OK\r\n", _slowly(trickled, 3.0 / len(trickled))) as url:
        with httpx.Client(timeout=10) as client, pytest.raises(httpx.ReadTimeout):
            capped_request(client, "GET", f"{url}/x", CAP, seconds=0.5)



def test_interim_answers_are_held_to_the_answers_deadline() -> None:
    interim = [b"HTTP/1.1 100 Continue\r\n\r\n"] * 60 + [b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"]
    with answering(b"", _slowly(interim, 0.05)) as url:
        with httpx.Client(timeout=10) as client, pytest.raises(httpx.ReadTimeout):
            capped_request(client, "GET", f"{url}/x", CAP, seconds=0.5)


_PLENTY = 16 * 1024 * 1024  # raw bytes: 256 times the cap


def _packed_head(packing: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Encoding: " + packing + b"\r\nConnection: close\r\n\r\n"



def test_bytes_past_the_gzip_end_are_not_read_without_a_cap() -> None:
    def body() -> Iterator[bytes]:
        yield gzip.compress(b"{}")
        for _ in range(_PLENTY // 65536):
            yield b"\xee" * 65536

    with answering(_packed_head(b"gzip"), body()) as url:
        with httpx.Client(timeout=10) as client, pytest.raises((AnswerTooLarge, httpx.DecodingError)):
            capped_request(client, "GET", f"{url}/x", CAP)



def test_packing_that_unpacks_to_nothing_is_not_read_without_a_cap() -> None:
    empty_blocks = b"\x00\x00\x00\xff\xff" * 13107  # 64 KiB of non-final stored blocks of no bytes

    def body() -> Iterator[bytes]:
        yield b"\x78\x9c"  # zlib's header
        for _ in range(_PLENTY // len(empty_blocks)):
            yield empty_blocks
        packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        yield packer.compress(b"{}") + packer.flush()
        yield struct.pack(">I", zlib.adler32(b"{}"))  # zlib's check: a well-formed stream

    with answering(_packed_head(b"deflate"), body()) as url:
        with httpx.Client(timeout=10) as client, pytest.raises((AnswerTooLarge, httpx.DecodingError)):
            capped_request(client, "GET", f"{url}/x", CAP)


def test_a_second_gzip_member_in_the_same_read_is_refused() -> None:
    """What follows the packing's end is refused even when it comes in the read that ends it."""
    packed = gzip.compress(b"{}") + gzip.compress(b'{"more": 1}')
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(packed)
    with answering(head, iter([packed])) as url:
        with httpx.Client(timeout=10) as client, pytest.raises(httpx.DecodingError, match="after"):
            capped_request(client, "GET", f"{url}/x", CAP)


def test_an_answer_packed_to_more_than_it_holds_is_given_at_the_cap() -> None:
    """Control for the raw count: bytes that do not pack (the packing adds its own) fill the cap."""
    plain = os.urandom(CAP)
    packed = gzip.compress(plain)
    assert len(packed) > CAP
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(packed)
    with answering(head, iter([packed])) as url:
        with httpx.Client(timeout=10) as client:
            assert capped_request(client, "GET", f"{url}/x", CAP).content == plain


def test_a_client_whose_connections_the_deadline_cannot_bound_is_refused() -> None:
    """A transport of its own (no httpcore pool to bound) would let the head escape the deadline again."""
    unbounded = httpx.MockTransport(lambda request: httpx.Response(200, content=b"{}"))
    with httpx.Client(transport=unbounded) as client, pytest.raises(TypeError, match="cannot bound"):
        capped_request(client, "GET", "http://127.0.0.1:9/x", CAP)


def test_an_answer_in_time_leaves_the_connection_unbounded_for_other_requests() -> None:
    """The deadline is the answer's: a request of the same client outside capped_request has none."""
    whole = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"  # each time
    with answering(whole, iter([])) as url:
        with httpx.Client(timeout=10) as client:
            assert capped_request(client, "GET", f"{url}/x", CAP, seconds=0.5).content == b"{}"
            time.sleep(0.6)  # past that answer's deadline
            assert client.get(f"{url}/y").content == b"{}"


def test_an_honest_gzip_answer_split_at_every_byte_is_given_whole() -> None:
    """Control: a packed answer coming a byte a read is unpacked whole (nothing lost between reads)."""
    plain = b'{"rows": [' + b",".join(b'{"id": "a,b[c]{d}"}' for _ in range(500)) + b"]}"
    packed = gzip.compress(plain)
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(packed)
    with answering(head, iter([bytes([b]) for b in packed])) as url:
        with httpx.Client(timeout=10) as client:
            answer = capped_request(client, "GET", f"{url}/x", len(plain))
    assert answer.content == plain


def _offline_asked(monkeypatch: pytest.MonkeyPatch, vault: Path) -> list[dict]:
    """No vault mounted; what target.ask would hand the vault opened here (``_offline``), recorded."""
    from fusevault import target

    asked: list[dict] = []
    monkeypatch.setattr(target, "fusevault_mounts", lambda: [])
    monkeypatch.setattr(target, "_offline", lambda args, request: asked.append(dict(request)) or {"ok": 1})
    monkeypatch.setenv(target.VAULT_ENV, str(vault))
    return asked



def test_the_vault_variable_takes_a_path_as_vault_does(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    from fusevault import target

    asked = _offline_asked(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    args = argparse.Namespace(vault=None, user="alice", passphrase_fd=None, passphrase_file=None)
    # `fusevault history docs/a.txt` with $FUSEVAULT_VAULT, as `--vault VAULT history docs/a.txt`
    # (the help: "a vault that is not mounted (paths are then relative to its root; default:
    # $FUSEVAULT_VAULT)").
    target.ask(args, {"cmd": "history", "path": "docs/a.txt"}, ("path",))
    assert asked == [{"cmd": "history", "path": "docs/a.txt"}]


def test_the_vault_variable_takes_a_command_with_no_path_as_vault_does(monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    """Control: with no path the variable is --vault (the vault opened here, none mounted)."""
    from fusevault import target

    asked = _offline_asked(monkeypatch, tmp_path)
    args = argparse.Namespace(vault=None, user="alice", passphrase_fd=None, passphrase_file=None)
    target.ask(args, {"cmd": "config"})
    assert asked == [{"cmd": "config"}] and args.vault == tmp_path


def test_the_vault_variable_takes_a_share_path_as_vault_does(monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    """``fusevault share docs/a.txt bob`` with the variable: the path reaches the vault as given (it was
    made absolute before ``ask`` looked at the variable: cli/sharing.py ``_path``; links ``_create``)."""
    from fusevault import target
    from fusevault.cli import links, sharing

    asked: list[dict] = []
    answer = {"path": "docs/a.txt", "with": "bob", "perm": "read", "files": 1, "link": "https://l#k",
              "kind": "share", "item": "i", "expires_at": None}
    monkeypatch.setattr(target, "fusevault_mounts", lambda: [])
    monkeypatch.setattr(target, "_offline", lambda args, request: asked.append(dict(request)) or answer)
    monkeypatch.setenv(target.VAULT_ENV, str(tmp_path))
    monkeypatch.chdir(tmp_path)
    args = argparse.Namespace(vault=None, user="alice", passphrase_fd=None, passphrase_file=None,
                              path="docs/a.txt", grantee="bob", perm="read", relay="https://links.example",
                              append=False, expires=None)
    assert sharing.cmd_share(args) == 0
    args.vault = None
    assert links._create(args) == 0
    assert [a["path"] for a in asked] == ["docs/a.txt", "docs/a.txt"]


def test_the_vault_variable_sends_a_path_in_no_mount_to_the_vaults_mount(monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Path) -> None:
    """The named vault mounted, she outside it: the path goes to its mount relative to its root."""
    from fusevault import paths, target
    from fusevault.fs import control

    sent: list[tuple[str, dict]] = []
    monkeypatch.setattr(target, "fusevault_mounts", lambda: ["/mnt/v"])
    monkeypatch.setattr(target, "_vault_of", lambda mountpoint: str(tmp_path.resolve()))
    monkeypatch.setattr(control, "request",
                        lambda sock, request, timeout=None: sent.append((str(sock), request)) or {"ok": 1})
    monkeypatch.setenv(target.VAULT_ENV, str(tmp_path))
    monkeypatch.chdir(tmp_path)
    args = argparse.Namespace(vault=None)
    target.ask(args, {"cmd": "history", "path": "docs/a.txt"}, ("path",))
    assert sent == [(str(paths.socket_of(Path("/mnt/v"))), {"cmd": "history", "path": "docs/a.txt"})]


def test_the_vault_variable_refuses_a_path_in_another_vaults_mount(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    """Control: a path inside the mount of a vault the variable does not name is still refused."""
    from fusevault import target
    from fusevault.errors import MountPointError

    mount = tmp_path / "mnt"
    mount.mkdir()
    monkeypatch.setattr(target, "fusevault_mounts", lambda: [str(mount.resolve())])
    monkeypatch.setattr(target, "_vault_of", lambda mountpoint: "/somewhere/else")
    monkeypatch.setenv(target.VAULT_ENV, str(tmp_path / "vault"))
    args = argparse.Namespace(vault=None)
    with pytest.raises(MountPointError, match="names"):
        target.ask(args, {"cmd": "history", "path": str(mount / "a.txt")}, ("path",))


# --- (4): the key mirror's pin is per key document: a new key of hers is pinned under what the store says


def _new_key_under_her_replaced_user(replicas, replaced: bool, back: bool = True,
                                     start_again: str = "") -> tuple[bytes | None, bytes | None]:
    """Her key for bob (gwen's group) held here and pinned to her signing key; the server then replaces
    her user document by one of its own key (``replaced``; 46c (1)'s and 53c (4)'s move) and serves, for
    a new file of hers (her own signed node here), a record for bob signed under that key; then her own
    record of it, her user document back (``back``), a walk.  (Bob's key file of the new file after the
    server's record, and at the end.)  ``start_again``: the mirror started again once her first key is
    pinned (``"restart"``: its pins read from the store), or first run on a store of 53c's version
    (``"upgrade"``: key documents' pins, no owner's pin)."""
    here, _ = replicas
    her, gwen, group, doc_id, _ = _gwens_group(here, gwen_first=True, bound="gwen")
    pin = replica.get_local(here.store, key_mirror._PINS + doc_id)
    assert pin == {"owner": her.id, "key": her.user["public_sign"]}, "the scene: her first key pinned to her"
    if start_again == "restart":
        stored = replica.get_local(here.store, key_mirror._OWNER_PINS + her.id)
        assert stored == {"key": her.user["public_sign"]}, "her pin stored"
    if start_again == "upgrade":
        replica.put_locals(here.store, {doc: None for doc in replica.locals_under(here.store, "key-owners/")})
    if start_again:
        here.keys = key_mirror.KeyMirror(here.store, here.layout)
    bob = key_mirror.names(doc_id)[1]
    fid = uuid.uuid4().hex
    put(here, her.node(fid, 1))  # her new file, its node as she signed it
    user = {k: v for k, v in here.store.get(her.id).items() if k != "_rev"}
    mallory = Owner()
    mallory.id = her.id
    mallory.user = mallory.sign({"_id": her.id, "type": "UserDetails", "public_sign": _public_of(mallory)})
    if replaced:
        _next_revision(here, her.id, mallory.user)
    new_id = f"vfkey-u-{bob}-{her.id}-{fid}"
    forged = b"the server's key"
    sig = mallory.sign(record_doc(her.id, fid, bob, 1, forged))["sig"]
    replica.store_revisions(here.store, [{"_id": new_id, "_rev": "1-" + uuid.uuid4().hex,
                                          "type": sharing.FILE_KEY, "epoch": 1, "key": b64e(forged),
                                          "owner": her.id, "fid": fid, "recipient": bob, "sig": sig}])
    here.keys.arrived([new_id])
    after = sharing.read_key(place(here.layout, new_id))
    hers = b"sealed for bob, new file"
    sig = her.sign(record_doc(her.id, fid, bob, 1, hers))["sig"]
    _next_revision(here, new_id, {"_id": new_id, "type": sharing.FILE_KEY, "epoch": 1, "key": b64e(hers),
                                  "owner": her.id, "fid": fid, "recipient": bob, "sig": sig})
    if replaced and back:
        _next_revision(here, her.id, user)  # her user document again
    here.keys.caught_up()
    here.keys._looked_at = -float("inf")
    here.refresh()
    here.keys.caught_up()
    end = sharing.read_key(place(here.layout, new_id))
    return (after.key if after else None), (end.key if end else None)


def test_a_new_key_of_hers_is_not_pinned_to_a_key_that_replaced_hers(pair, clock) -> None:  # noqa: F811
    after, end = _new_key_under_her_replaced_user(pair, replaced=True)
    assert after is None and end == b"sealed for bob, new file", \
        f"bob's key file holds {after!r}, then {end!r}"


def test_a_new_key_signed_by_another_key_is_refused_control(pair, clock) -> None:  # noqa: F811
    """Control: her user document left as it is, the server's record of the new file is refused and
    hers written."""
    after, end = _new_key_under_her_replaced_user(pair, replaced=False)
    assert after is None and end == b"sealed for bob, new file", (after, end)


# --- the fix's own edges (54b (4)): her signing key pinned by owner (``key-owners/<owner id>``)


def test_her_new_key_is_judged_under_her_pin_while_the_server_serves_its_user_document(pair, clock) -> None:  # noqa: F811,E501
    """Her user document never comes back: her record of the new file is written all the same (judged under
    her pinned key, not under the store's user document), the server's refused."""
    after, end = _new_key_under_her_replaced_user(pair, replaced=True, back=False)
    assert after is None and end == b"sealed for bob, new file", (after, end)


def test_her_pin_holds_after_a_restart(pair, clock) -> None:  # noqa: F811
    """The owner's pin is the store's local document, not the running mirror's memory."""
    after, end = _new_key_under_her_replaced_user(pair, replaced=True, back=False, start_again="restart")
    assert after is None and end == b"sealed for bob, new file", (after, end)


def test_her_key_documents_pins_from_before_make_her_pin(pair, clock) -> None:  # noqa: F811
    """A store of 53c's version (key documents' pins only): the key they all name is taken as hers."""
    after, end = _new_key_under_her_replaced_user(pair, replaced=True, back=False, start_again="upgrade")
    assert after is None and end == b"sealed for bob, new file", (after, end)


def test_key_documents_pins_naming_two_keys_of_one_owner_make_no_pin(pair) -> None:  # noqa: F811
    """Pins of 53c's version naming two signing keys of one owner (one was the server's, its trust on first
    use): neither is taken as hers (her next key pinned here pins her); one naming one key is."""
    here, _ = pair
    two, one = uuid.uuid4().hex, uuid.uuid4().hex
    replica.put_locals(here.store, {key_mirror._PINS + "vfkey-a": {"owner": two, "key": "A"},
                                    key_mirror._PINS + "vfkey-b": {"owner": two, "key": "B"},
                                    key_mirror._PINS + "vfkey-c": {"owner": one, "key": "C"},
                                    key_mirror._PINS + "vfkey-d": {"owner": one, "key": "C"}})
    assert key_mirror._owner_pins(here.store) == ({one: "C"}, {one})


def _after_deletion(here, doc_id: str, body: dict) -> None:
    """A revision the server makes over the deleted current one (a key granted again)."""
    (gone,) = [leaf for leaf in replica.leaves(here.store, doc_id) if leaf.get("_deleted")]
    generation, rev_id = gone["_rev"].split("-", 1)
    new, start = uuid.uuid4().hex, int(generation) + 1
    replica.store_revisions(here.store, [{**body, "_id": doc_id, "_rev": f"{start}-{new}",
                                          "_revisions": {"start": start, "ids": [new, rev_id]}}])
    here.keys.arrived([doc_id])


def test_a_key_granted_again_after_it_was_gone_is_judged_under_her_pin(pair, clock) -> None:  # noqa: F811
    """Her key for bob gone on both sides (her re-key to epoch 2, its document deleted): its pin goes with
    it, hers stays.  The server replaces her user document and serves a record of its key at that document
    before her own record granting it again: refused, hers written and pinned to her key."""
    here, _ = pair
    her, gwen, group, doc_id, _ = _gwens_group(here, gwen_first=True, bound="gwen")
    fid, bob = key_mirror.names(doc_id) or ("", "")
    _next_revision(here, fid, her.node(fid, 2))
    _next_revision(here, doc_id, None)
    assert not place(here.layout, doc_id).exists(), "the scene: bob's key gone on both sides"
    assert replica.get_local(here.store, key_mirror._PINS + doc_id) == {}, "the scene: its pin gone"
    mallory = Owner()
    mallory.id = her.id
    mallory.user = mallory.sign({"_id": her.id, "type": "UserDetails", "public_sign": _public_of(mallory)})
    _next_revision(here, her.id, mallory.user)
    forged = b"the server's key"
    sig = mallory.sign(record_doc(her.id, fid, bob, 2, forged))["sig"]
    _after_deletion(here, doc_id, {"type": sharing.FILE_KEY, "epoch": 2, "key": b64e(forged), "owner": her.id,
                                   "fid": fid, "recipient": bob, "sig": sig})
    after = sharing.read_key(place(here.layout, doc_id))
    hers = b"sealed for bob again"
    sig = her.sign(record_doc(her.id, fid, bob, 2, hers))["sig"]
    _next_revision(here, doc_id, {"type": sharing.FILE_KEY, "epoch": 2, "key": b64e(hers), "owner": her.id,
                                  "fid": fid, "recipient": bob, "sig": sig})
    here.keys.caught_up()
    end = sharing.read_key(place(here.layout, doc_id))
    assert after is None and end is not None and end.key == hers, (after, end)
    pin = replica.get_local(here.store, key_mirror._PINS + doc_id)
    assert pin == {"owner": her.id, "key": her.user["public_sign"]}, pin
