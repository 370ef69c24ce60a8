"""Issue 22, attack round 8: fusevault as it is at 00e28b0 (main), attacked through its entry points.

The attacker: a WRITE (or READ) recipient of alice's who can write the vault folder (or the store), and
so signs node documents of alice's shared files with the DEK he holds.  Each test asserts the SAFE
behaviour (holes were marked ``xfail(strict=True)`` until closed).

In-process shared-mount attacks as in tests/mount/test_trust_attack_round7.py (``shared``: alice's and
bob's seats over one store; a planted document is handed to every seat as fs/shared.py does).

Found at 00e28b0, 3 kinds of hole, all closed the same day (each test failed before; docs/SECURITY.md):
- a sealed field check_numbers does not look at, of the wrong type (a link name or trashed name that is a
  number, xattrs a list, an xattr value or symlink target a number; a link's parent fid a list or dict; a
  head a list or dict; previous a list): absorb_arrivals raises (AttributeError, TypeError,
  sqlite3.ProgrammingError); in a real shared mount that ends the mount for every user; at unlock
  (a READ recipient suffices for the wrongly typed names) alice's vault no longer mounts (exit 70);
  ``history`` of the file is an internal error.
- a version document whose ``file_location`` is a number: the file's whole history is an internal error.
- a WRITE recipient's node document whose ``seq`` names alice's device with n = 2**63 - 1: her ledger
  takes it as her device's counter, her next commits carry n >= 2**63, which check_numbers refuses: her
  vault no longer mounts ("the root directory's document is missing").
Holds: names that are not names; two documents making a cycle at unlock; a replayed revision of a
deleted file (this device or a new one); a READ recipient's deletion or trashing while unlocked.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import time
from pathlib import Path

import adversary
import pyfuse3
import pytest
import trio
from attack_scenes import (
    ALICE,
    BOB,
    alice_shares_in,
    bobs_node_doc,
    mounts_again,
    planted,
    recipients_dek,
    resigned,
    resigned_by_bob,
    rewrite,
    scene,
    team_with_plan,
)
from conftest import PASSPHRASE, fusevault, mounted
from inprocess.conftest import (  # noqa: F401  (fixtures)
    ALICE_UID,
    ROOT,
    shared,
    template_vault,
    vault_copy,
)
from inprocess.test_two_users import _read, _walk

from fusevault.crypto import aead
from fusevault.crypto.signing import sign_doc, signer_of
from fusevault.encoding import b64d, b64e
from fusevault.vault.model.history import version_plain
from fusevault.vault.model.nodes import doc_dek, open_node_attrs
from mount.test_shared_mount import SECRETS, People, linux, place, python, shared_vault  # noqa: F401
from mount.test_shared_mount import pytestmark as SHARED_ONLY
from mount.test_trust_attack_round4 import _alice_dek
from mount.test_trust_writes import _key, _node_fid, _user

# Sealed attributes of a node document that check_numbers (vault/model/nodes.py) does not look at, each
# given a value of the wrong type: apply_attrs calls str_to_name (``.encode``) or ``.items()`` on it.
WRONG_TYPES = {
    "link-name-int": lambda team: {"links": [[team, 5]]},
    "xattrs-list": lambda team: {"xattrs": [1, 2]},
    "xattr-value-int": lambda team: {"xattrs": {"user.x": 5}},
    "target-int": lambda team: {"target": 7},
    "trashed-name-int": lambda team: {"trashed": [9, 0], "links": []},
}


# alice's team/plan.txt and diary.txt, team shared with bob (tests/attack_scenes.py); round 9a imports it.
_team_with_plan = team_with_plan


HOLE_TYPES = ("hole: check_numbers (vault/model/nodes.py) checks numbers only; apply_attrs calls "
              "str_to_name / .items() on sealed fields of the wrong type and node_from_doc "
              "catches KeyError, TypeError, ValueError, OverflowError, not AttributeError")


@pytest.mark.parametrize("kind", sorted(WRONG_TYPES))
def test_a_writers_node_document_with_a_wrongly_typed_field_is_refused_not_a_crash(
        shared, kind: str) -> None:  # noqa: F811
    """alice shares team (with team/plan.txt) with bob (WRITE).  bob signs a node document of plan.txt
    whose sealed attributes hold a field of the wrong type (a link name that is a number, xattrs that are
    a list, ...).  Safe: taking it in raises nothing (it is malformed: refused), and alice still reads
    plan.txt and her other files."""

    async def attack() -> tuple[bytes, bytes]:
        drive = shared.drive
        alice = shared.volumes["alice"]
        folder, mine = await team_with_plan(shared)
        folder_node = alice.tree.node(alice.tree.node(ROOT).children[b"team"])
        plan = alice.tree.node(folder_node.children[b"plan.txt"])
        planted(shared, bobs_node_doc(shared, plan.fid, WRONG_TYPES[kind](folder_node.fid)))
        await trio.sleep(0)
        diary = await drive.lookup(ROOT, b"diary.txt", ALICE)
        return await _read(drive, diary.st_ino, ALICE), await _read(drive, mine.st_ino, ALICE)

    diary, plan = trio.run(attack)
    assert diary == b"alice's own\n"
    assert plan == b"alice's plan\n"


@pytest.mark.parametrize("kind", ["link-name-int", "xattrs-list", "target-int"])
def test_a_recipients_node_document_with_a_wrongly_typed_field_does_not_stop_the_owners_mount(
        vault: Path, tmp_path: Path, kind: str) -> None:
    """As above through the vault folder and a real mount: bob (READ on notes.txt) signs a node document of
    it with a field of the wrong type.  Safe: alice still mounts and reads her other files."""
    mnt = scene(vault, tmp_path, {"notes.txt": "shared with bob", "diary.txt": "alice's own"},
                [("notes.txt", "bob", "READ")])
    fid = _node_fid(vault, "alice", "notes.txt")
    root = _root_fid(vault)
    resigned_by_bob(vault, fid, WRONG_TYPES[kind](root))
    with mounts_again(vault, mnt, then=_log_tail):
        assert (mnt / "diary.txt").read_text() == "alice's own"


def _root_fid(vault: Path) -> str:
    fid = _node_fid(vault, "alice", "notes.txt")
    doc = adversary.get(vault, fid)
    return open_node_attrs(doc, _alice_dek(vault, fid))["links"][0][0]



# --- a version document with a path field of the wrong type


def _bobs_version_doc(shared, doc: dict, change: dict) -> dict:  # noqa: F811
    """bob's own version document ``doc`` with its sealed fields changed, sealed under the DEK he holds
    and signed by him (a WRITE recipient who can write the store)."""
    bob = shared.volumes["bob"]
    dek = bob.find(doc["fid"]).dek
    plain = {**version_plain(doc, dek), **change}
    body = {k: v for k, v in doc.items() if k not in ("_rev", "sig")}
    sealed = aead.seal(dek, json.dumps(plain, separators=(",", ":")).encode(),
                       aead.ad("version", doc["fid"], doc["_id"]))
    body["enc"] = b64e(sealed)
    return sign_doc(bob.key.user_id, bob.key.identity.sign, body)


def test_a_writers_version_with_a_number_for_its_folder_does_not_hide_the_files_history(
        shared) -> None:  # noqa: F811
    """alice shares team (team/plan.txt) with bob (WRITE); bob saves a version of plan.txt, then writes his
    version document again with ``file_location`` a number.  Safe: alice's ``fusevault history`` of
    plan.txt still lists her own version (his is left out, and said), so she can restore it."""

    async def attack() -> dict:
        drive = shared.drive
        alice = shared.volumes["alice"]
        await team_with_plan(shared)
        theirs = await _walk(drive, b"shared/alice/team/plan.txt", BOB)
        await rewrite(drive, theirs.st_ino, b"bob's vandalism\n", BOB)
        folder_node = alice.tree.node(alice.tree.node(ROOT).children[b"team"])
        plan = alice.tree.node(folder_node.children[b"plan.txt"])
        bob_id = shared.volumes["bob"].key.user_id
        bobs = [d for d in shared.store.iter_type("FilesMetaData")
                if d.get("fid") == plan.fid and signer_of(d) == bob_id]
        assert bobs
        planted(shared, _bobs_version_doc(shared, bobs[0], {"file_location": 5}))
        await trio.sleep(0)
        requests = drive.seat_of(ALICE_UID).ops.session.requests
        return await requests.handle({"cmd": "history", "path": "team/plan.txt"})

    answer = trio.run(attack)
    print(answer)
    assert "error" not in answer, answer
    assert len(answer["versions"]) >= 1


# --- names that are not names, from a writer


@pytest.mark.parametrize("bad", ["..", ".", "", "a/b", "x\0y", "n" * 256])
def test_a_writer_cannot_give_the_owners_file_a_name_that_is_not_one(shared, bad: str) -> None:  # noqa: F811
    """bob (WRITE on team) signs a node document of team/plan.txt that adds a second name in team: ``..``,
    ``.``, empty, with ``/`` or NUL, or 256 bytes long.  Safe: alice's team folder lists only valid names
    and plan.txt still reads."""

    async def attack() -> tuple[list[bytes], bytes]:
        drive = shared.drive
        alice = shared.volumes["alice"]
        folder, mine = await team_with_plan(shared)
        folder_node = alice.tree.node(alice.tree.node(ROOT).children[b"team"])
        plan = alice.tree.node(folder_node.children[b"plan.txt"])
        links = [[folder_node.fid, "plan.txt"], [folder_node.fid, bad]]
        planted(shared, bobs_node_doc(shared, plan.fid, {"links": links}))
        await trio.sleep(0)
        return sorted(folder_node.children), await _read(drive, mine.st_ino, ALICE)

    listed, plan = trio.run(attack)
    assert listed == [b"plan.txt"], listed
    assert plan == b"alice's plan\n"


# --- a cycle of two folders, each document alone no cycle, met at unlock


def _bobs_relink(vault: Path, fid: str, links: list) -> None:
    resigned_by_bob(vault, fid, {"links": links})


def test_two_writer_documents_that_together_make_a_cycle_do_not_stop_the_owners_mount(
        vault: Path, tmp_path: Path) -> None:
    """alice shares team (team/a, team/b, team/a/plan.txt) with bob (WRITE).  bob signs a node document of a
    that puts it in b, and one of b that puts it in a (each alone moves a folder inside a folder he
    writes; together a and b hang from nothing but each other).  alice mounts.  Safe: the mount comes
    up, lists team and her root, reads her own file, and ``unshare`` of team finishes."""
    mnt = scene(vault, tmp_path, {"team/a": None, "team/b": None, "team/a/plan.txt": "the plan",
                                  "diary.txt": "alice's own"}, [("team", "bob", "WRITE")])
    a, b = _node_fid(vault, "alice", "a"), _node_fid(vault, "alice", "b")
    _bobs_relink(vault, a, [[b, "a"]])
    _bobs_relink(vault, b, [[a, "b"]])
    with mounts_again(vault, mnt, then=_log_tail):
        assert (mnt / "diary.txt").read_text() == "alice's own"
        listed = sorted(p.name for p in (mnt / "team").iterdir())
        print("team:", listed)
        for top in listed:  # no path goes round forever
            found = [mnt / "team" / top, *(mnt / "team" / top).rglob("*")]
            depth = max(len(p.relative_to(mnt).parts) for p in found)
            assert depth < 6, f"team/{top} is {depth} deep"
        status = fusevault("status", mnt)
        print("status:", status.returncode, status.stdout[-3000:], status.stderr[-1000:])
        try:
            gone = fusevault("unshare", mnt / "team", "--with", "bob", timeout=60)
            print("unshare:", gone.returncode, gone.stdout, gone.stderr)
            assert gone.returncode == 0
        except subprocess.TimeoutExpired:
            raise AssertionError("unshare did not finish in 60 s") from None


# --- a replayed live revision of a deleted file takes the name of the owner's new file


@pytest.mark.parametrize("device", ["this", "new"])
def test_a_replayed_revision_of_a_deleted_file_does_not_take_the_name_of_the_owners_new_file(
        vault: Path, tmp_path: Path, device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """alice writes report.txt, deletes it, and writes a new report.txt (another file).  The vault folder's
    writer (no key) puts back the deleted file's last live node document.  alice mounts.  Safe: report.txt
    reads what she wrote last (the replay is a rollback: said, and it takes no name from her file).  ``new``:
    she mounts on a device that has seen nothing (no ledger): both documents are hers, the replayed one
    carries the lower (device, n) of the same writing device."""
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "report.txt").write_text("the old report")
    old = adversary.get(vault, _node_fid(vault, "alice", "report.txt"))
    assert old is not None
    with mounted(vault, mnt):
        (mnt / "report.txt").unlink()
        (mnt / "report.txt").write_text("the new report")
    adversary.put(vault, old)
    if device == "new":
        monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "state-of-a-new-device"))
    with mounted(vault, mnt):
        try:
            now = (mnt / "report.txt").read_text()
        except OSError as err:
            now = str(err)
        status = fusevault("status", mnt)
        print("status:", status.stdout[-3000:])
    assert now == "the new report", f"alice's new report.txt was replaced by the replayed one: {now!r}"


# --- sealed fields that name other documents, of the wrong type

ODD_REFERENCES = {
    "link-parent-list": lambda team: {"links": [[team, "plan.txt"], [[team], "again.txt"]]},
    "link-parent-dict": lambda team: {"links": [[team, "plan.txt"], [{"a": team}, "again.txt"]]},
    "head-dict": lambda team: {"head": {"a": 1}},
    "head-list": lambda team: {"head": ["x"]},
    "previous-list": lambda team: {"previous": ["x"]},
    "previous-int": lambda team: {"previous": 5},
}


HOLE_REFS = ("hole: nodes.check_numbers / apply_attrs (vault/model/nodes.py) leave a link's parent fid, "
             "head and previous ")


def _odd(kind: str, where: str | None) -> object:
    if where is None:
        return kind
    return pytest.param(kind)  # closed: nodes.check_shapes (was: HOLE_REFS + where)


@pytest.mark.parametrize("kind", [
    _odd("link-parent-dict", "unchecked: relink (vault/tree/arrivals.py) asks tree.holds(dict): TypeError"),
    _odd("link-parent-list", "unchecked: relink (vault/tree/arrivals.py) asks tree.holds(list): TypeError"),
    _odd("head-dict", "unchecked: absorbing._version_here -> store/places.py document_body binds a dict "
         "(sqlite3.ProgrammingError)"),
    _odd("head-list", "unchecked: absorbing._version_here -> store/places.py document_body binds a list "
         "(sqlite3.ProgrammingError)"),
    _odd("previous-list", "unchecked: history's lineage (vault/model/history.py) fails on a list: "
         "internal error"),
    "previous-int",
])
def test_a_writers_node_document_with_an_odd_reference_breaks_nothing_else(
        shared, kind: str) -> None:  # noqa: F811
    """bob (WRITE on team) signs a node document of team/plan.txt whose parent fid, head or previous file is
    a list, a dict or a number.  Safe: taking it in raises nothing; alice's other file reads, plan.txt reads
    or fails as a file system error (EIO), and her history request of it answers (no internal error)."""

    async def attack() -> tuple[bytes, object, dict]:
        drive = shared.drive
        alice = shared.volumes["alice"]
        folder, mine = await team_with_plan(shared)
        folder_node = alice.tree.node(alice.tree.node(ROOT).children[b"team"])
        plan = alice.tree.node(folder_node.children[b"plan.txt"])
        planted(shared, bobs_node_doc(shared, plan.fid, ODD_REFERENCES[kind](folder_node.fid)))
        await trio.sleep(0)
        diary = await drive.lookup(ROOT, b"diary.txt", ALICE)
        try:
            got: object = await _read(drive, mine.st_ino, ALICE)
        except pyfuse3.FUSEError as err:
            got = err.errno
        requests = drive.seat_of(ALICE_UID).ops.session.requests
        answer = await requests.handle({"cmd": "history", "path": "team/plan.txt"})
        return await _read(drive, diary.st_ino, ALICE), got, answer

    diary, plan, answer = trio.run(attack)
    print(plan, answer)
    assert diary == b"alice's own\n"
    assert plan in (b"alice's plan\n", errno.EIO), plan
    assert "internal error" not in str(answer.get("error")), answer


@pytest.mark.parametrize("kind", [
    _odd("link-parent-list", "unchecked: linking.link_loaded asks tree.ino_of(list) (vault/tree/inodes.py): "
         "TypeError, the mount fails (exit 70)"),
    "head-dict", "previous-list"])
def test_a_recipients_node_document_with_an_odd_reference_does_not_stop_the_owners_mount(
        vault: Path, tmp_path: Path, kind: str) -> None:
    """As above through the vault folder and a real mount: bob (READ on notes.txt) signs a node document of
    it whose parent fid, head or previous file is a list or a dict.  Safe: alice still mounts and reads
    her other files."""
    mnt = scene(vault, tmp_path, {"notes.txt": "shared with bob", "diary.txt": "alice's own"},
                [("notes.txt", "bob", "READ")])
    resigned_by_bob(vault, _node_fid(vault, "alice", "notes.txt"), ODD_REFERENCES[kind](_root_fid(vault)))
    with mounts_again(vault, mnt, then=_log_tail):
        assert (mnt / "diary.txt").read_text() == "alice's own"


def _log_tail() -> None:
    """The end of the mount's log (where an internal error says where it was)."""
    for log in sorted(Path(os.environ["FUSEVAULT_STATE_DIR"], "logs").glob("*")):
        text = log.read_text(errors="replace")
        print(log.name, text[text.rfind("Traceback"):][-3000:] if "Traceback" in text else "")


