"""Attack round 75b: an outsider, a READ recipient of alice's folder (direct, or through a group whose
membership gives READ under a WRITE share), and a backup buddy (a sync server or peer).  Three holes,
one cause: her conflict settling never judges the revision CouchDB's rule made current.

(1) medium-high.  Attacker: bob, READ on team (direct, or a READ member of her group shared WRITE).
    Steps: he makes a state of her team/plan.txt with her head and names, mode 0777, his uid as owner,
    ``user.evil``, each stamped changed now, sealed under a DEK of his that he seals to her public key
    (``owner_dek``), signs it, and stores it as a sibling of her current revision one generation longer
    (CouchDB ``_bulk_docs`` ``new_edits: false``; here ``replica.store_revisions``), so it is current.
    Her mount takes the batch in (refused, said) and settles the conflict.  Seen: her tree, the store's
    next revision SIGNED BY HER, and every seat at unlock (hers, his; any member's) show mode 0777, uid
    2202 and ``user.evil``.  Expected: nothing of his (he holds READ).  Cause: conflicts.py
    ``_settle_one`` (line 233) judges only the other leaf (``leaf_verdict(other)``), never ``current``;
    ``_newer_key`` (479) keeps her state for its key beside "a member's state"; ``apart`` (546) then
    merges his mode, owner ids and xattrs by their stamps (``_her_key_beside_his``, 669), and ``_adopt``
    judges only the names it takes from him (``leaf_ok``, 935), not ``meta`` (961), committed as hers.
    Test:
    ``test_75b_1_a_read_recipients_winning_branch_under_his_key_has_her_settling_sign_his_chmod_and_xattr``.
(3) high.  Attacker: anyone who can put revisions in a store she syncs with, with no key and no
    signature (the CouchDB server, a peer, a backup buddy refilling her server, a writer of the vault
    folder).  Steps: (1)'s state built from what is clear (her public key from her user document, the
    file's id and epoch, its version's id from the FilesMetaData ``fid``; any folder id), unsigned,
    of her file shared with nobody.  Seen: her device signs mode 0777, uid/gid 2202 and the xattr into
    her private diary.txt; shown live and at unlock (an alarm says a state "claims key epoch", "his names
    and metadata merged").  Expected: an unsigned document changes nothing.  Cause: as (1).
    Test: ``test_75b_3_an_unsigned_branch_from_the_server_has_her_settling_sign_its_chmod_and_xattr``;
    through a real mount and pouchdb-server (the server's own ``_bulk_docs`` ``new_edits: false``), her
    0600 diary.txt shows 0777 and the xattr through her mount (``tests/mount/test_attack_75b.py``).
(2) low.  Bob's winning branch sealed under her own key (her wrapping copied, one key, one epoch, same
    contents): rule 2 keeps his (later ctime) and ``_close`` closes HER leaf: her device deletes her
    genuine revision on every replica it syncs with, his refused state left the only one; every other
    recipient's unlock leaves the file out (ENOENT) until her next commit of it (SECURITY.md says so of a
    revision stacked on hers, "the store holds only the refused revision": here it held hers).  Cause:
    as (1), ``decide``'s keeper then ``_close(volume, store, theirs)``.  With no key at all: the
    server's unsigned state of her folder made once, put as a second first revision (no history in
    common: rule 5, "made twice", keeps the current one) has her settling close her folder's only
    revision (her unlock rebuilds it, said; a member's or new device's takes the server's).
    Tests: ``test_75b_2_her_settling_never_closes_her_own_leaf_under_a_read_recipients_branch``,
    ``test_75b_2_an_unsigned_root_sibling_of_her_folder_does_not_have_her_settling_close_her_leaf``.
Suggested fix (all three): in ``_settle_one``, judge ``current`` as ``other`` is (``leaf_verdict``, or
``admit`` + ``may_take``); a refused current beside her leaf is closed (her leaf made current again,
as a refused ``other`` is closed), never settled against; and merge a member's metadata (``apart``'s
``_her_key_beside_his``) only from a leaf ``leaf_ok`` admits.

Controls kept (each fails if a device took the READ recipient's signed change):

- ``test_75b_control_a_read_recipients_signed_change_arriving_changes_neither_her_tree_nor_his``: bob
  (direct READ, or READ member of her group shared WRITE) signs, under the file's DEK, a state of her
  team/plan.txt that chmods it 0777 and sets ``user.evil``, renames it, deletes it (clear ``delete``,
  sealed ``trashed``), or makes it a folder, stacked on her revision: taken in while mounted, her seat
  and his own seat (his other device's view) show plan.txt as before.
- ``test_75b_control_at_unlock_her_file_is_rebuilt_and_his_seat_takes_none_of_it``: the same stored
  while no seat is unlocked: at unlock her tree shows her file as she left it, his no change of his.
- ``test_75b_control_his_winning_branch_under_her_own_key_merges_nothing_of_his``: (2)'s scene merges
  nothing of his into what she signs.
(Checked by breaking the code once: ``sharing.reaches`` giving a READ group member the share's WRITE,
or authorship's ``may_write`` answering yes, fails the first two controls.)

Read and held (no run kept): local checks of every mutating path a READ seat can reach (setattr,
xattrs, link, rename/exchange, fallocate/write on handles, ``.versions`` routes, restore in place and
``--to``, trash restore: own trash only, import and drop-box placement through ``make_dirs`` /
``write_file``), authorship's ``may_write`` exceptions (placement stamps need held folders of hers),
``version_ok`` / ``writes_where_it_left``, Rotation requests (only hers or her group owner's), rule 3
with his version as the newer contents (his keeper refused by ``absorb_node``: her state recommitted),
settings guards (``import_into`` / ``settle_seconds`` replays are SECURITY.md's "Not covered"), share
namesakes (``_grantee``), the buddy's replica (no keys, its arrivals go nowhere).

Not tried: real mounts for (1) and (2) (only (3) went through one), folders and
symlinks as the target of (1)/(3), rule 4 (his head a version not descending from hers: her contents
copied as a conflict copy, her leaf closed?), what uid/gid and mode bits changed this way give other
local users on root's shared mount.
"""

