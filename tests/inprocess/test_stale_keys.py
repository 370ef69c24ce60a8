"""Her keys no share reaches now (vault/services/stale_keys.py, rotation.py ``_rekey_unreached``),
in-process: a key of the current epoch for a recipient no share over the file gives is taken back and
the file re-keyed; what only looks like one costs nothing.  The devices that made such keys (one of
hers that had not heard of a revocation): tests/mount/test_trust_attack_39b.py."""

from __future__ import annotations

import shutil
import stat

from fusevault.store import tombstone
from fusevault.vault.model import sharing
from fusevault.vault.services import rotation
from inprocess.conftest import ALICE_UID, ROOT
from inprocess.test_two_users import ALICE, _share, _unshare, _write


async def _notes_shared_with_bob(shared):
    """alice's docs/notes.txt shared READ with bob: (her Volume, its node, bob's key file of it)."""
    drive = shared.drive
    docs = await drive.mkdir(ROOT, b"docs", stat.S_IFDIR | 0o755, ALICE)
    await _write(drive, docs.st_ino, b"notes.txt", b"hers", ALICE)
    await _share(shared, "docs", "READ")
    volume = drive.seat_of(ALICE_UID).ops.session.volume
    node = volume.resolve(b"docs/notes.txt")
    (grant,) = [g for g in volume.sharing.grants if g.fid == volume.resolve(b"docs").fid]
    path = sharing.key_path(volume.layout, grant, grant.grantee, node.fid)
    assert path.is_file()
    return volume, node, path


def _forget_the_share(volume) -> None:
    """Her unshare on this device, before another device of hers (which had not heard of it) sealed
    the key found now: the grant is gone and taken back here, and nothing here re-keyed the file."""
    (doc,) = volume.store.iter_type(sharing.SHARE)
    volume.trust.fresh.took_back(doc["_id"])
    volume.store.inner.put_many([tombstone(doc)])
    volume.sharing.reload(volume.store)


async def test_a_share_gone_from_the_store_but_not_taken_back_here_costs_no_re_key(shared):
    """Withheld by the server (or its body refused, a replay): no revocation this device knows of."""
    volume, node, path = await _notes_shared_with_bob(shared)
    epoch = node.epoch
    (doc,) = volume.store.iter_type(sharing.SHARE)
    volume.store.inner.put_many([tombstone(doc)])
    volume.sharing.reload(volume.store)
    await rotation._rekey_unreached(volume)
    assert node.epoch == epoch and path.is_file()


async def test_a_key_of_the_current_epoch_no_share_gives_is_taken_back_and_the_file_re_keyed(shared):
    volume, node, path = await _notes_shared_with_bob(shared)
    epoch = node.epoch
    await rotation._rekey_unreached(volume)
    assert node.epoch == epoch and path.is_file()  # the share gives it: nothing to do
    _forget_the_share(volume)
    await rotation._rekey_unreached(volume)
    assert node.epoch > epoch and not path.exists()
    await rotation._rekey_unreached(volume)  # once
    assert node.epoch == epoch + 1


async def test_an_older_key_put_back_or_a_planted_one_costs_no_re_key(shared, tmp_path):
    volume, node, path = await _notes_shared_with_bob(shared)
    old = tmp_path / "old.vfkey"
    shutil.copy(path, old)
    await _unshare(shared, "docs")  # re-keyed here: bob's key goes
    epoch = node.epoch
    assert not path.exists()
    shutil.copy(old, path)  # his key of the epoch before, put back (a replay): opens nothing new
    await rotation._rekey_unreached(volume)
    assert node.epoch == epoch
    path.write_bytes(b'{"epoch": 99, "key": "AAAA"}')  # a vault-folder writer's, at the name
    await rotation._rekey_unreached(volume)
    assert node.epoch == epoch
