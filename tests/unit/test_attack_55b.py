"""Attack round 55b: the fixes of round 54b (owner pins, http_answers' bounded network, $FUSEVAULT_VAULT)
and 53d (4)-(6) (root names' skeleton, the modes of drops and imports).

(1) low: the wire bytes that are not body data are not counted against the raw cap (54b (2)'s fix).
    Attacker: a hostile sync peer, relay or link store (or whoever is on its path without TLS).
    Steps: answer ``Transfer-Encoding: chunked`` with chunks of one byte of data, each chunk-size line
    carrying a chunk extension of 16,000 bytes (``1;x=aaaa...\\r\\nA\\r\\n``, h11 takes lines up to its
    event size), 4 MiB of them, then ``0``; or 4 MiB of ``HTTP/1.1 100 Continue`` interim heads, then a
    200 of two bytes.  Seen: ``capped_request(..., cap=64 KiB)`` reads all of it and returns the answer
    (a probe counted 17.4 MB and 16.8 MB sent by the server for 16 MiB floods, read in seconds); the
    raw count (http_answers.py ``capped_request``, ``raw_size += len(raw)`` over ``iter_raw``) sees only
    the body data h11 hands over (here 1 byte in 16,000), and the heads of interim answers not at all.
    Expected: refused once the bytes read off the connection are past the raw cap plus a head's room
    (AnswerTooLarge or an httpx error).  Impact: what 54b (2) fixed, again: an answer may be a stream at
    line speed for its whole deadline (answer_seconds: 121 s for a 64 KiB cap, 70 min for a couch
    answer's 256 MiB), CPU and bandwidth, memory flat; 54b (1) bounded the interim answers' time only.
    Fix: count every byte ``_BoundedStream.read`` returns against the answer (a ContextVar beside
    ``_DEADLINE``), refused past raw_cap + the head's allowance (httpcore's 100 KiB).
    Tests: ``test_chunk_framing_counts_against_the_cap``, ``test_interim_heads_count_against_the_cap``.

(2) low: look-alikes of the root's kept names that pass ``names.looks_reserved`` (53d (4)'s skeleton).
    Attacker: a drop-box link holder (a drop at the root of her drive) or a local user writing to her
    watched folder (an import into the root).  Steps: drop ``shared\\u2800/bob/x`` (a trailing braille
    blank, U+2800, category So: shown as a blank, as the trailing space the fix refuses, and unquoted by
    GNU ls where ``'shared '`` is quoted), or ``gr\\u0a66ups/...`` (Gurmukhi digit zero, confusables.txt's
    look-alike of o; the Devanagari, Bengali, Gujarati, Oriya, Tamil zeros alike).  Seen:
    ``looks_reserved`` False, the names taken as is at her root (``_TakenAtRoot``,
    ``away_from_reserved``).  Cause: names.py ``skeleton`` drops only Cf and default-ignorable
    characters (U+2800 is neither), and ``_stands_in`` takes only non-ASCII letters as stand-ins (a
    digit is not ``isalpha``); lengths must match exactly.  Expected: NAME (2), as for ``shared `` and
    ``\\u0261roups``.  Impact: a drop beside her ``shared``/``groups`` view that reads as it (53d (4)'s
    impact), with the look-alikes the fix meant to cover.  Fix: count U+2800 (and U+3000-like blanks
    NFKC leaves) as spaces in the skeleton, and let any non-ASCII character that is not a letter of a
    word (digits Nd, marks) stand in too, one ASCII letter kept.  Test:
    ``test_more_look_alikes_of_the_kept_names_take_another_name``.

(3) low: $FUSEVAULT_VAULT beats ``--mount`` (54b (3)'s fix).  Attacker: none (honest use).
    Steps: ``FUSEVAULT_VAULT=~/personal fusevault shares docs --mount /mnt/work`` from outside any
    mount (/mnt/work serving another vault).  Seen: the personal vault answers (opened here, or its
    mount): target.py ``_from_env`` takes ``place`` as the PATH before --mount, and a PATH in no mount
    now sets ``args.vault`` (54b (3)); --mount is never looked at.  Expected: refused as a PATH in
    /mnt/work is ("... $FUSEVAULT_VAULT names ...: unset it, or give --vault"); its docstring says a
    --mount of another vault is refused.  Impact: the shares of another vault than the one named on
    the command line listed (read only; ``shares`` is the only command with PATH and --mount).  Fix: in
    ``_from_env`` judge ``args.place`` too when it is given.  Test:
    ``test_the_vault_variable_does_not_override_a_mount_of_another_vault``.

Tried, held (control kept): the server's record of bob's key of her new file naming the server's own
user, served before her node (judged under that user's document, ``owner_named`` the record's own),
is written to bob's key file, then gives way to hers once her node comes (no pin is made for it)
(``test_a_record_naming_the_servers_user_before_her_node_gives_way_to_hers``).  Read, held: the owner
pin read from a local document (only the vault folder's writer writes it); a pin that does not read
judges nothing genuine, no exception (``signed_under``); groups change no owner (trust.py pins it);
a user's signing key never changes (``Identity.new`` at creation, or for a format-1 user with no
signed record); keep-alive after a refused answer (httpcore closes a connection whose body was not
read to its end); TLS handshakes (CPython's handshake timeout is a whole deadline); FUSEVAULT_VAULT
with a PATH in another vault's mount, or a symbolic link into one, is refused; modes: imports and drop
files ``given_mode``, folders ``folder_mode`` (make_dirs), link get masks by her umask only (outside
the drive, as tar does).  Not tried: a write trickled by a server reading slowly (``_BoundedStream.write``
gives each 64 KiB piece the time left, and a piece may need several sends each given that time: a
bounded overrun, by reading); a real pouchdb-server sync (machine shared); the owner pins' TOFU
(SECURITY.md limit).
"""