from __future__ import annotations

import json
import os
import stat
import time

import pytest
import trio
from attack_scenes import ALICE, BOB, planted

from fusevault.crypto import aead
from fusevault.crypto.identity import public_box, seal_file_key
from fusevault.crypto.signing import sign_doc, signer_of
from fusevault.encoding import b64e
from fusevault.store import replica
from fusevault.vault.model.nodes import open_node_attrs
from fusevault.vault.services import conflicts
from fusevault.vault.services.absorbing import absorb_arrivals
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


# --- (1): his state as a winning conflict branch, under a key he sealed to her


def _his_branch(composed, fid: str, his_key: bool) -> dict:
    """bob's signed state of alice's ``fid``: her current state's head and names, mode 0777, ``user.evil``
    and his uid as owner (stamped as changed now), sealed under a DEK of his he seals to her public key
    (``owner_dek``, what anyone can make: ``his_key``) or under hers (her wrapping copied), stored as
    a sibling of her current revision one generation longer: CouchDB's rule makes it current.  What a
    READ recipient who syncs with her server pushes (``_bulk_docs`` with ``new_edits: false``)."""
    alice, bob = composed.volumes["alice"], composed.volumes["bob"]
    local = replica.local_of(composed.store)
    hers = local.get(fid)
    attrs = open_node_attrs(hers, bob.find(fid).dek)
    now = time.time_ns()
    attrs.update(mode=stat.S_IFREG | 0o777, xattrs={"user.evil": b64e(b"bob was here")}, uid=BOB_UID,
                 gid=BOB_UID, ctime=now, changed={"mode": now, "xattrs": now, "owner": now},
                 seq=["bobs-device", 1])
    body = {k: v for k, v in hers.items() if k not in ("_rev", "sig")}
    dek = bob.find(fid).dek
    if his_key:
        dek, owner = os.urandom(32), alice.key.user_id
        del body["en_file_dek"]
        body["owner_dek"] = b64e(seal_file_key(public_box(local.get(owner)), owner, owner, fid, hers["epoch"],
                                               dek))
    plain = json.dumps(attrs, separators=(",", ":")).encode()
    body["enc"] = b64e(aead.seal(dek, plain, aead.ad("node", fid)))
    doc = sign_doc(bob.key.user_id, bob.key.identity.sign, body)
    history = replica.current_history(local, fid)
    generation = int(history[0].split("-")[0])
    fork = [f"{generation + 1}-{'f' * 32}", f"{generation}-{'e' * 32}", *history[1:]]
    replica.store_revisions(local, [{**doc, "_rev": fork[0], "_revisions": replica.revisions(fork)}])
    assert local.get(fid)["_rev"] == fork[0] and replica.other_leaves(local, fid), "scene: his branch wins"
    return local.get(fid)


