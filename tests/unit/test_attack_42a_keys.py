"""Attack round 42a: a forged key deletion said only after ``SAY_REFUSED_AFTER`` (sync/key_mirror.py).

Run 03:41 UTC, 2026-12-06 (holes (3), (4), (5): 3 xfailed, 3 controls passed);
with --runxfail each xfail fails at its own assertion (the scene's asserts all held).
Fixed since, all three (docs/SECURITY.md "Attack round 42"): the marks are gone, and tests added for a
stamped older group body, her genuine removal (control) and an echo padded to full batches.

Hole (3), medium (an alarm a server can silence for good): a server that deletes a member's key
  document and puts it back, over and over, is never said.
  Attack: the server serves a bare deletion of bob's key document (refused: the key file stays),
    then, before ``SAY_REFUSED_AFTER`` (15 s) passed, the key's own signed body again as a newer
    revision over its deletion (CouchDB lets it write any revision tree), then a new deletion, and
    so on: deleted about nine seconds of ten.
  Seen: ``test_a_deletion_the_server_undoes_and_makes_again_is_said`` (run, fails: never said over
    100 s; before round 41's last fixes the first ``caught_up`` said it).
  Cause: sync/key_mirror.py ``caught_up``: ``_refused_since`` is dropped for a key no longer refused
    at that moment, so each new deletion starts a new while; nothing remembers that the document
    was deleted without reason before.
  Impact: the server keeps a member's key document deleted most of the time, unsaid: a device of
    his (or hers) that joins, or restores from the server, meanwhile gets no key and cannot open
    the shared file; the alarm that would name the server is silenced for as long as it likes.
  Fix: keep the time of the first refused deletion per key document across restores (until the
    owner's signed later epoch takes it), or say a second refused deletion of the same key at once
    (her re-key explains one deletion, never a deletion undone and made again).
  Tests: that one; the control ``..._once_and_left_is_said`` passes.

Hole (4), medium-high (a member's key taken, unsaid): her older group served again beside a bare
  deletion of a member's group key takes the key.
  Attack: the server serves her group as she signed it before bob joined (a replay: her signature
    holds, group documents carry no epoch or counter) as the newest revision, and a bare deletion of
    bob's group key document.
  Seen: ``test_her_older_group_served_again_beside_a_forged_deletion_never_takes_bobs_key`` (run,
    fails: the key file is removed, nothing said).
  Cause: sync/key_mirror.py ``_removal_taken``: "the group's owner took the recipient out of it" is
    read from the group's current document in the store, which a replay makes; the node branch
    guards by epoch ("a replayed older node never shows a later one"), the group branch has nothing.
  Impact: bob's key of every file shared with the group removed on each device that meets it (hers
    too), unsaid: he cannot open the group's files until she re-keys; round 41's wait says nothing.
  Fix: take a group key's deletion only on a group state known newer than the one the key was
    granted under (a signed membership counter or the ledger's group state; never the store's
    current revision alone), else refuse and say as for a bare deletion.
  Tests: that one; the control ``test_a_forged_deletion_of_a_group_key_alone_is_refused_and_said``.

Hole (5), low-medium (an alarm a server silences by keeping its feed busy): a forged deletion is
  never said while each answer of the changes feed holds one change.
  Attack: after the deletion's batch, the server answers every ``_changes`` with one change this
    replica already holds (an echo).
  Seen: ``test_a_forged_deletion_is_said_though_the_server_echoes_forever`` (run, fails: never said
    over 150 s of pulls).
  Cause: sync/replicator.py ``pull``: the echo-only branch returns before ``keys.caught_up``; since
    round 41 a refused deletion is said only at a ``caught_up`` 15 s after it (``SAY_REFUSED_AFTER``),
    so the one at the deletion's own batch no longer says it.  (Before, the server had to pad the
    deletion's batch to a full ``CHANGES_BATCH``.)
  Impact: the forged deletion is refused (the key stays) but unsaid for as long as the server likes.
  Fix: judge the refused deletions by time, not by the feed: call ``keys.caught_up`` (or a
    ``keys.due()``) after every pull, the echo branch and full batches included, or from a timer.
  Tests: that one; the control ``test_a_forged_deletion_is_said_once_the_feed_goes_quiet``.
"""