from __future__ import annotations

import argparse
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fusevault.encoding import b64e
from fusevault.http_answers import AnswerTooLarge, capped_request
from fusevault.links.owner import _taken_in, unique_name
from fusevault.store import replica
from fusevault.sync import key_mirror
from fusevault.sync.key_mirror import place
from fusevault.vault.model import names, sharing
from fusevault.vault.model.grants import record_doc
from fusevault.vault.model.nodes import ROOT_INODE
from unit.test_attack_43b_keys import _gwens_group
from unit.test_key_mirror import Owner, clock, pair, put  # noqa: F401 (fixtures)

# --- (1): wire bytes past the body's data

CAP = 64 * 1024
FLOOD = 4 * 1024 * 1024  # sixty times the raw cap


def _chunk_framing() -> Iterator[bytes]:
    yield b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    batch = (b"1;x=" + b"a" * 16000 + b"\r\nA\r\n") * 64
    for _ in range(FLOOD // len(batch) + 1):
        yield batch
    yield b"0\r\n\r\n"


def _interim_heads() -> Iterator[bytes]:
    batch = b"HTTP/1.1 100 Continue\r\n\r\n" * 4096
    for _ in range(FLOOD // len(batch) + 1):
        yield batch
    yield b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"


def _read_from(pieces: Iterator[bytes]) -> httpx.Response:
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            try:
                for piece in pieces:
                    conn.sendall(piece)
            except OSError:
                pass  # the client hung up

    threading.Thread(target=serve, daemon=True).start()
    try:
        with httpx.Client(timeout=10) as client:
            return capped_request(client, "GET", f"http://127.0.0.1:{listener.getsockname()[1]}/x", CAP,
                                  seconds=60)
    finally:
        listener.close()


def test_chunk_framing_counts_against_the_cap() -> None:
    with pytest.raises((AnswerTooLarge, httpx.HTTPError)):
        _read_from(_chunk_framing())


def test_interim_heads_count_against_the_cap() -> None:
    with pytest.raises((AnswerTooLarge, httpx.HTTPError)):
        _read_from(_interim_heads())


def test_an_honest_answer_in_small_chunks_after_an_interim_head_is_given_whole() -> None:
    """Control: framing of a few bytes a chunk (16 bytes of data each) around a body at the cap, after a
    ``100 Continue``, is an honest answer's: given whole."""
    body = b"x" * (CAP - 1024)

    def pieces() -> Iterator[bytes]:
        yield b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        yield b"".join(b"%x\r\n%s\r\n" % (len(body[at:at + 16]), body[at:at + 16])
                       for at in range(0, len(body), 16))
        yield b"0\r\n\r\n"

    assert _read_from(pieces()).content == body


def test_the_wire_count_is_each_answers_own() -> None:
    """Two answers on one kept-alive connection, each with 200 KiB of interim heads (within one
    answer's room, past two answers' room together): both given; the count is the answer's, not the
    connection's, and a request outside capped_request is not counted."""
    answer = (b"HTTP/1.1 100 Continue\r\n\r\n" * (200 * 1024 // 25)
              + b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[int] = []

    def serve() -> None:
        conn, _ = listener.accept()
        accepted.append(1)
        with conn:
            for _ in range(3):
                asked = b""
                while b"\r\n\r\n" not in asked:
                    asked += conn.recv(65536) or b"\r\n\r\n"
                conn.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        with httpx.Client(timeout=10) as client:
            assert capped_request(client, "GET", f"{url}/a", CAP).content == b"{}"
            assert capped_request(client, "GET", f"{url}/b", CAP).content == b"{}"
            assert client.get(f"{url}/c").content == b"{}"
    finally:
        listener.close()
    assert accepted == [1]


# --- (2): look-alikes of the root's kept names


@pytest.mark.parametrize("name", ["shared\u2800", "\u2800shared", "gr\u0a66ups", "gr\u09e6ups"])
def test_more_look_alikes_of_the_kept_names_take_another_name(name: str) -> None:
    root = type("Root", (), {"ino": ROOT_INODE, "children": {b"notes.txt": 8}})()
    assert names.looks_reserved(name.encode())
    assert unique_name(_taken_in(root), name.encode()) != name.encode()
    assert names.away_from_reserved(name.encode() + b"/x") == name.encode() + b" (2)/x"


# --- (3): $FUSEVAULT_VAULT and --mount


def test_the_vault_variable_does_not_override_a_mount_of_another_vault(monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    from fusevault import target
    from fusevault.cli import sharing as sharing_cli
    from fusevault.errors import MountPointError

    work, home = tmp_path / "mnt-work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    asked: list[str] = []
    monkeypatch.setattr(target, "fusevault_mounts", lambda: [str(work.resolve())])
    monkeypatch.setattr(target, "_vault_of", lambda mountpoint: "/vaults/work")
    monkeypatch.setattr(target, "_offline",
                        lambda args, request: asked.append(str(args.vault)) or {"shares": []})
    monkeypatch.setenv(target.VAULT_ENV, str(tmp_path / "personal"))
    monkeypatch.chdir(home)
    # `fusevault shares docs --mount /mnt/work --json`, $FUSEVAULT_VAULT naming her personal vault
    args = argparse.Namespace(vault=None, user="alice", passphrase_fd=None, passphrase_file=None,
                              path="docs", place=str(work), json=True)
    with pytest.raises(MountPointError):
        sharing_cli.cmd_shares(args)
    assert not asked


def _mounts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
            serving: dict[str, str]) -> list[tuple[str, dict]]:
    """Mounts under tmp_path serving the vaults given; what their control sockets are asked, recorded."""
    from fusevault import target
    from fusevault.fs import control

    mounts = {}
    for name, vault in serving.items():
        (tmp_path / name).mkdir()
        mounts[str((tmp_path / name).resolve())] = vault
    sent: list[tuple[str, dict]] = []
    monkeypatch.setattr(target, "fusevault_mounts", lambda: list(mounts))
    monkeypatch.setattr(target, "_vault_of", lambda mountpoint: mounts.get(mountpoint))
    monkeypatch.setattr(control, "request", lambda sock, request, timeout=None:
                        sent.append((str(sock), dict(request))) or {"ok": 1})
    monkeypatch.setattr(target, "_offline", lambda args, request: pytest.fail("opened a vault here"))
    return sent


def test_the_vault_variable_with_a_mount_of_its_vault_sends_the_path_there(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Control: --mount naming the variable's vault's mount, the PATH in no mount goes there as given."""
    from fusevault import paths, target

    sent = _mounts(monkeypatch, tmp_path, {"mnt-work": "/vaults/work"})
    monkeypatch.setenv(target.VAULT_ENV, "/vaults/work")
    (tmp_path / "home").mkdir()
    monkeypatch.chdir(tmp_path / "home")
    args = argparse.Namespace(vault=None, place=str(tmp_path / "mnt-work"))
    target.ask(args, {"cmd": "shares", "path": "docs"}, ("path",))
    assert sent == [(str(paths.socket_of(tmp_path / "mnt-work")), {"cmd": "shares", "path": "docs"})]


def test_the_vault_variable_refuses_a_mount_of_another_vault_beside_a_path_in_its_own(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """PATH in the variable's vault's mount, --mount in another vault's: every path named is judged."""
    from fusevault import target
    from fusevault.errors import MountPointError

    sent = _mounts(monkeypatch, tmp_path, {"mnt-work": "/vaults/work", "mnt-home": "/vaults/home"})
    monkeypatch.setenv(target.VAULT_ENV, "/vaults/home")
    args = argparse.Namespace(vault=None, place=str(tmp_path / "mnt-work"))
    with pytest.raises(MountPointError, match="names"):
        target.ask(args, {"cmd": "shares", "path": str(tmp_path / "mnt-home" / "docs")}, ("path",))
    assert sent == []


def test_a_path_and_a_mount_in_two_vaults_are_refused(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    """No variable: PATH in one mount, --mount in another; neither is taken over the other."""
    from fusevault import target
    from fusevault.errors import MountPointError

    sent = _mounts(monkeypatch, tmp_path, {"mnt-work": "/vaults/work", "mnt-home": "/vaults/home"})
    monkeypatch.delenv(target.VAULT_ENV, raising=False)
    args = argparse.Namespace(vault=None, place=str(tmp_path / "mnt-work"))
    with pytest.raises(MountPointError, match="name one vault"):
        target.ask(args, {"cmd": "shares", "path": str(tmp_path / "mnt-home" / "docs")}, ("path",))
    assert sent == []
    # Control: both in one mount, the request goes there
    target.ask(args, {"cmd": "shares", "path": str(tmp_path / "mnt-work" / "docs")}, ("path",))
    assert [request for _, request in sent] == [{"cmd": "shares", "path": "docs"}]


# --- control: the owner pins (54b (4))


def test_a_record_naming_the_servers_user_before_her_node_gives_way_to_hers(pair, clock) -> None:  # noqa: F811
    """Bob's key of her new file, served before her node as a record naming the server's own user (its
    own self-signed user document): once her node and her record come, hers is bob's key, pinned to her."""
    here, _ = pair
    her, _gwen, _group, doc_id, _ = _gwens_group(here, gwen_first=True, bound="gwen")
    bob = (key_mirror.names(doc_id) or ("", ""))[1]
    server = Owner()
    put(here, server.user)
    fid = uuid.uuid4().hex
    new_id = f"vfkey-u-{bob}-{her.id}-{fid}"

    def record(signer: Owner, epoch: int, sealed: bytes) -> dict:
        sig = signer.sign(record_doc(signer.id, fid, bob, epoch, sealed))["sig"]
        return {"_id": new_id, "type": sharing.FILE_KEY, "epoch": epoch, "key": b64e(sealed),
                "owner": signer.id, "fid": fid, "recipient": bob, "sig": sig}

    replica.store_revisions(here.store, [{**record(server, 5, b"the server's"), "_rev": "1-" + "a" * 32}])
    here.keys.arrived([new_id])
    put(here, her.node(fid, 1))
    replica.store_revisions(here.store, [{**record(her, 1, b"hers"), "_rev": "1-" + "b" * 32}])
    here.keys.arrived([new_id])
    here.keys.caught_up()
    here.keys._looked_at = -float("inf")
    here.refresh()
    here.keys.caught_up()
    end = sharing.read_key(place(here.layout, new_id))
    assert end is not None and end.key == b"hers", end
    assert replica.get_local(here.store, key_mirror._PINS + new_id) == {"owner": her.id,
                                                                        "key": her.user["public_sign"]}