# --- a READ recipient's deletion, arriving while the owner is unlocked


@pytest.mark.parametrize("how", ["tombstone", "trashed"])
def test_a_read_recipients_deletion_does_not_take_the_owners_file_away(shared, how: str) -> None:  # noqa: F811
    """alice shares team (team/plan.txt) with bob (READ).  bob, who can write the store, signs a node document
    of plan.txt that deletes it (``delete: true``) or moves it to the trash (no links, ``trashed``).  Safe:
    alice's unlocked tree keeps team/plan.txt, and it reads."""

    async def attack() -> bytes:
        drive = shared.drive
        alice = shared.volumes["alice"]
        folder, mine = await team_with_plan(shared, "READ")
        folder_node = alice.tree.node(alice.tree.node(ROOT).children[b"team"])
        plan = alice.tree.node(folder_node.children[b"plan.txt"])
        doc = bobs_node_doc(shared, plan.fid, {"links": [], "trashed": ["team/plan.txt", 1]}
                             if how == "trashed" else {})
        if how == "tombstone":
            bob = shared.volumes["bob"]
            body = {k: v for k, v in doc.items() if k != "sig"}
            doc = sign_doc(bob.key.user_id, bob.key.identity.sign, {**body, "delete": True})
        planted(shared, doc)
        await trio.sleep(0)
        found = await drive.lookup(folder.st_ino, b"plan.txt", ALICE)
        return await _read(drive, found.st_ino, ALICE)

    assert trio.run(attack) == b"alice's plan\n"


