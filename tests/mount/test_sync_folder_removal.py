"""A folder removed on one device: gone on the other, unless something was put in it there meanwhile.

vault/tree/revival.py: a removal of a folder holding a live state here is not taken (edit beats
delete), and a live document naming a folder her removal took away brings it back.  These tests hold
its two sides against what they must never do: bring back a folder an ordinary ``rm -r`` removed
while both devices were online (its files' removals may come in the same batch as, or after, the
folder's), and against what they are for when the removal is deep (a folder brought back with the
folders above it).  Attack round 40b (5) and (6) are in tests/mount/test_trust_attack_40b.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import adversary
import httpx
import pytest
from conftest import fusevault, laptop_and_desktop, mounted, server_pids, settled, sync_status, wait_for

from fusevault.store import replica
from fusevault.vault.model.nodes import NODE
from mount.test_trust_attack_41a import _fid_of
from mount.test_trust_rollback import alarms


def _tree(m: Path) -> list[str]:
    return sorted(str(p.relative_to(m)) for p in m.rglob("*"))


def test_a_folder_removed_on_one_device_while_both_are_online_is_gone_on_both(tmp_path: Path) -> None:
    with laptop_and_desktop(tmp_path, ("keep.txt",)) as (server, laptop, a, desktop):
        b = tmp_path / "b"
        with mounted(desktop, b):
            for i in range(3):
                sub = a / "F" / f"sub{i}"
                sub.mkdir(parents=True)
                for j in range(5):
                    (sub / f"f{j}.txt").write_text(f"{i}/{j}")
            wait_for(lambda: settled(a) and settled(b) and _tree(a) == _tree(b), "both to show F")
            shutil.rmtree(a / "F")
            wait_for(lambda: settled(a) and settled(b) and not (b / "F").exists(), "F gone on the desktop")
            # A folder brought back is committed at once: two more rounds of both settling show it.
            for _ in range(2):
                wait_for(lambda: settled(a) and settled(b), "both to settle")
            assert _tree(a) == _tree(b) == ["keep.txt"]
            assert [x for x in alarms(a) + alarms(b) if x["kind"] != "ledger"] == []
        with mounted(desktop, b):
            assert _tree(b) == ["keep.txt"]
        assert fusevault("unmount", a, passphrase=None).returncode == 0
        wait_for(lambda: not server_pids(a), "the laptop's mount process to end")
        with mounted(laptop, a):
            assert _tree(a) == ["keep.txt"]


@pytest.mark.parametrize("deep", ["F/sub", "F/s/t/u"])
def test_a_file_saved_deep_in_a_tree_her_other_device_removed_brings_the_folders_back(
        tmp_path: Path, deep: str) -> None:
    """``[F/s/t/u]``: the removals of the four folders reach the desktop in one batch, taken in the
    order of their ids, which is random: unless each folder's comes after the one under it (one order
    in 24), a folder's removal was judged while the folder under it was still held with its own
    removal waiting, and counted as removed: the desktop lost the folders and showed no new.txt."""
    with laptop_and_desktop(tmp_path, ("keep.txt",)) as (server, laptop, a, desktop):
        (a / deep).mkdir(parents=True)
        (a / deep / "old.txt").write_text("old")
        (a / "F" / "other.txt").write_text("other")
        wait_for(lambda: settled(a), "the laptop's push")
        b = tmp_path / "b"
        with mounted(desktop, b):
            wait_for(lambda: (b / deep / "old.txt").exists() and settled(b), "the desktop's pull")
            server.kill()
            shutil.rmtree(a / "F")
            (b / deep / "new.txt").write_text("made while the laptop removed F")
            server.start()
            wait_for(lambda: settled(a) and settled(b) and _tree(a) == _tree(b) and (a / "F").exists(),
                     lambda: f"both to agree: {_tree(a)} {_tree(b)}")
            folders = [deep[:end] for end in range(len(deep) + 1) if end == len(deep) or deep[end] == "/"]
            expected = sorted([*folders, f"{deep}/new.txt", "keep.txt"])
            assert _tree(a) == expected, _tree(a)
            assert (a / deep / "new.txt").read_text() == "made while the laptop removed F"
            assert [x for x in alarms(a) + alarms(b) if x["kind"] in ("forged-write", "concurrent")] == []
        assert fusevault("unmount", a, passphrase=None).returncode == 0
        wait_for(lambda: not server_pids(a), "the laptop's mount process to end")
        with mounted(laptop, a):
            assert _tree(a) == expected


def test_a_folders_removal_served_alone_keeps_what_she_saved_under_its_subfolders(tmp_path: Path) -> None:
    """Attack round 42a (7): the laptop's ``rm -r F`` of F/s/t/u reaches the desktop as F's removal
    alone (a server serving the subfolders' removals later, or never): the desktop keeps F, its
    subfolders and the new.txt it saved in u meanwhile, and commits F again over the removal."""
    deep = "F/s/t/u"
    with laptop_and_desktop(tmp_path, ("keep.txt",)) as (server, laptop, a, desktop):
        (a / deep).mkdir(parents=True)
        (a / deep / "old.txt").write_text("old")
        wait_for(lambda: settled(a), "the laptop's push")
        folder = _fid_of(laptop, "F")
        b = tmp_path / "b"
        with mounted(desktop, b):
            wait_for(lambda: (b / deep / "old.txt").exists() and settled(b), "the desktop's pull")
            server.kill()
            (b / deep / "new.txt").write_text("made while the laptop removed F")
            shutil.rmtree(a / "F")
            assert fusevault("unmount", a, passphrase=None).returncode == 0
            wait_for(lambda: not server_pids(a), "the laptop's mount process to end")
            with adversary.store_of(laptop) as store:  # the laptop's removals, none pushed yet
                removal = store.get(folder)
                removal["_revisions"] = replica.revisions(replica.current_history(store, folder))
            assert removal.get("delete")
            server.start()
            url = f"{server.url}/vault"
            httpx.post(f"{url}/_bulk_docs", json={"docs": [removal], "new_edits": False},
                       timeout=30).raise_for_status()
            seq = adversary.Server(url).seq()
            wait_for(lambda: adversary.pulled_past(desktop, seq) and settled(b), "the desktop's pull")
            assert _tree(b) == sorted(["F", "F/s", "F/s/t", deep, f"{deep}/new.txt", f"{deep}/old.txt",
                                       "keep.txt"]), _tree(b)
            with mounted(laptop, a):  # its other removals pushed now: old.txt's taken, the folders kept
                wait_for(lambda: settled(a) and settled(b) and _tree(a) == _tree(b) and (a / "F").exists(),
                         lambda: f"both to agree: {_tree(a)} {_tree(b)}")
                assert _tree(a) == sorted(["F", "F/s", "F/s/t", deep, f"{deep}/new.txt", "keep.txt"])
                assert (a / deep / "new.txt").read_text() == "made while the laptop removed F"


def _committed(vault: Path, name: str) -> bool:
    try:
        return bool(_fid_of(vault, name))
    except AssertionError:  # not committed yet
        return False


def test_her_files_state_copied_under_a_made_up_revision_with_the_folders_removal_keeps_it(
        tmp_path: Path) -> None:
    """Attack round 43a (7): the laptop's ``rm -r F`` (it never saw new.txt, saved in F on the
    desktop) is served with new.txt's very state copied on top of itself under a revision the server
    makes up (``_rev`` is not signed), in one batch (written while the desktop's sync backs off), F's id
    sorting first (taken in first): the desktop keeps F and new.txt (the copy is the state it
    holds, no newer one)."""
    many = 8
    with laptop_and_desktop(tmp_path, ("keep.txt",)) as (server, laptop, a, desktop):
        for i in range(many):
            (a / f"F{i}").mkdir()
        wait_for(lambda: settled(a), "the laptop's push")
        b = tmp_path / "b"
        with mounted(desktop, b):
            wait_for(lambda: all((b / f"F{i}").exists() for i in range(many)) and settled(b),
                     "the desktop's pull")
            server.kill()
            for i in range(many):
                (b / f"F{i}" / f"new{i}.txt").write_text("made while the laptop removed F")
            wait_for(lambda: all(_committed(desktop, f"new{i}.txt") for i in range(many)),
                     "the desktop's commits")
            pick = next((i for i in range(many)
                         if _fid_of(desktop, f"F{i}") < _fid_of(desktop, f"new{i}.txt")), None)
            if pick is None:
                pytest.skip("no folder's id sorts before its file's (1 in 256)")
            folder, new = _fid_of(desktop, f"F{pick}"), _fid_of(desktop, f"new{pick}.txt")
            shutil.rmtree(a / f"F{pick}")
            assert fusevault("unmount", a, passphrase=None).returncode == 0
            wait_for(lambda: not server_pids(a), "the laptop's mount process to end")
            with adversary.store_of(laptop) as store:  # the laptop's removal, not pushed
                removal = store.get(folder)
                removal["_revisions"] = replica.revisions(replica.current_history(store, folder))
            assert removal.get("delete")
            server.start()
            url = f"{server.url}/vault"
            couch = adversary.Server(url)
            wait_for(lambda: couch.get(new) is not None and settled(b), "the desktop's push of new.txt")
            held = couch.get(new, revs="true")
            assert held is not None
            start, ids = held["_revisions"]["start"], held["_revisions"]["ids"]
            made_up = {"start": start + 1, "ids": ["f" * 32, *ids]}  # a child of its revision: current
            copy = dict(held, _rev=f"{start + 1}-{'f' * 32}", _revisions=made_up)
            # Both in one batch: written while the desktop's sync waits to try the server again.
            server.kill()
            wait_for(lambda: _retrying_in(b) >= 8, "the desktop's sync to back off")
            server.start()
            httpx.post(f"{url}/_bulk_docs", json={"docs": [removal, copy], "new_edits": False},
                       timeout=30).raise_for_status()
            seq = couch.seq()
            wait_for(lambda: adversary.pulled_past(desktop, seq) and settled(b), "the desktop's pull")
            saved = b / f"F{pick}" / f"new{pick}.txt"
            assert saved.exists(), _tree(b)
            assert saved.read_text() == "made while the laptop removed F"


def _retrying_in(m: Path) -> float:
    state = str(sync_status(m).get("state", ""))
    return float(state.split()[2]) if state.startswith("retrying in ") else 0.0


def test_a_removal_stored_but_not_taken_in_before_a_kill_brings_the_folder_back_at_the_next_mount(
        tmp_path: Path) -> None:
    """The desktop, away, saves F/new.txt and unmounts; the laptop removes F.  The removal reaches the
    desktop's store but the desktop never takes it in (as after a ``kill -9`` between the sync storing a
    batch and the mount taking it in): its next mount loads F's removal and new.txt naming F.  F comes
    back there (``linking.revive_for_orphans``), committed, and reaches the laptop."""
    with laptop_and_desktop(tmp_path, ("keep.txt",)) as (server, laptop, a, desktop):
        (a / "F").mkdir()
        (a / "F" / "x.txt").write_text("x")
        wait_for(lambda: settled(a), "the laptop's push")
        b = tmp_path / "b"
        with mounted(desktop, b):
            wait_for(lambda: (b / "F" / "x.txt").exists() and settled(b), "the desktop's pull")
        wait_for(lambda: not server_pids(b), "the desktop's mount process to end")
        couch = adversary.Server(f"{server.url}/vault")
        server.kill()
        with mounted(desktop, b):
            (b / "F" / "new.txt").write_text("saved on the desktop while away")
        wait_for(lambda: not server_pids(b), "the desktop's mount process to end")
        server.start()
        shutil.rmtree(a / "F")
        wait_for(lambda: settled(a), "the laptop's push of the removal")
        removed = [couch.get(d["_id"], revs="true") for d in couch.all(NODE) if d.get("delete")]
        assert removed, "the laptop's removals are on the server"
        with adversary.store_of(desktop) as store:
            replica.store_revisions(store, removed)  # stored, never taken in
        with mounted(desktop, b):
            assert _tree(b) == ["F", "F/new.txt", "keep.txt"], _tree(b)
            wait_for(lambda: settled(a) and settled(b) and _tree(a) == _tree(b),
                     lambda: f"both to agree: {_tree(a)} {_tree(b)}")
            assert (a / "F" / "new.txt").read_text() == "saved on the desktop while away"
