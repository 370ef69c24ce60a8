"""Issue 22, attack round 9a: fusevault as it is at 9b2364a (after round 8's fixes), attacked through its
entry points.

The attacker: a WRITE recipient of alice's who can write the vault folder (or the store), and so signs
node and version documents of alice's shared files with the DEK he holds; the ledger's and history's
newest code is the target (round 8: ``check_shapes``, ``check_numbers``, ``MAX_LAG``).  Each test asserts
the SAFE behaviour; the holes were marked ``xfail(strict=True)`` until closed (all closed the same day,
each test failing before its fix; docs/SECURITY.md names them).

In-process shared-mount attacks as in tests/mount/test_trust_attack_round7.py (``shared``: alice's and
bob's seats over one store; a planted document is handed to every seat as fs/shared.py does).

Found at 9b2364a (each test failed for the reason named; its control, where there is one, passed):
- (2) ``previous`` is a writer's to set and history.lineage follows it to any deleted file of the
  owner's: bob grafts alice's trashed private/secret.txt into shared team/plan.txt's history; her
  ``restore team/plan.txt`` (undoing his edit) copies her secret into the file he reads; her ``gc``
  thins it as plan.txt's history, and secret.txt leaves her trash for good.
- (1) a version's ``author`` is its sealed field, never compared with its signer: bob's version shows as
  alice's in her history; a list or dict there makes history an internal error.
- (3, FIXED: vault/model/ledger.py ``writer_seq``) a writer's ``seq`` naming the owner's device is
  recorded for the file whatever its n (MAX_LAG bounds only her counter): her own later edits load as
  rollbacks, kept behind, and a new share of the folder seals no key of the file.
- (5) a writer's document may change a node's type: a file turned folder has no children map, and the
  next document naming a node inside it raises AttributeError out of absorb_arrivals, which ends
  root's real shared mount for every user.
- (6) Tree.vouched outlives a downgrade of the share to READ: bob's old document, put back verbatim,
  undoes alice's later rename.
- (7) the time a file went to the trash is the deleting writer's: bob's deletion dated 1970 makes alice's
  next ``gc`` purge her file and every version of it at once (the trash promises 30 days).
Holds: an author that is a number; a folder turned into a file at unlock; the vouched document after a
full unshare; security.capability in a user's own document on root's shared mount (nosuid alone).
"""

from __future__ import annotations

import errno
import json
import os
import shlex
import stat
import struct
import time
from pathlib import Path

import adversary
import pyfuse3
import pytest
import trio
from conftest import force_unmount, fusevault, mounted
from inprocess.conftest import (  # noqa: F401  (fixtures)
    ALICE_UID,
    BOB_UID,
    ROOT,
    Ctx,
    Fields,
    shared,
    template_vault,
    vault_copy,
)
from inprocess.test_two_users import _read, _walk, _write

from fusevault.crypto import aead
from fusevault.crypto.signing import sign_doc, signer_of
from fusevault.encoding import b64e
from fusevault.vault.model.nodes import doc_dek, open_node_attrs
from mount.test_shared_mount import SECRETS, People, linux, place, python, shared_vault  # noqa: F401
from mount.test_shared_mount import pytestmark as SHARED_ONLY
from mount.test_trust_attack_round4 import _alice_dek, _bobs_dek
from mount.test_trust_attack_round7 import (
    _ask,
    _bobs_node_doc,
    _keys_for,
    _planted,
    _resigned_by_bob,
    _rewrite,
    _share,
)
from mount.test_trust_attack_round8 import (
    _bobs_version_doc,
    _log_tail,
    _node_fid_as,
    _resigned_by,
    _team_with_plan,
)
from mount.test_trust_writes import BOB as BOB_SECRET
from mount.test_trust_writes import CAROL as CAROL_SECRET
from mount.test_trust_writes import _admin, _key, _node_fid, _user

ALICE = Ctx(ALICE_UID, ALICE_UID)
BOB = Ctx(BOB_UID, BOB_UID)


def _alice_requests(shared):  # noqa: F811
    return shared.drive.seat_of(ALICE_UID).ops.session.requests


def _plan_of(shared):  # noqa: F811
    alice = shared.volumes["alice"]
    folder_node = alice.tree.node(alice.tree.node(ROOT).children[b"team"])
    return folder_node, alice.tree.node(folder_node.children[b"plan.txt"])


def _bobs_versions(shared, fid: str) -> list[dict]:  # noqa: F811
    bob_id = shared.volumes["bob"].key.user_id
    return [d for d in shared.store.iter_type("FilesMetaData")
            if d.get("fid") == fid and signer_of(d) == bob_id]


