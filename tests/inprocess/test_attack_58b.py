"""Attack round 58b, in-process: round 56b's ledger ``wrappings`` (vault/model/ledger.py
``wrapping_signed``, ``saw_wrapping``; vault/tree/guests.py ``carried_wrapping``, ``_remember``) and
57b's fix, attacked as a WRITE member.  The unit test (tests/unit/test_attack_58b.py) shows the cause
alone; this one the impact through a member's unlock and the owner's.

Hole (1), medium: the wrapping kept for a file id is carried for ANOTHER owner's file at that id.
  Attacker: bob, a user of the vault and a WRITE member of alice's team/ (carol WRITE there too); he
    chooses the id of a file he makes (any client may), and collects his own deleted file (his gc, or
    he as a writer of the vault folder puts its tombstone).
  Steps: bob makes his own file mine.txt under id X, shares it READ with carol; carol's device opens it
    (``_remember``: his state, signed by its owner bob, so ``Ledger.saw_wrapping(X, 0, bob's
    en_file_dek)``); carol's device locks (or is offline: a laptop, a peer-synced replica); bob deletes
    mine.txt and collects it, then makes team/b.txt in alice's folder under the same id X (owner alice,
    his ``owner_dek`` sealed to her, signed by bob: a member's new file, which alice's device takes and
    seals to carol); carol unlocks and chmods b.txt 0600; alice's devices were away, she unlocks.
  Variant ``[tombstone]``: carol's seat stays up; bob deletes mine.txt by a bare tombstone only (a peer
    replicating a deletion; no state of his signed): her seat refuses the new owner at X while it holds
    his node (an ``owner-changed`` alarm, 46b (3)), but her next unlock takes X as alice's, with the
    same carrying and impact.
  Seen (``test_58b_1_a_wrapping_kept_for_another_owners_file_at_the_id_is_carried[away]``): carol's unlock
    carries bob's own en_file_dek of his old file (``carried_wrapping``: signer bob is not the owner
    alice, and ``memory.wrapping_signed(X, 0)`` answers the entry kept under bob's signature as
    owner), her commit stores it; alice's live device says a ``forged-key`` alarm naming carol, and
    alice's unlock refuses carol's state ("cannot be read ... fails authentication", "rebuilt from
    what its owner signed"): mode 0644, 0600 expected.  The control (a fresh id, same steps) carries
    bob's owner_dek, marked as a member's, and alice's unlock takes carol's chmod with nothing said.
  Cause: vault/model/ledger.py ``wrappings`` is keyed by fid alone (``wrapping_signed(fid, epoch)``,
    ledger.py ~523, never asks whose wrapping it kept), and guests.py ``carried_wrapping`` (:474) takes
    it first for any owner; ``_remember`` (:486-497) keeps whatever file owner's wrapping a state signed by
    its owner carries.  At an unlock nothing ties the id to its former owner (arrivals.py
    ``owner_changed`` asks only ``Ledger.mine`` with no node held), so the id's new owner is taken.
  Impact: every later commit of b.txt by carol carries bob's wrapping while a member's state is the
    stored one (her own state wins only while alice's is stored: 56b keeps the first entry at an
    epoch, so alice's own signed state does not replace it): alice's unlock leaves carol's honest
    edits out and her live device says them forged, for good at that epoch (until alice re-keys the
    file).  One id chosen by a member; the same entry at a higher epoch (bob re-keying his own file)
    instead blocks alice's wrapping from ever being kept (56b (3) open again for that file).
  Fix (suggested): keep the owner with each entry (``wrappings: fid -> [owner, epoch, wrapping]``) and
    answer ``wrapping_signed`` only for ``fresh.owner`` (a kept entry of another owner replaced by hers,
    whatever the epochs), or drop a file's entry when a document naming another owner at its id is
    met.

Fixed: the ledger keeps with each entry the owner whose signature it was found under (``wrappings:
  fid -> (owner, epoch, wrapping)``), ``wrapping_signed``/``wrapping_looked`` answer for ``fresh.owner``
  only, ``saw_wrapping`` replaces another owner's entry whatever its epoch; an entry saved before the
  fix (no owner) is dropped at load.  Carol's unlock carries bob's owner_dek, marked as a member's (her
  device holds none of alice's), and alice's unlock takes carol's chmod.

Also (the ledger's other records keyed by the id alone, fixed after: the unit file): carol's device
  having taken bob's own mine.txt at X (an unlock while it was live), alice's b.txt at X is refused at
  her next unlock as another owner's at the id, said once, never judged by bob's records
  (``test_58b_1_another_owners_file_at_an_id_seen_as_bobs_is_refused_said``).

Held (controls kept): ``test_control_58b_1_a_fresh_id_carries_bobs_owner_dek_and_alice_takes_carols_edit``.
Tried and held (read or run in the unit file): a version of another file or kind from a CouchDB server
(57b's fix: ``_may_be_hers`` asks ``fid``, ``CouchStore.by_file`` filters both); the local store's
``by_file`` filters on the row's ``type`` column and SQLite's ``json_extract`` (a body with two ``fid``
keys, or a ``type`` column differing from the body's) but every candidate is asked ``fid`` again in
Python and must carry her signature over its whole body (``_id`` and ``type`` included), and no other
owner-signed document carries a ``fid`` and a wrapping; ``verified_before`` looks up a digest over key,
signature and the canonical message (a changed body is a new digest): not poisoned by any stored field;
the same file deleted and re-created by a member under the same owner is refused by carol's device
(``owner_trashed``) and by alice's; a live seat meeting another owner at a held id keeps what it had
(46b (3)).  Not tried: the ledger's ``epochs`` (also keyed by fid alone) judging alice's unopenable
documents of X against bob's old epoch; a real mount; a CouchDB server.
"""

