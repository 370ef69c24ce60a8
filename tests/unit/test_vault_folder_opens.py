"""Opening names in the vault folder (vault/format/inside.py ``open_file``/``read_in``, format/atomic.py,
vault/files/placements.py ``append_arrived``/``vf_for_reading``, vault/files/content.py ``_made_new``,
layout.py ``read_marker``): whoever may write the vault folder (no key; another local user of root's
shared vault) puts a link, a named pipe, a socket, a folder or a foreign file at a name fusevault opens.
Each is refused or replaced, never opened through, never waited on (attack round 16; its scenes are in
tests/mount/test_trust_attack_round16.py)."""

from __future__ import annotations

import os
import socket
import stat
import threading
import uuid
from pathlib import Path

import pytest

from fusevault.errors import CorruptData, VaultError
from fusevault.store.local import LocalStore
from fusevault.sync import content_docs
from fusevault.vault.files import closed, content, placements
from fusevault.vault.format import atomic, inside
from fusevault.vault.format import layout as layouts
from fusevault.vault.format.vf import HEADER, header_for
from fusevault.vault.services import opening

KINDS = ["link", "dangling-link", "fifo", "socket", "folder"]


def _plant(place: Path, kind: str, target: Path) -> None:
    if kind == "link":
        place.symlink_to(target)
    elif kind == "dangling-link":
        place.symlink_to(target.with_name("made-through-the-link"))
    elif kind == "fifo":
        os.mkfifo(place)
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        cwd = os.getcwd()
        os.chdir(place.parent)  # a socket's path is short: bound relative to its folder
        try:
            sock.bind(place.name)
        finally:
            os.chdir(cwd)
            sock.close()
    else:
        place.mkdir()


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "outside" / "authorized_keys"
    path.parent.mkdir()
    path.write_bytes(b"ssh-ed25519 AAAAowner owner@home\n")
    return path


def _outside_unchanged(victim: Path) -> None:
    assert sorted(p.name for p in victim.parent.iterdir()) == ["authorized_keys"]
    assert victim.read_bytes() == b"ssh-ed25519 AAAAowner owner@home\n"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("flags", [os.O_RDONLY, os.O_RDWR, os.O_WRONLY], ids=["r", "rw", "w"])
def test_open_file_refuses_what_is_no_regular_file(tmp_path: Path, victim: Path, kind: str,
                                                   flags: int) -> None:
    (tmp_path / "v" / "own").mkdir(parents=True)
    _plant(tmp_path / "v" / "own" / "x.vf", kind, victim)
    with pytest.raises(CorruptData):
        os.close(inside.open_file(tmp_path / "v", ["own"], "x.vf", flags))
    _outside_unchanged(victim)


def test_open_file_makes_new_files_only_with_o_excl(tmp_path: Path, victim: Path) -> None:
    (tmp_path / "v").mkdir()
    with pytest.raises(AssertionError):
        inside.open_file(tmp_path / "v", [], "x.vf", os.O_RDWR | os.O_CREAT)
    (tmp_path / "v" / "x.vf").symlink_to(victim)
    with pytest.raises(FileExistsError):  # a link at the name is never the new file
        inside.open_file(tmp_path / "v", [], "x.vf", os.O_RDWR | os.O_CREAT | os.O_EXCL)
    _outside_unchanged(victim)


@pytest.mark.parametrize("kind", KINDS)
def test_read_in_takes_what_is_no_regular_file_for_absent(tmp_path: Path, victim: Path, kind: str) -> None:
    _plant(tmp_path / "meta.inf", kind, victim)
    folder = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert inside.read_in(folder, "meta.inf") is None
    finally:
        os.close(folder)


