"""Attack round 69d, in-process: a local user of root's shared mount.

(2) Every change of a Share, Group or user document makes every unlocked seat read and check again
    every Share, Group and user document of the vault, on the trio loop that serves every user's
    files.
    Attacker: bob, a mapped user of the shared mount (alice unlocked beside him), nothing more.
    Steps: bob shares S files of his own with alice (one `share` each: ordinary use; any vault
    whose users share much holds as many); then he asks `config set settle_seconds 3` (or `share`
    of one file again) in a loop.
    Seen: each such request writes one document (his user document, or one Share), and the commit's
    listener (store/watched.py: on the loop) has every unlocked seat run `Guests.reload`
    (vault/services/absorbing.py:103, `absorb`; vault/tree/guests.py:90): all S Shares read, shape
    checked, their signature and freshness checked, the grants indexed, every node of the seat's
    tree walked (`_drop_unreached`) - synchronously, for each seat.  Counted here: with S = 60, one
    `config set` checks 120 Shares on the loop (2 seats x S).  Measured (in-process, the Shares made
    with the listener off, then one reload): 2,000 Shares, 2 seats: 0.25 and 0.28 s of the loop per
    `config set` (~0.065 ms per Share per seat; the first one 6.4 s, alice's seat admitting the
    2,000 new guests); by extrapolation 5,000 Shares with 10 users unlocked ~3 s of the loop per
    request: bob's `config set` in a loop (one request at a time suffices: `Requests.turn` does not
    bound it) holds every user's file requests for seconds
    each time.  Building the Shares is itself quadratic: each `share` pays the reloads for the ones
    before, and `share` grows with S even with the listener off (2,000 made in 235 s; not looked
    into: which part, and whether on the loop).
    Expected (docs/SECURITY.md "The control socket cannot be used to take a mount down": "a long
    request ... is read on a worker thread from a snapshot of the store, never on the loop that
    serves every user's files"): a change costs the loop in proportion to what changed.
    Cause: `absorb` reloads the whole `Guests` for any document of the SHARING_TYPES, for every seat,
    whoever wrote it, and on the loop (`WatchedStore._tell` runs the listener there).
    Impact: medium-low (a flood that stalls the mount for every user, in proportion to the vault's
    shares and the users unlocked; honest vaults pay it too at each `share`, `config set`, `passwd`).
    Suggested fix: take in only the documents that changed (a Share's grant added or dropped in the
    index, a user's document re-observed), the signatures checked once per revision; or reload in a
    worker thread from a snapshot and swap the index on the loop.
    Fixed (docs/SECURITY.md "Round 69d (2)"): only the Shares that changed (and those of an owner whose
    pin changed) are read and checked again (`grants.SharesChecked`); (1)'s in-process tests follow.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import pytest

from fusevault.errors import InvalidInput
from fusevault.host_access import Direct
from fusevault.imports.importer import Importer, open_source
from fusevault.imports.source_paths import hold
from fusevault.vault.model import grants, sharing
from fusevault.vault.model import settings as user_settings
from fusevault.vault.model.settings import FOLDERS, Settings, check
from fusevault.vault.services.placing import NoKernel
from fusevault.vault.services.requests import Requests
from fusevault.vault.tree.guests import Guests
from fusevault.vault.volume import Volume
from inprocess.conftest import BOB_UID, FILE, ROOT, Ctx, on_volume

BOB = Ctx(BOB_UID, BOB_UID)
SHARES = 60


async def test_69d_2_one_config_set_costs_the_loop_what_changed_not_every_share_for_every_seat(
        shared, monkeypatch) -> None:
    drive, bob = shared.drive, shared.volumes["bob"]
    requests = Requests(bob, host=Direct())
    for i in range(SHARES):
        info, _ = await drive.create(ROOT, f"f{i}".encode(), FILE, 0o101, BOB)
        await drive.release(info.fh)
        answer = await requests.handle({"cmd": "share", "path": f"f{i}", "with": "alice", "perm": "read"})
        assert "error" not in answer, answer
    loop = threading.current_thread()
    on_loop = []
    checked = grants.signed_by_owner

    def counting(*args, **kwargs):
        if threading.current_thread() is loop:
            on_loop.append(args[1].get("_id"))
        return checked(*args, **kwargs)

    monkeypatch.setattr(grants, "signed_by_owner", counting)
    answer = await requests.handle({"cmd": "config", "set": {"settle_seconds": "3"}})
    assert answer["settings"]["settle_seconds"] == 3.0, answer
    shares = sum(1 for doc_id in on_loop if str(doc_id).startswith("share"))
    assert shares <= 10, f"one config set checked {shares} Shares on the loop ({SHARES} in the vault)"


async def _share_files(shared, count: int) -> tuple[Requests, list[str]]:
    """bob's ``count`` files f0.. shared with alice (read); their file ids."""
    drive, bob = shared.drive, shared.volumes["bob"]
    requests = Requests(bob, host=Direct())
    for i in range(count):
        info, _ = await drive.create(ROOT, f"f{i}".encode(), FILE, 0o101, BOB)
        await drive.release(info.fh)
        answer = await requests.handle({"cmd": "share", "path": f"f{i}", "with": "alice", "perm": "read"})
        assert "error" not in answer, answer
    return requests, [bob.resolve(f"f{i}".encode()).fid for i in range(count)]


def _as_read_whole(volume) -> tuple[list, dict]:
    """The seat's grants and roots as a whole read of the store gives them now."""
    whole = Guests.read(volume.store, volume.key.user_id, volume.trust)
    return sorted(map(repr, whole.grants)), whole.roots