from __future__ import annotations

import functools
import uuid

import pytest
import trio

from fusevault.store import replica
from fusevault.sync import key_mirror
from fusevault.sync.key_mirror import place
from fusevault.sync.replicator import CHANGES_BATCH, PeerStatus, Replicator
from fusevault.vault.model import sharing
from fusevault.vault.model.grants import record_doc
from fusevault.vault.model.groups import GROUP
from unit.test_key_mirror import Owner, clock, pair, put, said  # noqa: F401 (fixtures)


def _bob_key(here) -> tuple[Owner, str, list[str], dict]:
    """Her file (epoch 2) with bob's signed key of epoch 2 on ``here``: (her, its document's id, the
    document's revision ids newest first, its body)."""
    her, fid, bob = Owner(), uuid.uuid4().hex, uuid.uuid4().hex
    put(here, her.user, her.node(fid, 2))
    doc_id = her.key_file(here, fid, bob, 2)
    doc = here.store.get(doc_id)
    generation, rev_id = doc["_rev"].split("-", 1)
    assert int(generation) == len(replica.history_from(doc)) == 1, "one revision: its history is its id"
    body = {k: v for k, v in doc.items() if not k.startswith("_")}
    return her, doc_id, [rev_id], body


def _serve(here, doc_id: str, revs: list[str], body: dict | None) -> None:
    """The server's next revision of the key document: deleted (``body`` None) or ``body`` again."""
    revs.insert(0, uuid.uuid4().hex)
    doc = {"_id": doc_id, "_rev": f"{len(revs)}-{revs[0]}",
           "_revisions": {"start": len(revs), "ids": list(revs)}}
    doc.update({"_deleted": True} if body is None else body)
    arrival = replica.store_revisions(here.store, [doc])
    assert arrival.current
    here.keys.arrived(d["_id"] for d in arrival.current)
    here.keys.caught_up()


def test_a_deletion_the_server_undoes_and_makes_again_is_said(pair, clock) -> None:  # noqa: F811
    here, _ = pair
    her, doc_id, revs, body = _bob_key(here)
    for _ in range(10):
        _serve(here, doc_id, revs, None)  # deleted
        clock.now += key_mirror.SAY_REFUSED_AFTER - 6
        here.keys.caught_up()  # the longpoll comes back
        clock.now += 5
        _serve(here, doc_id, revs, body)  # put back just before the while is over
        clock.now += 1
        assert place(here.layout, doc_id).exists()
    assert said(her, doc_id), "a deletion made ten times over 100 s was never said"


def test_a_deletion_the_server_makes_once_and_left_is_said(pair, clock) -> None:  # noqa: F811
    """Control: the same deletion left in place is said once the while is over."""
    here, _ = pair
    her, doc_id, revs, _ = _bob_key(here)
    _serve(here, doc_id, revs, None)
    clock.now += key_mirror.SAY_REFUSED_AFTER
    here.keys.caught_up()
    assert place(here.layout, doc_id).exists() and said(her, doc_id)


def _group_key(here, stamped: bool = False) -> tuple[Owner, str, str, list[dict]]:
    """Her group (she alone, then bob added: both states signed by her; ``stamped``: with the
    ``made_at_us`` her signing puts in, 100 and 200) and her file shared with it (epoch 1), bob's
    signed group key on ``here``: (her, the group's id, the key document's id, her group's two
    signed states, oldest first)."""
    her, fid, bob, group = Owner(), uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    body = {"_id": group, "type": GROUP, "groupname": "team", "owner": her.id, "created_at": 1,
            "users": {her.id: "READ,WRITE"}}
    alone = her.sign({**body, **({"made_at_us": 100} if stamped else {})})
    joined = her.sign({**body, "users": {her.id: "READ,WRITE", bob: "READ"},
                       **({"made_at_us": 200} if stamped else {})})
    put(here, her.user, her.node(fid, 1), alone)
    put(here, joined)
    sealed = b"sealed for bob"
    sig = her.sign(record_doc(her.id, fid, bob, 1, sealed))["sig"]
    doc_id = f"vfkey-g-{group}-{fid}-{bob}"
    sharing.write_key(place(here.layout, doc_id), 1, sealed,
                      signed={"owner": her.id, "fid": fid, "recipient": bob, "sig": sig})
    here.refresh()
    assert here.store.get(doc_id) is not None and here.store.get(group)["users"].get(bob) == "READ"
    return her, group, doc_id, [alone, joined]


