"""Round 45c (settling), in-process through fs/arrivals.py: rule 4 keeping her own device's edit made
apart under the key her other device's unshare just replaced asks a re-key (``Absorbed.rekey``); the
settling's caller (``Arrivals._settle_conflicts``) did not act on it, so her file stayed under the old
key (which the removed member holds) and her next writes were sealed under it.

Scene: her laptop (a second load of her tree) writes notes.txt while apart, under the key it held; her
desktop, which never saw that edit, re-keys notes.txt (her unshare of another) on two saves of hers
made over the state before it.  The laptop's later edit is kept (rule 4)."""

from __future__ import annotations

from types import SimpleNamespace

import trio

from fusevault.agent.sessions import Session
from fusevault.crypto import aead
from fusevault.encoding import b64d
from fusevault.errors import CorruptData
from fusevault.fs.arrivals import Arrivals
from fusevault.fs.operations import Operations
from fusevault.host_access import Direct
from fusevault.store import replica
from fusevault.tasks import Tasks
from fusevault.vault.model.nodes import doc_dek
from fusevault.vault.services import conflicts
from fusevault.vault.services.absorbing import absorb
from fusevault.vault.services.placing import NoKernel
from fusevault.vault.volume import Volume
from inprocess.conftest import make, read_all, rewrite


def _opens_under(doc: dict, dek: bytes) -> bool:
    try:
        aead.unseal(dek, b64d(doc["enc"]), aead.ad("node", doc["_id"]))
    except CorruptData:
        return False
    return True


async def test_her_own_edit_kept_by_rule_4_beside_her_re_key_is_given_a_new_key(fs) -> None:
    desktop = fs.volume
    ino = (await make(fs.ops, b"notes.txt", b"hers")).st_ino
    hers = desktop.resolve(b"notes.txt")
    local, old = replica.local_of(desktop.store), hers.dek
    assert local is not None
    before, history = local.get(hers.fid), replica.current_history(local, hers.fid)
    # Her laptop: the same tree loaded apart; its edit (later) is never seen by the desktop.
    laptop = Volume.load(desktop.layout, local, desktop.key, desktop.tree.root.fid)
    ops = Operations(None)
    ops.gate.open(Session(laptop, NoKernel(), Tasks(), Direct()))
    await rewrite(ops, laptop.resolve(b"notes.txt").ino, b"laptop words")
    # The desktop's state before that edit, on top (two more saves of hers): the laptop's a branch.
    ahead = [f"{len(history) + n}-{str(n) * 32}" for n in (2, 1)] + history
    replica.store_revisions(local, [{**before, "_rev": ahead[0], "_revisions": replica.revisions(ahead)}])
    absorb(desktop, [local.get(hers.fid)], own=False)
    await desktop.rekey(hers)  # her unshare of another: a new key
    assert hers.dek != old and replica.other_leaves(local, hers.fid)
    conflicts.note_branches(desktop, local, [hers.fid])
    agent = SimpleNamespace(session=SimpleNamespace(volume=desktop), missed=None, kernel=NoKernel(),
                            user_id=desktop.key.user_id)  # as sessions.Agent
    arrivals = Arrivals(local, lambda: [agent])
    async with trio.open_nursery() as nursery:  # the mount's: the re-key asked runs in it
        arrivals.nursery = nursery
        await arrivals._settle_conflicts(agent, [hers.fid])
    assert await read_all(fs.ops, ino) == b"laptop words", "rule 4 keeps the laptop's later edit"
    doc = local.get(hers.fid)
    assert doc_dek(doc, desktop.key) != old and not _opens_under(doc, old), "the old key opens her file"
    await rewrite(fs.ops, ino, b"hers, after the unshare")
    doc = local.get(hers.fid)
    assert doc_dek(doc, desktop.key) != old and not _opens_under(doc, old), "her next write under the old key"
    assert await read_all(fs.ops, ino) == b"hers, after the unshare"
