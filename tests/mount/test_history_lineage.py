"""A file's history goes through the files it replaced by renames (an editor's save) only where the
replaced file says so (vault/model/history.py ``lineage``, ``replaced``).

A node document's ``previous`` is the word of whoever signed it, a WRITE grantee too; the replaced
file's own document names its replacement (``replaced_by``, sealed and signed with it). In-process
shared mount (alice's and bob's seats over one store) as in tests/mount/test_trust_attack_round9a.py,
where the attack on the owner's file in the trash is."""

from __future__ import annotations

import json
import stat

import trio
from attack_scenes import rewrite
from inprocess.conftest import (  # noqa: F401  (fixtures)
    ALICE_UID,
    BOB_UID,
    ROOT,
    Ctx,
    shared,
    template_vault,
    vault_copy,
)
from inprocess.test_two_users import _read, _walk, _write

from fusevault.crypto import aead
from fusevault.crypto.signing import sign_doc
from fusevault.encoding import b64e
from fusevault.vault.model.nodes import open_node_doc
from mount.test_trust_attack_round7 import _bobs_node_doc, _planted
from mount.test_trust_attack_round8 import _team_with_plan

ALICE = Ctx(ALICE_UID, ALICE_UID)
BOB = Ctx(BOB_UID, BOB_UID)


def _requests(shared):  # noqa: F811
    return shared.drive.seat_of(ALICE_UID).ops.session.requests


async def _save_by_rename(drive, folder: int, name: bytes, data: bytes, ctx: Ctx) -> None:
    """What an editor does: write a new file, rename it over the old one."""
    await _write(drive, folder, b"." + name + b".tmp", data, ctx)
    await drive.rename(folder, b"." + name + b".tmp", folder, name, 0, ctx)


def _fid(shared, *path: bytes) -> str:  # noqa: F811
    alice = shared.volumes["alice"]
    node = alice.tree.node(ROOT)
    for name in path:
        node = alice.tree.node(node.children[name])
    return node.fid


def _as_before_replaced_by(shared, fid: str) -> None:  # noqa: F811
    """alice's document of the replaced file ``fid`` as a version without ``replaced_by`` wrote it
    (re-signed by her: her own file, from before the field was recorded)."""
    alice = shared.volumes["alice"]
    doc = shared.store.get(fid)
    dek, attrs = open_node_doc(doc, alice.key)
    attrs.pop("replaced_by", None)
    body = {k: v for k, v in doc.items() if k not in ("_rev", "sig")}
    body["enc"] = b64e(aead.seal(dek, json.dumps(attrs).encode(), aead.ad("node", fid)))
    body["_rev"] = doc["_rev"]
    shared.store.put_many([sign_doc(alice.key.user_id, alice.key.identity.sign, body)])


def test_a_writers_save_by_rename_in_the_shared_folder_keeps_one_history(shared) -> None:  # noqa: F811
    """alice shares team (team/plan.txt) with bob (WRITE); bob saves plan.txt as an editor does (a new
    file renamed over it).  alice's history of team/plan.txt still has her own first version, and
    ``restore`` (the previous version) brings it back."""

    async def run() -> tuple[dict, bytes]:
        drive = shared.drive
        await _team_with_plan(shared)
        team = await _walk(drive, b"shared/alice/team", BOB)
        await _save_by_rename(drive, team.st_ino, b"plan.txt", b"bob's plan\n", BOB)
        requests = _requests(shared)
        history = await requests.handle({"cmd": "history", "path": "team/plan.txt"})
        restored = await requests.handle({"cmd": "restore", "path": "team/plan.txt"})
        assert "error" not in restored, restored
        mine = await _walk(drive, b"team/plan.txt", ALICE)
        return history, await _read(drive, mine.st_ino, ALICE)

    history, seen = trio.run(run)
    print(history)
    assert [v["author"] for v in history["versions"]] == ["alice", "bob"], history
    assert seen == b"alice's plan\n"


