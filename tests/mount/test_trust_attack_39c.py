"""Attack round 39c: the whole model with fresh eyes, as a server or peer attacker.

The attacker's tests, with the fixes made since (docs/SECURITY.md, "Attack round 39").

Holes (all fixed)
=================
1. A concurrent edit served as a descendant: the server hid her laptop's branch, let the desktop
   push its own edit, then served the laptop's body as the next revision.  The desktop showed the
   laptop's edit, its own gone from view, nothing said; a move out of a share was undone so.  Now
   said (a ``concurrent`` alarm: absorbing.py ``_served_over``), the desktop's edit kept in history,
   and re-keyed if under an older key.
   ``test_a_concurrent_edit_served_as_a_descendant_of_hers_does_not_drop_her_edit``,
   ``test_a_concurrent_edit_served_as_a_descendant_of_her_move_out_of_a_share_does_not_move_it_back``.
2. A concurrent edit met by her move out of a share (a re-key) was never settled: the settling read
   the versions before the re-key with the newest key and gave up at every arrival.  Now each
   version is opened under the key her wrapping of it names (conflict_rules.py ``descends``).
   ``test_a_concurrent_edit_met_by_her_move_out_of_a_share_is_kept``.
3. Her laptop's settling reaching the desktop before its closing of the desktop's leaf: a false
   "rollback" alarm (the suite's flaky two-device test).  Now closed quietly (ledger.py
   ``Ledger.replayed``).
   ``test_the_laptops_settling_reaching_the_desktop_before_its_branch_raises_no_alarm``.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import adversary
import pytest
from conftest import (
    PouchServer,
    first_device,
    fusevault,
    laptop_and_desktop,
    mounted,
    new_device,
    remount,
    settled,
    wait_for,
)

from mount.test_trust_attack_round28b import alarms, root_fid

# Some scenes stop the server and start it again: the devices retry it every second (conftest.py).
pytestmark = pytest.mark.usefixtures("quick_retry")


def _node_docs(couch: adversary.Server) -> dict[str, dict]:
    return {d["_id"]: d for d in couch.all("node")}


def _contents(mnt: Path) -> dict[str, bytes]:
    return {name: (mnt / name).read_bytes() for name in os.listdir(mnt) if (mnt / name).is_file()}


DESKTOP = b"the desktop's edit, made while apart"
LAPTOP = b"the laptop's edit, made while apart"


def test_a_concurrent_edit_served_as_a_descendant_of_hers_does_not_drop_her_edit(tmp_path: Path) -> None:
    with laptop_and_desktop(tmp_path, ("plan.txt",)) as (server, laptop, a, desktop):
        couch = adversary.Server(f"{server.url}/vault")
        root = root_fid(laptop)
        with mounted(desktop, tmp_path / "b") as b:
            wait_for(lambda: (b / "plan.txt").exists() and settled(b), "the desktop's first pull")
            server.kill()  # apart from here
            (b / "plan.txt").write_bytes(DESKTOP)
        server.start()
        before = _node_docs(couch)
        (a / "plan.txt").write_bytes(LAPTOP)
        wait_for(lambda: settled(a), "the laptop's push")
        after = _node_docs(couch)
        (fid,) = [f for f, d in after.items() if f != root and before[f]["enc"] != d["enc"]]
        laptops = after[fid]
        assert fusevault("unmount", a, passphrase=None).returncode == 0
        # The server hides the laptop's revision (a tombstone on its branch: no conflict for the
        # desktop to see) ...
        couch.delete(fid)
        with mounted(desktop, tmp_path / "b") as b:
            wait_for(lambda: settled(b) and couch.get(fid)["enc"] != laptops["enc"], "the desktop's push")
            assert (b / "plan.txt").read_bytes() == DESKTOP
            # ... and then serves the laptop's body as the next revision after the desktop's own.
            seq = couch.seq() + 1  # its change (read after it, her own push may come first)
            couch.put(laptops)
            wait_for(lambda: adversary.pulled_past(desktop, seq) and settled(b), "the desktop's pull")
            wait_for(lambda: (b / "plan.txt").read_bytes() != DESKTOP or alarms(b),
                     "the served revision taken in, or said")
            shown = _contents(b)
            said = alarms(b)
            assert DESKTOP in shown.values() or said, (
                f"her desktop's edit is gone from view, nothing said: {shown}, alarms {said}")


def _log_lines(text: str) -> list[str]:
    logs = Path(os.environ["FUSEVAULT_STATE_DIR"]) / "logs"
    return [line for p in sorted(logs.glob("mount-*.log"))
            for line in p.read_text(errors="replace").splitlines() if text in line]


def _everything(mnt: Path) -> dict[str, bytes]:
    """Every file under ``mnt`` (relative path: contents)."""
    return {str(p.relative_to(mnt)): p.read_bytes() for p in sorted(mnt.rglob("*")) if p.is_file()}


def _soon(check, seconds: float = 20.0) -> bool:
    """Whether ``check`` holds within ``seconds`` (no failure if not: the caller asserts with the detail)."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _bob_holds(vault: Path, fid: str) -> bool:
    """Whether bob's key file of alice's file opens to the file's current DEK."""
    from mount.test_trust_attack_round4 import _alice_dek, _bobs_dek

    try:
        return _bobs_dek(vault, fid) == _alice_dek(vault, fid)
    except AssertionError:
        return False  # no key file of his