# --- (1) a writer's version document names its author: the history shows it as the owner's


def test_a_writers_version_is_not_shown_in_history_as_the_owners(shared) -> None:  # noqa: F811
    """alice shares team (team/plan.txt) with bob (WRITE); bob saves a version of plan.txt, then writes his
    version document again (signed by him) with ``author`` alice's user id.  Safe: alice's history of
    plan.txt does not show bob's version as hers (it names bob, or leaves it out)."""

    async def attack() -> tuple[str, dict]:
        drive = shared.drive
        alice = shared.volumes["alice"]
        await _team_with_plan(shared)
        theirs = await _walk(drive, b"shared/alice/team/plan.txt", BOB)
        await _rewrite(drive, theirs.st_ino, b"bob's vandalism\n", BOB)
        _, plan = _plan_of(shared)
        (bobs,) = _bobs_versions(shared, plan.fid)
        _planted(shared, _bobs_version_doc(shared, bobs, {"author": alice.key.user_id}))
        await trio.sleep(0)
        return bobs["_id"], await _alice_requests(shared).handle({"cmd": "history", "path": "team/plan.txt"})

    vid, answer = trio.run(attack)
    print(answer)
    assert "error" not in answer, answer
    shown = [v["author"] for v in answer["versions"] if v["id"] == vid]
    assert shown in ([], ["bob"]), f"bob's version is shown as {shown}'s"


@pytest.mark.parametrize("author", [["x"], {"a": 1}, 5])
def test_a_writers_version_with_an_odd_author_does_not_hide_the_files_history(
        shared, author: object) -> None:  # noqa: F811
    """As above with ``author`` a list, a dict or a number.  Safe: alice's history of plan.txt answers and
    lists her own version (bob's left out, or shown)."""

    async def attack() -> dict:
        drive = shared.drive
        await _team_with_plan(shared)
        theirs = await _walk(drive, b"shared/alice/team/plan.txt", BOB)
        await _rewrite(drive, theirs.st_ino, b"bob's vandalism\n", BOB)
        _, plan = _plan_of(shared)
        (bobs,) = _bobs_versions(shared, plan.fid)
        _planted(shared, _bobs_version_doc(shared, bobs, {"author": author}))
        await trio.sleep(0)
        return await _alice_requests(shared).handle({"cmd": "history", "path": "team/plan.txt"})

    answer = trio.run(attack)
    print(answer)
    assert "error" not in answer, answer
    assert any(v["author"] == "alice" for v in answer["versions"]), answer


# --- (2) a writer's ``previous`` names the owner's private file in the trash


def test_a_writer_cannot_graft_the_owners_private_trashed_file_into_a_shared_files_history(
        shared) -> None:  # noqa: F811
    """alice shares team (team/plan.txt) with bob (WRITE); she keeps private/secret.txt (never shared) and
    deletes it (it goes to her trash).  bob saves a version of plan.txt, then signs a node document of
    plan.txt (his head) whose ``previous`` is secret.txt's file id (every node document's id is in clear
    in the store).  alice, to undo bob's edit, runs ``restore team/plan.txt`` (the previous version).
    Safe: plan.txt's history lists none of secret.txt's versions, and bob does not read alice's secret in
    team/plan.txt."""

    async def attack() -> tuple[dict, dict, bytes]:
        drive = shared.drive
        alice = shared.volumes["alice"]
        await _team_with_plan(shared)
        private = await drive.mkdir(ROOT, b"private", stat.S_IFDIR | 0o700, ALICE)
        await _write(drive, private.st_ino, b"secret.txt", b"alice's secret\n", ALICE)
        folder = alice.tree.node(alice.tree.node(ROOT).children[b"private"])
        secret = alice.tree.node(folder.children[b"secret.txt"])
        secret_fid = secret.fid
        await drive.unlink(private.st_ino, b"secret.txt", ALICE)
        theirs = await _walk(drive, b"shared/alice/team/plan.txt", BOB)
        await _rewrite(drive, theirs.st_ino, b"bob's vandalism\n", BOB)
        _, plan = _plan_of(shared)
        _planted(shared, _bobs_node_doc(shared, plan.fid, {"previous": secret_fid}))
        await trio.sleep(0)
        requests = _alice_requests(shared)
        history = await requests.handle({"cmd": "history", "path": "team/plan.txt"})
        restored = await requests.handle({"cmd": "restore", "path": "team/plan.txt"})
        theirs = await _walk(drive, b"shared/alice/team/plan.txt", BOB)
        return history, restored, await _read(drive, theirs.st_ino, BOB)

    history, restored, seen = trio.run(attack)
    print(history, restored, seen)
    assert seen != b"alice's secret\n", "bob reads alice's private file through the shared plan.txt"
    assert not any("secret" in str(v["path"]) for v in history.get("versions", [])), history


