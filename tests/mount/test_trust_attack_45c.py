"""Round 45c, real mount: (1) to (5) of tests/unit/test_attack_45c.py seen at a mount (their
docstring there: attack, cause, impact, fix).  Run 08:18 UTC: each xfail fails at its own assertion
under --runxfail (2 runs each), the controls pass.

(2): ``_buried`` (tests/mount/test_trust_attack_43c.py) with 256 altered bodies, or 256 copies of
bob's own signed copy branch, above her leaf (his version withheld): team/plan.txt EIO, a false
forged-write; control: 254 altered (with his branch, hers is the 256th checked): her file shown.

(4), (5): tests/mount/test_trust_attack_43c.py (8)'s scene (team/sub shared WRITE with bob, READ with
carol; she unshares carol: re-keyed in place).  (5): bob's state beside hers sealing her new epoch
under the old key, a later ctime: the settled team/sub opens under carol's old key, nothing said
(control: his state of the old epoch, her key stands).  (4): two states of bob's, A (epoch 2) current,
B (epoch 2**40) a sibling whose revision id sorts first: the settled team/sub is epoch 2**40 under
carol's old key, nothing said (control: A alone, her key stands).

(3): tests/mount/test_trust_attack_41b.py's two users (proj/notes.txt shared WRITE with bob).  Apart
(the server down), she writes notes.txt, then bob makes an empty file proj/innocent.txt whose fid is
``copy_ident(fid, her revision)`` (his client chooses a new file's id: here a sitecustomize hook in his
mount server gives it; the id is a hash of clear values his replica holds, 32 hex digits like any fid),
then writes notes.txt himself (the later mtime: rule 4 keeps his, copies hers).  The server back, her
device settles: the copy's id is held (his file): "made already", her leaf closed.  Tests:
``test_her_losing_edit_is_copied_or_said_when_bobs_file_holds_its_copy_id``, control
``test_control_her_losing_edit_is_copied``.

Attack: 43c (3)'s scene (tests/mount/test_trust_attack_43c.py ``_buried``): her team/plan.txt moved out
of team (shared WRITE with bob) to the top, re-keyed, "private now" written; the server serves bob's
old-key branch (his edit in team, its version withheld) as the current revision.  Beside it, in place of
43c's 16 altered bodies: one genuine body of hers from before the move (team/plan.txt, the old key,
signed by her) stored as ``HER_LEAVES`` (16) leaves one generation above her own, each under a made-up
revision id (``_rev`` is not signed).

Seen / cause / impact / fix: see tests/unit/test_attack_45c.py (1).  Control: 15 copies (her file
shows at the top).  Test: ``test_her_leaf_under_sixteen_copies_of_her_old_state_is_shown``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import adversary
import pytest
from attack_scenes import add_users, recipients_dek, share
from conftest import PouchServer, fusevault, mounted, settled, wait_for

from fusevault.vault.services.conflict_copies import copy_ident
from fusevault.vault.tree.her_leaves import HER_LEAVES, HER_LEAVES_CHECKED
from mount.test_trust_attack_39b import _proj_with_bob
from mount.test_trust_attack_41b import _tree_of
from mount.test_trust_attack_43c import _bobs_body, _buried, _opens, _put_above
from mount.test_trust_attack_round22b import _bobs_branch, _settled
from mount.test_trust_rollback import alarms
from mount.test_trust_writes import BOB, _node_fid
from mount.test_writers_copy import _moved_out_beside_old

# The scenes stop the server and start it again: the devices retry it every second (conftest.py).
pytestmark = pytest.mark.usefixtures("quick_retry")


def _under_old_copies(vault: Path, tmp_path: Path, copies: int) -> tuple[dict[str, object], list[dict]]:
    fid, before, dek = _moved_out_beside_old(vault, tmp_path)
    team = _node_fid(vault, "alice", "team")
    his = _bobs_body(vault, fid, before, dek, {"links": [[team, "plan.txt"]], "seq": ["b0bdev", 7],
                                               "head": "9" * 32})
    old = {k: v for k, v in before.items() if not k.startswith("_")}  # her genuine state of before the move
    leaves = [("f" * 32, his)] + [("d" * 30 + f"{i:02x}", old) for i in range(copies)]
    _put_above(vault, fid, leaves)
    with adversary.store_of(vault) as store:
        current = store.get(fid)
        assert current is not None and current["_rev"].endswith("f" * 32), current
    with mounted(vault, tmp_path / "mnt") as mnt:
        _settled(mnt / "no such file", wait=4)
        files: dict[str, object] = {}
        for p in sorted(mnt.rglob("*")):
            if p.is_file():
                try:
                    files[str(p.relative_to(mnt))] = p.read_bytes()
                except OSError as err:
                    files[str(p.relative_to(mnt))] = f"error {err.errno}"
        return files, [x for x in alarms(mnt) if x["kind"] != "ledger"]


def test_control_her_leaf_under_fifteen_copies_of_her_old_state_is_shown(vault: Path, tmp_path: Path) -> None:
    files, said = _under_old_copies(vault, tmp_path, HER_LEAVES - 1)
    assert files.get("plan.txt") == b"private now", (files, said)


def test_her_leaf_under_sixteen_copies_of_her_old_state_is_shown(vault: Path, tmp_path: Path) -> None:
    files, said = _under_old_copies(vault, tmp_path, HER_LEAVES)
    assert files.get("plan.txt") == b"private now", (files, said)


# --- (3): a member's file at the id of her edit's conflict copy

_HOOK = """import os, uuid
from pathlib import Path
if want := os.environ.get("PYTHON_FV45C_NEXT_FID"):
    from fusevault.vault.model import nodes

    def new_id():
        path = Path(want)
        try:
            fid = path.read_text().strip()
        except FileNotFoundError:
            return uuid.uuid4().hex
        path.unlink()
        return fid

    nodes.new_id = new_id
