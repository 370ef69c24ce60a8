"""Round 43c (8), honest use (services/absorbing.py ``_waits_for_her_re_key``), in-process: a WRITE
member's state made over her other device's re-key, which this device has not heard of yet, is of her
key (derived from her master key for the recipients her other device saw), not his claim.

Scene: alice shares docs/ WRITE with bob, and docs/sub WRITE with him again (a second grant); her
desktop unshares docs/sub (he keeps docs/): docs/sub re-keyed in place, epoch E+1, a key derived for
the recipients left.  bob's device takes that re-key in and he chmods docs/sub over it.  Her laptop
(this seat) gets bob's state from the sync before her desktop's unshare: taken then, it was a claim
(the key is not the one her laptop derives for the recipients it sees): her older key kept, and said
(a forged-write alarm: a false one).  Wanted: bob's state held (not taken in under a key unknown here,
not said) until her unshare arrives, then taken in unsaid; a forged claim (no unshare of hers ever
arrives) still said, once ``HER_RE_KEY_BATCHES`` batches have come in."""

from __future__ import annotations

import stat
from types import SimpleNamespace

from fusevault.encoding import b64e
from fusevault.store import tombstone
from fusevault.vault.files.rekeying import derived_dek
from fusevault.vault.model import alarms, sharing
from fusevault.vault.services.absorbing import HER_RE_KEY_BATCHES, absorb_arrivals, retry_awaiting
from fusevault.vault.tree.arrivals import Absorbed
from inprocess import conftest
from inprocess.conftest import ROOT
from inprocess.test_two_users import ALICE, _share

DIR = stat.S_IFDIR | 0o755


def _said(volume, fid: str) -> bool:
    """A forged-write alarm of this file (the alarms are the process's, kept across tests)."""
    return any(each["kind"] == "forged-write" and each["subject"] == fid
               for each in alarms.for_user(volume.key.user_id).as_list())


async def _docs_sub_shared_twice(shared) -> tuple:
    """docs/sub shared WRITE with bob twice (docs/, docs/sub): (her volume, bob's, her node, his, the
    share of docs/sub)."""
    drive = shared.drive
    docs = await drive.mkdir(ROOT, b"docs", DIR, ALICE)
    await drive.mkdir(docs.st_ino, b"sub", DIR, ALICE)
    await _share(shared, "docs", "WRITE")
    await _share(shared, "docs/sub", "WRITE")
    alice, bob = shared.volumes["alice"], shared.volumes["bob"]
    hers = alice.resolve(b"docs/sub")
    (grant,) = [g for g in alice.sharing.grants if g.fid == hers.fid]
    return alice, bob, hers, bob.tree.find(hers.fid), grant


async def _bobs_chmod_under(shared, monkeypatch, his, dek: bytes, epoch: int, wrapped: dict,
                            proof: str | None = None) -> None:
    """bob's chmod of docs/sub committed under ``dek`` at ``epoch``, which her seat (the laptop) does not
    take in from the store's watcher: it hears it from the sync (``absorb_arrivals``, below).  ``proof``:
    her proof of the key, as her re-key's state he took in carried it (else his node's is kept)."""
    alice, bob = shared.volumes["alice"], shared.volumes["bob"]

    def chmod() -> None:
        his.dek, his.epoch, his.wrapped = dek, epoch, wrapped
        if proof is not None:
            his.key_proof = proof
        his.mode = stat.S_IFDIR | 0o775

    real = conftest.absorb
    monkeypatch.setattr(conftest, "absorb", lambda volume, docs, **how: (
        Absorbed() if volume is alice else real(volume, docs, **how)))
    await bob.tree.commit_node(his, chmod)
    monkeypatch.setattr(conftest, "absorb", real)


def _her_desktops_key(alice, node, epoch: int, grant) -> bytes:
    """The key her desktop's unshare of docs/sub gives it: derived for the recipients left."""
    desktop = SimpleNamespace(key=alice.tree.key, sharing=alice.tree.sharing,
                              covering=lambda n: [g for g in alice.tree.covering(n) if g != grant])
    return derived_dek(desktop, node, epoch)  # type: ignore[arg-type]


def _her_unshare_arrives(alice, grant) -> Absorbed:
    """Her desktop's unshare of docs/sub, as the sync brings it: the Share's deletion."""
    doc = alice.store.get(sharing.doc_id(grant.fid, grant.grantee))
    gone = tombstone(doc)
    (gone["_rev"],) = alice.store.inner.put_many([gone])
    return absorb_arrivals(alice, [gone])


async def test_bobs_state_over_her_other_devices_re_key_waits_for_it_and_is_taken_unsaid(shared, monkeypatch):
    alice, bob, hers, his, grant = await _docs_sub_shared_twice(shared)
    held, epoch = (hers.dek, hers.epoch), hers.epoch + 1
    newer = _her_desktops_key(alice, hers, epoch, grant)  # her desktop's unshare, which bob's device took in
    assert newer != derived_dek(alice.tree, hers, epoch), "her laptop sees other recipients"
    await _bobs_chmod_under(shared, monkeypatch, his, newer, epoch,
                            {"en_file_dek": b64e(alice.key.wrap_dek(hers.fid, newer))})
    out = absorb_arrivals(alice, [alice.store.get(hers.fid)])
    assert (hers.dek, hers.epoch) == held and hers.mode == DIR, "taken in under a key unknown here"
    assert not out.rekey and not _said(alice, hers.fid), "her other device's re-key taken for his claim"
    out = _her_unshare_arrives(alice, grant)
    assert (hers.dek, hers.epoch) == (newer, epoch) and hers.mode == stat.S_IFDIR | 0o775
    assert hers not in out.rekey and not _said(alice, hers.fid)


async def test_bobs_claim_of_her_older_key_is_said_once_the_batches_came(shared, monkeypatch):
    """bob keeps her key from before a rotation of hers (his device took the rotation in) and claims
    the epoch above it: no re-key of hers ever arrives to explain it."""
    alice, bob, hers, his, grant = await _docs_sub_shared_twice(shared)
    older, wrapped = hers.dek, dict(his.wrapped or {})
    await alice.rekey(hers)
    retry_awaiting(bob, Absorbed())  # her key sealed to him after her commit
    held = (hers.dek, hers.epoch)
    assert held[0] != older and his.dek == held[0]
    await _bobs_chmod_under(shared, monkeypatch, his, older, held[1] + 1, wrapped)
    docs = alice.resolve(b"docs")
    batches = [absorb_arrivals(alice, [alice.store.get(hers.fid)])]
    while len(batches) < HER_RE_KEY_BATCHES and not _said(alice, hers.fid):
        batches.append(absorb_arrivals(alice, [alice.store.get(docs.fid)]))  # the sync goes on
    assert _said(alice, hers.fid), "his claim held for ever, unsaid"
    assert hers.mode == stat.S_IFDIR | 0o775, "his state is taken in"
    assert hers.epoch == held[1] and hers in batches[-1].rekey, (
        "taken at the held epoch, and sealed again under a new key of hers")
