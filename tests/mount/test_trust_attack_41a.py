"""Attack round 41a: red-team tests against the changes since c88664f (round 40's last fixes).

Targets: vault/tree/revival.py (``kept_over_removal``, ``revive``), arrivals.py ``link_clashing`` /
``crossing``, conflict_rules.py ``same_bytes``, absorbing.py ``_served_over`` / ``_through_a_writer``.
Real mounts (pouchdb-server on loopback, two devices of alice's).  Run on r41a at da64a3d+ (fusevault/
as at fd4f959): the whole module, 5 passed and 8 xfailed (holes 1, 1b, 2 also twice before 1c and 3
were added; 1c and 3 each again on their own); each xfail also run with ``--runxfail`` to see it fail
on its own assertion.  Since, all three holes are fixed (docs/SECURITY.md, "Attack round 41"):
(1) ``revival._live`` counts only what this device put in the folder, as the store holds it now;
(2) ``absorbing._loops`` takes the batch's later states of the folders on the loop first, and a
loop no move of this device's closes waits for the next arrival; (3) ``history.made_over(...,
first_only=True)``: a version rewritten (another revision, or a branch beside it) proves no chain.
The xfail marks are gone; each test failed before its fix.

A finding that shapes both holes: pouchdb-server stores the documents of one ``_bulk_docs`` in the
order of their ids, not the order sent (seen: the laptop committed x.txt's move before F's removal,
pushed in one request; the server's feed listed F's removal first whenever F's id sorted first, 3 runs
of 5).  And a device that was away gets each document once, at its LAST change: a document changed
again after a removal comes after it.  So "the folder's change before its file's" is no promise of
the feed, from any server; a server can also choose the order.

Holes
=====

1. **A folder removed after its file was moved out (or its trash emptied) comes back, on both
   devices (medium: legitimate use, no attacker; a deleted folder resurrected, unsaid, on the very
   device that deleted it; any server can do it at will by ordering the feed).**
   Attack (plain use): F/x.txt on both devices; on the laptop ``mv F/x.txt .; rmdir F``.
   ``[together]``: both devices mounted, the two changes in one push (F's id sorting before x's).
   ``[asleep-edit]``, ``[asleep-rename]``: the desktop unmounted, each change pushed apart, then
   x.txt written again / renamed; the desktop mounts.  (1b): the desktop unmounted, the laptop
   ``rm -r F``, then empties its trash (``retention --trash 0``, ``gc``); the desktop mounts.
   Seen (2 runs of 2 each, plus 5 of 8 runs of a first version of the control where it was the id
   order): both devices end with an empty F (1b: the laptop an empty F, the desktop F/x.txt), no
   alarm; the desktop's log "a removal of a folder that holds what was put in it meanwhile: kept".
   Control (move pushed before the removal, the desktop mounted; or rm -r without the purge): F stays
   removed on both.
   Cause: fusevault/vault/tree/revival.py:62-69 ``_live``: a child counts as "live" when the store's
   CURRENT document of it is not a removal, whatever folder that document puts it in (x.txt's stored
   state names the root: it left F), or when the store holds no live row for it at all (``doc is
   None``: a purged file's tombstone; the tombstone itself is refused by the sync as "would lose what
   this replica holds live", so the desktop also shows F/x.txt for good).  The folder's removal is
   judged (absorbing.py:265) before the rest of the batch moves the child out, so
   ``kept_over_removal`` keeps F and commits it again over the removal (revival.py:52-57), and that
   commit brings F back on the laptop.
   Impact: ``rmdir`` after moving things out, or ``rm -r`` and emptying the trash, undone about half
   the time on common use (every time when the other device was away and the file changed after);
   the user cannot tell why a folder comes back; it happens again for every such folder.  A server
   (no keys) can bring back any folder she emptied and removed by listing the removal first.
   Fix: a child counts only if the stored state that is its current one (or the tree's, once the
   whole batch is taken in) still names this folder, and a tombstone never counts; better, judge a
   folder's removal after the rest of its batch (``absorb_arrivals``: removals of folders last, then
   ``kept_over_removal`` against the tree as it stands).
   (1c) The same on a WRITE member's device: alice's proj shared with bob (WRITE), proj/sub/s.txt seen
   by his device; bob unmounted; alice ``mv proj/sub/s.txt proj/; rmdir proj/sub``, then writes
   proj/s.txt again; bob mounts.  Seen (3 runs of 3): bob's device shows proj/sub (empty) for good,
   alice's does not; no alarm on either.  Then (``R41A_BOB_WRITES=1``, 1 run) bob saves
   proj/sub/bobs.txt in the folder he still sees: alice's device brings her removed sub back
   (``revive``: he may write in proj), with his file, unsaid.  A guest folder kept "until its owner's
   device says" (revival.py:53-57) never hears from her: her device took its own removal long ago.
   Control (no later write of s.txt): sub gone on both.
   Tests: ``test_a_folder_removed_after_its_file_was_moved_out_stays_removed[together]``,
   ``[asleep-edit]``, ``[asleep-rename]``, ``test_a_folder_removed_and_its_trash_emptied_while_her_
   other_device_slept_stays_removed`` (xfail); controls ``test_control_a_folder_removed_after_its_
   file_was_moved_out_stays_removed``, ``test_control_a_folder_removed_while_her_other_device_slept_
   stays_removed`` (pass); (1c) ``test_a_writers_device_does_not_keep_her_folder_emptied_and_removed_
   while_it_was_away`` (xfail), control ``test_control_a_writers_device_does_not_keep_her_folder_
   removed_while_it_was_away`` (pass).

2. **One device's own two moves that swap two folders' nesting are taken for "crossing moves" and
   undone, on both devices (medium: legitimate use, no attacker; her move silently reverted, on the
   device that made it too; any server can do it by ordering the feed).**
   Attack (plain use): P/Q (each with a file) on both devices; on the laptop ``mv P/Q Q; mv P Q/P``.
   ``[together]``: both mounted, one push (P's id sorting before Q's).  ``[asleep]``: the desktop
   unmounted, the moves pushed apart, then Q renamed to R (its later state comes after P's move); the
   desktop mounts.
   Seen (2 runs of 2 each): both devices end with P and Q (R) side by side at the root: the move of
   P into Q is gone everywhere, no alarm.  Control (both mounted, a push between the moves): Q/P on
   both.
   Cause: fusevault/vault/tree/arrivals.py:143-145 ``may_take`` and :229-235 ``crossing``, with
   absorbing.py:257-263: P's move arrives while the desktop's tree still holds Q inside P (Q's move
   out is later in the feed or in the batch), ``makes_cycle`` is true, her signature makes it
   "crossing", and the desktop commits P over it where it held it.  Nothing asks whether the state
   that closes the loop here is one the arriving move was made over (her ``over`` names it: the
   laptop had taken Q's move before it moved P) or whether the rest of the batch undoes the loop.
   Before round 40b (8) the same was refused as a forgery (said); now it is silent and committed.
   Impact: reorganising folders (the nesting swapped) is reverted about half the time on common use,
   always when the other device was away and the inner folder changed after.
   Fix: call a loop "crossing" only when the state here that closes it is concurrent with the
   arriving move (not covered by its ``over`` / not a state of the same device it was made over);
   and judge loops after the whole batch is placed (a document later in the batch may open the loop),
   as ``break_cycles`` does at load.
   Tests: ``test_one_devices_moves_that_swap_two_folders_nesting_are_kept[together]``, ``[asleep]``
   (xfail); control ``test_control_one_devices_moves_that_swap_two_folders_nesting_are_kept`` (pass).

3. **A concurrent edit served over hers, hidden with no alarm, "through" a writer's version planted at
   the base version's id (medium-high: the one alarm that tells a rewritten history is silenced; her
   desktop's edit leaves view unsaid; a WRITE member who can write the database, or the server with
   one member's signature).**
   Attack: round 39c (1)'s scene (docs shared with bob, WRITE): her desktop and laptop edit
   docs/notes.txt apart over the version B ("first"); the server hides the laptop's revision; the
   desktop pushes its edit (head D).  Bob seals and signs a version document AT THE ID B (the AEAD's
   associated data binds (fid, vid): he holds the file key, so he can), its sealed fields B's own but
   ``parents: [D]`` and ``author: bob``; it is stored as a new revision of document B on the server.
   Then the laptop's body is served as the revision after the desktop's.
   Seen (5 runs of 5): the desktop shows the laptop's edit; its own edit is gone from view; no alarm
   at all (``fusevault status`` empty).  Its edit stays in ``.versions`` and ``fusevault history``
   (as Out of reach says), but ``history`` now lists her base version "first" with AUTHOR bob.
   Control (no planted document; round 40a's test): said,
   ``concurrent``.
   Cause: fusevault/vault/services/absorbing.py:433-436 with history.py:115-143 ``made_over``: the
   walk from the served head takes whatever document the store holds at each version id
   (history.py:132 ``store.get(vid)``): the laptop's version names B (her signature), the document at
   B now names D, so "D is in the served state's history, through a version made directly over it";
   ``_through_a_writer`` (absorbing.py:445-458) then finds bob's signature and WRITE (``version_ok``)
   and the alarm is skipped.  Nothing checks that the document at B is the one this device held (a
   version is immutable; the sync took a second revision of it), nor that the served version's own
   parents (signed by her) reach the writer's version.
   Impact: the documented floor for a history rewritten by the server ("said: a concurrent alarm",
   Out of reach) no longer holds against a server with one WRITE member's help (or a member with the
   database's password alone, as round 40b (2) assumes members have): her edit on one device is
   dropped from view on it silently.  The planted document also rewrites her base version's author
   and parents in the file's history.
   Fix: in ``made_over`` (and everywhere a version is read by id), take only the version document
   this device first stored at that id (a new revision of a version document is refused and said:
   versions are immutable; or check the document's signer/``author`` against the state that named
   it); and require the writer's version to be one this device judged when it arrived as a node
   state (his signed node document naming it as head), not any document found in the walk.
   Tests: ``test_a_concurrent_edit_served_over_hers_is_said_even_through_a_planted_writers_version``
   (xfail); control ``test_control_a_concurrent_edit_served_over_hers_is_said`` (pass).

What held
=========

- ``revive`` against a replay of her own older child state on a device with memory (``_replay``
  checks the ledger first); a writer's document needs WRITE where the folder was and a known place.
- ``link_clashing``: the rule is the same on every device (ctime, then fid), said as ``name-clash``;
  a replay (older ctime) never takes the name of a newer file.  A WRITE member who forges a ctime far
  in the future keeps the name over her file, said (within what WRITE allows anyway; not tested).
- Genuinely crossing moves on her two devices (the round 40b test), and rm -r with the other device
  online or away with no later change of a child: nothing came back (controls).
- ``same_bytes``: read-only, bounded (64 MiB, equal sizes), a version that does not read gives a copy.

Not tried
=========

- False alarms of ``_served_over`` in legitimate three-device use; whether the planted version
  document of hole 3 can also change what an old version reads (its manifest) - a question for the
  sync's handling of a second revision of a version document, older than this change set.
- ``same_bytes`` dropping the loser's names or mode (rule 4 then keeps the keeper's names; a
  rename or chmod made with the same bytes on the losing side is lost, unsaid): read only.
- A third device of hers: ``revive`` of her own folder ignores ``place_unknown`` for her own
  documents, so a folder her laptop moved out of a share and removed could be brought back into the
  share where the desktop last saw it, by a file a third device put in it.  Read only.
- kill -9 between the removals of an rm -r; group commit windows (read: ``pending`` keeps the order
  of the requests, and the children's removals of an rm -r are ``delete`` states, never "live").
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

import pytest
from conftest import fusevault, laptop_and_desktop, mounted, settled, wait_for

from mount.test_trust_rollback import alarms
from mount.test_trust_writes import _node_fid


def _all_alarms(m: Path) -> list[dict]:
    return [x for x in alarms(m) if x["kind"] != "ledger"]


def _tree(m: Path) -> list[str]:
    return sorted(str(p.relative_to(m)) for p in m.rglob("*"))


def _keep_logs(tmp_path: Path) -> None:
    """The mounts' logs, kept beside the test's files (the state folder goes with the session)."""
    logs = Path(os.environ["FUSEVAULT_STATE_DIR"]) / "logs"
    if logs.is_dir():
        shutil.copytree(logs, tmp_path / "logs", dirs_exist_ok=True)


# --- (1) a folder whose file was moved out, then removed, comes back on both devices


def _fid_of(vault: Path, name: str) -> str:
    """The fid of alice's live node named ``name`` (read from the store, the mount may run)."""
    return _node_fid(vault, "alice", name)