def _next_revision(here, doc_id: str, body: dict | None) -> None:
    """A revision the server makes over the current one: ``body`` (None: a bare deletion)."""
    current = here.store.get(doc_id)
    generation, rev_id = current["_rev"].split("-", 1)
    new = uuid.uuid4().hex
    doc = {"_id": doc_id, "_rev": f"{int(generation) + 1}-{new}",
           "_revisions": {"start": int(generation) + 1, "ids": [new, rev_id]}}
    doc.update({"_deleted": True} if body is None else {k: v for k, v in body.items() if k != "_rev"})
    arrival = replica.store_revisions(here.store, [doc])
    here.keys.arrived(d["_id"] for d in arrival.current)


def test_her_older_group_served_again_beside_a_forged_deletion_never_takes_bobs_key(pair, clock) -> None:  # noqa: F811
    here, _ = pair
    her, group, doc_id, (alone, _) = _group_key(here)
    _next_revision(here, group, alone)  # her group from before bob joined, served as its newest state
    _next_revision(here, doc_id, None)  # bob's key document deleted, bare
    here.keys.caught_up()
    clock.now += key_mirror.SAY_REFUSED_AFTER
    here.keys.caught_up()
    assert place(here.layout, doc_id).exists(), "bob's group key removed on a replayed group, unsaid"


def test_a_forged_deletion_of_a_group_key_alone_is_refused_and_said(pair, clock) -> None:  # noqa: F811
    """Control: the bare deletion with the group as she last signed it is refused, and said."""
    here, _ = pair
    her, _, doc_id, _ = _group_key(here)
    _next_revision(here, doc_id, None)
    here.keys.caught_up()
    clock.now += key_mirror.SAY_REFUSED_AFTER
    here.keys.caught_up()
    assert place(here.layout, doc_id).exists() and said(her, doc_id)


def test_her_stamped_older_group_served_again_never_takes_bobs_key(pair, clock) -> None:  # noqa: F811
    """As above with the bodies her signing stamps (``made_at_us``): the older one served again is
    older than the one seen here with bob in it (42a (4)): refused, and said once the while is over."""
    here, _ = pair
    her, group, doc_id, (alone, _) = _group_key(here, stamped=True)
    _next_revision(here, group, alone)
    _next_revision(here, doc_id, None)
    here.keys.caught_up()
    assert place(here.layout, doc_id).exists() and not said(her, doc_id)
    clock.now += key_mirror.SAY_REFUSED_AFTER
    here.keys.caught_up()
    assert place(here.layout, doc_id).exists() and said(her, doc_id)


@pytest.mark.parametrize("order", ["group first", "deletion first"])
def test_her_removal_of_bob_from_the_group_takes_his_group_key_unsaid(pair, clock, order) -> None:  # noqa: F811
    """Control of 42a (4)'s fix: her genuine ``group member remove`` (a body without bob signed after
    the one seen with him) takes his key's deletion, whichever of the two comes first (within the while)."""
    here, _ = pair
    her, group, doc_id, (alone, _) = _group_key(here, stamped=True)
    removed = her.sign({**alone, "made_at_us": 300})  # bob out again, signed after
    assert removed["users"] == {her.id: "READ,WRITE"}
    first, then = (group, removed), (doc_id, None)
    if order == "deletion first":
        first, then = then, first
    _next_revision(here, *first)
    here.keys.caught_up()
    clock.now += 3
    _next_revision(here, *then)
    here.keys.caught_up()
    assert not place(here.layout, doc_id).exists()
    clock.now += 2 * key_mirror.SAY_REFUSED_AFTER
    here.keys.caught_up()
    assert not said(her, doc_id)


