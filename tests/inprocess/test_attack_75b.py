"""Attack round 75b: an outsider, a READ recipient of alice's folder (direct, or through a group whose
membership gives READ under a WRITE share), and a backup buddy.  No hole confirmed in the time.

Controls kept (each fails if a device took the READ recipient's signed change):

- ``test_75b_control_a_read_recipients_signed_change_arriving_changes_neither_her_tree_nor_his``: bob
  holds team READ (``direct``), or is a READ member of alice's group ``team`` to which she shares the
  folder WRITE (``group``: ``sharing.reaches`` must give READ).  He signs, under the file's DEK, a
  state of her team/plan.txt that chmods it 0777 and sets ``user.evil``, renames it, deletes it (clear
  ``delete`` and sealed ``trashed``), or makes it a folder, and writes it to the store as its current
  revision (what a member who writes the vault folder, or his other device through the server, hands
  every seat).  Taken in while mounted: alice's seat and bob's own seat (his other device's view)
  show plan.txt as before.
- ``test_75b_control_at_unlock_her_file_is_rebuilt_and_his_seat_takes_none_of_it``: the same state
  stored while no seat is unlocked: at the next unlock alice's tree shows her file as she left it
  (``rebuilt``), and bob's shows no change of his (his seat leaves the file out, as SECURITY.md's
  "What a refusal does" says of a refused node of another owner).

Read and held (no run kept): local checks of every mutating path a READ seat can reach (setattr,
xattrs, link, rename/exchange, fallocate/write on handles, ``.versions`` routes, restore in place and
``--to``, trash restore: own trash only, import and drop-box placement through ``make_dirs`` /
``write_file``), authorship's ``may_write`` exceptions (placement stamps need held folders of hers),
``version_ok`` / ``writes_where_it_left``, Rotation requests (only hers or her group owner's), the
settings guards (``import_into`` / ``settle_seconds`` replays are SECURITY.md's "Not covered"), the
buddy's replica (no keys, arrivals go nowhere; what it learns is the server's, documented).

Not tried: real mounts (time, load), conflict branches of a READ recipient's state beside hers,
CouchDB-level stacking of his revision over hers while mounted (SECURITY.md's 39a (5) path).
"""

from __future__ import annotations

import json
import stat

import pytest
import trio
from attack_scenes import ALICE, BOB, planted

from fusevault.crypto import aead
from fusevault.crypto.signing import sign_doc
from fusevault.encoding import b64e
from fusevault.vault.model.nodes import open_node_attrs
from inprocess.conftest import ALICE_UID as A_UID
from inprocess.conftest import BOB as BOBS
from inprocess.conftest import BOB_UID, PASSPHRASE, ROOT, _composed
from inprocess.test_two_users import _walk, _write

SEATS = {"alice": (PASSPHRASE, A_UID), "bob": (BOBS, BOB_UID)}
KINDS = ["chmod_xattr", "rename", "delete", "retype"]
HOW = ["direct", "group"]


def _change(kind: str, team_fid: str) -> tuple[dict, dict]:
    """(sealed attributes, clear fields) of bob's state of plan.txt."""
    return {
        "chmod_xattr": ({"mode": stat.S_IFREG | 0o777, "xattrs": {"user.evil": b64e(b"x")}}, {}),
        "rename": ({"links": [[team_fid, "renamed.txt"]]}, {}),
        "delete": ({"links": [], "trashed": ["team/plan.txt", 1]}, {"delete": True}),
        "retype": ({"mode": stat.S_IFDIR | 0o755}, {}),
    }[kind]


def _bobs_state(composed, fid: str, sealed: dict, clear: dict) -> dict:
    """bob's signed state of alice's ``fid``: her stored state with ``sealed`` and ``clear`` changed,
    sealed under the DEK he holds (valid AEAD), signed with his own key."""
    bob = composed.volumes["bob"]
    dek = bob.find(fid).dek
    doc = composed.store.get(fid)
    attrs = {**open_node_attrs(doc, dek), **sealed, "seq": ["bobs-device", 1]}
    body = {k: v for k, v in doc.items() if k not in ("_rev", "sig")}
    body.update(clear)
    plain = json.dumps(attrs, separators=(",", ":")).encode()
    body["enc"] = b64e(aead.seal(dek, plain, aead.ad("node", fid)))
    return sign_doc(bob.key.user_id, bob.key.identity.sign, body)