def _moved_out_and_removed(tmp_path: Path, how: str) -> dict[str, object]:
    """Folders F<i> each holding x<i>.txt on both devices; on the laptop ``mv F/x.txt .; rmdir F``
    for one of them (``F``, ``x.txt`` below): "together" (both mounted; one push holds both changes,
    F's file id sorting before x.txt's), "apart" (both mounted; the move pushed before the removal),
    "asleep-edit" / "asleep-rename" (the desktop unmounted; move and removal pushed apart, then
    x.txt written again / renamed; the desktop mounts after).  Returns each device's tree and
    alarms once both agree (and a few seconds more)."""
    out: dict[str, object] = {}
    many = 14 if how == "together" else 1
    with laptop_and_desktop(tmp_path, ("keep.txt",)) as (server, laptop, a, desktop):
        for i in range(many):
            (a / f"F{i}").mkdir()
            (a / f"F{i}" / f"x{i}.txt").write_bytes(b"x")
        wait_for(lambda: settled(a), "the laptop's push")
        pick = next((i for i in range(many) if how != "together"
                     or _fid_of(laptop, f"F{i}") < _fid_of(laptop, f"x{i}.txt")), None)
        assert pick is not None, "no folder's id sorts before its file's (1 in 16384)"
        folder, name = f"F{pick}", f"x{pick}.txt"
        b = tmp_path / "b"
        with contextlib.ExitStack() as stack:
            stack.enter_context(mounted(desktop, b))
            wait_for(lambda: (b / folder / name).exists() and settled(b), "the desktop's pull")
            if how.startswith("asleep"):
                stack.close()
            os.rename(a / folder / name, a / name)
            if how != "together":
                wait_for(lambda: settled(a), "the laptop's push of the move")
            os.rmdir(a / folder)
            wait_for(lambda: settled(a), "the laptop's push of the removal")
            final = name
            if how == "asleep-edit":
                (a / name).write_bytes(b"edited after")
            elif how == "asleep-rename":
                final = "y.txt"
                os.rename(a / name, a / final)
            wait_for(lambda: settled(a), "the laptop's later push")
            if how.startswith("asleep"):
                stack.enter_context(mounted(desktop, b))
            wait_for(lambda: settled(b) and (b / final).exists() and not (b / name if final != name
                                                                          else b / folder / name).exists(),
                     "the desktop's pull")
            time.sleep(3)
            wait_for(lambda: settled(a) and settled(b) and _tree(a) == _tree(b),
                     lambda: f"both to agree: {_tree(a)} {_tree(b)}")
            out["laptop"], out["desktop"] = (_tree(a), _all_alarms(a)), (_tree(b), _all_alarms(b))
            out["folder"] = folder
    _keep_logs(tmp_path)
    return out