async def _taken_in(composed, docs: list[dict], ids: list[str]) -> None:
    """What alice's mount does with a batch a peer sent (fs/arrivals.py ``arrived``): every seat takes
    it in (her recommits run), every seat notes the branches, her seat settles them (its recommits
    run): a file of hers is settled by her devices alone (``conflicts._settle_one``)."""
    alice = composed.volumes["alice"]
    local = replica.local_of(composed.store)
    for volume in composed.volumes.values():
        out = absorb_arrivals(volume, docs)
        if volume is alice:
            for node, rev in out.recommit:
                if alice.find(node.fid) is node and node.rev == rev:
                    await alice.save_node(node)
    for volume in composed.volumes.values():
        conflicts.note_branches(volume, local, ids)
    out = await conflicts.settle(alice, local, ids)
    for node, rev in out.recommit:
        if alice.find(node.fid) is node and node.rev == rev:
            await alice.save_node(node)


def _stored(composed, fid: str) -> tuple:
    """The store's current state of her file: (signed by her, mode bits, uid, xattrs)."""
    alice = composed.volumes["alice"]
    doc = replica.local_of(composed.store).get(fid)
    attrs = open_node_attrs(doc, alice.find(fid).dek)
    return signer_of(doc) == alice.key.user_id, stat.S_IMODE(attrs["mode"]), attrs["uid"], attrs["xattrs"]


def _branch_scene(vault, how: str, his_key: bool) -> dict:
    box: dict = {}
    with _composed(vault, SEATS) as composed:
        async def scene() -> None:
            alice, bob = composed.volumes["alice"], composed.volumes["bob"]
            fid, _ = await _team_read_for_bob(composed, how)
            box.update(fid=fid, before=(_seen(alice, fid), _seen(bob, fid)))
            branch = _his_branch(composed, fid, his_key)
            await _taken_in(composed, [branch], [fid])
            box.update(live=(_seen(alice, fid), _seen(bob, fid)), stored=_stored(composed, fid))

        trio.run(scene)
    with _composed(vault, SEATS) as composed:
        box["unlocked"] = tuple(_seen(composed.volumes[name], box["fid"]) for name in ("alice", "bob"))
    return box


def _nothing_of_his(box: dict) -> None:
    alice_before, bob_before = box["before"]
    assert box["live"] == box["before"], f"live: {box['live']} (before {box['before']})"
    signed_by_her, mode, uid, xattrs = box["stored"]
    assert not (signed_by_her and (mode == 0o777 or uid == BOB_UID or "user.evil" in xattrs)), \
        f"her own signed state carries his chmod, owner or xattr: {box['stored']}"
    assert box["unlocked"][0] == alice_before, f"her tree at unlock: {box['unlocked'][0]} ({alice_before})"
    assert box["unlocked"][1] in (None, bob_before), f"his seat at unlock: {box['unlocked'][1]}"


@pytest.mark.parametrize("how", HOW)
def test_75b_1_a_read_recipients_winning_branch_under_his_key_has_her_settling_sign_his_chmod_and_xattr(
        vault_copy, how: str) -> None:
    _nothing_of_his(_branch_scene(vault_copy, how, his_key=True))