LAPTOP_DRAFT = b"the laptop's edit of the draft, made while apart"
SECRET = b"the secret, never for bob"


def _moved_out_scene(tmp_path: Path, forged: bool) -> tuple[Path, str, Path, Path]:
    """proj shared with bob (READ); proj/secret.txt on both devices.  Apart: the laptop edits it, then
    the desktop moves it to private/ (her device takes bob's key back and gives it a new key) and writes
    the secret (the later edit).  The laptop pushes and is unmounted.  ``forged``: the server hides the
    laptop's branch (a tombstone on it) and, once the desktop has pushed, serves the laptop's body as
    the next revision after the desktop's own; else it passes both on (a conflict).  Yields, the
    desktop mounted and its pull past the server's changes: (desktop, fid, its mount, laptop)."""
    from mount.test_trust_writes import BOB, _admin

    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    try:
        couch = adversary.Server(url)
        laptop = first_device(url, tmp_path)
        _admin(laptop, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
        with mounted(laptop, tmp_path / "a") as a:
            (a / "proj").mkdir()
            (a / "private").mkdir()
            shared = fusevault("share", a / "proj", "--with", "bob", "--perm", "READ")
            assert shared.returncode == 0, shared.stderr
            wait_for(lambda: settled(a), "the first push")
            before = {d["_id"] for d in couch.all("node")}
            (a / "proj" / "secret.txt").write_bytes(b"a draft, in the project for a moment")
            wait_for(lambda: settled(a), "the file pushed")
            (fid,) = {d["_id"] for d in couch.all("node")} - before
            desktop = new_device(url, tmp_path, "desktop")
            with mounted(desktop, tmp_path / "b") as b:
                wait_for(lambda: (b / "proj" / "secret.txt").exists() and settled(b), "the desktop's pull")
                server.kill()  # apart from here
                (a / "proj" / "secret.txt").write_bytes(LAPTOP_DRAFT)
                os.rename(b / "proj" / "secret.txt", b / "private" / "secret.txt")  # out of bob's reach
                (b / "private" / "secret.txt").write_bytes(SECRET)  # the later edit
            assert not _bob_holds(desktop, fid)
            server.start()
            wait_for(lambda: settled(a), "the laptop's push")
            laptops = couch.get(fid)
        if forged:
            couch.delete(fid)  # the laptop's branch hidden: the desktop sees no conflict
        with mounted(desktop, tmp_path / "b") as b:
            wait_for(lambda: settled(b) and couch.get(fid)["enc"] != laptops["enc"], "the desktop's push")
            if forged:
                seq = couch.seq() + 1  # its change (read after it, her own push may come first)
                couch.put(laptops)  # served as the next revision after the desktop's own
                wait_for(lambda: adversary.pulled_past(desktop, seq) and settled(b), "the desktop's pull")
            else:  # the laptop's branch came with the mount's first pull; the settling pushed since
                wait_for(lambda: settled(b), "the desktop's settling")
            yield desktop, fid, b, laptop
    finally:
        server.stop()


moved_out_scene = contextlib.contextmanager(_moved_out_scene)


def test_a_concurrent_edit_served_as_a_descendant_of_her_move_out_of_a_share_does_not_move_it_back(
        tmp_path: Path) -> None:
    with moved_out_scene(tmp_path, forged=True) as (desktop, fid, b, _laptop):
        wait_for(lambda: not (b / "private" / "secret.txt").exists() or alarms(b),
                 "the served revision taken in, or said")
        in_proj = sorted(os.listdir(b / "proj"))
        said = alarms(b)
        with remount(desktop, b):  # her next unlock there: keys of her shares filled in
            wait_for(lambda: settled(b), "the sync after the unlock")
    bob_holds = _bob_holds(desktop, fid)
    assert ("secret.txt" not in in_proj and not bob_holds) or said, (
        f"her move out of proj undone, nothing said: proj holds {in_proj}, bob holds its key: {bob_holds}")



def test_a_concurrent_edit_met_by_her_move_out_of_a_share_is_kept(tmp_path: Path) -> None:
    """No forgery: the server passes both branches on, the desktop (current: the longer branch) settles
    the conflict, the laptop's edit kept as a conflict copy (or, at least, said)."""
    with moved_out_scene(tmp_path, forged=False) as (_desktop, _fid, b, laptop):
        kept = _soon(lambda: LAPTOP_DRAFT in _everything(b).values() or bool(alarms(b)))
        shown = _everything(b)
        assert shown["private/secret.txt"] == SECRET
        with mounted(laptop, tmp_path / "a") as a:  # and the laptop, where the edit was made
            wait_for(lambda: settled(a) and (a / "private" / "secret.txt").exists(), "the laptop's pull")
            on_laptop = _soon(lambda: LAPTOP_DRAFT in _everything(a).values() or bool(alarms(a)))
            laptop_shows = _everything(a)
        assert kept and on_laptop, (
            f"the laptop's concurrent edit is nowhere, nothing said: the desktop shows {shown}, the laptop "
            f"{laptop_shows}; the log: {_log_lines('could not settle')}")


def _generation(vault: Path, fid: str) -> int:
    return int(adversary.get(vault, fid)["_rev"].split("-", 1)[0])


def test_the_laptops_settling_reaching_the_desktop_before_its_branch_raises_no_alarm(tmp_path: Path) -> None:
    """Concurrent edits, the laptop's branch the longer (two edits), the desktop's the later edit: the
    laptop settles first (its branch current, the desktop's contents kept: committed over the desktop's
    state, which its signed ``over`` names) and the desktop gets that settling before it met the
    laptop's branch.  An honest server's order (the desktop was away meanwhile)."""
    with laptop_and_desktop(tmp_path, ("plan.txt",)) as (server, laptop, a, desktop):
        root = root_fid(laptop)
        fid = next(d["_id"] for d in adversary.docs(laptop, "node") if d["_id"] != root)
        start = _generation(laptop, fid)
        with mounted(desktop, tmp_path / "b") as b:
            wait_for(lambda: (b / "plan.txt").exists() and settled(b), "the desktop's first pull")
            server.kill()  # apart from here
            (a / "plan.txt").write_bytes(b"the laptop's first edit")
            wait_for(lambda: _generation(laptop, fid) == start + 1, "the laptop's first commit")
            (a / "plan.txt").write_bytes(b"the laptop's second edit")
            wait_for(lambda: _generation(laptop, fid) == start + 2, "the laptop's second commit")
            assert fusevault("unmount", a, passphrase=None).returncode == 0
            (b / "plan.txt").write_bytes(DESKTOP)  # the later edit
            server.start()
            wait_for(lambda: settled(b), "the desktop's push")
        with mounted(laptop, a):
            wait_for(lambda: settled(a) and len(os.listdir(a)) == 2
                     and (a / "plan.txt").read_bytes() == DESKTOP,
                     lambda: f"the laptop to settle: {_contents(a)}")
            wait_for(lambda: settled(a), "the laptop's settling pushed")
            assert alarms(a) == []
        with mounted(desktop, tmp_path / "b") as b:
            wait_for(lambda: settled(b) and len(os.listdir(b)) == 2,
                     lambda: f"the desktop's pull: {_contents(b)}")
            wait_for(lambda: settled(b), "the desktop settled")
            assert sorted(_contents(b).values()) == sorted([DESKTOP, b"the laptop's second edit"])
            assert alarms(b) == [], f"a false alarm: {alarms(b)}"