@pytest.mark.parametrize("how", ["together", "asleep-edit", "asleep-rename"])
def test_a_folder_removed_after_its_file_was_moved_out_stays_removed(tmp_path: Path, how: str) -> None:
    out = _moved_out_and_removed(tmp_path, how)
    for device in ("laptop", "desktop"):
        assert out["folder"] not in out[device][0], out


def test_control_a_folder_removed_after_its_file_was_moved_out_stays_removed(tmp_path: Path) -> None:
    out = _moved_out_and_removed(tmp_path, "apart")
    for device in ("laptop", "desktop"):
        assert out[device] == (["keep.txt", "x0.txt"], []), out


# --- (2) one device's own two moves (Q out of P, then P into Q) taken for crossing moves: undone


def _swapped_nesting(tmp_path: Path, how: str) -> dict[str, object]:
    """Folders P<i>/Q<i> (Q inside P, each with a file) on both devices; on the laptop, for one pair,
    ``mv P/Q Q; mv P Q/P`` (the nesting swapped, on one device): "together" (both mounted, one push
    holding both moves, P's id sorting before Q's), "apart" (both mounted, a push between the moves),
    "asleep" (the desktop unmounted, a push between; then Q renamed to R, so Q's later state comes after
    P's move; the desktop mounts after).  Returns each device's tree and alarms once both agree."""
    out: dict[str, object] = {}
    many = 14 if how == "together" else 1
    with laptop_and_desktop(tmp_path, ("keep.txt",)) as (server, laptop, a, desktop):
        for i in range(many):
            (a / f"P{i}" / f"Q{i}").mkdir(parents=True)
            (a / f"P{i}" / f"p{i}.txt").write_bytes(b"p")
            (a / f"P{i}" / f"Q{i}" / f"q{i}.txt").write_bytes(b"q")
        wait_for(lambda: settled(a), "the laptop's push")
        pick = next((i for i in range(many) if how != "together"
                     or _fid_of(laptop, f"P{i}") < _fid_of(laptop, f"Q{i}")), None)
        assert pick is not None, "no P's id sorts before its Q's (1 in 16384)"
        p, q = f"P{pick}", f"Q{pick}"
        b = tmp_path / "b"
        with contextlib.ExitStack() as stack:
            stack.enter_context(mounted(desktop, b))
            wait_for(lambda: (b / p / q / f"q{pick}.txt").exists() and settled(b), "the desktop's pull")
            if how == "asleep":
                stack.close()
            os.rename(a / p / q, a / q)
            if how != "together":
                wait_for(lambda: settled(a), "the laptop's push of the first move")
            os.rename(a / p, a / q / p)
            wait_for(lambda: settled(a), "the laptop's push of the second move")
            top = q
            if how == "asleep":
                top = f"R{pick}"
                os.rename(a / q, a / top)
                wait_for(lambda: settled(a), "the laptop's push of the rename")
                stack.enter_context(mounted(desktop, b))
            wait_for(lambda: settled(b) and (b / top).exists(), "the desktop's pull")
            time.sleep(3)
            try:
                wait_for(lambda: settled(a) and settled(b) and _tree(a) == _tree(b),
                         lambda: f"both to agree: {_tree(a)} {_tree(b)}", timeout=30)
            except pytest.fail.Exception:
                pass
            out["laptop"], out["desktop"] = (_tree(a), _all_alarms(a)), (_tree(b), _all_alarms(b))
            out["want"] = f"{top}/{p}/p{pick}.txt"
    _keep_logs(tmp_path)
    return out