@pytest.mark.parametrize("how", HOW)
def test_75b_control_his_winning_branch_under_her_own_key_merges_nothing_of_his(vault_copy, how: str) -> None:
    """The same branch sealed under her key (one key, one epoch: rule 2 by time): nothing of his
    merged (his branch stays the store's current revision, her leaf closed: 75b (2))."""
    _nothing_of_his(_branch_scene(vault_copy, how, his_key=False))


# --- (2): his winning branch under her own key: her settling closes her leaf


@pytest.mark.parametrize("how", HOW)
def test_75b_2_her_settling_never_closes_her_own_leaf_under_a_read_recipients_branch(
        vault_copy, how: str) -> None:
    with _composed(vault_copy, SEATS) as composed:
        async def scene() -> tuple[bool, list[str], str]:
            alice = composed.volumes["alice"]
            fid, _ = await _team_read_for_bob(composed, how)
            local = replica.local_of(composed.store)
            hers = local.get(fid)["_rev"]
            branch = _his_branch(composed, fid, his_key=False)
            await _taken_in(composed, [branch], [fid])
            current = local.get(fid)
            live = [current["_rev"], *(leaf["_rev"] for leaf in replica.other_leaves(local, fid))]
            return signer_of(current) == alice.key.user_id, live, hers

        signed_by_her, live, hers = trio.run(scene)
    assert signed_by_her or hers in live, f"her leaf {hers} closed; live: {live}, the current one his"


# --- (3): (1) with no key at all: a server, peer, backup buddy or writer of the vault folder


def _keyless_branch(store, fid: str) -> dict:
    """A state of her file made from what the store shows in clear: her public key (her user document),
    the file's id and key epoch, its version's id (the clear ``fid`` of its FilesMetaData document); a
    random folder id and name, mode 0777, owner ids 2202, an xattr, stamped changed now; sealed under a
    DEK of its own sealed to her public key (``owner_dek``), unsigned; stored as a sibling of her current
    revision one generation longer, so that CouchDB's rule makes it current (a buddy's or peer's store
    pushed to her, a CouchDB ``_bulk_docs`` with ``new_edits: false``)."""
    local = replica.local_of(store)
    hers = local.get(fid)
    (version,) = local.by_file("FilesMetaData", fid)
    now = time.time_ns()
    attrs = {"mode": stat.S_IFREG | 0o777, "uid": 2202, "gid": 2202, "rdev": 0, "size": 0, "atime": now,
             "mtime": now, "ctime": now, "btime": now, "links": [[os.urandom(16).hex(), "x"]],
             "xattrs": {"user.evil": b64e(b"the server was here")}, "target": None, "head": version["_id"],
             "manifest": None, "trashed": None, "previous": None, "epoch": hers["epoch"],
             "changed": {"mode": now, "xattrs": now, "owner": now}, "seq": ["server", 1]}
    dek, owner = os.urandom(32), hers["owner"]
    doc = {"_id": fid, "type": "node", "owner": owner, "epoch": hers["epoch"], "delete": False,
           "owner_dek": b64e(seal_file_key(public_box(local.get(owner)), owner, owner, fid, hers["epoch"],
                                           dek)),
           "enc": b64e(aead.seal(dek, json.dumps(attrs).encode(), aead.ad("node", fid)))}
    history = replica.current_history(local, fid)
    generation = int(history[0].split("-")[0])
    fork = [f"{generation + 1}-{'f' * 32}", f"{generation}-{'e' * 32}", *history[1:]]
    replica.store_revisions(local, [{**doc, "_rev": fork[0], "_revisions": replica.revisions(fork)}])
    assert local.get(fid)["_rev"] == fork[0] and replica.other_leaves(local, fid), "scene: the branch wins"
    return local.get(fid)