"""


def _her_edit_beside_bobs_file_at_its_copy_id(tmp_path: Path, plant: bool) -> tuple[dict[str, object], list]:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_HOOK)
    next_fid = tmp_path / "next-fid"
    env = {"PYTHONPATH": os.pathsep.join([str(hook), str(Path(__file__).resolve().parents[2])]),
           "PYTHON_FV45C_NEXT_FID": str(next_fid)}
    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    try:
        laptop, bobs = _proj_with_bob(url, tmp_path, "WRITE")
        fid = _node_fid(laptop, "alice", "notes.txt")
        a, bm = tmp_path / "a", tmp_path / "bm"
        with mounted(laptop, a), mounted(bobs, bm, "--user", "bob", passphrase=BOB, env=env):
            proj = bm / "shared" / "alice" / "proj"
            wait_for(lambda: settled(a) and settled(bm) and (proj / "notes.txt").exists(), "both")
            server.kill()
            (a / "proj" / "notes.txt").write_text("alice's words")
            time.sleep(1.5)
            with adversary.store_of(laptop) as store:
                rev = store.get(fid)["_rev"]  # what bob's replica holds once hers arrives
            if plant:
                next_fid.write_text(copy_ident(fid, rev, b"\0" * 32)[0])  # the id is no function of the key
            (proj / "innocent.txt").touch()
            time.sleep(0.5)
            (proj / "notes.txt").write_text("bob's words")
            time.sleep(1.5)
            server.start()
            time.sleep(3)
            wait_for(lambda: settled(a) and settled(bm), "both settled")
            time.sleep(3)
            if plant:  # bob's file is at the copy's id her device derives
                assert _node_fid(laptop, "alice", "innocent.txt") == copy_ident(fid, rev, b"\0" * 32)[0]
            return _tree_of(a), [x for x in alarms(a) if x["kind"] != "ledger"]
    finally:
        server.stop()


def test_control_her_losing_edit_is_copied(tmp_path: Path) -> None:
    files, said = _her_edit_beside_bobs_file_at_its_copy_id(tmp_path, plant=False)
    assert b"alice's words" in files.values(), (files, said)


def test_her_losing_edit_is_copied_or_said_when_bobs_file_holds_its_copy_id(tmp_path: Path) -> None:
    files, said = _her_edit_beside_bobs_file_at_its_copy_id(tmp_path, plant=True)
    assert b"alice's words" in files.values() or said, (files, said)


# --- (5): a member's state claiming her very epoch, under the old key

def _unshared_beside_bobs_same_epoch(vault: Path, tmp_path: Path, claim: bool) -> tuple[dict, bytes]:
    """tests/mount/test_trust_attack_43c.py (8)'s scene: team/sub, team shared WRITE with bob and READ
    with carol; she unshares carol (team/sub re-keyed in place, epoch E).  Beside it bob's state made
    over the one before (the key he and carol held), a chmod-like change of his made after her unshare
    (a later ctime), sealing ``claim``: epoch E (hers), else the epoch it was made over.  (The current
    document of team/sub once settled, the key carol held.)"""
    add_users(vault, "bob", "carol")
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "team" / "sub").mkdir(parents=True)
        assert share(mnt, "team", "bob", "WRITE") is not None
        assert share(mnt, "team", "carol", "READ") is not None
    sub = _node_fid(vault, "alice", "sub")
    before, old = adversary.get(vault, sub), recipients_dek(vault, "bob", BOB, sub)
    assert before is not None
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert fusevault("unshare", mnt / "team", "--with", "carol").returncode == 0
        wait_for(lambda: adversary.get(vault, sub)["epoch"] > before["epoch"], "the unshare's re-key")
    hers = adversary.get(vault, sub)
    change: dict = {"seq": ["b0bdev", 7], "xattrs": {}, "ctime": time.time_ns() + 60 * 10**9}
    if claim:
        change["epoch"] = hers["epoch"]
        before = {**before, "epoch": hers["epoch"]}
    _bobs_branch(vault, sub, change, before, old, "0")
    with mounted(vault, tmp_path / "mnt") as mnt:
        _settled(mnt / "no such file", wait=4)
        said = [x for x in alarms(mnt) if x["kind"] != "ledger"]
    current = adversary.get(vault, sub)
    assert current is not None
    return {**current, "said": said}, old


def test_control_bobs_later_state_of_the_old_epoch_leaves_her_new_key(vault: Path, tmp_path: Path) -> None:
    current, old = _unshared_beside_bobs_same_epoch(vault, tmp_path, claim=False)
    assert not _opens(current, old), (current["epoch"], current["said"])


def test_bobs_state_claiming_her_epoch_does_not_undo_her_unshare(vault: Path, tmp_path: Path) -> None:
    current, old = _unshared_beside_bobs_same_epoch(vault, tmp_path, claim=True)
    assert not _opens(current, old) or current["said"], (current["epoch"], current["said"])


# --- (4): two states of the member

def _unshared_beside_two_of_bobs(vault: Path, tmp_path: Path, second: bool) -> tuple[dict, bytes]:
    """(5)'s scene; bob's state A (epoch 2, claimed) one generation above hers, the current revision;
    and, ``second``, his state B (epoch 2**40) a sibling of hers whose revision id ("0" * 32) comes
    before hers in the settling.  (The current document of team/sub once settled, carol's old key.)"""
    add_users(vault, "bob", "carol")
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "team" / "sub").mkdir(parents=True)
        assert share(mnt, "team", "bob", "WRITE") is not None
        assert share(mnt, "team", "carol", "READ") is not None
    sub = _node_fid(vault, "alice", "sub")
    before, old = adversary.get(vault, sub), recipients_dek(vault, "bob", BOB, sub)
    assert before is not None
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert fusevault("unshare", mnt / "team", "--with", "carol").returncode == 0
        wait_for(lambda: adversary.get(vault, sub)["epoch"] > before["epoch"], "the unshare's re-key")
    if second:
        _bobs_branch(vault, sub, {"seq": ["b0bdev", 8], "xattrs": {}, "epoch": 2**40},
                     {**before, "epoch": 2**40}, old, "0")
    a = _bobs_body(vault, sub, {**before, "epoch": 2}, old, {"seq": ["b0bdev", 7], "xattrs": {}, "epoch": 2})
    _put_above(vault, sub, [("f" * 32, a)])
    with mounted(vault, tmp_path / "mnt") as mnt:
        _settled(mnt / "no such file", wait=4)
        said = [x for x in alarms(mnt) if x["kind"] != "ledger"]
    current = adversary.get(vault, sub)
    assert current is not None
    return {**current, "said": said}, old