@pytest.mark.parametrize("graft", [True, False])
def test_a_writer_cannot_make_the_owners_gc_drop_her_trashed_private_files_last_version(
        shared, graft: bool) -> None:  # noqa: F811
    """As above (bob's ``previous`` of team/plan.txt names alice's private/secret.txt, in her trash); alice
    runs ``gc`` (her policy, as of 8 days later: well inside the 30 days a deleted file stays in the
    trash).  Safe: ``restore private/secret.txt`` out of the trash still gives alice her secret.
    ``graft=False``: the control, bob's edit without the ``previous``."""

    async def attack() -> tuple[dict, dict, bytes | str]:
        drive = shared.drive
        alice = shared.volumes["alice"]
        await _team_with_plan(shared)
        private = await drive.mkdir(ROOT, b"private", stat.S_IFDIR | 0o700, ALICE)
        await _write(drive, private.st_ino, b"secret.txt", b"alice's secret\n", ALICE)
        folder = alice.tree.node(alice.tree.node(ROOT).children[b"private"])
        secret_fid = alice.tree.node(folder.children[b"secret.txt"]).fid
        await drive.unlink(private.st_ino, b"secret.txt", ALICE)
        theirs = await _walk(drive, b"shared/alice/team/plan.txt", BOB)
        await _rewrite(drive, theirs.st_ino, b"bob's vandalism\n", BOB)
        _, plan = _plan_of(shared)
        if graft:
            _planted(shared, _bobs_node_doc(shared, plan.fid, {"previous": secret_fid}))
        await trio.sleep(0)
        requests = _alice_requests(shared)
        # 8 days on: every version is in its day's period (one kept a day), the trash keeps 30 days.
        later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 8 * 86400))
        collected = await requests.handle({"cmd": "gc", "as_of": later})
        print("trash after gc:", await requests.handle({"cmd": "trash"}))
        restored = await requests.handle({"cmd": "restore", "path": "private/secret.txt"})
        try:
            mine = await _walk(drive, b"private/secret.txt", ALICE)
            return collected, restored, await _read(drive, mine.st_ino, ALICE)
        except pyfuse3.FUSEError as err:
            return collected, restored, f"errno {err.errno}"

    collected, restored, got = trio.run(attack)
    print(collected, restored, got)
    assert got == b"alice's secret\n", f"alice's trashed secret.txt is gone: {restored} {got!r}"


# --- (5) a file a writer's document turns into a folder, then a folder for another node



def test_a_writer_turning_the_owners_file_into_a_folder_and_filling_it_breaks_nothing(
        shared) -> None:  # noqa: F811
    """alice shares team (team/plan.txt, team/memo.txt) with bob (WRITE).  bob signs a node document of
    plan.txt whose mode is a folder's, then one of memo.txt that names it plan.txt/memo.txt.  Safe: taking
    them in raises nothing, plan.txt stays a file, memo.txt in team, and alice reads her own diary.txt."""

    async def attack() -> bytes:
        drive = shared.drive
        alice = shared.volumes["alice"]
        folder, _ = await _team_with_plan(shared)
        await _write(drive, folder.st_ino, b"memo.txt", b"alice's memo\n", ALICE)
        folder_node, plan = _plan_of(shared)
        memo = alice.tree.node(folder_node.children[b"memo.txt"])
        await _walk(drive, b"shared/alice/team/memo.txt", BOB)
        _planted(shared, _bobs_node_doc(shared, plan.fid, {"mode": stat.S_IFDIR | 0o755}))
        await trio.sleep(0)
        _planted(shared, _bobs_node_doc(shared, memo.fid, {"links": [[plan.fid, "memo.txt"]]}))
        await trio.sleep(0)
        diary = await drive.lookup(ROOT, b"diary.txt", ALICE)
        assert stat.S_ISREG(plan.mode) and plan.children is None, "plan.txt's type changed"
        assert memo.links == [(folder_node.ino, b"memo.txt")], memo.links
        return await _read(drive, diary.st_ino, ALICE)

    assert trio.run(attack) == b"alice's own\n"