def _seen(volume, fid: str):
    node = volume.find(fid)
    return None if node is None else (stat.S_IFMT(node.mode), stat.S_IMODE(node.mode), dict(node.xattrs),
                                      sorted(name for _, name in node.links))


async def _team_read_for_bob(composed, how: str) -> tuple[str, str]:
    """alice's team/plan.txt, READ to bob (``direct``, or as a READ member of her group team shared
    WRITE); bob walks to it.  (plan.txt's id, team's id.)"""
    drive, alice = composed.drive, composed.volumes["alice"]
    folder = await drive.mkdir(ROOT, b"team", stat.S_IFDIR | 0o755, ALICE)
    await _write(drive, folder.st_ino, b"plan.txt", b"alice's plan\n", ALICE)
    requests = drive.seat_of(A_UID).ops.session.requests
    if how == "direct":
        answer = await requests.handle({"cmd": "share", "path": "team", "with": "bob", "perm": "READ"})
        view = b"shared/alice/team/plan.txt"
    else:
        from fusevault.vault.model import groups
        me = alice.store.get(alice.key.user_id)
        group = groups.create_group(alice.store, "team", me, alice.trust.sign)
        groups.set_member(alice.store, alice.store.get(group["_id"]),
                          alice.store.get(composed.volumes["bob"].key.user_id), "READ", sign=alice.trust.sign)
        for volume in composed.volumes.values():
            volume.sharing.reload(volume.store)
        answer = await requests.handle({"cmd": "share", "path": "team", "with": "@team", "perm": "WRITE"})
        view = None
    assert "error" not in answer, answer
    bob = composed.volumes["bob"]
    fid = alice.resolve(b"team/plan.txt").fid
    if view is not None:
        await _walk(drive, view, BOB)
    assert bob.find(fid) is not None and bob.find(fid).dek, "the scene: bob holds plan.txt and its key"
    assert not bob.tree.may_write(bob.find(fid)), "the scene: bob may only read plan.txt"
    return fid, alice.resolve(b"team").fid


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("kind", KINDS)
def test_75b_control_a_read_recipients_signed_change_arriving_changes_neither_her_tree_nor_his(
        vault_copy, kind: str, how: str) -> None:
    with _composed(vault_copy, SEATS) as composed:
        async def scene() -> None:
            alice, bob = composed.volumes["alice"], composed.volumes["bob"]
            fid, team = await _team_read_for_bob(composed, how)
            before = (_seen(alice, fid), _seen(bob, fid))
            planted(composed, _bobs_state(composed, fid, *_change(kind, team)))
            await trio.sleep(0)
            assert (_seen(alice, fid), _seen(bob, fid)) == before
            assert sorted(alice.tree.node(alice.resolve(b"team").ino).children) == [b"plan.txt"]

        trio.run(scene)


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("kind", KINDS)
def test_75b_control_at_unlock_her_file_is_rebuilt_and_his_seat_takes_none_of_it(
        vault_copy, kind: str, how: str) -> None:
    box: dict = {}
    with _composed(vault_copy, SEATS) as composed:
        async def scene() -> None:
            fid, team = await _team_read_for_bob(composed, how)
            box.update(fid=fid, alice=_seen(composed.volumes["alice"], fid),
                       bob=_seen(composed.volumes["bob"], fid))
            doc = _bobs_state(composed, fid, *_change(kind, team))
            composed.store.put_many([{**doc, "_rev": composed.store.get(fid)["_rev"]}])  # no seat told

        trio.run(scene)
    with _composed(vault_copy, SEATS) as composed:
        fid = box["fid"]
        assert _seen(composed.volumes["alice"], fid) == box["alice"], "her file as she left it"
        assert _seen(composed.volumes["bob"], fid) in (None, box["bob"]), "nothing of his change shown to him"