@pytest.mark.parametrize("how", ["together", "asleep"])
def test_one_devices_moves_that_swap_two_folders_nesting_are_kept(tmp_path: Path, how: str) -> None:
    out = _swapped_nesting(tmp_path, how)
    for device in ("laptop", "desktop"):
        assert out["want"] in out[device][0], out


def test_control_one_devices_moves_that_swap_two_folders_nesting_are_kept(tmp_path: Path) -> None:
    out = _swapped_nesting(tmp_path, "apart")
    for device in ("laptop", "desktop"):
        assert out[device] == (["Q0", "Q0/P0", "Q0/P0/p0.txt", "Q0/q0.txt", "keep.txt"], []), out


# --- (1b) rm -r, then the trash emptied, while her other device slept: the folder comes back


def _removed_and_purged_while_away(tmp_path: Path, purge: bool) -> dict[str, object]:
    """F/x.txt on both; the desktop unmounted; the laptop ``rm -r F`` and (``purge``) empties its trash
    (``retention --trash 0``, ``gc``); the desktop mounts.  Each device's tree and alarms once agreed."""
    out: dict[str, object] = {}
    with laptop_and_desktop(tmp_path, ("keep.txt",)) as (server, laptop, a, desktop):
        (a / "F").mkdir()
        (a / "F" / "x.txt").write_bytes(b"x")
        wait_for(lambda: settled(a), "the laptop's push")
        b = tmp_path / "b"
        with mounted(desktop, b):
            wait_for(lambda: (b / "F" / "x.txt").exists() and settled(b), "the desktop's pull")
        shutil.rmtree(a / "F")
        wait_for(lambda: settled(a), "the laptop's push of the removal")
        if purge:
            for args in (("retention", a, "--trash", "0"), ("gc", a)):
                done = fusevault(*args, passphrase=None)
                assert done.returncode == 0, done.stderr
            wait_for(lambda: settled(a), "the laptop's push of the purge")
        with mounted(desktop, b):
            wait_for(lambda: settled(b), "the desktop's pull")
            time.sleep(3)
            try:
                wait_for(lambda: settled(a) and settled(b) and _tree(a) == _tree(b),
                         lambda: f"both to agree: {_tree(a)} {_tree(b)}", timeout=20)
            except pytest.fail.Exception:
                pass
            out["laptop"], out["desktop"] = (_tree(a), _all_alarms(a)), (_tree(b), _all_alarms(b))
    _keep_logs(tmp_path)
    return out