@SHARED_ONLY
def test_a_writer_turning_the_owners_file_into_a_folder_does_not_take_the_shared_mount_down(
        shared_vault: Path, place: Path, linux, python) -> None:  # noqa: F811
    """As above in root's real shared mount: alice, unlocked, shares team (team/plan.txt, team/memo.txt)
    with bob (WRITE); bob, who can write the vault folder, puts there his node document of plan.txt with a
    folder's mode, then one of memo.txt naming it plan.txt/memo.txt.  The mount's store watcher takes them
    in.  Safe: the mount stays up and alice reads other.txt."""
    mountpoint = place / "mnt-round9a-mode"
    mountpoint.mkdir()
    with mounted(shared_vault, mountpoint, "--allow-other"):
        people = People(linux, place, python, mountpoint)
        people.unlock("alice")
        people.ok("alice", "mkdir $M/team && echo plan > $M/team/plan.txt && echo memo > $M/team/memo.txt"
                  " && echo untouched > $M/other.txt")
        assert people.fusevault("alice", "share", f"{mountpoint}/team", "--with", "bob",
                                "--perm", "WRITE").returncode == 0
        plan, memo = _node_fid_as(shared_vault, "plan.txt"), _node_fid_as(shared_vault, "memo.txt")
        _resigned_by(shared_vault, "bob", plan, {"mode": stat.S_IFDIR | 0o755})
        _resigned_by(shared_vault, "bob", memo, {"links": [[plan, "memo.txt"]]})
        for _ in range(10):  # the watcher looks once a second (fs/shared.py WATCH_EVERY)
            time.sleep(1)
            if str(mountpoint) not in Path("/proc/mounts").read_text():
                break  # the mount is gone
        result = people.sh("alice", "cat $M/other.txt")
        print(result.returncode, result.stdout, result.stderr)
        _log_tail()
        assert result.stdout == "untouched\n", f"the shared mount is down: {result.stderr}"


def _two_of_bobs_documents(shared, mode: int):  # noqa: F811
    """team (plan.txt, memo.txt) shared with bob (WRITE); bob's node documents of both, each with ``mode``
    (put in the store, not taken in yet), and the two nodes in alice's tree."""

    async def setup() -> tuple[list[dict], object, object]:
        drive = shared.drive
        alice = shared.volumes["alice"]
        folder, _ = await _team_with_plan(shared)
        await _write(drive, folder.st_ino, b"memo.txt", b"alice's memo\n", ALICE)
        folder_node, plan = _plan_of(shared)
        memo = alice.tree.node(folder_node.children[b"memo.txt"])
        await _walk(drive, b"shared/alice/team/memo.txt", BOB)
        docs = []
        for fid in (plan.fid, memo.fid):
            body = {k: v for k, v in _bobs_node_doc(shared, fid, {"mode": mode}).items() if k != "_rev"}
            body["_rev"] = shared.store.get(fid)["_rev"]
            (rev,) = shared.store.put_many([body])
            docs.append({**body, "_rev": rev})
        return docs, plan, memo

    return trio.run(setup)


def test_a_document_that_breaks_taking_in_is_an_alarm_and_the_next_one_is_taken_in(
        shared, monkeypatch) -> None:  # noqa: F811
    """Defence in depth for (5): whatever a document reaches that raises (a bug, not a refusal), taking
    it in is an alarm and the documents after it in the same batch are taken in.  bob changes the mode of
    plan.txt and of memo.txt (one batch: the store watcher's); taking in plan.txt's raises (injected).
    Safe: no exception leaves absorb_arrivals, memo.txt takes bob's mode, and alice's status names
    plan.txt."""
    from fusevault.vault.model import alarms
    from fusevault.vault.services import absorbing
    from fusevault.vault.services.absorbing import absorb_arrivals

    docs, plan, memo = _two_of_bobs_documents(shared, stat.S_IFREG | 0o600)
    alice = shared.volumes["alice"]
    real = absorbing.absorb_node

    def failing(volume, doc, out, **how):
        if doc["_id"] == plan.fid:
            raise AttributeError("'NoneType' object has no attribute 'get'")  # what round 9a's (5) raised
        return real(volume, doc, out, **how)

    monkeypatch.setattr(absorbing, "absorb_node", failing)
    absorb_arrivals(alice, docs)
    assert stat.S_IMODE(memo.mode) == 0o600, "the document after the failing one was not taken in"
    said = [a for a in alarms.for_user(alice.key.user_id).as_list() if a["subject"] == plan.fid]
    assert said and said[0]["kind"] == "malformed", said