def test_control_one_state_of_bobs_claiming_an_epoch_leaves_her_new_key(vault: Path, tmp_path: Path) -> None:
    current, old = _unshared_beside_two_of_bobs(vault, tmp_path, second=False)
    assert not _opens(current, old), (current["epoch"], current["said"])


def test_two_states_of_bobs_do_not_undo_her_unshare(vault: Path, tmp_path: Path) -> None:
    current, old = _unshared_beside_two_of_bobs(vault, tmp_path, second=True)
    assert not _opens(current, old), (current["epoch"], current["said"])


# --- (2): the check cap filled

@pytest.mark.parametrize("whose", ["member's", "altered"])
def test_her_leaf_under_the_checked_cap_of_leaves_is_shown(vault: Path, tmp_path: Path, whose: str) -> None:
    if whose == "altered":
        files, said = _buried(vault, tmp_path, HER_LEAVES_CHECKED)
    else:
        files, said = _under_his_copies(vault, tmp_path, HER_LEAVES_CHECKED)
    assert files.get("plan.txt") == b"private now", (files, said)


def _under_his_copies(vault: Path, tmp_path: Path, copies: int) -> tuple[dict[str, object], list[dict]]:
    """As ``_under_old_copies``, the leaves above hers ``copies`` times bob's own signed copy branch."""
    fid, before, dek = _moved_out_beside_old(vault, tmp_path)
    team = _node_fid(vault, "alice", "team")
    his = _bobs_body(vault, fid, before, dek, {"links": [[team, "plan.txt"]], "seq": ["b0bdev", 7],
                                               "head": "9" * 32})
    _put_above(vault, fid, [("f" * 32, his)] + [("d" * 29 + f"{i:03x}", his) for i in range(copies)])
    with mounted(vault, tmp_path / "mnt") as mnt:
        _settled(mnt / "no such file", wait=4)
        files: dict[str, object] = {}
        for p in sorted(mnt.rglob("*")):
            if p.is_file():
                try:
                    files[str(p.relative_to(mnt))] = p.read_bytes()
                except OSError as err:
                    files[str(p.relative_to(mnt))] = f"error {err.errno}"
        return files, [x for x in alarms(mnt) if x["kind"] != "ledger"]


def test_control_her_leaf_just_inside_the_checked_cap_is_shown(vault: Path, tmp_path: Path) -> None:
    files, said = _buried(vault, tmp_path, HER_LEAVES_CHECKED - 2)  # with his branch: hers the 256th
    assert files.get("plan.txt") == b"private now", (files, said)
