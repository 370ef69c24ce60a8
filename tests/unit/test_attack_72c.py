"""Attack round 72c: her re-key's record of for whom it made a file's key (vault/model/sealed_for.py,
round 71d (1)'s fix) and 71c's reload gate.

(1) medium-high (a revocation undone on her other device, for files the record does not name).
  Attacker: the server (or a peer) serving her desktop her Share to bob again after she unshared the
  folder on her laptop (71d (1)'s scene).
  Steps: folder proj shared with bob; she unshares it on the laptop; the laptop's re-key gives plan.txt a
  key and a record leaving bob out.  Her desktop, which never saw the deletion, unlocks:
  ``Guests.fill_missing`` finds plan.txt's record leaves bob out (``_left_out``: said, and the grant is
  put in ``Guests.left``, "taken back here ... a new file's included").  In the same pass it comes to
  new.txt, a file in proj with no record (made after the unshare, on either device: a first key is never
  recorded), or notes.txt, a file she moved into proj after her unshare (its record's ``above`` lacks
  proj, so ``covers`` takes the share for "her move since").
  Seen: both are sealed to bob through the very grant the same pass just found taken back.
  Expected: a grant in ``Guests.left`` seals nothing in ``fill_missing`` either (as in ``seal_keys``).
  Cause: vault/tree/guests.py ``fill_missing`` (~l.320-345) consults ``_left_out`` only for a node with
  a record in force, and never ``self.left``; ``seal_keys`` (~l.295) does check ``self.left``.  So the
  in-memory set protects only files made while mounted, and at each unlock (remount) every such file is
  sealed to bob anyway (the 71d [True] test checks new.txt only before a remount).
  Impact: bob, removed, reads every file of proj made or moved in after his removal once her desktop
  unlocks (the open list says a served-again Share reaches a new file only "until the next unlock";
  after it, it still does).
  Fix: in ``fill_missing``, skip a (share id, recipient) in ``self.left`` (and run the records' pass
  over all nodes first, so the order of nodes does not matter), as ``seal_keys`` does.

(2) medium (an honest share refused until she shares again, and a false ``replayed-grant`` said).
  Attacker: none needed (honest use).
  Steps: plan.txt in proj re-keyed (her unshare of bob: record naming nobody, no group); she then
  shares proj with the group team (her share command seals carol, ``chosen=True``); later she adds dave
  to team.  Her next unlock (``fill_missing``, "a group's new member needs nobody's passphrase").
  Seen: dave is sealed nothing; ``_left_out`` says ``replayed-grant`` and puts (team, dave) in
  ``Guests.left``, so no later file of hers is sealed to him either, on every device (the record is the
  same everywhere).  Expected: a member added to a group the re-key never saw is given the key (the
  control, a node without a record, is).
  Cause: vault/model/sealed_for.py ``group_newer`` returns False for a group the record does not name
  ("never for one the re-key did not see"); the record is written only at a re-key, so a group share
  made after it is never in it.  Same for a Group body without a version vector at the re-key.
  Fix: a grant (Share) signed after the record (or a group absent from ``groups`` whose Share is newer
  than the re-key) is hers since: sealed to; or the share command writes the group's vector into the
  record of each file it seals.

(3) low-medium (her honest re-share made on another device does not reach files of this device
  until its next unlock).
  Steps: her desktop found bob's Share left out (71d scene: ``Guests.left``).  She shares proj with bob
  again on her laptop; the new Share body arrives at the desktop (``reload``).  She makes new.txt in
  proj on the desktop (``seal_keys``, not ``chosen``), or the desktop re-keys a file there.
  Seen: nothing sealed to bob: ``left`` is only ever cleared by a share command run on THIS device
  (guests.py ~l.297); ``reload`` keeps it whatever Share body came since.  Expected: a Share body newer
  than the one found left out (a re-share anywhere) clears its entries.  Lasts until the desktop's next
  unlock (then (1)'s gap seals new.txt anyway).  Fix: key ``left`` by the Share body's signature (or
  clear the entries of each Share id ``reload`` reads again).

Held (controls kept): ``test_control_plan_txt_left_out`` (the recorded file is not sealed to bob),
``[control_no_record]`` of (2), ``test_control_reshare_reaches_a_new_file`` of (3).
Tried, held or already open: a member's client dropping ``sealed_for`` (open list); a current WRITE
member writing ``to`` with a removed friend (the record is under the key he holds: no more than his
leaking the key, out of reach).  Not tried for lack of time: group bodies replayed with a forged-newer
vector, MAX_TO overflow as a lever, 71c's ``knows`` gate.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from fusevault.encoding import b64e
from fusevault.vault.format.layout import Layout
from fusevault.vault.model import sealed_for, sharing
from fusevault.vault.model.nodes import Node
from fusevault.vault.model.sharing import Grant
from fusevault.vault.tree.guests import Guests

ME, BOB, PROJ, PLAN, NEW, NOTES, OTHER = (uuid.uuid4().hex for _ in range(7))


def _scene(tmp_path: Path) -> tuple[Guests, Layout, dict[int, Node], list]:
    bob_pub = X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    share = Grant(ME, PROJ, BOB, False, "READ")  # deleted on her laptop, served again to the desktop
    guests = Guests(ME, [share], {}, {BOB: {"_id": BOB, "public_box": b64e(bob_pub)}})
    folder = Node(2, PROJ, ME, b"", 0o040700, 0, 0)
    nodes: dict[int, Node] = {2: folder}
    keys = []
    for ino, fid, record in (
            (3, PLAN, sealed_for.record(1, [], {}, [PLAN, PROJ])),  # the laptop's re-key: bob left out
            (4, NEW, None),  # made in proj after the unshare: a first key, no record
            (5, NOTES, sealed_for.record(1, [], {}, [NOTES, OTHER]))):  # re-keyed elsewhere, moved in since
        node = Node(ino, fid, ME, b"k" * 32, 0o100600, 0, 0)
        node.epoch, node.sealed_for, node.links = 1, record, [(2, fid.encode())]
        nodes[ino] = node
        keys.append((node, node.dek, 1))
    return guests, Layout(tmp_path, "", {}), nodes, keys


def _sealed_to_bob(layout: Layout, fid: str) -> bool:
    return sharing.user_key_path(layout, BOB, ME, fid).exists()


def test_control_plan_txt_left_out(tmp_path: Path) -> None:
    guests, layout, nodes, keys = _scene(tmp_path)
    guests.fill_missing(layout, nodes, keys)
    assert not _sealed_to_bob(layout, PLAN)
    assert (sharing.doc_id(PROJ, BOB), BOB) in guests.left


@pytest.mark.parametrize("last", [False, True], ids=["record_first", "record_last"])
@pytest.mark.parametrize("fid", [NEW, NOTES], ids=["new_file", "moved_in"])
def test_a_grant_found_taken_back_seals_no_other_file_at_unlock(tmp_path: Path, fid: str, last: bool) -> None:
    guests, layout, nodes, keys = _scene(tmp_path)
    if last:  # plan.txt (the record leaving bob out) after the others: the order of nodes never matters
        keys = keys[1:] + keys[:1]
    guests.fill_missing(layout, nodes, keys)
    assert (sharing.doc_id(PROJ, BOB), BOB) in guests.left
    assert not _sealed_to_bob(layout, fid)


TEAM, CAROL, DAVE = (uuid.uuid4().hex for _ in range(3))


def _pub() -> str:
    return b64e(X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


# Fixed by 73a (4): a grant outside the record counts as taken back only if the record's ``taken`` names it
# (``sealed_for.left_out``); her unshare of bob's record names his Share, not the group shared since.
@pytest.mark.parametrize("recorded", [
    pytest.param(False, id="control_no_record"),
    pytest.param(True, id="recorded"),
])
def test_a_member_added_to_a_group_shared_after_the_rekey_is_given_the_key(tmp_path: Path,
                                                                          recorded: bool) -> None:
    """plan.txt re-keyed at her unshare of bob (record: nobody, no group); she shares proj with the group
    team (carol: sealed by her share command); then adds dave to team.  Her unlock seals dave nothing."""
    body = {"_id": TEAM, "owner": ME, "users": {CAROL: "READ", DAVE: "READ"}, "version_vector": {"d1": 2}}
    guests = Guests(ME, [Grant(ME, PROJ, TEAM, True, "READ")], {TEAM: body},
                    {CAROL: {"_id": CAROL, "public_box": _pub()}, DAVE: {"_id": DAVE, "public_box": _pub()}})
    folder = Node(2, PROJ, ME, b"", 0o040700, 0, 0)
    plan = Node(3, PLAN, ME, b"k" * 32, 0o100600, 0, 0)
    plan.epoch, plan.links = 1, [(2, b"plan.txt")]
    plan.sealed_for = sealed_for.record(1, [], {}, [PLAN, PROJ], taken=[sharing.doc_id(PROJ, BOB)]) \
        if recorded else None
    layout = Layout(tmp_path, "", {})
    guests.fill_missing(layout, {2: folder, 3: plan}, [(plan, plan.dek, 1)])
    assert sharing.group_key_path(layout, TEAM, PLAN, DAVE).exists()



def _reshared_new_sealed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, found_left: bool) -> bool:
    """Her desktop found bob's Share left out by plan.txt's record (the 71d scene: said, in ``left``), or
    not (the control).  She shares proj with bob again on her laptop; the desktop reloads (a new Share
    body arrives, ``Guests.reload`` with the documents stubbed): is new.txt, made after in proj, sealed
    to bob?"""
    from fusevault.vault.model import grants as granting
    from fusevault.vault.model import shapes
    guests, layout, nodes, keys = _scene(tmp_path)
    if found_left:
        guests.fill_missing(layout, nodes, keys[:1])  # plan.txt: bob left out, (share, bob) in ``left``
        assert (sharing.doc_id(PROJ, BOB), BOB) in guests.left
    reshared = Grant(ME, PROJ, BOB, False, "READ,WRITE")  # her new Share body, signed on the laptop
    monkeypatch.setattr(shapes, "well_formed", lambda store, kind, alarms: list(guests.users.values()))
    monkeypatch.setattr(granting, "verified_grants", lambda store, trust, checked, ids=None: ([reshared], {}))
    guests.reload(None, [{"_id": sharing.doc_id(PROJ, BOB), "type": sharing.SHARE}])  # type: ignore[arg-type]
    new = Node(9, uuid.uuid4().hex, ME, b"n" * 32, 0o100600, 0, 0)
    new.links = [(2, b"new.txt")]
    guests.seal_keys(layout, new, guests.covering(new, nodes | {9: new}), (new.dek, 0))
    return sharing.user_key_path(layout, BOB, ME, new.fid).exists()


def test_control_reshare_reaches_a_new_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _reshared_new_sealed(tmp_path, monkeypatch, found_left=False)


@pytest.mark.xfail(strict=True, reason="72c (3): Guests.left outlives her re-share made on another device: "
                   "the reloaded Share seals no new file of hers here")
def test_her_reshare_on_the_laptop_reaches_files_made_on_the_desktop(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    assert _reshared_new_sealed(tmp_path, monkeypatch, found_left=True)