def test_a_user_whose_tree_breaks_on_a_batch_does_not_keep_it_from_the_others(
        shared, monkeypatch) -> None:  # noqa: F811
    """Defence in depth for (5), one level up: the mount hands a batch (the store watcher's, the sync's)
    to every unlocked user (fs/arrivals.py ``Arrivals.committed``).  Taking it in raises for alice
    (injected).  Safe: nothing leaves ``committed`` (the watcher goes on), and bob takes the batch in."""
    from types import SimpleNamespace

    from fusevault.fs import arrivals

    docs, _, memo = _two_of_bobs_documents(shared, stat.S_IFREG | 0o600)
    alice, bob = shared.volumes["alice"], shared.volumes["bob"]
    real = arrivals.absorb_arrivals

    def failing(volume, given):
        if volume is alice:
            raise AttributeError("injected")
        return real(volume, given)

    monkeypatch.setattr(arrivals, "absorb_arrivals", failing)
    kernel = SimpleNamespace(drop_all=None)  # its tasks are not started: no nursery here
    agents = [SimpleNamespace(session=SimpleNamespace(volume=v), missed=None, kernel=kernel,
                              user_id=v.key.user_id)  # as sessions.Agent
              for v in (alice, bob)]
    arrivals.Arrivals(shared.store, lambda: agents).committed(None, docs)
    assert stat.S_IMODE(bob.find(memo.fid).mode) == 0o600, "bob did not take the batch in"


@pytest.mark.parametrize("mode", [stat.S_IFREG | 0o644, stat.S_IFLNK | 0o777, 0o644],
                         ids=["file", "symlink", "no-type"])
def test_a_writer_turning_the_owners_folder_into_a_file_does_not_stop_her_mount(
        vault: Path, tmp_path: Path, mode: int) -> None:
    """alice shares team (team/sub/inner.txt) with bob (WRITE).  bob signs a node document of team/sub with
    a file's (a symlink's, no type's) mode; inner.txt still names sub as its folder.  alice mounts.  Safe:
    the mount comes up and she reads diary.txt."""
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB_SECRET)
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "team" / "sub").mkdir(parents=True)
        (mnt / "team" / "sub" / "inner.txt").write_text("inner")
        (mnt / "diary.txt").write_text("alice's own")
        assert _share(mnt, "team", "bob", "WRITE") is not None
    _resigned_by_bob(vault, _node_fid(vault, "alice", "sub"), {"mode": mode})
    mnt.mkdir(exist_ok=True)
    done = fusevault("mount", vault, mnt)
    try:
        print("mount:", done.returncode, done.stderr[-2000:])
        _log_tail()
        assert done.returncode == 0, f"alice's vault does not mount any more: {done.stderr[-500:]}"
        assert (mnt / "diary.txt").read_text() == "alice's own"
    finally:
        force_unmount(mnt)


def test_a_writer_turning_the_owners_file_into_a_folder_and_filling_it_does_not_stop_her_mount(
        vault: Path, tmp_path: Path) -> None:
    """(5) at unlock: alice shares team (team/plan.txt, team/memo.txt) with bob (WRITE); unmounted, bob
    signs a node document of plan.txt with a folder's mode, then one of memo.txt naming it
    plan.txt/memo.txt.  alice mounts.  Safe: the mount comes up, she reads diary.txt and lists team."""
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB_SECRET)
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "team").mkdir()
        (mnt / "team" / "plan.txt").write_text("plan")
        (mnt / "team" / "memo.txt").write_text("memo")
        (mnt / "diary.txt").write_text("alice's own")
        assert _share(mnt, "team", "bob", "WRITE") is not None
    plan, memo = _node_fid(vault, "alice", "plan.txt"), _node_fid(vault, "alice", "memo.txt")
    _resigned_by_bob(vault, plan, {"mode": stat.S_IFDIR | 0o755})
    _resigned_by_bob(vault, memo, {"links": [[plan, "memo.txt"]]})
    mnt.mkdir(exist_ok=True)
    done = fusevault("mount", vault, mnt)
    try:
        print("mount:", done.returncode, done.stderr[-2000:])
        _log_tail()
        assert done.returncode == 0, f"alice's vault does not mount any more: {done.stderr[-500:]}"
        assert (mnt / "diary.txt").read_text() == "alice's own"
        listed = {p.name: p.is_dir() for p in (mnt / "team").iterdir()}
        print("team:", listed, [p.name for p in (mnt / "team" / "plan.txt").iterdir()]
              if listed.get("plan.txt") else "")
    finally:
        force_unmount(mnt)


# --- (6) a writer made a reader keeps what a seat vouched for



