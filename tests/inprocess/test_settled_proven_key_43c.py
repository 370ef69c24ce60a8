"""Round 43c (8), honest use, settled as a conflict (services/conflicts.py ``_newer_key``), in-process: a
WRITE member's state made over her other device's re-key, which this device has not heard of yet, beside
a state of hers made apart, is of her key when her proof proves it (``MasterKey.key_proof``: her re-key
writes it, his commit carries it over), not his claim.

Scene (tests/inprocess/test_member_newer_key_43c.py's harness): docs/ and docs/sub shared WRITE with bob;
her desktop unshares docs/sub (a re-key in place, epoch E+1, a key derived for the recipients left, her
proof of it in the node); bob's device takes it in and he chmods docs/sub over it.  Her laptop (this
seat) set an extended attribute on docs/sub meanwhile, over the state before the re-key: two branches.
Settled before her unshare arrives, rule 2 kept her laptop's state for its key and took bob's for a
claim above her epoch: said (a false forged-write alarm), her unshare's key dropped here.  Wanted: her
re-key's key and epoch (his state's), her attribute and his chmod merged, unsaid.  A key her proof does
not prove at his epoch, or one at the epoch held here, is a claim still."""

from __future__ import annotations

import stat
from collections.abc import Callable

import pytest

from fusevault.encoding import b64e
from fusevault.store import replica
from fusevault.vault.services import conflicts
from fusevault.vault.services.absorbing import absorb
from inprocess.test_member_newer_key_43c import (
    _bobs_chmod_under,
    _docs_sub_shared_twice,
    _her_desktops_key,
    _her_unshare_arrives,
    _said,
)

DIR = stat.S_IFDIR | 0o755
NAME, VALUE = b"user.laptop", b"hers"


Key = tuple[bytes, int, "str | None"]


async def _beside_her_laptops_state(shared, monkeypatch, key_of: Callable[..., Key]) -> tuple:
    """bob's chmod of docs/sub under the key ``key_of(alice, her node, the share of docs/sub)`` gives (a
    DEK, its epoch, the proof his state carries), a branch beside her laptop's setxattr made over the
    state before it; settled on her laptop.  (her volume, her node, the share, bob's key, what the
    settling asked.)"""
    alice, bob, hers, his, grant = await _docs_sub_shared_twice(shared)
    local = replica.local_of(alice.store)
    assert local is not None
    before, history = local.get(hers.fid), replica.current_history(local, hers.fid)
    key = dek, epoch, proof = key_of(alice, hers, grant)
    await _bobs_chmod_under(shared, monkeypatch, his, dek, epoch,
                            {"en_file_dek": b64e(alice.key.wrap_dek(hers.fid, dek))}, proof)
    # Her laptop's state before his, on top again (more saves of hers on her side): his a branch.
    ahead = [f"{len(history) + n}-{str(n) * 32}" for n in (2, 1)] + history
    replica.store_revisions(local, [{**before, "_rev": ahead[0], "_revisions": replica.revisions(ahead)}])
    absorb(alice, [local.get(hers.fid)], own=False)
    await alice.setxattr(hers.ino, NAME, VALUE)
    assert replica.other_leaves(local, hers.fid), "no conflict to settle"
    conflicts.note_branches(alice, local, [hers.fid])
    out = await conflicts.settle(alice, local, [hers.fid])
    assert not replica.other_leaves(local, hers.fid)
    return alice, hers, grant, key, out


def _desktops(alice, hers, grant) -> Key:
    """Her desktop's unshare of docs/sub: its key at E+1 (derived for the recipients left), her proof."""
    epoch = hers.epoch + 1
    newer = _her_desktops_key(alice, hers, epoch, grant)
    return newer, epoch, alice.key.key_proof(hers.fid, epoch, newer)


@pytest.mark.xfail(strict=True, reason="43c (8): settled before her unshare arrives, taken for his claim")
async def test_bobs_state_over_her_desktops_proven_re_key_beside_her_laptops_is_hers(shared, monkeypatch):
    alice, hers, grant, key, out = await _beside_her_laptops_state(shared, monkeypatch, _desktops)
    assert not _said(alice, hers.fid), "her other device's re-key taken for his claim"
    assert (hers.dek, hers.epoch, hers.key_proof) == key, "her desktop's re-key dropped for her older key"
    assert not out.rekey
    assert hers.mode == stat.S_IFDIR | 0o775 and hers.xattrs.get(NAME) == VALUE, "a change made apart lost"
    stored = alice.store.get(hers.fid)
    assert stored["epoch"] == key[1] and stored["sig"]["by"] == alice.key.user_id
    _her_unshare_arrives(alice, grant)
    assert (hers.dek, hers.epoch) == key[:2] and not _said(alice, hers.fid)