async def _bobs_previous_naming_a_replaced_file(shared, before_replaced_by: bool = True  # noqa: F811
                                                ) -> tuple[str, str]:
    """alice's team/plan.txt (WRITE to bob) and private/secret.txt saved by rename (``before_replaced_by``:
    the replaced file's document without ``replaced_by``); bob's document of plan.txt naming the replaced
    file as ``previous`` arrives.  Returned: the replaced file's id and plan.txt's."""
    drive = shared.drive
    await _team_with_plan(shared)
    private = await drive.mkdir(ROOT, b"private", stat.S_IFDIR | 0o700, ALICE)
    await _write(drive, private.st_ino, b"secret.txt", b"alice's first secret\n", ALICE)
    old = _fid(shared, b"private", b"secret.txt")
    await _save_by_rename(drive, private.st_ino, b"secret.txt", b"alice's secret\n", ALICE)
    if before_replaced_by:
        await shared.volumes["alice"].flush_pending()
        _as_before_replaced_by(shared, old)
    plan = _fid(shared, b"team", b"plan.txt")
    _planted(shared, _bobs_node_doc(shared, plan, {"previous": old}))
    await trio.sleep(0)
    return old, plan


def test_a_writer_cannot_graft_the_owners_private_replaced_file_into_a_shared_files_history(
        shared) -> None:  # noqa: F811
    """alice saves her private/secret.txt by rename (the old file is replaced, not in the trash: it
    names the file that replaced it).  bob (WRITE on team) signs a node document of team/plan.txt whose
    ``previous`` is the replaced file's id.  Safe: plan.txt's history lists none of secret.txt's
    versions, and alice's own history of private/secret.txt keeps both."""

    async def run() -> tuple[dict, dict]:
        await _bobs_previous_naming_a_replaced_file(shared, before_replaced_by=False)
        requests = _requests(shared)
        return (await requests.handle({"cmd": "history", "path": "team/plan.txt"}),
                await requests.handle({"cmd": "history", "path": "private/secret.txt"}))

    plan, secret = trio.run(run)
    print(plan, secret)
    assert "error" not in plan, plan
    assert [v["path"] for v in plan["versions"]] == ["team/plan.txt"], plan
    assert [v["path"] for v in secret["versions"]] == ["private/secret.txt", "private/.secret.txt.tmp"], \
        secret


def test_a_replaced_file_from_before_replaced_by_is_followed_from_the_owners_document_only(
        shared) -> None:  # noqa: F811
    """A vault from before ``replaced_by``: alice's private/secret.txt saved by rename, the replaced
    file's document without the field.  alice's history of it still goes through the replaced file
    (her own ``previous``); bob's ``previous`` of team/plan.txt naming it is not followed."""

    async def run() -> tuple[dict, dict]:
        await _bobs_previous_naming_a_replaced_file(shared)
        requests = _requests(shared)
        return (await requests.handle({"cmd": "history", "path": "team/plan.txt"}),
                await requests.handle({"cmd": "history", "path": "private/secret.txt"}))

    plan, secret = trio.run(run)
    print(plan, secret)
    assert [v["path"] for v in plan["versions"]] == ["team/plan.txt"], plan
    assert [v["path"] for v in secret["versions"]] == ["private/secret.txt", "private/.secret.txt.tmp"], \
        secret


def test_a_writers_previous_arriving_while_mounted_is_not_laundered_by_the_owners_next_commit(
        shared) -> None:  # noqa: F811
    """The scene above (a replaced file from before ``replaced_by``); bob's document naming it as
    team/plan.txt's ``previous`` arrives while alice's seat is unlocked, and alice then writes plan.txt
    (her commit carried the field over, signed by her: followed).  Safe: plan.txt's history is its own,
    and her document of it names no such ``previous`` (tests/mount/test_refused_deletion_rebuilt.py
    drives the same at unlock on a real mount)."""

    async def run() -> tuple[dict, str | None]:
        drive = shared.drive
        old, plan = await _bobs_previous_naming_a_replaced_file(shared)
        mine = await _walk(drive, b"team/plan.txt", ALICE)
        await rewrite(drive, mine.st_ino, b"alice's new plan\n", ALICE)
        await shared.volumes["alice"].flush_pending()
        _, attrs = open_node_doc(shared.store.get(plan), shared.volumes["alice"].key)
        history = await _requests(shared).handle({"cmd": "history", "path": "team/plan.txt"})
        return history, attrs.get("previous") if attrs.get("previous") == old else None

    plan, laundered = trio.run(run)
    print(plan, laundered)
    assert laundered is None, "alice's commit signed bob's previous as hers"
    assert {v["path"] for v in plan["versions"]} == {"team/plan.txt"}, plan
