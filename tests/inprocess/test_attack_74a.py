"""Attack round 74a, in-process: round 73a's fix of the ``sealed_for`` record (her proof, ``taken``,
``sealed_for.left_out``; merge 7690b84).  Seats of one shared mount (tests/inprocess/test_attack_53c.py
``_in_scene`` over the ``three`` vault: alice, bob, carol); her seat is her desktop, a Volume of her own
over the same store is her laptop (as tests/inprocess/test_attack_73a.py does), whose writes reach the
desktop only when handed over (the server between them decides what and when).

(1) high (a revocation undone on her other device, unsaid: 71d (1) again, with one more document).
    Attacker: the server (or a peer) between her laptop and her desktop: it withholds, and serves an
    old document of hers again.
    Steps (``test_74a_1_...[unshares_carol_too]``): alice's docs/plan.txt, docs shared READ with bob and
    with carol.  On her laptop she unshares bob, then carol (two commands: docs and plan.txt re-keyed to
    epoch 1, then 2; the last records name nobody, ``taken`` both Shares, with her proof).  The server
    hands the desktop the laptop's node states, keeps both Shares' deletions from it (their bodies
    still served, as in 71d (1)), and serves her own signed Rotation request of the first unshare again
    at ``rotate-<docs>`` (a replay; or the deletion of it kept from the desktop: the same body).  The
    desktop runs what an unlock runs (``rotation.resume``), then makes docs/new.txt.
    ``[shares_carol_after]``: one unshare is enough: docs shared with bob only; on her laptop she
    unshares bob, then shares docs with carol (no re-key); the same server steps.
    Seen: the desktop carries the request out (``_carry_out``: the file is past the request's epoch,
    but ``_her_key`` finds the laptop's key under no recipient list it tries, two grants from what it
    sees) and re-keys docs and plan.txt (epoch 3; 2 in the second case) for the recipients it sees:
    bob's (and carol's) key of plan.txt at the new epoch, new.txt sealed to bob; the new record names
    both in ``to`` (2 entries), ``taken`` empty; no alarm at all (``said`` []).  Control
    ``test_74a_control_her_desktop_keeps_the_shares_taken_back`` (the same scenes, no request served):
    bob's key stays below the epoch, new.txt not sealed to him, ``replayed-grant`` said.
    Expected: the desktop holds her proven records saying the Shares were taken back: no key it makes
    after is sealed to them, whatever re-key its unlock carries out.
    Cause: vault/services/rotation.py:415-428 ``resume`` runs the rotation passes (and
    ``_rekey_rolled_back``) before ``fill_missing``, the only place that reads the records and fills
    ``Guests.left``; a re-key before it seals to every grant in force (vault/files/rekeying.py:77
    ``seal_keys``, ``left`` still empty at an unlock).  Its record then names the grant
    (``her_keys.recipients`` ignores ``left``) and drops the ``taken`` it carried (rekeying.py:109-110,
    ``t not in in_force``): the records that showed the grant taken back are gone from every file
    re-keyed, for every device.  The trigger: rotation.py:511, her request whose epoch the file passed
    counts as done only if ``_her_key`` derives the key for the recipients seen here less at most one
    grant (its docstring: "a key of hers not found there costs one more re-key, nothing else").
    (1b) The same root without any document served again (``test_74a_1b_...``): after the desktop's
    unlock found bob left out (fixed 71d (1): ``left``, the alarm), docs and plan.txt are re-keyed on
    the desktop while mounted: ``[her_unshare_there]`` she unshares carol there; ``[a_members_claims]``
    carol, a WRITE member, signs a state of each claiming key epoch 5 under the key she holds (her
    desktop takes each in at its epoch, says the claim, and re-keys them, as fs/arrivals.py ``_rekey``
    does).  The re-keys seal bob nothing (``left``) but their records name bob in ``to`` and their
    ``taken`` lacks his Share (carol's only, or none); at the desktop's next unlock (a Volume loaded
    again over the same folder and store, ``resume``) bob's Share, in force, is left out by no record,
    and he is sealed plan.txt's new key (epoch 2; 3 after the claims), unsaid.  The open list's 71d (1)
    text says such a re-key's key is "not sealed to it there": it is, at the next unlock there; and a
    member alone (with the server withholding the deletion) makes the re-key happen.  Control
    ``[no_rekey_there]``: bob's Share in force, left out again at the next unlock, no key.
    Other triggers read, not run: a member's state under an older key stored while she was locked
    (key_claims.py ``claims_judged`` -> ``ledger.rolled`` -> ``_rekey_rolled_back`` before
    ``fill_missing``), a debt of the desktop's own (its unshare cut short: ``_pay_owed``), a group
    owner's request not done here; a rollback (``rolled``) follows no share above the file
    (``behind``), so it reaches only a node the Share is on (the folder docs itself).
    Impact: bob (and carol) read every file of docs/ re-keyed there and all she writes there after,
    on her desktop; the records now say so for every device; no alarm.  Her laptop's look over keys no
    share reaches (``_rekey_unreached``) may re-key again once the desktop's key files and states reach
    it, if the server lets them.
    Suggested fix: read every held record (``_left_out`` over ``held_keys``, filling ``left``) at the
    start of ``resume``, before any re-key; in ``rekey`` leave grants in ``left`` out of the recipients
    and of ``in_force`` (``_taken`` keeps a Share of ``left``), so the new record says them taken back
    again; and/or let ``_carry_out`` take her own request as done when the file is past its epoch under
    a key her proof proves (``key_proof``).

Held (controls kept): ``test_74a_control_her_desktop_keeps_the_shares_taken_back`` (both scenes, no
request served: 73a's rule holds for two Shares, and for a share made after the unshare; fails if the
records stop counting), ``test_74a_1b_...[no_rekey_there]`` (bob left out again at the next unlock, his
Share in force there: fails if a reload forgets the records).  Read, held: the proof binds the file,
the epoch, the key and every field of the record (``_digest``): no member or server moves it to another
file, epoch or key; a member's state
claiming an epoch keeps her record (absorbing.py lowers the epoch before ``sealed_for.taken``); a file
moved out and back into the share on her laptop is covered by the folder's own record (72c (1)'s
``left``) while that record stands.
Not tried (time): real mounts; the triggers read above; groups (the open list's group case); costs
(per-file records of a big group, ~140 bytes a recipient in every node).
"""