@pytest.mark.parametrize("kind", ["link", "fifo"])
def test_atomic_write_never_opens_a_name_planted_beside_it(tmp_path: Path, victim: Path, kind: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The temporary name is random and made with O_EXCL | O_NOFOLLOW: even a planted name it is
    handed (here: the random part known) is refused, never written through nor waited on."""
    monkeypatch.setattr(atomic.secrets, "token_hex", lambda n: "known")
    _plant(tmp_path / f".k.vfkey.tmp{os.getpid()}.known", kind, victim)
    with pytest.raises(FileExistsError):
        atomic.atomic_write(tmp_path / "k.vfkey", b"sealed")
    _outside_unchanged(victim)
    assert not (tmp_path / "k.vfkey").exists()


def test_atomic_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    for data in (b"one", b"two"):
        atomic.atomic_write(tmp_path / "k.vfkey", data, durable=False)
    assert os.listdir(tmp_path) == ["k.vfkey"] and (tmp_path / "k.vfkey").read_bytes() == b"two"
    (tmp_path / "f").mkdir()
    with pytest.raises(CorruptData):
        atomic.atomic_write(tmp_path / "f", b"x")
    assert sorted(os.listdir(tmp_path)) == ["f", "k.vfkey"]


@pytest.fixture
def layout(tmp_path: Path) -> layouts.Layout:
    return layouts.create(tmp_path / "vault", {"kind": "local"})


def test_a_peers_records_go_to_a_new_vf_or_one_with_its_header(layout: layouts.Layout) -> None:
    owner, fid = uuid.uuid4().hex, uuid.uuid4().hex
    assert placements.append_arrived(layout, owner, fid, [b"one", b"two"]) == [(HEADER.size, 3),
                                                                                (HEADER.size + 3, 3)]
    assert placements.append_arrived(layout, owner, fid, [b"three"]) == [(HEADER.size + 6, 5)]
    path = layout.vf_path(owner, fid)
    assert path.read_bytes() == header_for(fid) + b"onetwothree" and path.stat().st_mode & 0o777 == 0o600
    fd = placements.vf_for_reading(layout, owner, fid)
    os.close(fd)


def test_a_peers_records_never_go_into_a_foreign_file(layout: layouts.Layout, victim: Path) -> None:
    """A regular file in the .vf's place that is not that file's (another file's header, anything of
    24 bytes or more) or a short one with other names (a hard link) is refused, never appended to."""
    owner, fid = uuid.uuid4().hex, uuid.uuid4().hex
    layout.own_dir(owner).mkdir(parents=True)
    foreign = layout.vf_path(owner, fid)
    foreign.write_bytes(header_for(uuid.uuid4().hex))
    with pytest.raises(CorruptData):
        placements.append_arrived(layout, owner, fid, [b"planted"])
    with pytest.raises(CorruptData):
        os.close(placements.vf_for_reading(layout, owner, fid))
    assert foreign.read_bytes()[HEADER.size:] == b""
    foreign.unlink()
    short = victim.with_name("short")
    short.write_bytes(b"short")
    os.link(short, foreign)
    with pytest.raises(CorruptData):
        placements.append_arrived(layout, owner, fid, [b"planted"])
    assert short.read_bytes() == b"short"


def test_records_are_never_read_through_a_link_to_be_sent(layout: layouts.Layout, tmp_path: Path) -> None:
    """A .vf replaced by a link to another file (root's, in a shared vault) is not read for a peer,
    though the places this replica keeps name offsets in it."""
    owner, fid, vid = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    placements.append_arrived(layout, owner, fid, [b"x" * 40])
    secret = tmp_path / "secret"
    secret.write_bytes(header_for(fid) + b"y" * 40)  # even one that looks like the file's own
    layout.vf_path(owner, fid).unlink()
    layout.vf_path(owner, fid).symlink_to(secret)
    rows = [(fid, vid, 0, owner, HEADER.size, 40)]
    assert content_docs.read_records(layout, rows) == []


@pytest.mark.parametrize("kind", KINDS)
def test_a_new_files_place_is_cleared_never_written_through(tmp_path: Path, victim: Path, kind: str) -> None:
    """What a crash left, or someone put, at a new file's name is removed (a link: the link), and the
    file made new; a folder there is refused."""
    _plant(tmp_path / "x.vfmeta", kind, victim)
    folder = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if kind == "folder":
            with pytest.raises(CorruptData):
                content._made_new(folder, "x.vfmeta", os.O_WRONLY)
        else:
            fd = content._made_new(folder, "x.vfmeta", os.O_WRONLY)
            os.write(fd, b"sidecar")
            os.close(fd)
            assert (tmp_path / "x.vfmeta").read_bytes() == b"sidecar"
    finally:
        os.close(folder)
    _outside_unchanged(victim)


@pytest.mark.parametrize("kind", ["link", "fifo", "folder"])
def test_a_vault_marker_that_is_no_file_is_refused_never_waited_on(layout: layouts.Layout, victim: Path,
                                                                    kind: str) -> None:
    marker = layout.root / layouts.MARKER
    good = marker.read_bytes()
    marker.unlink()
    victim.write_bytes(good)  # a link to a good marker is still refused: nothing is read through one
    _plant(marker, kind, victim)
    with pytest.raises(CorruptData):
        layouts.open_layout(layout.root)
    marker.unlink() if kind != "folder" else marker.rmdir()
    with pytest.raises(layouts.VaultNotFound):
        layouts.open_layout(layout.root)


def _writer_connected(fifo: Path, call, after: float = 0.0) -> bool:
    """Run ``call`` with a writer at the other end of ``fifo`` that connects, ``after`` seconds on
    (while ``call`` is not done), once a reader holds it open (so a reader that waits for one returns,
    and the test ends); whether it connected."""
    done, connected = threading.Event(), []

    def writer() -> None:
        if done.wait(after):
            return
        while not done.is_set():
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                connected.append(True)
                return
            except OSError:
                done.wait(0.005)  # ENXIO: no reader (yet)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        call()
    finally:
        done.set()
        thread.join()
    return bool(connected)


def _opened_by_someone(fifo: Path, call) -> bool:
    """Whether anyone opened ``fifo`` (for reading) while ``call`` ran."""
    return _writer_connected(fifo, call)


RESCUE = 10.0  # seconds: far past any look at a file; only a wait for a writer lasts that long


def _waited_on(fifo: Path, call) -> bool:
    """Whether ``call`` waited on ``fifo`` for a writer: one connects only ``RESCUE`` seconds on.  A
    look that opens it without waiting (O_NONBLOCK) and leaves it is no wait; a writer racing it at
    once took such a look for one (a flaky failure on a loaded machine)."""
    return _writer_connected(fifo, call, RESCUE)


def test_flushing_a_new_files_sidecar_never_waits_on_a_pipe_put_in_its_place(tmp_path: Path) -> None:
    """A new file's ``.vfmeta`` swapped for a named pipe before its flush: skipped (nothing of ours to
    make durable), never opened (before: the flush waited for a writer, holding the mount's thread)."""
    vf = tmp_path / "f.vf"
    vf.write_bytes(b"x")
    os.mkfifo(str(vf) + "meta")
    assert not _opened_by_someone(Path(str(vf) + "meta"), lambda: closed.flush_paths({str(vf): True}))
    assert not _opened_by_someone(Path(str(vf) + "meta"), lambda: atomic.datasync_file(str(vf) + "meta"))


@pytest.mark.parametrize("kind", ["dangling-link", "link", "fifo"])
def test_the_vault_lock_is_never_made_or_opened_through_what_is_in_its_place(
        layout: layouts.Layout, victim: Path, kind: str) -> None:
    """``vault.lock -> /etc/nologin`` (dangling: O_CREAT would make it, as root in a shared mount): the
    lock is refused in one line, nothing is made or opened where it points."""
    _plant(layout.root / "vault.lock", kind, victim)
    with pytest.raises(CorruptData):
        os.close(opening.hold(layout))
    _outside_unchanged(victim)
    (layout.root / "vault.lock").unlink()
    os.close(opening.hold(layout))  # a regular one is made, and taken
    assert stat.S_ISREG(os.lstat(layout.root / "vault.lock").st_mode)


def test_the_write_probe_is_never_opened_through_a_planted_name(layout: layouts.Layout, victim: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    class Known:
        hex = "k" * 32

    monkeypatch.setattr(layouts.uuid, "uuid4", lambda: Known)
    (layout.root / f".write-probe-{os.getpid()}-{'k' * 16}").symlink_to(victim)
    with pytest.raises((VaultError, OSError)):  # refused: the name is taken
        layouts.check_writable(layout.root)
    _outside_unchanged(victim)


@pytest.mark.parametrize("kind", ["dangling-link", "link", "fifo"])
def test_a_store_file_that_is_no_regular_file_is_refused(tmp_path: Path, victim: Path, kind: str) -> None:
    """``store.sqlite -> /etc/nologin``: SQLite follows a link for the database (not for its -wal and
    -shm), and would make and write the file it points to; refused, nothing made or written there."""
    (tmp_path / "vault").mkdir()
    _plant(tmp_path / "vault" / "store.sqlite", kind, victim)
    with pytest.raises(CorruptData):
        LocalStore(tmp_path / "vault" / "store.sqlite")
    _outside_unchanged(victim)


def test_the_stores_flush_never_waits_on_a_pipe_at_its_wal(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store.sqlite")
    try:
        store.put_many([{"_id": "a" * 32, "type": "x"}])
        wal = tmp_path / "store.sqlite-wal"
        moved = wal.rename(tmp_path / "kept-wal")  # SQLite's own stays open under another name
        os.mkfifo(wal)
        assert not _waited_on(wal, store.sync)
        moved.rename(wal)
    finally:
        store.close()
