"""Attack round 59c (a short one at round 58d's fix: vault/model/rekeys_owed.py and its users).

(1) A replayed Share pays the debt with a re-key that seals to the removed member (high: a revocation
undone).  Attacker: whoever writes the vault folder or the store (here: the embedded store put back
as it was before her unshare: ``adversary.snapshot``/``roll_back``), with a kill -9 of her unshare.
Steps: alice shares docs READ with bob; the store's writer keeps a copy of the store; alice's
``unshare docs --with bob`` is killed after the Share's tombstone is put and before bob's key files go
(``sharing.discard_key``; its took-back mark, only saved by ``volume.trust.save`` after the keys go,
is lost with the process), or killed in that save (bob's key files already gone: id
``killed-at-save``); the debt is on her device (recorded twice: before the put and after it).
The writer rolls the store back (the Share's last body she saw is there again, her signed
``Rotation`` request gone).  Her next unlock (``rotation.resume``): the replayed Share is the very body
her device saw last (no took-back mark saved), so it is in force; ``_pay_owed`` finds the debt and
re-keys docs and notes.txt, sealing the new keys to bob through that Share, and marks the debt paid
(``_her_key``: her derived key).  Seen: bob holds a key file at the new epoch of notes.txt, the debt
is gone, no alarm at all (checked: ``trust.alarms`` empty after the unlock; her ``unshare`` again, if she
thinks to run it, finds the Share and takes it back); expected: a re-key owed for Share S sealed to
no recipient of S (or S refused).
Cause: rotation.py ``_pay_owed`` (and ``rotate``'s payment) never looks at ``debt.shares``: the
record says which Shares she took back, yet a Share of that id served at unlock is believed (the
took-back mark lives only in freshness state saved after the keys go, share_ops.py ``unshare``).
Before 58d the same replay in that window left the share in force as well; what is new is that her
device now holds the proof (the debt names the Share) and clears it on a re-key sealed to bob.
Impact: her unshare, which the docs say is finished at the next unlock whatever the store holds,
is undone: bob reads every later write in docs; her device now believes nothing is owed.  Fix: at
unlock, before the re-key, mark each ``debt.shares`` took-back in freshness (``fresh.took_back``)
and save it, or refuse a Share whose id a debt names unless its body is newer than the one seen when
the debt was recorded (record that body's stamp in the debt); alarm ``share-missing``/replay.

Controls kept: ``test_control_the_same_kill_with_only_the_request_withheld_takes_bobs_key_back``
(the same kill, Share tombstone kept, request withheld: re-keyed, bob has no new key) and
``test_control_the_share_replayed_after_a_kill_past_the_took_back_save_is_refused`` (killed at the
first new key, the mark saved, the store rolled back the same way: bob gets no new key).
Tried, not kept (a limit, not this fix's): her move of docs/notes.txt to her root, its keys taken back
and the debt recorded (``_taken_back``), killed before the re-key and before her ledger's save, the
store rolled back to before the move: notes.txt is in docs again, the debt is paid by a re-key that
seals to bob (a share member of docs again), no alarm.  The move itself is undone by a rollback to the
last state her device saved (a crash's limit, ledger.py ``MAX_LAG``); the debt, which names the Share
the file left, could tell it (the same fix as (1) would: a Share a debt names gets no new key).
Held on reading: a re-key begun before the Share went does not pay the debt (the token; and at
unlock ``_her_key`` derives for the recipients seen now, so a key derived with bob is no payment);
the record is sealed and bound to its name under her state dir (only she or root writes it); a
damaged record alarms once per key (deduped) and is set aside at the next debt.
Not tried (time): two devices (a listed limit), group shares (same code path as (1)), two processes
of hers writing the record at once (``_writing`` is per process), ``KEEP`` eviction.
"""

from __future__ import annotations

import adversary
import pytest
import trio

from fusevault.vault.model import rekeys_owed, sharing
from inprocess.conftest import _close, _compose
from inprocess.test_rekeys_owed import (
    Killed,
    _ask,
    _bobs_key,
    _dropped,
    _kill,
    _rekey_killed_at,
    _shared_folder,
    _unlocked,
)


def _killed_after_the_share_went(vault_copy, monkeypatch, tmp_path, replay: bool, keys_gone: bool = False,
                                 saved: bool = False):
    folder, fid, kept, kept_folder = _shared_folder(vault_copy)
    adversary.snapshot(vault_copy, tmp_path / "before")  # the store's writer keeps a copy
    composed = _compose(vault_copy)
    with monkeypatch.context() as patched:
        if saved:  # killed at its first new key: the took-back mark saved
            _rekey_killed_at(1)(patched, composed.volume)
        elif keys_gone:  # killed as it saves the took-back mark: bob's key files already gone
            patched.setattr(composed.volume.trust, "save", _kill)
        else:
            patched.setattr(sharing, "discard_key", _kill)
        with pytest.raises(Killed):
            _ask(composed, "unshare", "docs")
    _dropped(composed)
    if replay:
        adversary.roll_back(vault_copy, tmp_path / "before")
    else:
        adversary.delete_row(vault_copy, f"rotate-{folder}")
    composed = _compose(vault_copy)
    return composed, folder, fid, kept


def _after_unlock(composed, fid, kept) -> None:
    volume = composed.volume
    assert set(rekeys_owed.owed(volume.layout.root, volume.key)), "the debt is recorded on her device"
    trio.run(_unlocked, volume)
    node = volume.find(fid)
    assert node.dek != kept
    record = _bobs_key(volume, fid)
    left = rekeys_owed.owed(volume.layout.root, volume.key)
    assert record is None or record.epoch < node.epoch, (
        f"bob was sealed the key of the re-key her device owed for taking his share back (debts left: "
        f"{len(left)})")


@pytest.mark.parametrize("keys_gone", [False, True], ids=["killed-before-the-keys", "killed-at-save"])
def test_a_replayed_share_does_not_get_the_rekey_owed_for_taking_it_back(
        vault_copy, monkeypatch, tmp_path, keys_gone: bool) -> None:
    composed, folder, fid, kept = _killed_after_the_share_went(vault_copy, monkeypatch, tmp_path, True,
                                                               keys_gone)
    try:
        _after_unlock(composed, fid, kept)
    finally:
        trio.run(_close, composed)


def test_control_the_same_kill_with_only_the_request_withheld_takes_bobs_key_back(
        vault_copy, monkeypatch, tmp_path) -> None:
    composed, folder, fid, kept = _killed_after_the_share_went(vault_copy, monkeypatch, tmp_path, False)
    try:
        _after_unlock(composed, fid, kept)
    finally:
        trio.run(_close, composed)


def test_control_the_share_replayed_after_a_kill_past_the_took_back_save_is_refused(
        vault_copy, monkeypatch, tmp_path) -> None:
    """The 58d scene (killed at the first new key, the took-back mark saved), the store rolled back as
    in (1): the replayed Share is not believed, the re-key owed seals nothing to bob."""
    composed, folder, fid, kept = _killed_after_the_share_went(vault_copy, monkeypatch, tmp_path, True,
                                                               saved=True)
    try:
        _after_unlock(composed, fid, kept)
    finally:
        trio.run(_close, composed)