from __future__ import annotations

import copy
import json
import stat
from pathlib import Path

import pytest
from mount.test_trust_attack_39a import _ask, three  # noqa: F401  (fixture)

from fusevault.crypto import aead
from fusevault.crypto.signing import sign_doc, signer_of
from fusevault.encoding import b64e
from fusevault.vault.model import alarms, sharing
from fusevault.vault.model.nodes import open_node_attrs
from fusevault.vault.services import rotation
from fusevault.vault.services.absorbing import absorb_arrivals
from inprocess.conftest import ROOT
from inprocess.test_attack_53c import _in_scene
from inprocess.test_two_users import ALICE, _write


async def _taken_back_on_the_laptop(shared, replayed: bool, carol_too: bool) -> dict:
    """alice's docs/plan.txt shared READ with bob (and with carol: ``carol_too``) on her desktop (her
    seat); her laptop unshares bob, then unshares carol (``carol_too``) or shares docs with her; the
    server hands the desktop the laptop's states and Shares, keeps the deletions from it (the bodies
    served over them), and (``replayed``) serves her first unshare's signed Rotation request again; the
    desktop runs ``rotation.resume`` (an unlock) and makes docs/new.txt.  What came of it."""
    from fusevault.store.watched import WatchedStore
    from fusevault.vault.services import share_ops
    from fusevault.vault.volume import Volume
    drive = shared.drive
    alice, bob, carol = (shared.volumes[n] for n in ("alice", "bob", "carol"))
    me = alice.key.user_id
    docs = await drive.mkdir(ROOT, b"docs", stat.S_IFDIR | 0o755, ALICE)
    await _write(drive, docs.st_ino, b"plan.txt", b"alice's plan\n", ALICE)
    for who in ("bob", "carol") if carol_too else ("bob",):
        assert "error" not in await _ask(shared, "share", "docs", who, "READ")
    docs_fid, fid = alice.resolve(b"docs").fid, alice.resolve(b"docs/plan.txt").fid
    ids = [sharing.doc_id(docs_fid, v.key.user_id) for v in ((bob, carol) if carol_too else (bob,))]
    shares = {sid: alice.store.get(sid) for sid in ids}
    held: list[dict] = []
    laptop_store = WatchedStore(alice.store.inner, None, lambda writer, written: held.extend(written))
    laptop = Volume.load(alice.layout, laptop_store, alice.key, alice.tree.get(1).fid)
    await share_ops.unshare(laptop, b"docs", "bob")
    if carol_too:
        await share_ops.unshare(laptop, b"docs", "carol")
    else:
        await share_ops.share(laptop, b"docs", "carol", "READ")
    record = laptop.resolve(b"docs/plan.txt").sealed_for
    assert record is not None and record["to"] == [] and set(record["taken"]) == set(shares), \
        f"the scene: the laptop's record takes them back: {record}"
    request = next(copy.deepcopy(d) for d in held if d.get("_id") == f"rotate-{docs_fid}"
                   and not d.get("_deleted"))
    assert request["epoch"] == 0 and signer_of(request) == me, "the scene: her first unshare's signed request"
    # The server: the Share bodies over their deletions (kept from the desktop), her old request again.
    assert all(alice.store.inner.get(sid) is None for sid in shares), "the scene: the laptop deleted them"
    alice.store.inner.put_many([{k: v for k, v in body.items() if k != "_rev"} for body in shares.values()])
    if replayed:
        alice.store.inner.put_many([{k: v for k, v in request.items() if k != "_rev"}])
    alice.store._listener(None, [d for d in held if d.get("_id") not in shares
                                 and not str(d.get("_id")).startswith("rotate-")])
    assert alice.find(fid).epoch == (2 if carol_too else 1), "the scene: the laptop's re-keys taken in"
    await rotation.resume(alice)
    node = alice.find(fid)
    keys = {}
    for name, vol in (("bob", bob), ("carol", carol)):
        found = sharing.read_key(sharing.user_key_path(alice.layout, vol.key.user_id, me, fid))
        keys[name] = found[0] if found is not None else -1
    await _write(drive, docs.st_ino, b"new.txt", b"made after the unshare", ALICE)
    new = alice.resolve(b"docs/new.txt").fid
    new_sealed = {name: sharing.user_key_path(alice.layout, vol.key.user_id, me, new).exists()
                  for name, vol in (("bob", bob), ("carol", carol))}
    said = [each["kind"] for each in alarms.for_user(me).as_list()]
    return {"epoch": node.epoch, "keys": keys, "new": new_sealed, "said": said,
            "record": node.sealed_for}


