"""Attack round 45b, in-process: round 44's records-wanted-again fixes (61ddc4f: a wanted record placed
already counts as come, a poked ask's failure never cancels the longpoll; 293c61e: a record's in-vain
notes go once the versions wanting it change, ``records_disputed``; 1a2c72e: a tree's wants wake the
pull, ``want_again``, ``_longpoll``, ``_take_wanted``, ``WANTS_EVERY``).

Run 08:12 UTC, 2026-12-06 (-n 0, this file): 4 xfailed, 2 controls passed; with --runxfail each xfail
fails at its own assertion.  (1)'s order in a real mount (the poke's ask before the settle task walks
her leaf again) is read, not run: the harness has no settle task.

Hole (1), medium: once her version's want leaves ``records_wanted`` for a moment, the disputed record's
  in-vain notes are dropped for his version too, and it is asked alone: the server's bytes matching
  his hash are placed for every version (43d (1) again, through 44a (2)'s fix).
  Attack: plan.bin's two versions neither shown (44a (2)'s scene): hers names v1's punched blocks 0
    and 1 with their genuine hashes; his (a write member's; or a version of kind 2 to 5 naming no
    hash, the server then alone) names block 0 with the hash of bytes of his choosing.  The server
    answers the ask with his bytes for block 0 (refused, right: her hash misses; noted in vain for
    both, disputed) and the genuine block 1 (placed: it came for her version only).
  Seen: ``test_his_disputed_record_is_not_placed_once_hers_is_walked_again`` [his hash], [no hash]
    (run, both fail: the next ask (in a mount the longpoll's poke at once, the came woke it) asks
    block 0 for his version alone and places the server's bytes; her version reads EIO for good);
    ``..._through_the_pulls_poke`` shows it within one pull, no other input.  Control
    ``test_his_disputed_record_is_not_placed_when_her_version_is_shown_control``: hers shown, walked
    again at once, nothing placed.
  Cause: punched_wants.py ``note_asked`` deletes a version some record came for from
    ``records_wanted`` and walks it again only if the tree shows it ("else at the next look");
    ``_disputes_settled`` (run by the next ``wanted_of``) sees the versions wanting block 0 changed
    ({his} is not {hers, his}), drops the notes of every version still wanting it (his alone) and
    ``_expected_records`` has his hash only; ``_as_named`` passes the server's bytes.  In a mount the
    came also pokes the pull (``Arrivals.asked_records`` -> ``want_again``): the longpoll's first
    ``_take_wanted`` runs before the settle task walks her leaf again (it awaits the settle lock and
    ``commit_pending`` first; read, not run), and for a file another user owns the settle never
    walks her leaf (conflicts.py ``_settle_one`` returns: "its owner's devices settle it"), so any
    later ask does it; the first copy is kept (``_check_replaced``).
  Impact: her concurrent edit reads EIO for good (a forgery alarm) though a peer holds every byte:
    data loss a member (with the server), or the server alone beside an unhashed version, causes.
    Which leaf is current is a member's to steer (his revision): once 44a (1)'s fix drops the shown
    hash's preference, his leaf shown is this same scene.
  Fix: drop a disputed record's in-vain notes only when a version leaves for good (superseded,
    ``drop_superseded``), not when a version is taken out to be walked again; or walk every answered
    version again at once in ``note_asked`` (shown or not), or keep a version taken out for a walk
    in the disputed set (compare against the versions wanting it or being walked).  Safer still:
    never place a record as named by fewer hashes than the versions that were ever seen to name it
    (keep the disputed hashes with the record, not only the versions).
  Tests: those three.

Fixed (1): a version some records of which came is set aside (``Inodes.records_rewalk``,
  punched_wants.py ``note_asked``), not dropped, until its walk replaces its want or it leaves for
  good (``_forget``): its counted hashes are checked for every record it shares (``_set_aside_rows``)
  and it still counts among a disputed record's versions (``_wanting_versions``).  After 44a (1)'s
  fix (277a41a: only vouched hashes count) the scene held the same; ``_disputed_scene`` now moves
  her vouched want with her version (its stale key had left nothing vouched) and vouches his hash
  (``his hash``: a write member's signed document), and ``his unvouched hash`` (a root the file's
  key sealed) is added.  Added: ``..._though_never_disputed`` (the server holds block 0 back from the
  first ask, so hers is walked out before any refusal: no dispute to keep, her hash must still
  count).  Each fails without the fix (seen).

Hole (2), medium (43a (1)'s fix bypassed, found reading ``_placed_already``): a record gc punched
  here that the server lists in its changes feed is placed with whatever bytes it sends, unchecked.
  Attack: the server's feed lists every record id of plan.bin's older versions (their revision is
    ``record_rev(id)``, so those placed here are echoes, ignored unsaid: ``_placed``); v1's punched
    blocks 0 and 1 are fetched and placed as any record of a batch (``place_records``), with
    garbage.  The peer holding the genuine ones is asked next.
  Seen: ``test_a_punched_record_the_server_lists_in_its_feed_is_not_placed_with_its_garbage`` (run,
    fails: plan.bin reads EIO (5); the holding peer's records never placed: ``_placed_already``
    counts the garbage as come and the version no longer wants them).
  Cause: replicator.py ``pull`` places every record of its batch not placed here
    (``place_records`` -> ``insert_arrived``, which also takes it off the punched list); only
    ``_take_punched`` checks a punched record against its version's hash (``_as_named``).
  Impact: as 43a (1): any version inheriting records gc punched here reads EIO for good, a forgery
    alarm, though a peer holds them; the server alone, silently (listing ids it knows).
  Fix: in ``pull``, a record id that is on the punched list is not placed from the feed: left to
    ``_take_punched`` (wanted by a version, checked against its hash) or dropped.
  Tests: that one; control ``..._not_in_its_feed_control`` (asks only: the holding peer's placed).

Checked, held: pokes are coalesced and spaced ``WANTS_EVERY`` (at most 2 asks a second); a peer asked
  in vain is not asked on pokes; a poke neither shortens nor ends the ask back-off; a poked ask whose
  peer fails leaves the longpoll running; ``records_disputed`` is bounded by the records wanted and
  its entries go with their versions' wants; a new version of his re-asks a disputed record once
  (no more than a new version's own rows ever did); ``_placed_already``'s came walks the version
  again and ends (``insert_arrived`` takes a placed record off the punched list); a settle's
  ``want_again`` after an ask all in vain asks nothing (``wanted_of`` empty, no ``arrived``), so no
  self-sustaining poke loop.  Read only (low): a record id the store both places and lists punched
  (a writer of the vault folder) makes ``_placed_already`` come, the walk want it again, and the
  came poke again: an ask round every ``WANTS_EVERY`` for good; a server answering ``{"ok": 5}`` in
  ``_bulk_get`` makes ``_place_punched`` raise AttributeError (outside ``_take_punched``'s try), so
  every pull from that server fails before its changes (the server's own sync only).
"""