def test_a_folder_removed_and_its_trash_emptied_while_her_other_device_slept_stays_removed(
        tmp_path: Path) -> None:
    out = _removed_and_purged_while_away(tmp_path, purge=True)
    assert "F" not in out["laptop"][0], out  # the device that removed it and emptied its trash


def test_control_a_folder_removed_while_her_other_device_slept_stays_removed(tmp_path: Path) -> None:
    out = _removed_and_purged_while_away(tmp_path, purge=False)
    for device in ("laptop", "desktop"):
        assert out[device] == (["keep.txt"], []), out


# --- (1c) the same on a WRITE member's device: her removed folder kept there for good


def _sub_emptied_while_bob_away(tmp_path: Path, later: bool) -> dict[str, object]:
    """alice's proj shared with bob (WRITE), proj/sub/s.txt seen by bob's device; bob unmounted; alice
    ``mv proj/sub/s.txt proj/; rmdir proj/sub`` (pushed apart) and (``later``) writes proj/s.txt again;
    bob mounts.  What each shows of proj once both settled (and a few seconds more)."""
    from conftest import PouchServer

    from mount.test_trust_attack_39b import _proj_with_bob
    from mount.test_trust_writes import BOB

    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    out: dict[str, object] = {}
    try:
        laptop, bobs = _proj_with_bob(url, tmp_path)
        b = tmp_path / "b"
        with mounted(laptop, tmp_path / "a") as a:
            theirs = b / "shared" / "alice" / "proj"
            (a / "proj" / "sub").mkdir()
            (a / "proj" / "sub" / "s.txt").write_text("s")
            wait_for(lambda: settled(a), "her push")
            with mounted(bobs, b, "--user", "bob", passphrase=BOB):
                wait_for(lambda: (theirs / "sub" / "s.txt").exists() and settled(b), "bob's pull")
            os.rename(a / "proj" / "sub" / "s.txt", a / "proj" / "s.txt")
            wait_for(lambda: settled(a), "her push of the move")
            os.rmdir(a / "proj" / "sub")
            wait_for(lambda: settled(a), "her push of the removal")
            if later:
                (a / "proj" / "s.txt").write_text("s, edited after")
                wait_for(lambda: settled(a), "her later push")
            with mounted(bobs, b, "--user", "bob", passphrase=BOB):
                wait_for(lambda: settled(b) and (theirs / "s.txt").exists(), "bob's pull")
                time.sleep(4)
                wait_for(lambda: settled(a) and settled(b), "both settled")
                out["alice"] = _tree(a / "proj"), _all_alarms(a)
                out["bob"] = _tree(theirs), _all_alarms(b)
                if later and (theirs / "sub").is_dir() and os.environ.get("R41A_BOB_WRITES"):
                    (theirs / "sub" / "bobs.txt").write_text("bob's, in the folder he still sees")
                    wait_for(lambda: settled(b), "bob's push")
                    time.sleep(4)
                    wait_for(lambda: settled(a), "her pull")
                    out["alice after"] = _tree(a / "proj"), _all_alarms(a)
    finally:
        server.stop()
        _keep_logs(tmp_path)
    return out