async def test_69d_2_shares_taken_in_change_by_change_are_those_a_whole_read_gives(shared) -> None:
    """Shares made, ended and left alone, each taken in by the other seat from what changed only: her
    grants and the files they reach are what reading every Share again gives."""
    alice = shared.volumes["alice"]
    requests, fids = await _share_files(shared, 6)
    for i in (1, 4):
        answer = await requests.handle({"cmd": "unshare", "path": f"f{i}", "with": "alice"})
        assert "error" not in answer, answer
    answer = await requests.handle({"cmd": "config", "set": {"settle_seconds": "3"}})
    assert "error" not in answer, answer
    assert set(alice.sharing.roots) == {fids[i] for i in (0, 2, 3, 5)}  # the control: what she reaches
    grants, roots = _as_read_whole(alice)
    assert sorted(map(repr, alice.sharing.grants)) == grants
    assert alice.sharing.roots == roots


async def test_69d_2_a_share_body_rewritten_in_the_store_is_checked_again_when_it_changes(shared) -> None:
    """A Share whose body a store writer changes (READ made WRITE, her signature left as it was) is a
    changed document: checked again, refused, its grant gone from the other seat at once."""
    alice, bob = shared.volumes["alice"], shared.volumes["bob"]
    _, fids = await _share_files(shared, 3)
    assert alice.sharing.roots.get(fids[1]) is not None  # the control: hers before
    [doc] = [d for d in bob.store.iter_type(sharing.SHARE) if d.get("fid") == fids[1]]
    bob.store.put_many([{**doc, "perm": "WRITE"}])  # through the watched store: every seat told
    assert fids[1] not in alice.sharing.roots
    assert {fids[0], fids[2]} <= alice.sharing.roots.keys()
    grants, roots = _as_read_whole(alice)
    assert sorted(map(repr, alice.sharing.grants)) == grants and alice.sharing.roots == roots


# (1): the watched folder's sources are read with her rights, never from a kernel pseudo file system.

class _Recording(Direct):
    """Direct, noting which threads act as the user (``thread_as_user``) right now."""

    def __init__(self) -> None:
        super().__init__()
        self.inside: set[int] = set()

    @contextlib.contextmanager
    def thread_as_user(self):
        self.inside.add(threading.get_ident())
        try:
            yield
        finally:
            self.inside.discard(threading.get_ident())


def test_69d_1_every_read_of_a_source_is_made_with_the_users_rights(vault: Path, tmp_path: Path,
                                                                     monkeypatch) -> None:
    """The bytes of a source (read to hash it, then to copy it) are read in a thread acting as the user:
    a file the kernel checks at read() answers her, not root (procfs's ``stat``, ``%pK`` pointers)."""
    source = tmp_path / "inbox"
    source.mkdir()
    (source / "a.txt").write_bytes(b"hers\n" * 1000)
    host = _Recording()
    reads: list[bool] = []
    pread = os.pread

    def noting(fd: int, size: int, offset: int) -> bytes:
        reads.append(threading.get_ident() in host.inside)
        return pread(fd, size, offset)

    async def body(volume: Volume) -> str:
        importer = Importer(volume, Settings(source_dir_to_watch=str(source)), NoKernel(), host)
        await importer.load()
        monkeypatch.setattr(os, "pread", noting)
        try:
            outcome = (await importer.take("a.txt"))[0]
        finally:
            monkeypatch.setattr(os, "pread", pread)
            importer.close()
        return outcome

    assert on_volume(vault, body) == "new"  # the control: imported
    assert reads and all(reads), reads


def test_69d_1_a_folder_on_a_kernel_pseudo_file_system_is_refused_as_a_setting_and_at_the_watchs_start(
        tmp_path: Path, monkeypatch) -> None:
    for folder, name in (("/proc/self", "proc"), ("/sys/kernel", "sysfs")):
        for key in FOLDERS:
            with pytest.raises(InvalidInput, match=f"^{key}: {folder} is on the kernel's {name} file system"):
                check(Settings(**{key: folder}), str(tmp_path / "vault"), Direct())
        with pytest.raises(InvalidInput, match=f"is on the kernel's {name} file system"):
            hold(Direct(), Settings(source_dir_to_watch=folder), str(tmp_path / "vault"))
        # The watch's start judges the descriptor it holds, not only the name checked a moment before
        # (a folder swapped for one on procfs between the two).
        with monkeypatch.context() as patched:
            patched.setattr(user_settings, "check", lambda *args: None)
            with pytest.raises(InvalidInput, match=f"is on the kernel's {name} file system"):
                hold(Direct(), Settings(source_dir_to_watch=folder), str(tmp_path / "vault"))
    ordinary = tmp_path / "inbox"
    ordinary.mkdir()
    check(Settings(source_dir_to_watch=str(ordinary)), str(tmp_path / "vault"), Direct())  # the control
    os.close(hold(Direct(), Settings(source_dir_to_watch=str(ordinary)), str(tmp_path / "vault")))


def test_69d_1_a_source_on_a_kernel_pseudo_file_system_is_refused_on_its_descriptor(tmp_path: Path) -> None:
    """Judged on the descriptor opened (a procfs file bind-mounted into an ordinary folder is procfs's),
    closed once refused; a file of an ordinary folder opens (the control)."""
    proc = os.open("/proc/self", os.O_RDONLY | os.O_DIRECTORY)
    try:
        before = len(os.listdir("/proc/self/fd"))
        with pytest.raises(PermissionError, match="kernel's proc file system"):
            open_source(Direct(), proc, "stat")
        assert len(os.listdir("/proc/self/fd")) == before  # nothing left open
    finally:
        os.close(proc)
    (tmp_path / "a.txt").write_text("hers")
    folder = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with open_source(Direct(), folder, "a.txt") as opened:
            assert opened.read() == b"hers"
    finally:
        os.close(folder)