@pytest.mark.parametrize("carol_too", [True, False], ids=["unshares_carol_too", "shares_carol_after"])
def test_74a_control_her_desktop_keeps_the_shares_taken_back(three: Path, carol_too: bool) -> None:  # noqa: F811
    seen = _in_scene(three, lambda shared: _taken_back_on_the_laptop(shared, False, carol_too))
    assert seen["keys"]["bob"] < seen["epoch"] and not seen["new"]["bob"], seen
    carols = seen["keys"]["carol"] < seen["epoch"], not seen["new"]["carol"]
    assert carols == (carol_too, carol_too), seen
    assert "replayed-grant" in seen["said"], seen


@pytest.mark.parametrize("carol_too", [True, False], ids=["unshares_carol_too", "shares_carol_after"])
def test_74a_1_her_old_request_served_again_does_not_undo_her_unshare_on_her_desktop(
        three: Path, carol_too: bool) -> None:  # noqa: F811
    seen = _in_scene(three, lambda shared: _taken_back_on_the_laptop(shared, True, carol_too))
    print("seen:", {k: v for k, v in seen.items() if k != "record"}, "to:", len(seen["record"]["to"]),
          "taken:", seen["record"].get("taken"))
    assert seen["keys"]["bob"] < seen["epoch"] and not seen["new"]["bob"], seen
    if carol_too:
        assert seen["keys"]["carol"] < seen["epoch"] and not seen["new"]["carol"], seen


