"""The re-keys her device owes (vault/model/rekeys_owed.py, attack round 58d), in-process: an unshare
killed at each of its steps, then her signed request withheld by the store's writer, is finished at
her next unlock; ``unshare`` again finishes what is owed (not "not shared"); a damaged record is said,
never fatal.  The real kill (-9 of a mount server) and mount: tests/mount/test_attack_58d.py.

A kill is an exception no handler takes (``Killed``), after which the in-process mount is dropped
unsaved (its store closed, nothing flushed), and the next one opened from the vault folder."""

from __future__ import annotations

import os

import adversary
import pytest
import trio

from fusevault.errors import CorruptData
from fusevault.store import tombstone
from fusevault.vault.model import device_file, rekeys_owed, sharing
from fusevault.vault.services import rotation, share_ops
from inprocess.conftest import DIR, ME, ROOT, Composed, _close, _compose, make
from inprocess.test_moved_out import _moved_out


class Killed(BaseException):
    """The mount server's kill -9 at this point: nothing after it runs."""


def _kill(*_: object, **__: object) -> None:
    raise Killed


def _dropped(composed: Composed) -> None:
    """What a kill leaves: the store as it was written, nothing saved on the way out."""
    composed.store.close()
    for fd in composed._closers:
        os.close(fd)


def _ask(composed: Composed, cmd: str, path: str) -> dict:
    request = {"cmd": cmd, "path": path, "with": "bob", "perm": "READ"}
    return trio.run(composed.ops.session.requests.handle, request)


def _shared_folder(vault) -> tuple[str, str, bytes, bytes]:
    """alice's docs/notes.txt, docs shared READ with bob: (docs' fid, notes.txt's fid, the DEKs bob kept of
    notes.txt and of docs)."""
    composed = _compose(vault)

    async def made() -> None:
        docs = await composed.ops.mkdir(ROOT, b"docs", DIR, ME)
        await make(composed.ops, b"notes.txt", b"hers", parent=docs.st_ino)

    trio.run(made)
    assert "error" not in (answer := _ask(composed, "share", "docs")), answer
    volume = composed.volume
    docs, notes = volume.resolve(b"docs"), volume.resolve(b"docs/notes.txt")
    assert notes.dek and docs.dek
    out = docs.fid, notes.fid, notes.dek, docs.dek
    trio.run(_close, composed)
    return out


def _bobs_key(volume, fid: str):
    return sharing.read_key(sharing.user_key_path(volume.layout, _bob(volume), volume.key.user_id, fid))


def _bob(volume) -> str:
    return next(uid for uid, u in volume.sharing.users.items() if u.get("username") == "bob")


async def _unlocked(volume) -> None:
    """What her unlock does before serving (agent/sessions.py ``_settle_shares``, then the move
    service's look at her keys no share reaches)."""
    await rotation.resume(volume)
    await rotation._rekey_unreached(volume)


def _rekey_killed_at(n: int):
    def patch(monkeypatch, volume) -> None:
        real, calls = volume.rekey, []

        async def rekey(node):
            calls.append(node.fid)
            if len(calls) == n:
                raise Killed
            return await real(node)

        monkeypatch.setattr(volume, "rekey", rekey)
    return patch


KILLS = {
    # the debt recorded, the Share not yet deleted: taken back all the same on this device (the store may
    # have the deletion withheld or rolled back: it cannot be told from this; attack round 59c (1))
    "before the Share goes": lambda monkeypatch, volume: monkeypatch.setattr(share_ops, "tombstone", _kill),
    "the Share gone, before the keys": lambda monkeypatch, volume: monkeypatch.setattr(
        sharing, "discard_key", _kill),
    "the keys gone, before any new key": _rekey_killed_at(1),
    "the file re-keyed, before the folder": _rekey_killed_at(2),
    "the folder re-keyed, before the debt is paid": lambda monkeypatch, volume: monkeypatch.setattr(
        rekeys_owed, "paid", _kill),
}