def test_75b_3_an_unsigned_branch_from_the_server_has_her_settling_sign_its_chmod_and_xattr(
        vault_copy) -> None:
    box: dict = {}
    with _composed(vault_copy, SEATS) as composed:
        async def scene() -> None:
            alice = composed.volumes["alice"]
            await _write(composed.drive, ROOT, b"diary.txt", b"alice's own\n", ALICE)  # shared with nobody
            fid = alice.resolve(b"diary.txt").fid
            box.update(fid=fid, before=_seen(alice, fid))
            await _taken_in(composed, [_keyless_branch(composed.store, fid)], [fid])
            box.update(live=_seen(alice, fid), stored=_stored(composed, fid))

        trio.run(scene)
    with _composed(vault_copy, SEATS) as composed:
        box["unlocked"] = _seen(composed.volumes["alice"], box["fid"])
    signed_by_her, mode, uid, xattrs = box["stored"]
    assert box["live"] == box["before"], f"her tree: {box['live']} (before {box['before']})"
    assert not (signed_by_her and (mode == 0o777 or uid == 2202 or "user.evil" in xattrs)), box["stored"]
    assert box["unlocked"] == box["before"], f"her tree at unlock: {box['unlocked']}"


def test_75b_2_an_unsigned_root_sibling_of_her_folder_does_not_have_her_settling_close_her_leaf(
        vault_copy) -> None:
    """(2) with no key: her folder made once (one revision), the server's unsigned state of it (sealed
    under a DEK it seals to her public key) put as a second first revision, one generation longer:
    rule 5 ("made twice", one kept) keeps the current one, the server's, and closes hers."""
    with _composed(vault_copy, SEATS) as composed:
        async def scene() -> tuple[bool, list[str], str, tuple]:
            alice = composed.volumes["alice"]
            await composed.drive.mkdir(ROOT, b"private", stat.S_IFDIR | 0o700, ALICE)
            fid = alice.resolve(b"private").fid
            local = replica.local_of(composed.store)
            hers = local.get(fid)
            assert replica.current_history(local, fid) == [hers["_rev"]], "scene: one revision of hers"
            now = time.time_ns()
            attrs = {"mode": stat.S_IFDIR | 0o777, "uid": 2202, "gid": 2202, "rdev": 0, "size": 0,
                     "atime": now, "mtime": now, "ctime": now, "btime": now,
                     "links": [[os.urandom(16).hex(), "x"]], "xattrs": {}, "target": None, "head": None,
                     "manifest": None, "trashed": None, "previous": None, "epoch": hers["epoch"],
                     "seq": ["server", 1]}
            dek, owner = os.urandom(32), hers["owner"]
            doc = {"_id": fid, "type": "node", "owner": owner, "epoch": hers["epoch"], "delete": False,
                   "owner_dek": b64e(seal_file_key(public_box(local.get(owner)), owner, owner, fid,
                                                   hers["epoch"], dek)),
                   "enc": b64e(aead.seal(dek, json.dumps(attrs).encode(), aead.ad("node", fid)))}
            fork = [f"2-{'f' * 32}", f"1-{'e' * 32}"]
            replica.store_revisions(local, [{**doc, "_rev": fork[0], "_revisions": replica.revisions(fork)}])
            await _taken_in(composed, [local.get(fid)], [fid])
            current = local.get(fid)
            live = [current["_rev"], *(leaf["_rev"] for leaf in replica.other_leaves(local, fid))]
            return "sig" in current and signer_of(current) == alice.key.user_id, live, hers["_rev"], \
                _seen(alice, fid)

        signed_by_her, live, hers, shown = trio.run(scene)
    assert shown[1] == 0o700, shown
    assert signed_by_her or hers in live, f"her leaf {hers} closed; live: {live}, the server's current"


# --- the fix: a refused current revision is never settled against (conflicts.py ``_beside_refused_current``)