from __future__ import annotations

import base64
import hashlib

import pytest
import trio

from fusevault.store import places as places_table
from fusevault.sync.content_docs import parse_record_id, record_rev
from fusevault.sync.couch_api import CouchDatabase
from fusevault.vault.services.punched_wants import inherits_punched
from inprocess.test_attack_43d import _forged, _two_versions_scene
from inprocess.test_punched_records import Peer, _expected, _punched_scene, _read, _replicator


def _sha(doc: dict) -> str:
    return hashlib.sha256(base64.b64decode(doc["data"])).hexdigest()


def _placed_sha(volume, doc_id: str) -> str | None:
    row = places_table.find(volume.store.db, *parse_record_id(doc_id))
    return None if row is None else row.sha


async def _disputed_scene(fs, monkeypatch, his: str, hers_shown: bool = False):
    """Hers names v1's blocks 0, 1 (genuine, vouched by her signed document); his names block 0 only
    (``his hash``: a forged hash his signed document vouches, a write member's; ``his unvouched hash``:
    a root a holder of the file's key sealed; ``no hash``).  The server holds his bytes for block 0 and
    the genuine block 1.  (node, server, block 0's genuine doc)."""
    volume = fs.volume
    node, genuine, forged = await _two_versions_scene(fs, monkeypatch, same=False, unhashed=his == "no hash")
    tree = volume.tree
    wanted = tree.records_wanted
    his_vid = "0" * len(node.head)
    genuine = sorted(genuine, key=lambda doc: doc["_id"])
    forged = sorted(forged, key=lambda doc: doc["_id"])
    block0, block1 = (parse_record_id(doc["_id"])[1:] for doc in genuine)
    # His version names block 0 only (hers names both: block 1 comes for her alone).
    wanted[(node.fid, his_vid)] = {block0: wanted[(node.fid, his_vid)][block0]}
    hers = (node.fid, node.head if hers_shown else "f" * len(node.head))  # else neither shown (44a (2))
    wanted[hers] = wanted.pop((node.fid, node.head))
    assert tree.records_vouched.pop((node.fid, node.head)) is wanted[hers], "her walk vouched (44a (1))"
    tree.records_vouched[hers] = wanted[hers]
    if his == "his hash":
        tree.records_vouched[(node.fid, his_vid)] = wanted[(node.fid, his_vid)]
    tree.records_asked.clear()
    server = Peer([forged[0], genuine[1]])
    return node, server, genuine[0]