def _carols_claim(shared, fid: str) -> dict:
    """carol's own state of ``fid`` (WRITE on docs) under the key she holds, claiming key epoch 5 (what a
    WRITE member's device can sign: vault/model/her_keys.py ``key_not_hers``, a claim her device re-keys)."""
    carol = shared.volumes["carol"]
    dek = carol.find(fid).dek
    doc = shared.store.get(fid)
    attrs = {**open_node_attrs(doc, dek), "seq": ["carols-device", 1], "epoch": 5}
    body = {k: v for k, v in doc.items() if k not in ("_rev", "sig")}
    body["epoch"] = 5
    plain = json.dumps(attrs, separators=(",", ":")).encode()
    body["enc"] = b64e(aead.seal(dek, plain, aead.ad("node", fid)))
    return sign_doc(carol.key.user_id, carol.key.identity.sign, body)


async def _rekeyed_on_the_desktop_then_unlocked(shared, how: str) -> dict:
    """(1) with no document served again: docs/plan.txt shared READ with bob and carol on her desktop (her
    seat); her laptop unshares bob; the server hands the desktop the laptop's states and keeps the Share's
    deletion from it; the desktop's unlock (``rotation.resume``) finds bob left out (71d (1), fixed).
    Then, mounted, docs and plan.txt are re-keyed on the desktop (``how``: she unshares carol there, or
    carol, WRITE, signs a claim of each, whose re-keys her desktop carries out; "none": no re-key).  Her
    desktop's next unlock (a Volume loaded again over the same folder and store, ``rotation.resume``),
    What came of it for bob."""
    from fusevault.store.watched import WatchedStore
    from fusevault.vault.services import share_ops
    from fusevault.vault.volume import Volume
    drive = shared.drive
    alice, bob = shared.volumes["alice"], shared.volumes["bob"]
    me = alice.key.user_id
    docs = await drive.mkdir(ROOT, b"docs", stat.S_IFDIR | 0o755, ALICE)
    await _write(drive, docs.st_ino, b"plan.txt", b"alice's plan\n", ALICE)
    assert "error" not in await _ask(shared, "share", "docs", "bob", "READ")
    assert "error" not in await _ask(shared, "share", "docs", "carol", "WRITE" if how == "claims" else "READ")
    docs_fid, fid = alice.resolve(b"docs").fid, alice.resolve(b"docs/plan.txt").fid
    share_id = sharing.doc_id(docs_fid, bob.key.user_id)
    body = alice.store.get(share_id)
    held: list[dict] = []
    laptop_store = WatchedStore(alice.store.inner, None, lambda writer, written: held.extend(written))
    laptop = Volume.load(alice.layout, laptop_store, alice.key, alice.tree.get(1).fid)
    await share_ops.unshare(laptop, b"docs", "bob")
    alice.store.inner.put_many([{k: v for k, v in body.items() if k != "_rev"}])
    alice.store._listener(None, [d for d in held if d.get("_id") != share_id
                                 and not str(d.get("_id")).startswith("rotate-")])
    await rotation.resume(alice)  # her desktop's unlock
    assert (share_id, bob.key.user_id) in alice.sharing.left, "the scene: bob found left out (71d (1))"
    if how == "again":  # she shares docs with bob again there: his grant is hers to give again
        assert "error" not in await _ask(shared, "share", "docs", "bob", "READ")
    if how in ("unshare", "again"):
        assert "error" not in await _ask(shared, "unshare", "docs", "carol")
    elif how == "claims":
        # carol, a WRITE member, signs a claim of each: her desktop takes each in at its epoch and asks
        # its re-key, which the mount's arrivals carry out (fs/arrivals.py ``_rekey``).
        assert shared.volumes["carol"].find(fid).epoch == 1, "the scene: carol holds the laptop's key"
        asked = []
        for each in (fid, docs_fid):
            claim = _carols_claim(shared, each)
            (rev,) = shared.store.put_many([{**claim, "_rev": shared.store.get(each)["_rev"]}])
            asked += absorb_arrivals(alice, [{**claim, "_rev": rev}]).rekey
        assert {n.fid for n in asked} == {fid, docs_fid}, "the scene: her desktop asks their re-keys"
        for node in asked:
            await alice.rekey(node)
    epoch = alice.find(fid).epoch
    assert (epoch == 1) is (how == "none"), f"the scene: re-keyed on the desktop ({how}): {epoch}"
    path = sharing.user_key_path(alice.layout, bob.key.user_id, me, fid)
    before = sharing.read_key(path)
    # Her desktop's own record of grants seen (the laptop here writes into the same folder: its record of
    # the deletion is the laptop's, never the desktop's).
    alice.trust.fresh._dirty = True
    alice.trust.fresh.save()
    again = Volume.load(alice.layout, WatchedStore(alice.store.inner, None, lambda writer, written: None),
                        alice.key, alice.tree.get(1).fid)  # her desktop's next unlock
    await rotation.resume(again)
    after = sharing.read_key(path)
    record = alice.find(fid).sealed_for
    return {"epoch": epoch, "before": before[0] if before is not None else -1,
            "after": after[0] if after is not None else -1,
            "in_force": any(sharing.doc_id(g.fid, g.grantee) == share_id for g in again.sharing.grants),
            "left": (share_id, bob.key.user_id) in again.sharing.left,
            "bob_in_to": any(bob.key.user_id in e for e in record["to"]), "taken": record.get("taken")}