def _unsigned_state(store, fid: str) -> dict:
    """``_keyless_branch``'s unsigned state of her file (mode 0777, owner ids 2202, ``user.evil``),
    not stored."""
    local = replica.local_of(store)
    hers = local.get(fid)
    (version,) = local.by_file("FilesMetaData", fid)
    now = time.time_ns()
    attrs = {"mode": stat.S_IFREG | 0o777, "uid": 2202, "gid": 2202, "rdev": 0, "size": 0, "atime": now,
             "mtime": now, "ctime": now, "btime": now, "links": [[os.urandom(16).hex(), "x"]],
             "xattrs": {"user.evil": b64e(b"the server was here")}, "target": None, "head": version["_id"],
             "manifest": None, "trashed": None, "previous": None, "epoch": hers["epoch"],
             "changed": {"mode": now, "xattrs": now, "owner": now}, "seq": ["server", 1]}
    dek, owner = os.urandom(32), hers["owner"]
    return {"_id": fid, "type": "node", "owner": owner, "epoch": hers["epoch"], "delete": False,
            "owner_dek": b64e(seal_file_key(public_box(local.get(owner)), owner, owner, fid, hers["epoch"],
                                            dek)),
            "enc": b64e(aead.seal(dek, json.dumps(attrs).encode(), aead.ad("node", fid)))}


def _put(store, doc: dict, history: list[str]) -> dict:
    """``doc`` stored as the leaf ``history`` (newest first) ends in, as a peer sends it."""
    local = replica.local_of(store)
    replica.store_revisions(local, [{**doc, "_rev": history[0], "_revisions": replica.revisions(history)}])
    return {**doc, "_rev": history[0]}


def _leaves(store, fid: str) -> list[dict]:
    local = replica.local_of(store)
    return [local.get(fid), *replica.other_leaves(local, fid)]


def _her_other_devices_chmod(composed, fid: str) -> dict:
    """Her other device's state of her file, signed by her: chmod 0640, stamped changed now."""
    alice = composed.volumes["alice"]
    hers = replica.local_of(composed.store).get(fid)
    dek = alice.find(fid).dek
    now = time.time_ns()
    attrs = {**open_node_attrs(hers, dek), "mode": stat.S_IFREG | 0o640, "ctime": now,
             "changed": {"mode": now}, "seq": ["her-phone", 1]}
    body = {k: v for k, v in hers.items() if k not in ("_rev", "sig")}
    plain = json.dumps(attrs, separators=(",", ":")).encode()
    body["enc"] = b64e(aead.seal(dek, plain, aead.ad("node", fid)))
    return alice.trust.sign(body)


def test_75b_fix_a_refused_current_beside_her_other_devices_edit_keeps_her_edit_and_nothing_of_it(
        vault_copy) -> None:
    """The server's unsigned state stacked on her revision (current), her other device's chmod 0640 a
    sibling of it: her other device's edit is made current over the refused one (never lost), nothing of
    the server's merged into what she signs, one leaf left, the refusal said."""
    with _composed(vault_copy, SEATS) as composed:
        async def scene() -> None:
            alice = composed.volumes["alice"]
            await _write(composed.drive, ROOT, b"diary.txt", b"alice's own\n", ALICE)
            fid = alice.resolve(b"diary.txt").fid
            local = replica.local_of(composed.store)
            history = replica.current_history(local, fid)
            generation = int(history[0].split("-")[0])
            _put(composed.store, _her_other_devices_chmod(composed, fid),
                 [f"{generation}-{'0' * 32}", *history[1:]])
            assert local.get(fid)["_rev"] == history[0], "scene: her revision current, her other one's beside"
            forged = _put(composed.store, _unsigned_state(composed.store, fid),
                          [f"{generation + 1}-{'f' * 32}", *history])
            assert local.get(fid)["_rev"] == forged["_rev"], "scene: the unsigned state current"
            await _taken_in(composed, [forged], [fid])
            assert _seen(alice, fid) == (stat.S_IFREG, 0o640, {}, [b"diary.txt"]), "her other device's chmod"
            assert _stored(composed, fid) == (True, 0o640, A_UID, {}), "signed by her: her other device's"
            assert len(_leaves(composed.store, fid)) == 1, "settled: one leaf"
            said = [a["text"] for a in alice.tree.trust.alarms.as_list() if a["subject"] == fid]
            assert any("refused" in text for text in said), said

        trio.run(scene)