@pytest.mark.parametrize("his", ["his hash", "his unvouched hash", "no hash"])
async def test_his_disputed_record_is_not_placed_once_hers_is_walked_again(fs, monkeypatch, his) -> None:
    volume = fs.volume
    node, server, block0 = await _disputed_scene(fs, monkeypatch, his)
    r, said = _replicator(fs, server, "server")
    await r._take_punched()  # block 0 refused (her hash misses), block 1 placed for her
    assert said == [f"record {block0['_id']}"] and _placed_sha(volume, block0["_id"]) is None
    await r._take_punched(poked=True)  # in a mount: the longpoll's poke, woken by the came
    volume.layout.places.refused.clear()
    got = _placed_sha(volume, block0["_id"])
    assert got in (None, _sha(block0)), (
        f"block 0 placed with the server's bytes for every version (asked {len(server.asked)} times); "
        f"her version reads EIO for good")


async def test_his_disputed_record_is_not_placed_once_hers_is_walked_again_through_the_pulls_poke(
        fs, monkeypatch) -> None:
    """(1) as a mount runs it: one pull, its longpoll waiting; no other input than the server's answer."""
    volume = fs.volume
    node, server, block0 = await _disputed_scene(fs, monkeypatch, "his hash")
    r, _ = _replicator(fs, server, "server")
    outcome: list[object] = []

    async def pull() -> None:
        outcome.append(await r.pull(wait=True))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pull)
        with trio.move_on_after(5):  # the asks place in a worker thread: waited for
            while len(server.asked) < 2 or _placed_sha(volume, block0["_id"]) is None:
                await trio.sleep(0.01)
        asks = len(server.asked)
        server.answer.set()
    assert outcome == [False] and server.polls_ended == 1
    volume.layout.places.refused.clear()
    got = _placed_sha(volume, block0["_id"])
    assert got in (None, _sha(block0)), (
        f"within one pull ({asks} asks, the longpoll still waiting) block 0 was placed with the "
        "server's bytes")


class _HoldingBack(Peer):
    """A server answering its first ask with all but ``held`` (a record id), then with everything."""

    def __init__(self, docs: list[dict], held: str) -> None:
        super().__init__(docs)
        self.held = held

    async def bulk_get(self, wanted: list[tuple[str, str]], *, missing_ok: bool = False) -> list[dict]:
        got = await super().bulk_get(wanted, missing_ok=missing_ok)
        held, self.held = self.held, ""
        return [doc for doc in got if doc.get("_id") != held]


@pytest.mark.parametrize("his", ["his hash", "no hash"])
async def test_his_record_is_not_placed_once_hers_is_walked_again_though_never_disputed(
        fs, monkeypatch, his) -> None:
    """(1) without a dispute: the server holds block 0 back from the first ask (sent nothing for, beside
    block 1 placed: asked again, noted nowhere), so her version is walked out before any refusal; the
    next ask, for his version alone, must still be checked against her hash (the fix: her want set
    aside, ``records_rewalk``, still counts), not only against his."""
    volume = fs.volume
    node, server, block0 = await _disputed_scene(fs, monkeypatch, his)
    server = _HoldingBack(server.docs, block0["_id"])
    r, said = _replicator(fs, server, "server")
    await r._take_punched()  # block 1 placed for her; block 0 held back
    assert not said and _placed_sha(volume, block0["_id"]) is None
    await r._take_punched(poked=True)
    volume.layout.places.refused.clear()
    got = _placed_sha(volume, block0["_id"])
    assert got in (None, _sha(block0)), (
        f"block 0 placed with the server's bytes on his version's word (asked {len(server.asked)} times)")