# --- the same arriving while a real shared mount serves: the store watcher


def _resigned_by(vault: Path, name: str, fid: str, change: dict) -> None:
    """alice's node document of ``fid`` with sealed attributes changed, under the DEK ``name`` opens from
    their key file, signed by them (``SECRETS``: the shared mount's users; round 9a imports it)."""
    resigned(vault, fid, change, recipients_dek(vault, name, SECRETS[name], fid), name, SECRETS[name])


@SHARED_ONLY
def test_a_writers_odd_document_arriving_does_not_take_the_shared_mount_down(
        shared_vault: Path, place: Path, linux, python) -> None:  # noqa: F811
    """alice, unlocked in a shared mount, shares notes.txt with bob (WRITE).  bob, who can write the vault
    folder, puts there a node document of notes.txt signed by him with a second link whose parent fid is a
    list.  The mount's store watcher takes it in.  Safe: the mount stays up and alice reads other.txt."""
    mountpoint = place / "mnt-round8"
    mountpoint.mkdir()
    with mounted(shared_vault, mountpoint, "--allow-other"):
        people = People(linux, place, python, mountpoint)
        alice_shares_in(people, mountpoint, "echo genuine > $M/notes.txt && echo untouched > $M/other.txt",
                        [("notes.txt", "bob", "WRITE")])
        fid = _node_fid_as(shared_vault, "notes.txt")
        root = _user(shared_vault, "alice")["root"]
        _resigned_by(shared_vault, "bob", fid, {"links": [[root, "notes.txt"], [[root], "again.txt"]]})
        for _ in range(10):  # the watcher looks once a second (fs/shared.py WATCH_EVERY)
            time.sleep(1)
            if str(mountpoint) not in Path("/proc/mounts").read_text():
                break  # the mount is gone
        result = people.sh("alice", "cat $M/other.txt")
        print(result.returncode, result.stdout, result.stderr)
        assert result.stdout == "untouched\n", f"the shared mount is down: {result.stderr}"