from __future__ import annotations

import stat
import uuid
from pathlib import Path

import pytest
from mount.test_trust_attack_39a import three  # noqa: F401  (fixture)

from fusevault.store import tombstone
from fusevault.vault.model import alarms
from fusevault.vault.services import rotation
from fusevault.vault.tree import guests, namespace
from fusevault.vault.volume import Volume
from inprocess.conftest import BOB_UID, ROOT, Ctx
from inprocess.test_attack_53c import CAROL, _in_scene, _plan_shared
from inprocess.test_two_users import _walk, _write

BOB = Ctx(BOB_UID, BOB_UID)


async def _bob_asks(shared, cmd: str, path: str, who: str, perm: str = "READ") -> dict:
    requests = shared.drive.seat_of(BOB_UID).ops.session.requests
    answer = await requests.handle({"cmd": cmd, "path": path, "with": who, "perm": perm})
    assert "error" not in answer, answer
    return answer


async def _bobs_file_at(shared, monkeypatch: pytest.MonkeyPatch, parent: int, name: bytes, fid: str) -> None:
    """bob makes ``name`` in ``parent`` under the id ``fid`` (his client's choice)."""
    monkeypatch.setattr(namespace, "new_id", lambda: fid)
    try:
        await _write(shared.drive, parent, name, b"bob's\n", BOB)
    finally:
        monkeypatch.undo()