class EchoingServer:
    """A server whose changes feed is never empty: each answer is one change this replica already
    holds (the echo of a document it has), so the pull never finds itself caught up."""

    def __init__(self, echo: dict) -> None:
        self.echo, self.sent, self.received, self.seq = echo, 0, 0, 100

    async def changes(self, since: object, limit: int, *, wait: bool = False) -> tuple[list[dict], object]:
        self.seq += 1
        return [{"id": self.echo["_id"], "changes": [{"rev": self.echo["_rev"]}]}], self.seq


def _pull(r: Replicator, wait: bool) -> bool:
    return trio.run(functools.partial(r.pull, wait=wait))


def test_a_forged_deletion_is_said_though_the_server_echoes_forever(pair, clock) -> None:  # noqa: F811
    here, _ = pair
    her, doc_id, revs, _ = _bob_key(here)
    _serve(here, doc_id, revs, None)  # its batch taken in, caught up: not said yet (the while)
    assert not said(her, doc_id)
    r = Replicator(here.store, here.layout, "device", "server", EchoingServer(here.store.get(her.id)),
                   lambda *_: None, PeerStatus("server", "http://server"), here.keys)
    caught_up = False
    for _ in range(30):  # the pull loop (replicator.py ``_pull_loop``) over 150 s
        clock.now += 5
        caught_up = not _pull(r, caught_up)
    assert place(here.layout, doc_id).exists()
    assert said(her, doc_id), "a forged deletion never said: the server's feed is never empty"


def test_a_forged_deletion_is_said_once_the_feed_goes_quiet(pair, clock) -> None:  # noqa: F811
    """Control: the same server once its feed is empty (a longpoll that saw nothing) says it."""
    here, _ = pair
    her, doc_id, revs, _ = _bob_key(here)
    _serve(here, doc_id, revs, None)
    server = EchoingServer(here.store.get(her.id))
    r = Replicator(here.store, here.layout, "device", "server", server,
                   lambda *_: None, PeerStatus("server", "http://server"), here.keys)
    clock.now += key_mirror.SAY_REFUSED_AFTER
    _pull(r, False)
    assert not said(her, doc_id)

    async def quiet(since: object, limit: int, *, wait: bool = False) -> tuple[list[dict], object]:
        return [], since

    server.changes = quiet  # type: ignore[method-assign]
    _pull(r, True)
    assert said(her, doc_id)


class FullEchoingServer(EchoingServer):
    """As ``EchoingServer``, each answer a full batch of echoes: more always seems to be waiting."""

    async def changes(self, since: object, limit: int, *, wait: bool = False) -> tuple[list[dict], object]:
        self.seq += 1
        return [{"id": self.echo["_id"], "changes": [{"rev": self.echo["_rev"]}]}] * CHANGES_BATCH, self.seq


def test_a_forged_deletion_is_said_though_the_server_echoes_full_batches_forever(pair, clock) -> None:  # noqa: F811
    """42a (5) with each echo padded to a full batch (a backlog that never ends): said, only after the
    longer while a backlog gets (``SAY_REFUSED_BEHIND_AFTER``: its reason may be further on)."""
    here, _ = pair
    her, doc_id, revs, _ = _bob_key(here)
    _serve(here, doc_id, revs, None)
    r = Replicator(here.store, here.layout, "device", "server", FullEchoingServer(here.store.get(her.id)),
                   lambda *_: None, PeerStatus("server", "http://server"), here.keys)
    clock.now += key_mirror.SAY_REFUSED_AFTER
    assert _pull(r, False) and not said(her, doc_id)  # not caught up: the while of a backlog
    for _ in range(30):
        clock.now += 5
        assert _pull(r, False)
    assert place(here.layout, doc_id).exists()
    assert said(her, doc_id), "a forged deletion never said: the server's feed is always full"