async def test_his_disputed_record_is_not_placed_when_her_version_is_shown_control(fs, monkeypatch) -> None:
    """Control: her version shown, walked again at once when block 1 came: block 0 stays refused."""
    volume = fs.volume
    node, server, block0 = await _disputed_scene(fs, monkeypatch, "his hash", hers_shown=True)
    r, _ = _replicator(fs, server, "server")
    await r._take_punched()
    for _ in range(3):
        await r._take_punched(poked=True)
    volume.layout.places.refused.clear()
    assert _placed_sha(volume, block0["_id"]) is None


class _Feed(Peer):
    """A server whose changes feed lists ``listed`` (record ids at their one revision) once."""

    def __init__(self, docs: list[dict], listed: list[str]) -> None:
        super().__init__(docs)
        self.listed = listed

    async def changes(self, since: object, limit: int, *, wait: bool = False) -> tuple[list[dict], object]:
        listed, self.listed = self.listed, []
        if not listed:
            return await super().changes(since, limit, wait=wait)
        return [{"id": i, "changes": [{"rev": record_rev(i)}]} for i in listed], 8

    async def bulk_get(self, wanted: list[tuple[str, str]], *, missing_ok: bool = False) -> list[dict]:
        self.asked.append(wanted)
        return [doc for doc in self.docs if (doc.get("_id"), doc.get("_rev")) in set(wanted)]


async def _feed_scene(fs, listed: bool) -> tuple[object, Peer]:
    volume = fs.volume
    node, _, genuine = await _punched_scene(fs)
    assert inherits_punched(volume, node)
    server = _Feed(_forged(genuine), [doc["_id"] for doc in genuine] if listed else [])
    r, _ = _replicator(fs, server, "server")
    r.checkpoint_id = "sync-server"
    while await r.pull():  # the server's feed, to its end
        pass
    holding = Peer(genuine)
    r2, _ = _replicator(fs, holding, "holding")
    await r2._take_punched()
    volume.layout.places.refused.clear()
    return node, holding


async def test_a_punched_record_the_server_lists_in_its_feed_is_not_placed_with_its_garbage(fs) -> None:
    node, holding = await _feed_scene(fs, listed=True)
    got = await _read(fs)
    assert got == _expected(), (f"plan.bin reads {got if isinstance(got, int) else 'other bytes'}; the "
                                f"holding peer asked {len(holding.asked)} time(s)")


async def test_a_punched_record_the_server_does_not_list_in_its_feed_is_placed_from_the_holding_peer_control(
        fs) -> None:
    """Control: the server answers the asks with garbage only (43a (1)): the holding peer's are placed."""
    node, holding = await _feed_scene(fs, listed=False)
    assert await _read(fs) == _expected()


class _NoDocuments(CouchDatabase):
    """The HTTP client, its server answering every ``_bulk_get`` with ``{"ok": 5}`` (no document) and
    an empty feed."""

    def __init__(self) -> None:
        super().__init__("http://server.invalid", label="server")
        self.asked: list[object] = []

    async def _call(self, method: str, path: str, body: object = None, *, params: dict | None = None,
                    ok_missing: bool = False, wait: float | None = None) -> object:
        if path == "/_bulk_get":
            self.asked.append(body)
            return {"results": [{"id": doc["id"], "docs": [{"ok": 5}]} for doc in body["docs"]]}  # type: ignore[index]
        assert path == "/_changes" and params is not None
        return {"results": [], "last_seq": params["since"]}


async def test_a_server_answering_no_document_for_a_punched_record_fails_no_pull(fs) -> None:
    """45b, read only (low): ``{"ok": 5}`` for a punched record asked again raised AttributeError out of
    ``_place_punched`` (outside the ask's try): every pull from that server failed before its changes.
    Now none sent (logged): the pull goes on, the holding peer is asked and placed."""
    node, _, genuine = await _punched_scene(fs)
    assert inherits_punched(fs.volume, node)
    server = _NoDocuments()
    r, said = _replicator(fs, server, "server")
    try:
        assert await r.pull() is False  # asked, then the feed (empty): no exception
    finally:
        await server.aclose()
    assert server.asked and said == []
    holding = Peer(genuine)
    r2, _ = _replicator(fs, holding, "holding")
    await r2._take_punched()
    assert holding.asked and await _read(fs) == _expected()