@pytest.mark.parametrize("then", ["READ", "unshare"])
def test_a_writer_made_a_reader_cannot_undo_the_owners_rename_with_his_vouched_document(
        shared, then: str) -> None:  # noqa: F811
    """alice shares team (team/plan.txt) with bob (WRITE); bob saves a version of plan.txt through his seat
    (alice's tree notes his document as vouched for), and keeps that document.  alice shares team with
    him again as READ (his writes are refused from now on) and renames plan.txt to final.txt.  bob, who
    can write the store, puts his kept document back (his signature, no key needed).  Safe: alice's team
    still lists final.txt, not plan.txt.  ``unshare``: his share ends instead of becoming READ."""

    async def attack() -> tuple[object, list[bytes]]:
        drive = shared.drive
        folder, mine = await _team_with_plan(shared)
        theirs = await _walk(drive, b"shared/alice/team/plan.txt", BOB)
        await _rewrite(drive, theirs.st_ino, b"bob's version\n", BOB)
        folder_node, plan = _plan_of(shared)
        kept = shared.store.get(plan.fid)
        assert signer_of(kept) == shared.volumes["bob"].key.user_id
        await _ask(shared, "share" if then == "READ" else "unshare", "team", "READ")
        try:
            await _rewrite(drive, theirs.st_ino, b"bob again\n", BOB)
            refused: object = None
        except pyfuse3.FUSEError as err:
            refused = err.errno
        await drive.rename(folder.st_ino, b"plan.txt", folder.st_ino, b"final.txt", 0, ALICE)
        _planted(shared, kept)
        await trio.sleep(0)
        return refused, sorted(folder_node.children)

    refused, listed = trio.run(attack)
    print(refused, listed)
    assert refused is not None, "bob may still write: the share was not made READ"
    assert listed == [b"final.txt"], f"alice's rename was undone by bob's old document: {listed}"


@pytest.mark.parametrize("then", ["chmod"])
def test_what_a_seat_vouched_for_is_forgotten_at_the_owners_commit(
        shared, then: str) -> None:  # noqa: F811
    """The fix of the above: bob saves a version of team/plan.txt through his seat (alice's tree vouches
    for his document); then alice changes plan.txt's mode (``chmod``: her tree commits the node, no
    version).  Safe: her tree vouches for nothing any more.  (A change of grants alone does not forget
    the vouch: the vouched document is one he wrote while he held WRITE, and the vouch exists for the
    owner's second look at exactly that moment: tests/inprocess/test_two_users.py, where forgetting it
    at an unshare loses his acknowledged lines.  Replaying it changes nothing her tree holds: any later
    commit of hers has forgotten it.)"""

    async def attack() -> tuple[dict, dict]:
        drive = shared.drive
        alice = shared.volumes["alice"]
        _, mine = await _team_with_plan(shared)
        theirs = await _walk(drive, b"shared/alice/team/plan.txt", BOB)
        await _rewrite(drive, theirs.st_ino, b"bob's version\n", BOB)
        before = dict(alice.tree.vouched)
        if then == "share":
            await _ask(shared, "share", "team", "READ")
        else:
            attrs = pyfuse3.EntryAttributes()
            attrs.st_mode = stat.S_IFREG | 0o600
            await drive.setattr(mine.st_ino, attrs, Fields(mode=True), None, ALICE)
        return before, dict(alice.tree.vouched)

    before, after = trio.run(attack)
    print(before, after)
    assert before, "bob's save was not vouched for: the test proves nothing"
    assert not after, f"still vouched for after the {then}: {after}"


# --- (7) a writer's deletion dated long ago


@pytest.mark.parametrize("when", [
    "1970", "now"])
def test_a_writers_deletion_dated_long_ago_does_not_make_the_owners_gc_purge_the_file(
        vault: Path, tmp_path: Path, when: str) -> None:
    """alice shares team (team/plan.txt) with bob (WRITE).  bob deletes plan.txt (he may: it goes to the
    trash) by a node document, signed by him and put in the vault folder, whose ``trashed`` time is 1 ns
    after 1970.  alice mounts and runs ``fusevault gc`` (her policy: the trash keeps a file 30 days).
    Safe: ``fusevault restore team/plan.txt`` brings it back and it reads.  ``now``: the control, his
    deletion dated now."""
    mnt = _bobs_deletion(vault, tmp_path, 1 if when == "1970" else time.time_ns())
    with mounted(vault, mnt):
        print(fusevault("trash", mnt).stdout[-1000:])
        collected = fusevault("gc", mnt)
        print("gc:", collected.returncode, collected.stdout[-1500:], collected.stderr[-500:])
        restored = fusevault("restore", mnt / "team" / "plan.txt")
        print("restore:", restored.returncode, restored.stdout[-500:], restored.stderr[-500:])
        try:
            got = (mnt / "team" / "plan.txt").read_text()
        except OSError as err:
            got = str(err)
    assert got == "alice's plan", f"alice's plan.txt is gone for good: {got!r}"