@pytest.mark.parametrize("how", [pytest.param("none", id="no_rekey_there"),
                                 pytest.param("unshare", id="her_unshare_there"),
                                 pytest.param("claims", id="a_members_claims")])
def test_74a_1b_a_rekey_on_her_desktop_keeps_bob_taken_back_at_its_next_unlock(
        three: Path, how: str) -> None:  # noqa: F811
    seen = _in_scene(three, lambda shared: _rekeyed_on_the_desktop_then_unlocked(shared, how))
    print("seen:", seen)
    assert seen["in_force"], f"the scene: bob's Share in force at the desktop's next unlock: {seen}"
    assert seen["before"] < seen["epoch"], seen
    assert seen["after"] < seen["epoch"] and seen["left"], seen


def test_74a_control_her_share_again_on_her_desktop_reaches_its_next_keys(three: Path) -> None:  # noqa: F811
    """(1b)'s scene, but she shares docs with bob again on her desktop before its re-key there: the fix
    (a grant of ``left`` sealed nothing and named in no record) never keeps out a grant she gave again
    (her share command takes it out of ``left``): the re-key seals bob the new key, its record names him,
    and the next unlock keeps him in."""
    seen = _in_scene(three, lambda shared: _rekeyed_on_the_desktop_then_unlocked(shared, "again"))
    assert seen["in_force"] and seen["bob_in_to"], seen
    assert seen["before"] == seen["epoch"] == seen["after"] and not seen["left"], seen