async def _reused(shared, monkeypatch: pytest.MonkeyPatch, reuse: str | None) -> dict:
    """``reuse``: None (the control: a fresh id), "away" (carol's device sees nothing of bob's deletion
    and new file till her unlock), "tombstone" (carol's seat stays up; bob deletes his file by a bare
    tombstone, as a peer replicating a deletion does, never by a state he signs)."""
    drive = shared.drive
    alice, carol = shared.volumes["alice"], shared.volumes["carol"]
    await _plan_shared(shared)  # alice's team/, WRITE to bob and carol
    x = uuid.uuid4().hex
    seen: dict = {}
    away = None
    if reuse:
        await _bobs_file_at(shared, monkeypatch, ROOT, b"mine.txt", x)  # his own file, at id X
        await _bob_asks(shared, "share", "mine.txt", "carol")
        await _walk(drive, b"shared/bob/mine.txt", CAROL)
        seen["bobs"] = {"en_file_dek": shared.store.get(x)["en_file_dek"]}
        assert seen["bobs"]["en_file_dek"] in repr(carol.ledger.wrappings), "the scene: kept as bob's own"
        assert carol.ledger.owner_seen(x) == shared.volumes["bob"].key.user_id, "bound by the share (59b (1))"
        if reuse in ("away", "tombstone"):
            # Since 59b (1) the share binds X to bob, and alice's b.txt at X is refused at carol's unlock
            # (as in "seen").  Unbound here, as a ledger that never bound it: what is judged below is
            # the wrapping kept under bob's signature (58b (1)'s first fix), never carried for hers.
            del carol.ledger.owners[x]
        if reuse == "seen":
            carol.ledger.save()
            carol = Volume.load(carol.layout, carol.store, carol.key, carol.tree.get(1).fid)  # her unlock
            bobs = shared.volumes["bob"].key.user_id
            assert carol.find(x).owner == bobs and x in carol.ledger.fids, "the scene: taken as bob's"
        if reuse in ("away", "seen"):
            carol.ledger.save()  # carol's device locks (or is offline): it sees nothing of what follows
            away = carol.ledger.path.read_bytes()
            await drive.unlink(ROOT, b"mine.txt", BOB)
        shared.store.put_many([tombstone(shared.store.get(x))])  # collected
    team = await _walk(drive, b"shared/alice/team", BOB)
    await _bobs_file_at(shared, monkeypatch, team.st_ino, b"b.txt", x)  # a member's new file of alice's
    assert shared.store.get(x)["owner"] == alice.key.user_id and "owner_dek" in shared.store.get(x)
    assert alice.find(x) is not None, "the scene: alice's device takes bob's new file"
    await rotation.resume(alice)  # her device seals its key to carol (as at her unlock)
    carol.ledger.save()
    if away is not None:
        carol.ledger.path.write_bytes(away)  # what carol's device holds when it comes back
    again = Volume.load(carol.layout, carol.store, carol.key, carol.tree.get(1).fid)  # carol's unlock
    node = again.find(x)
    if reuse == "seen":  # X is bob's as this device first saw it: alice's document there is refused
        seen["shown"] = node is not None
        seen["carols"] = [each["kind"] for each in again.ledger.alarms.as_list() if each["subject"] == x]
        hers = Volume.load(alice.layout, alice.store, alice.key, alice.tree.get(1).fid)  # alice's unlock
        seen["hers"] = hers.find(x) is not None and stat.S_IMODE(hers.find(x).mode)
        seen["said"] = [each for each in alarms.for_user(alice.key.user_id).as_list() if x in str(each)]
        return seen
    assert node is not None, "the scene: carol's unlock shows team/b.txt"
    seen["carried"] = node.wrapped
    alice.ledger.save()  # alice's devices away from here
    await again.setattr(node.ino, mode=stat.S_IFREG | 0o600)  # carol's honest chmod
    assert shared.store.get(x)["sig"]["by"] == carol.key.user_id, "the scene: carol's commit is stored"
    seen["said"] = [each for each in alarms.for_user(alice.key.user_id).as_list() if x in str(each)]
    hers = Volume.load(alice.layout, alice.store, alice.key, alice.tree.get(1).fid)  # alice's unlock
    seen["mode"] = stat.S_IMODE(hers.find(x).mode)
    return seen


@pytest.mark.parametrize("reuse", ["away", "tombstone"])
def test_58b_1_a_wrapping_kept_for_another_owners_file_at_the_id_is_carried(
        three: Path, monkeypatch: pytest.MonkeyPatch, reuse: str) -> None:  # noqa: F811
    seen = _in_scene(three, lambda shared: _reused(shared, monkeypatch, reuse))
    assert seen["carried"] != seen["bobs"], "carol's unlock carries bob's wrapping of his own old file"
    assert seen["mode"] == 0o600, f"carol's chmod left out at alice's unlock; said: {seen['said']}"


def test_58b_1_another_owners_file_at_an_id_seen_as_bobs_is_refused_said(
        three: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """Carol's device took bob's own mine.txt at X (her unlock: the ledger's ``epochs``, ``fids`` and
    wrapping at X are his), then alice's b.txt at X (bob's new file in her folder) at her next unlock:
    no state of bob's file, so none of his records judge it; it is refused as another owner's at the id
    (``Ledger.owner_refused``), said as such, never as a rollback; alice's own device keeps her file,
    nothing said of it.  Before: taken, and judged by his records (his epoch, his counts)."""
    seen = _in_scene(three, lambda shared: _reused(shared, monkeypatch, "seen"))
    assert not seen["shown"] and seen["carols"] == ["owner-changed"], seen
    assert seen["hers"] == 0o644 and not seen["said"], seen


def test_control_58b_1_a_fresh_id_carries_bobs_owner_dek_and_alice_takes_carols_edit(
        three: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    seen = _in_scene(three, lambda shared: _reused(shared, monkeypatch, None))
    assert isinstance(seen["carried"], guests.MembersWrapping) and "owner_dek" in seen["carried"]
    assert seen["mode"] == 0o600 and not seen["said"]