def test_75b_fix_a_replay_of_her_own_beside_a_refused_current_is_not_made_current(vault_copy) -> None:
    """Her own older revision (before a rename), signed by her, put back as a leaf beside the server's
    refused current: a replay by the ledger, closed as the refused one is; what her tree holds (the
    rename) is committed over the refused current, never her older state."""
    with _composed(vault_copy, SEATS) as composed:
        async def scene() -> None:
            alice = composed.volumes["alice"]
            await _write(composed.drive, ROOT, b"diary.txt", b"alice's own\n", ALICE)
            fid = alice.resolve(b"diary.txt").fid
            local = replica.local_of(composed.store)
            older = {k: v for k, v in local.get(fid).items() if k != "_rev"}
            older_history = replica.current_history(local, fid)
            await composed.drive.rename(ROOT, b"diary.txt", ROOT, b"renamed.txt", 0, ALICE)
            history = replica.current_history(local, fid)
            assert older_history[0] in history, "scene: the rename made over her older revision"
            generation = int(history[0].split("-")[0])
            replay = _put(composed.store, older, [f"{generation}-{'0' * 32}", *older_history])
            forged = _put(composed.store, _unsigned_state(composed.store, fid),
                          [f"{generation + 1}-{'f' * 32}", *history])
            live = [leaf["_rev"] for leaf in _leaves(composed.store, fid)]
            assert local.get(fid)["_rev"] == forged["_rev"] and replay["_rev"] in live, "scene"
            await _taken_in(composed, [forged], [fid])
            assert _seen(alice, fid)[3] == [b"renamed.txt"], _seen(alice, fid)
            current = local.get(fid)
            assert signer_of(current) == alice.key.user_id, "her state committed over the refused one"
            assert sorted(name for _, name in open_node_attrs(current, alice.find(fid).dek)["links"]) \
                == ["renamed.txt"]
            assert len(_leaves(composed.store, fid)) == 1, "settled: one leaf"

        trio.run(scene)


# --- (2) through the clear fields: a winning sibling naming another owner or another type


@pytest.mark.parametrize("field", ["owner", "type"])
def test_75b_fix_a_sibling_naming_another_owner_or_type_has_no_device_close_her_leaf(
        vault_copy, field: str) -> None:
    """The server's unsigned winning sibling of her private diary.txt names bob as its owner (his
    device took it for his file to settle, and closed her leaf as not his), or another type (a
    share's: "the revision CouchDB's rule picked stands", her node's leaf closed on every device).
    What a document is, and whose, is what a device holds or saw of it, never the current revision's
    clear fields: bob's device leaves it, hers makes her leaf current again over it."""
    with _composed(vault_copy, SEATS) as composed:
        async def scene() -> None:
            alice, bob = composed.volumes["alice"], composed.volumes["bob"]
            await _write(composed.drive, ROOT, b"diary.txt", b"alice's own\n", ALICE)
            fid = alice.resolve(b"diary.txt").fid
            before = _seen(alice, fid)
            local = replica.local_of(composed.store)
            hers = local.get(fid)["_rev"]
            history = replica.current_history(local, fid)
            generation = int(history[0].split("-")[0])
            doc = _unsigned_state(composed.store, fid)
            doc.update({"owner": bob.key.user_id} if field == "owner" else {"type": "share"})
            forged = _put(composed.store, doc, [f"{generation + 1}-{'f' * 32}", f"{generation}-{'e' * 32}",
                                                *history[1:]])
            assert local.get(fid)["_rev"] == forged["_rev"], "scene: the forged sibling current"
            for volume in composed.volumes.values():
                absorb_arrivals(volume, [forged])
                conflicts.note_branches(volume, local, [fid])
            await conflicts.settle(bob, local, [fid])  # his device first: never hers to settle
            assert hers in [leaf["_rev"] for leaf in _leaves(composed.store, fid)], "her leaf closed by his"
            out = await conflicts.settle(alice, local, [fid])
            for node, rev in out.recommit:
                if alice.find(node.fid) is node and node.rev == rev:
                    await alice.save_node(node)
            current = local.get(fid)
            assert current.get("type") == "node" and signer_of(current) == alice.key.user_id, current
            assert _seen(alice, fid) == before
            assert len(_leaves(composed.store, fid)) == 1, "settled: one leaf"

        trio.run(scene)