def test_a_writers_device_does_not_keep_her_folder_emptied_and_removed_while_it_was_away(tmp_path: Path):
    out = _sub_emptied_while_bob_away(tmp_path, later=True)
    assert "sub" not in out["alice"][0] and "sub" not in out["bob"][0], out


def test_control_a_writers_device_does_not_keep_her_folder_removed_while_it_was_away(tmp_path: Path):
    out = _sub_emptied_while_bob_away(tmp_path, later=False)
    assert out["alice"][0] == out["bob"][0] == ["notes.txt", "s.txt"], out


# --- (3) a concurrent edit served over hers, "through" a writer's version planted at the base's id


DESKTOP = "the desktop's edit, made while apart"
LAPTOP = "the laptop's edit, made while apart"


def _forged_base(laptop: Path, fid: str, base: str, desktop_head: str) -> dict:
    """bob's (WRITE on docs) version document at the id of the base version ``base``: the base's own
    sealed fields, but made over the desktop's head, sealed under the file's key, signed by him."""
    import json

    import adversary

    from fusevault.crypto import aead
    from fusevault.crypto.signing import sign_doc
    from fusevault.encoding import b64e
    from fusevault.vault.model.history import version_plain
    from mount.test_moving_out_of_a_share import _current_dek
    from mount.test_trust_writes import BOB, _key

    dek = _current_dek(laptop, fid)
    original = adversary.get(laptop, base)
    bob = _key(laptop, "bob", BOB)
    plain = {**version_plain(original, dek), "parents": [desktop_head], "author": bob.user_id}
    sealed = aead.seal(dek, json.dumps(plain, separators=(",", ":")).encode(), aead.ad("version", fid, base))
    body = {k: v for k, v in original.items() if not k.startswith("_") and k != "sig"}
    body = {**body, "_id": base, "enc": b64e(sealed)}
    return sign_doc(bob.user_id, bob.identity.sign, body)