def _node_fid_as(vault: Path, name: str) -> str:
    key = _key(vault, "alice", SECRETS["alice"])
    for doc in adversary.docs(vault, "node"):
        if doc.get("owner") == key.user_id and not doc.get("delete"):
            if any(n == name for _, n in open_node_attrs(doc, doc_dek(doc, key))["links"]):
                return doc["_id"]
    raise AssertionError(f"no node {name}")


# --- a writer's document carrying the owner's device with the largest counter


def test_a_writers_document_with_the_owners_device_at_the_top_counter_does_not_break_her_later_files(
        vault: Path, tmp_path: Path) -> None:
    """alice shares notes.txt with bob (WRITE).  bob signs a node document of it whose ``seq`` names alice's
    own writing device with n = 2**63 - 1 (the largest check_numbers lets through).  alice mounts, writes a
    new file and edits notes.txt, and mounts again.  Safe: both read back what she wrote."""
    mnt = scene(vault, tmp_path, {"notes.txt": "shared with bob"},
                [("notes.txt", "bob", "WRITE")])
    fid = _node_fid(vault, "alice", "notes.txt")
    device = open_node_attrs(adversary.get(vault, fid), _alice_dek(vault, fid))["seq"][0]
    resigned_by_bob(vault, fid, {"seq": [device, 2**63 - 1]})
    with mounted(vault, mnt):
        (mnt / "later.txt").write_text("alice's later file")
        (mnt / "notes.txt").write_text("alice's edit")
    root = _user(vault, "alice")["root"]
    doc = adversary.get(vault, root)
    key = _key(vault, "alice", PASSPHRASE)
    plain = aead.unseal(doc_dek(doc, key), b64d(doc["enc"]), aead.ad("node", root))
    print("her root's seq now:", json.loads(plain)["seq"])  # n > 2**63 - 1: refused at the next load
    with mounts_again(vault, mnt):
        got = []
        for name in ("later.txt", "notes.txt"):
            try:
                got.append((mnt / name).read_text())
            except OSError as err:
                got.append(str(err))
    assert got == ["alice's later file", "alice's edit"], got