async def _member_removed_on_the_laptop(shared, rekeyed: bool) -> dict:
    """The group case of (1b): docs/plan.txt shared READ with alice's group team (bob, carol) on her
    desktop; her laptop takes carol out of team and re-keys docs (its record: team's newer body seen,
    carol in no ``to``); the server hands the desktop the laptop's states and serves it team's older body
    (carol in it) over the newer one; the desktop's unlock (``rotation.resume``) finds carol left out
    (``replayed-grant``).  Then (``rekeyed``) docs and plan.txt are re-keyed on the desktop (any re-key:
    a member's claim, an unshare of a folder over them) and the desktop reads her records again, as its
    next unlock does (``left`` forgotten, ``rotation.resume``).  What came of it for carol."""
    from fusevault.store.watched import WatchedStore
    from fusevault.vault.model import groups
    from fusevault.vault.services import accounts
    from fusevault.vault.volume import Volume
    drive = shared.drive
    alice, bob, carol = (shared.volumes[n] for n in ("alice", "bob", "carol"))
    me = alice.store.get(alice.key.user_id)
    team = groups.create_group(alice.store, "team", me, alice.trust.sign)
    for who in (bob, carol):
        team = groups.set_member(alice.store, alice.store.get(team["_id"]), alice.store.get(who.key.user_id),
                                 "READ", sign=alice.trust.sign)
    gid = team["_id"]
    docs = await drive.mkdir(ROOT, b"docs", stat.S_IFDIR | 0o755, ALICE)
    await _write(drive, docs.st_ino, b"plan.txt", b"alice's plan\n", ALICE)
    assert "error" not in await _ask(shared, "share", "docs", "@team", "READ")
    fid = alice.resolve(b"docs/plan.txt").fid
    path = sharing.group_key_path(alice.layout, gid, fid, carol.key.user_id)
    assert sharing.read_key(path) is not None, "the scene: carol sealed plan.txt's key"
    older = alice.store.get(gid)
    held: list[dict] = []
    laptop_store = WatchedStore(alice.store.inner, None, lambda writer, written: held.extend(written))
    laptop = Volume.load(alice.layout, laptop_store, alice.key, alice.tree.get(1).fid)
    accounts.remove_member(laptop.layout, laptop_store, laptop_store.get(gid),
                           laptop_store.get(carol.key.user_id), laptop.trust)
    laptop.sharing.reload(laptop_store)
    await rotation.resume(laptop)
    assert laptop.resolve(b"docs/plan.txt").epoch == 1, "the scene: the laptop re-keyed plan.txt"
    # The server: team's older body over the newer, the newer and her requests kept from the desktop.
    alice.store.inner.put_many([{**{k: v for k, v in older.items() if k != "_rev"},
                                 "_rev": alice.store.inner.get(gid)["_rev"]}])
    alice.store._listener(None, [d for d in held if d.get("_id") != gid
                                 and not str(d.get("_id")).startswith("rotate-")])
    assert carol.key.user_id in alice.sharing.groups[gid]["users"], "the scene: the older body there"
    await rotation.resume(alice)  # her desktop's unlock
    assert (sharing.doc_id(alice.resolve(b"docs").fid, gid), carol.key.user_id) in alice.sharing.left, \
        "the scene: carol found left out"
    if rekeyed:
        for name in (b"docs/plan.txt", b"docs"):
            await alice.rekey(alice.resolve(name))
    epoch = alice.find(fid).epoch
    assert (epoch == 1) is not rekeyed, f"the scene: re-keyed on the desktop: {epoch}"
    # Her desktop's next unlock, as far as the records go: what it held in ``left`` forgotten, her records
    # read again (a Volume loaded again here would take her laptop's record of team's newer body, kept on
    # the one disk both devices use in this scene, and refuse the older one).
    alice.sharing.left.clear()
    await rotation.resume(alice)
    found = sharing.read_key(path)
    record = alice.find(fid).sealed_for
    return {"epoch": epoch, "carol": found[0] if found is not None else -1,
            "carol_in_to": any(carol.key.user_id in e for e in record["to"]),
            "bob_in_to": any(bob.key.user_id in e for e in record["to"])}


@pytest.mark.parametrize("rekeyed", [False, True], ids=["no_rekey_there", "rekeyed_there"])
def test_74a_1b_a_rekey_on_her_desktop_keeps_a_removed_member_out_at_its_next_unlock(
        three: Path, rekeyed: bool) -> None:  # noqa: F811
    """The fix's group half: a re-key on the desktop where team's older body is served again records the
    body her earlier record saw (``rekeying._groups_seen``), not the older one here, and names carol in no
    ``to`` (``her_keys.recipients``): the next unlock leaves her out again.  Without it the record said the
    older body seen (carol no more "left out"), and she was sealed the new key."""
    seen = _in_scene(three, lambda shared: _member_removed_on_the_laptop(shared, rekeyed))
    print("seen:", seen)
    assert seen["carol"] < seen["epoch"] and not seen["carol_in_to"] and seen["bob_in_to"], seen