def _bobs_deletion(vault: Path, tmp_path: Path, stamp: int) -> Path:
    """alice's team/plan.txt, shared with bob (WRITE), deleted by his node document dated ``stamp``."""
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB_SECRET)
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "team").mkdir()
        (mnt / "team" / "plan.txt").write_text("alice's plan")
        assert _share(mnt, "team", "bob", "WRITE") is not None
    fid = _node_fid(vault, "alice", "plan.txt")
    dek = _bobs_dek(vault, fid)
    doc = adversary.get(vault, fid)
    attrs = {**open_node_attrs(doc, dek), "links": [], "trashed": ["team/plan.txt", stamp]}
    body = {k: v for k, v in doc.items() if k not in ("_rev", "sig")}
    body["enc"] = b64e(aead.seal(dek, json.dumps(attrs).encode(), aead.ad("node", fid)))
    bob = _key(vault, "bob", BOB_SECRET)
    adversary.put(vault, sign_doc(bob.user_id, bob.identity.sign, {**body, "delete": True}))
    return mnt


def test_a_writers_deletion_dated_in_the_future_neither_wins_restore_nor_stays_in_the_trash_for_ever(
        vault: Path, tmp_path: Path) -> None:
    """As above, bob's deletion dated 2100.  alice mounts and lists her trash; then writes a new
    team/plan.txt and deletes it herself.  Safe: the listing dates bob's deletion no later than now;
    ``restore team/plan.txt`` brings back the latest deletion there, hers (not bob's, dated 2100); and
    ``gc`` as of 31 days on (her trash keeps 30) removes bob's entry from the trash."""
    future = int(time.mktime((2100, 1, 1, 0, 0, 0, 0, 1, 0))) * 10**9
    mnt = _bobs_deletion(vault, tmp_path, future)
    with mounted(vault, mnt):
        listed = json.loads(fusevault("trash", mnt, "--json").stdout)["trash"]
        print("trash:", listed, fusevault("trash", mnt).stdout)
        assert [t["path"] for t in listed] == ["team/plan.txt"]
        assert listed[0]["deleted_at"] <= time.time_ns(), "bob's deletion is listed as made in 2100"
        (mnt / "team" / "plan.txt").write_text("alice's new plan")
        os.unlink(mnt / "team" / "plan.txt")
        restored = fusevault("restore", mnt / "team" / "plan.txt")
        print("restore:", restored.returncode, restored.stdout[-500:], restored.stderr[-500:])
        assert (mnt / "team" / "plan.txt").read_text() == "alice's new plan", "bob's deletion won the pick"
        later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 31 * 86400))
        collected = fusevault("gc", mnt, "--as-of", later)
        print("gc:", collected.returncode, collected.stdout[-1500:], collected.stderr[-500:])
        left = json.loads(fusevault("trash", mnt, "--json").stdout)["trash"]
        assert left == [], f"bob's deletion dated 2100 stays in the trash past its 30 days: {left}"

# --- (3) a writer's seq naming the owner's device far above MAX_LAG: her own later states are "rollbacks"


@pytest.mark.parametrize("ahead", [True, False])
def test_a_writers_seq_far_ahead_on_the_owners_device_does_not_make_her_later_edits_rollbacks(
        vault: Path, tmp_path: Path, ahead: bool) -> None:
    """alice shares team/notes.txt with bob (WRITE).  bob signs a node document of it whose ``seq`` names
    alice's own device with n = 2**63 - 1 (far beyond MAX_LAG: her counter is not moved, round 8's fix).
    alice mounts and edits notes.txt; she mounts again and shares team with carol (READ).  Safe: notes.txt's
    key is sealed to carol (alice's own edit is no rollback), and no rollback is reported.
    ``ahead=False``: the control, bob's document re-signed with its seq unchanged."""
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB_SECRET)
    _admin(vault, "user", "add", "carol", "--uid", "2002", passphrase=CAROL_SECRET)
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "team").mkdir()
        (mnt / "team" / "notes.txt").write_text("shared with bob")
        assert _share(mnt, "team/notes.txt", "bob", "WRITE") is not None
    fid = _node_fid(vault, "alice", "notes.txt")
    device = open_node_attrs(adversary.get(vault, fid), _alice_dek(vault, fid))["seq"][0]
    _resigned_by_bob(vault, fid, {"seq": [device, 2**63 - 1]} if ahead else {})
    with mounted(vault, mnt):
        (mnt / "team" / "notes.txt").write_text("alice's edit")
    with mounted(vault, mnt):
        assert (mnt / "team" / "notes.txt").read_text() == "alice's edit"
        assert _share(mnt, "team", "carol", "READ") is not None
        status = fusevault("status", mnt)
        print("status:", status.stdout[-3000:])
    carol = _user(vault, "carol")["_id"]
    _log_says("rollback")
    assert _keys_for(vault, carol, fid), "notes.txt's key is not sealed to carol: her own edit is 'behind'"
    assert "rollback" not in status.stdout, "alice's own edit of notes.txt is reported as a rollback"