def _served_over_through_bob(tmp_path: Path, forged: bool) -> dict[str, object]:
    """Round 39c (1)'s scene (tests/mount/test_trust_attack_40a.py): her desktop and laptop edit
    docs/notes.txt apart; the server hides the laptop's revision, then (``forged``) stores bob's
    version document at the base version's id (made over the desktop's head) and serves the laptop's
    body as the revision after the desktop's.  What the desktop shows and says."""
    import adversary
    from conftest import PASSPHRASE, PouchServer, first_device, new_device

    from fusevault.vault.model.nodes import open_node_doc
    from mount.test_moving_out_of_a_share import _docs_and_other
    from mount.test_trust_writes import _key

    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    notes = Path("docs") / "notes.txt"
    out: dict[str, object] = {}
    try:
        laptop = first_device(url, tmp_path)
        fid = _docs_and_other(laptop, tmp_path / "a")
        couch = adversary.Server(url)
        alice = _key(laptop, "alice", PASSPHRASE)
        with mounted(laptop, tmp_path / "a") as a:
            wait_for(lambda: settled(a), "the laptop's push")
        base = open_node_doc(adversary.get(laptop, fid), alice)[1]["head"]
        desktop = new_device(url, tmp_path, "desktop")
        with mounted(desktop, tmp_path / "d") as b:
            wait_for(lambda: (b / notes).exists() and settled(b), "the desktop's first pull")
            server.kill()
            (b / notes).write_text(DESKTOP)
        server.start()
        with mounted(laptop, tmp_path / "a") as a:
            wait_for(lambda: settled(a), "the laptop's pull")
            (a / notes).write_text(LAPTOP)
            wait_for(lambda: settled(a) and couch.get(fid) is not None, "the laptop's push")
        laptops = couch.get(fid)
        couch.delete(fid)  # the laptop's revision hidden
        with mounted(desktop, tmp_path / "d") as b:
            wait_for(lambda: settled(b) and couch.get(fid)["enc"] != laptops["enc"], "the desktop's push")
            held = (b / notes).read_text()
            assert held == DESKTOP
            if forged:
                head = open_node_doc(couch.get(fid), alice)[1]["head"]
                seq = couch.seq() + 1
                couch.put(_forged_base(laptop, fid, base, head))
                wait_for(lambda: adversary.pulled_past(desktop, seq) and settled(b), "the forged base pulled")
            seq = couch.seq() + 1
            couch.put({k: v for k, v in laptops.items() if k != "_rev"})
            wait_for(lambda: adversary.pulled_past(desktop, seq) and settled(b), "the desktop's pull")
            wait_for(lambda: (b / notes).read_text() != held or alarms(b), "taken in, or said")
            time.sleep(2)
            out["shown"] = {str(p.relative_to(b)): p.read_text(errors="replace")
                            for p in sorted(b.rglob("*")) if p.is_file()}
            out["said"] = [(x["kind"], x["text"][:160]) for x in alarms(b)]
            out["held"] = held
            out["history"] = fusevault("history", b / notes, passphrase=None).stdout
            out["versions"] = {p.name: p.read_text(errors="replace")
                               for p in sorted((b / ".versions" / notes).iterdir())}
    finally:
        server.stop()
        _keep_logs(tmp_path)
    return out


def test_a_concurrent_edit_served_over_hers_is_said_even_through_a_planted_writers_version(tmp_path: Path):
    out = _served_over_through_bob(tmp_path, forged=True)
    assert out["held"] in out["shown"].values() or any(k == "concurrent" for k, _ in out["said"]), out


def test_control_a_concurrent_edit_served_over_hers_is_said(tmp_path: Path) -> None:
    out = _served_over_through_bob(tmp_path, forged=False)
    assert out["held"] in out["shown"].values() or any(k == "concurrent" for k, _ in out["said"]), out
