"""Round 45c (unlock), in-process: what an unlock's tree takes in of the documents other seats of a
shared mount committed while it loaded (agent/sessions.py ``missed``) asks for is followed up as any
arrival (fs/arrivals.py ``loaded`` -> ``follow_up``).  The unlock threw the ``Absorbed`` away: a node
written under her older key (a revoked member's) stayed under it, the kernel's caches were kept.

The scene's ``absorb`` at unlock is the real one with her file added to ``rekey`` (a seat's commit
under her older key while her tree loaded is not built here): the unlock must have it sealed again."""

from __future__ import annotations

import functools

import trio
from conftest import PASSPHRASE

from fusevault.agent import sessions
from fusevault.fs.arrivals import Arrivals
from fusevault.vault.services.absorbing import Absorbed, absorb
from fusevault.vault.volume import Volume
from inprocess.conftest import agent_for, make, read_all


async def test_a_rekey_asked_by_what_came_in_while_her_tree_loaded_is_started(fs, monkeypatch) -> None:
    await make(fs.ops, b"notes.txt", b"hers")
    old = bytes(fs.volume.resolve(b"notes.txt").dek)
    agent = agent_for(fs)
    arrivals = Arrivals(fs.store, lambda: [agent])
    agent.loaded = functools.partial(arrivals.loaded, agent)  # as fs/personal.py and fs/shared.py
    given: list[Absorbed] = []

    def absorbed_at_unlock(volume: Volume, docs: list[dict], **kw: object) -> Absorbed:
        changed = absorb(volume, docs, **kw)  # type: ignore[arg-type]
        changed.rekey.append(volume.resolve(b"notes.txt"))  # as a seat's write under her older key
        given.append(changed)
        return changed

    monkeypatch.setattr(sessions, "absorb", absorbed_at_unlock)
    async with trio.open_nursery() as nursery:
        await nursery.start(agent.run, fs.volume, 3600)
        assert await agent.lock("a test") is True
        async with trio.open_nursery() as mount:  # the mount's: the re-key asked runs in it
            arrivals.nursery = mount
            await agent.unlock(PASSPHRASE.encode())
        assert given, "the unlock took in what it missed"
        session = agent.session
        assert session is not None
        node = session.volume.resolve(b"notes.txt")
        assert bytes(node.dek) != old, "the node her unlock took in under an older key was not sealed again"
        assert await read_all(fs.ops, node.ino) == b"hers"
        nursery.cancel_scope.cancel()