@pytest.mark.parametrize("kill", list(KILLS))
def test_an_unshare_killed_at_any_step_its_request_withheld_is_finished_at_the_next_unlock(
        vault_copy, monkeypatch, kill: str) -> None:
    folder, fid, kept, kept_folder = _shared_folder(vault_copy)
    composed = _compose(vault_copy)
    with monkeypatch.context() as patched:
        KILLS[kill](patched, composed.volume)
        with pytest.raises(Killed):
            _ask(composed, "unshare", "docs")
    _dropped(composed)
    adversary.delete_row(vault_copy, f"rotate-{folder}")  # the store's writer withholds her request
    composed = _compose(vault_copy)
    try:
        volume = composed.volume
        trio.run(_unlocked, volume)
        node = volume.find(fid)
        assert rekeys_owed.owed(volume.layout.root, volume.key) == {}, "paid once re-keyed"
        assert node.dek != kept, "her next writes in docs/notes.txt would be under the key bob kept"
        assert volume.find(folder).dek != kept_folder, "docs would stay under the key bob kept"
        epochs = node.epoch, volume.find(folder).epoch
        trio.run(_unlocked, volume)  # her next unlock: nothing owed, nothing re-keyed again
        assert (node.epoch, volume.find(folder).epoch) == epochs
        record = _bobs_key(volume, fid)
        assert record is None or record.epoch < node.epoch
        if kill == "before the Share goes":
            # The store still has her Share (her other devices hold it in force): her unshare again
            # deletes it as any unshare does, and takes nothing more from this device.
            assert "error" not in (answer := _ask(composed, "unshare", "docs")), answer
            assert _bobs_key(volume, fid) is None
    finally:
        trio.run(_close, composed)


def test_her_unshare_again_finishes_what_is_owed_and_a_file_moved_out_with_it(
        vault_copy, monkeypatch) -> None:
    """notes.txt moved out of docs (to her root) before the unshare (its key of bob's taken back with
    it), the unshare killed before any new key, both requests withheld; her next mount runs ``unshare``
    again before anything else: it finishes both re-keys, where it said "not shared"."""
    folder, fid, kept, kept_folder = _shared_folder(vault_copy)
    composed = _compose(vault_copy)
    volume = composed.volume
    trio.run(composed.ops.rename, volume.resolve(b"docs").ino, b"notes.txt", ROOT, b"notes.txt", 0, ME)
    volume.tree.take_moved()  # the session's move service not run (its own tests: test_moved_out.py)
    with monkeypatch.context() as patched:
        _rekey_killed_at(1)(patched, volume)
        with pytest.raises(Killed):
            _ask(composed, "unshare", "docs")
    _dropped(composed)
    for each in (folder, fid):
        adversary.delete_row(vault_copy, f"rotate-{each}")
    composed = _compose(vault_copy)
    try:
        volume = composed.volume
        owed = rekeys_owed.owed(volume.layout.root, volume.key)
        assert set(owed) == {folder, fid}
        folder_epoch = volume.find(folder).epoch
        answer = _ask(composed, "unshare", "docs")
        assert "error" not in answer, answer
        assert volume.find(fid).dek != kept and volume.find(folder).dek != kept_folder
        assert volume.find(folder).epoch > folder_epoch
        assert rekeys_owed.owed(volume.layout.root, volume.key) == {}
        again = _ask(composed, "unshare", "docs")  # done: now it is "not shared"
        assert again.get("code") == 4, again
    finally:
        trio.run(_close, composed)


