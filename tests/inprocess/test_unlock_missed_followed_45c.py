"""Round 45c (unlock), in-process: what an unlock's tree takes in of the documents other seats of a
shared mount committed while it loaded (agent/sessions.py ``missed``) asks for is followed up as any
arrival (fs/arrivals.py ``loaded`` -> ``follow_up``).  The unlock threw the ``Absorbed`` away: a node
written under her older key (a revoked member's) stayed under it, the kernel's caches were kept.

Two scenes: bob's state of her file under her old key committed while her seat's tree loads (the
whole scene), and the unlock's ``absorb`` made to ask a re-key of her own file (the callback path alone)."""

from __future__ import annotations

import functools
import stat
from types import SimpleNamespace

import trio
from conftest import PASSPHRASE

from fusevault.agent import sessions
from fusevault.agent.sessions import Agent
from fusevault.fs.arrivals import Arrivals
from fusevault.host_access import Direct
from fusevault.tasks import Tasks
from fusevault.vault.model.nodes import doc_dek
from fusevault.vault.services.absorbing import Absorbed, absorb
from fusevault.vault.services.placing import NoKernel
from fusevault.vault.volume import Volume
from inprocess.conftest import agent_for, make, read_all
from inprocess.test_member_claims_alone_45c import _notes_re_keyed, _opens_under


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


async def test_a_members_state_under_her_old_key_committed_while_her_tree_loaded_is_sealed_again(
        shared, monkeypatch) -> None:
    """The scene whole, in a shared mount: her seat locked and unlocked again; while her tree loads, bob
    commits a state of her file made of what he held before her re-key (the old key, which carol holds,
    claiming her epoch: test_member_claims_alone_45c.py).  Her unlock takes it in from ``missed``; the
    re-key it asks must be done, else her file stays under the old key."""
    alice, bob, hers, his, before, old = await _notes_re_keyed(shared)
    epoch = hers.epoch
    seat = next(s for s in shared.drive.seats.values() if s.ops.session.volume is alice)
    agent = Agent(shared.store.get(alice.key.user_id), seat.ops.gate, NoKernel(), Tasks(), alice.layout,
                  alice.store, host=Direct())
    arrivals = Arrivals(shared.store, lambda: [agent])
    agent.loaded = functools.partial(arrivals.loaded, agent)  # as fs/shared.py
    real_load = Volume.load

    def forged() -> None:  # his client: what he held before her re-key, at her epoch
        for name, value in before.items():
            setattr(his, name, value)
        his.epoch = epoch
        his.mode = stat.S_IFREG | 0o664

    def load_while_bob_commits(*args: object) -> Volume:
        volume = real_load(*args)  # type: ignore[arg-type]
        trio.from_thread.run(bob.tree.commit_node, his, forged)  # after her load read the store
        assert agent.missed is not None
        agent.missed.append(shared.store.get(hers.fid))  # as Arrivals.committed keeps it
        return volume

    monkeypatch.setattr(sessions, "Volume", SimpleNamespace(load=load_while_bob_commits))
    async with trio.open_nursery() as nursery:
        await nursery.start(agent.run, alice, 3600)
        assert await agent.lock("a test") is True
        async with trio.open_nursery() as mount:  # the mount's: the re-key asked runs in it
            arrivals.nursery = mount
            await agent.unlock(PASSPHRASE.encode())
        session = agent.session
        assert session is not None
        assert session.volume.tree.find(hers.fid).mode == stat.S_IFREG | 0o664, "bob's state taken in"
        doc = shared.store.get(hers.fid)
        assert doc_dek(doc, session.volume.key) != old and not _opens_under(doc, old), "carol reads her file"
        nursery.cancel_scope.cancel()