def _log_says(word: str) -> None:
    """Print the lines of the mounts' logs with ``word`` (the alarms are logged there too)."""
    for log in sorted(Path(os.environ["FUSEVAULT_STATE_DIR"], "logs").glob("*")):
        for line in log.read_text(errors="replace").splitlines():
            if word in line:
                print(log.name, line[:300])


# --- (4) an extended attribute no one may set through the mount, from a user's own node document


# struct vfs_cap_data, revision 2, effective: CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH permitted.
FILE_CAPS = struct.pack("<IIIII", 0x02000000 | 0x1, (1 << 1) | (1 << 2), 0, 0, 0)

# Held at 9b2364a by the mount's nosuid alone (libfuse's default): setxattr took user.* only
# (vault/tree/attributes.py), but getxattr served any name a node document holds, security.capability too.
# Now getxattr and listxattr serve user.* only, and every mount says nosuid,nodev itself (fs/lifecycle.py).


@SHARED_ONLY
def test_a_user_cannot_give_his_own_program_file_capabilities_in_the_shared_mount(
        shared_vault: Path, place: Path, linux, python) -> None:  # noqa: F811
    """bob, unlocked in root's shared mount, copies cat into his own files.  He signs (his own key: it is
    his file; he may write the vault folder, or sync it from a device of his) a node document of it whose
    sealed xattrs hold ``security.capability`` (CAP_DAC_OVERRIDE, effective), a name the mount never lets
    anyone set.  Safe: bob's cat cannot read /etc/shadow (he never acts with root's rights)."""
    mountpoint = place / "mnt-round9a"
    mountpoint.mkdir()
    with mounted(shared_vault, mountpoint, "--allow-other"):
        people = People(linux, place, python, mountpoint)
        people.unlock("bob")
        people.ok("bob", "cp /bin/cat $M/cat && chmod 755 $M/cat")
        before = people.sh("bob", "$M/cat /etc/shadow")
        assert before.returncode != 0, "bob reads /etc/shadow before the attack: the test proves nothing"
        key = _key(shared_vault, "bob", SECRETS["bob"])
        fid = _own_fid(shared_vault, key, "cat")
        doc = adversary.get(shared_vault, fid)
        dek = doc_dek(doc, key)
        attrs = {**open_node_attrs(doc, dek), "xattrs": {"security.capability": b64e(FILE_CAPS)}}
        body = {k: v for k, v in doc.items() if k not in ("_rev", "sig")}
        body["enc"] = b64e(aead.seal(dek, json.dumps(attrs).encode(), aead.ad("node", fid)))
        adversary.put(shared_vault, sign_doc(key.user_id, key.identity.sign, body))
        (line,) = [line for line in Path("/proc/mounts").read_text().splitlines()
                   if line.split()[1] == str(mountpoint)]
        print(line)
        assert {"nosuid", "nodev"} <= set(line.split()[3].split(",")), line
        got = before
        for _ in range(10):  # the watcher looks once a second (fs/shared.py WATCH_EVERY)
            time.sleep(1)
            got = people.sh("bob", "$M/cat /etc/shadow")
            if got.returncode == 0:
                break
        print(got.returncode, got.stdout[:80], got.stderr[-300:])
        probe = ("import os, sys\n"
                 "try: print(os.getxattr(sys.argv[1], 'security.capability'))\n"
                 "except OSError as err: print('errno', err.errno)\n"
                 "print(os.listxattr(sys.argv[1]))")
        shown = people.sh("bob", f"{python} -S -c {shlex.quote(probe)} $M/cat")
        print("bob's getxattr security.capability:", shown.stdout, shown.stderr[-200:])
        assert got.returncode != 0, "bob's own cat reads /etc/shadow: root's rights from a document he signed"
        # Served as setxattr takes them: user.* only (not left to nosuid alone).
        assert shown.stdout == f"errno {errno.ENODATA}\n[]\n", shown.stdout + shown.stderr


def _own_fid(vault: Path, key, name: str) -> str:
    for doc in adversary.docs(vault, "node"):
        if doc.get("owner") == key.user_id and not doc.get("delete"):
            if any(n == name for _, n in open_node_attrs(doc, doc_dek(doc, key))["links"]):
                return doc["_id"]
    raise AssertionError(f"no node {name}")