def test_a_damaged_record_is_said_and_the_unlock_and_an_unshare_go_on(vault_copy) -> None:
    folder, fid, kept, kept_folder = _shared_folder(vault_copy)
    composed = _compose(vault_copy)
    try:
        volume = composed.volume
        place = rekeys_owed._place(volume.layout.root, volume.key.user_id)
        place.parent.mkdir(parents=True, exist_ok=True)
        place.write_bytes(b"not a record")
        trio.run(_unlocked, volume)
        assert "rekeys-owed" in volume.trust.alarms
        assert "error" not in (answer := _ask(composed, "unshare", "docs")), answer
        assert volume.find(fid).dek != kept and rekeys_owed.owed(volume.layout.root, volume.key) == {}
        assert place.with_name(place.name + ".damaged").read_bytes() == b"not a record"
    finally:
        trio.run(_close, composed)


def test_a_debt_that_cannot_be_recorded_leaves_the_share_in_force(vault_copy, monkeypatch) -> None:
    """Nothing is taken back unless its re-key is owed on this device first: the command fails, the share
    and its keys as they were."""
    folder, fid, kept, kept_folder = _shared_folder(vault_copy)
    composed = _compose(vault_copy)
    try:
        volume = composed.volume

        def full(*_: object) -> None:
            raise OSError(28, "No space left on device")

        with monkeypatch.context() as patched:
            patched.setattr(device_file, "atomic_write", full)
            answer = _ask(composed, "unshare", "docs")
        assert "nothing taken back" in answer.get("error", ""), answer
        assert volume.store.get(sharing.doc_id(folder, _bob(volume))) is not None
        assert _bobs_key(volume, fid) is not None and volume.find(fid).dek == kept
    finally:
        trio.run(_close, composed)


@pytest.mark.parametrize("withheld", [False, True], ids=["control", "request-withheld"])
async def test_a_lock_right_after_a_move_out_is_re_keyed_at_the_next_unlock_whatever_the_store_withholds(
        shared, withheld: bool) -> None:
    """A file moved out of a share, the session locked before its re-key (its keys taken back, her
    request written): her next unlock re-keys it, with the request withheld too (58d (2))."""
    volume, node, key = await _moved_out(shared)
    epoch, kept = node.epoch, node.dek
    async with trio.open_nursery() as nursery:
        await nursery.start(rotation.keep_moves_rekeyed, volume)
        nursery.cancel_scope.cancel()  # locked before the service ran
    assert not key.exists() and node.epoch == epoch
    assert set(rekeys_owed.owed(volume.layout.root, volume.key)) == {node.fid}
    if withheld:
        volume.store.inner.put_many([tombstone(volume.store.get(f"rotate-{node.fid}"))])
    await rotation.resume(volume)  # her next unlock
    assert node.epoch > epoch and node.dek != kept
    assert rekeys_owed.owed(volume.layout.root, volume.key) == {}


def test_a_re_key_owed_that_fails_stays_owed_and_the_unlock_goes_on(vault_copy, monkeypatch) -> None:
    """The re-key of what is owed fails (a file that cannot be sealed again): said, still owed, tried
    once per unlock (not at every pass of it), and finished at the next unlock that can."""
    folder, fid, kept, kept_folder = _shared_folder(vault_copy)
    composed = _compose(vault_copy)
    with monkeypatch.context() as patched:
        _rekey_killed_at(1)(patched, composed.volume)
        with pytest.raises(Killed):
            _ask(composed, "unshare", "docs")
    _dropped(composed)
    adversary.delete_row(vault_copy, f"rotate-{folder}")
    composed = _compose(vault_copy)
    try:
        volume = composed.volume
        tries = []

        async def cannot(node):
            tries.append(node.fid)
            raise CorruptData("cannot be sealed again")

        with monkeypatch.context() as patched:
            patched.setattr(volume, "rekey", cannot)
            trio.run(_unlocked, volume)
        assert tries == [fid], "one try per unlock"
        assert set(rekeys_owed.owed(volume.layout.root, volume.key)) == {folder}
        trio.run(_unlocked, volume)
        assert volume.find(fid).dek != kept and volume.find(folder).dek != kept_folder
        assert rekeys_owed.owed(volume.layout.root, volume.key) == {}
    finally:
        trio.run(_close, composed)
