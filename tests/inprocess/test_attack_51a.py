"""Attack round 51a, in-process: the fixes made after round 50 (50a (3), (4); 50c (2); 50d; 49t (6)).

Hole (1), low (EIO and a false forgery-class alarm while a file stays open; 50a (3)'s fix, in part):
  ``Content.where`` looks a record's copies up again only when the reader already holds some copy of
  that very record (``self._copies.get((vid, index))`` non-empty) and the hash is not among them.  A
  reader that looked v1 up while v1's block 0 had no row at all (punched, nothing placed yet) holds
  neither a copy nor an arrived row of it; once any other record of v1 has an arrived row (here: the
  peer sent block 1 before block 0, a partial answer, a second ask), ``_looked_up`` holds v1 for good
  and nothing makes the reader look again: block 0 placed later is never seen by the open handle,
  which reads the punched hole, fails the hash and says EIO (with the "not what its author sealed"
  alarm) at every read until every handle closes, though a new open reads the file whole.
  Seen: ``test_a_handle_open_while_her_records_come_one_at_a_time_reads_them`` (run, fails: the handle
    reads EIO (5) after both records came; a new open reads the bytes); control
    ``test_a_handle_open_while_her_records_come_together_reads_them_control`` (passes).
  Cause: vault/files/content.py ``where``: the reload is keyed on a copy the reader holds; the place
    of a record placed again (``_moved``) is never looked up again for a vid in ``_looked_up``.
  Impact: 50a (3)'s impact, in the honest 41b scene (no forged copy needed): a long-lived open of
    her version reads EIO and raises the alarm after the records are here.
  Fix (suggested): 50a (3)'s first suggestion: a places generation bumped by ``insert_arrived``
    (``note_arrival``), each reader looking ``_moved``/``_copies`` up again when it changed; or look
    both up once more on a hash mismatch before refusing.
  Fixed (store/places.py ``note_arrival``/``placed_since``, a count of arrivals and the last that placed
    records of each file; ``Content.where`` looks again once per such arrival, in place of 50a (3)'s
    reload at each read; a bad copies row said once): the test above, and
    ``test_a_hash_no_copy_holds_is_looked_up_once_per_arrival_not_per_read``; SECURITY.md, round 50a.

Hole (2), medium (every seat's requests stalled, the 49t (6) stall again, by a WRITE member; 49t (6)'s cap
  bypassed by the arrival path): the cap is checked only in ``Attributes.setxattr``; a node document
  taken in (vault/tree/arrivals.py ATTRS: ``xattrs`` taken from a newer state; ``check_shapes`` checks
  only their types) keeps whatever its signer put there.  A WRITE member of a share signs his own
  states of the owner's files, so bob hands alice a signed state of her team/plan.txt holding 8 MB of
  xattrs (139 values of 60 KB): her tree takes it whole, and from then every commit of that node by
  alice (each save, chmod, touch, rename) seals, signs and writes 8 MB again on the mount's loop under
  the tree's metadata lock (c42bd4d took the worker-thread sealing out, SECURITY.md 49t (6): "only nodes
  from before the cap are that large, and their owner's own": not so).
  Seen: ``test_a_members_node_document_past_the_xattr_cap_is_not_taken_whole`` (run, fails: alice's
    node holds 8,341,141 bytes in 139 names; her one chmod took 0.475 s on the loop, on this machine);
    control ``test_a_members_node_document_within_the_xattr_cap_is_taken_control`` (one 60 KB value
    from bob is taken: passes).
  Cause: no bound on arrival (``check_shapes``, ``open_node_doc``/``node_from_doc``); ``_check_room``
    only on the local setxattr.
  Impact: in a shared mount (``--allow-other-users`` too) every user's requests wait ~0.5 s per commit
    of that file (scales with what bob puts: a local store or a server that takes larger documents has
    no 8 MB bound), for as long as the file keeps his xattrs; alice's own setxattr on the file is
    ENOSPC until she removes his values; the owner's disk and every peer carry the bloat in each
    revision.  No data lost.
  Fix (suggested): refuse (and say) a member's (non-owner's) state whose xattrs exceed the cap, as a
    shape error of a writer's input (keep the held xattrs: ``changed_last``); or take at most the cap
    (the held ones for the field) and commit that; the owner's own legacy nodes as 49t (6) says.
  Fixed (arrivals.py ``past_the_xattr_cap`` in ``may_take``, absorbing.py's recommit): the tests below
    this one; SECURITY.md, round 49t (6).

Holes (3) to (6) are in tests/unit/test_attack_51a.py.  Held (read, some run): ``_check_room`` (replace
  vs create, count and bytes, a legacy node's shrinking sets, under the metadata lock: no race with
  removexattr); ``_checked_copy`` (blob, int, short and non-hex shas skipped); ``acting_as`` compares
  the Python ids it asked for with what the thread reads back (an id that truncates to 0 or is
  (uid_t) -1 is refused); the export's PermissionError catch (the fd is the user's own, O_EXCL).
  Leads, read-only: a peer host ``xn--a.example`` (invalid punycode) passes ``http_url`` and makes
  httpx raise idna's InvalidCodepoint, which ``couch_api._request`` does not catch (the replicator
  logs "internal error" and retries for ever); ``Content.where``'s reload runs a copies query at
  every read of a record whose named hash is in no ``copies`` row (his copy in ``places`` only, hers
  as a copy: a reader of his version), work per read, not wrong bytes.

Tests: those named above.  Run (-n 0, this file, ~15:27 UTC): with --runxfail each xfail fails at its
  own assertion; the controls pass.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import time

import pyfuse3
import trio
from attack_scenes import ALICE, bobs_node_doc, planted, team_with_plan

from fusevault.crypto import aead
from fusevault.crypto.signing import sign_doc
from fusevault.encoding import b64e
from fusevault.vault.model import alarms
from fusevault.vault.model.nodes import open_node_attrs, xattr_bytes
from fusevault.vault.services import punched_wants
from fusevault.vault.services.absorbing import absorb_arrivals
from fusevault.vault.services.punched_wants import inherits_punched
from fusevault.vault.tree.attributes import XATTR_BYTES_MAX
from inprocess.conftest import (  # noqa: F401  (fixtures)
    ME,
    ROOT,
    Fields,
    make,
    shared,
    template_vault,
    vault_copy,
)
from inprocess.test_attack_50a import _handle_read
from inprocess.test_punched_records import ORIGINAL, Peer, _expected, _punched_scene, _read, _replicator


async def _records_come_while_open(fs, monkeypatch, one_at_a_time: bool) -> tuple[object, list]:
    """plan.bin's v2 inherits v1's punched blocks 0, 1 (the honest 41b scene); a handle is opened and
    read (EIO), then the holding peer sends block 1 alone, the handle reads again, then block 0 comes
    (``one_at_a_time``), or both come at once.  (the handle, the reads before)."""
    volume = fs.volume
    monkeypatch.setattr(punched_wants, "_writers_sealed", lambda *args: None)
    node, rows, genuine = await _punched_scene(fs)
    assert inherits_punched(volume, node)
    volume.layout.places.note_arrival()  # a vault that ever synced
    info = await fs.ops.open(volume.resolve(b"plan.bin").ino, os.O_RDONLY, ME)
    before = [await _handle_read(fs, info.fh)]
    if one_at_a_time:
        block0 = f"rec-{node.fid}-{rows[0].vid}-0"
        r, _ = _replicator(fs, Peer([doc for doc in genuine if doc["_id"] != block0]), "first")
        for _ in range(2):
            await r._take_punched()
        before.append(await _handle_read(fs, info.fh))
    r, _ = _replicator(fs, Peer(genuine), "holding")
    for _ in range(2):
        await r._take_punched()
    volume.layout.places.refused.clear()
    return info, before


async def _scene(fs, monkeypatch, one_at_a_time: bool) -> None:
    info, before = await _records_come_while_open(fs, monkeypatch, one_at_a_time)
    try:
        got = await _handle_read(fs, info.fh)
    finally:
        await fs.ops.release(info.fh)
    assert all(b == errno.EIO for b in before), f"the scene: EIO before, got {before!r:.60}"
    assert await _read(fs) == _expected(), "the scene: a new open reads the file"
    shown = got if isinstance(got, int) else "other bytes"
    assert got == _expected(), f"the handle open meanwhile reads {shown}"


async def test_a_handle_open_while_her_records_come_one_at_a_time_reads_them(fs, monkeypatch) -> None:
    await _scene(fs, monkeypatch, one_at_a_time=True)


async def test_a_handle_open_while_her_records_come_together_reads_them_control(fs, monkeypatch) -> None:
    await _scene(fs, monkeypatch, one_at_a_time=False)


async def test_a_hash_no_copy_holds_is_looked_up_once_per_arrival_not_per_read(fs, monkeypatch) -> None:
    """The fix of (1) in place of 50a (3)'s reload: a record whose named hash is in no ``copies`` row
    (here: a row of other bytes beside it) had its copies queried at every read; now once per arrival
    of records of the file.  It reads as before, the row of other bytes never taken."""
    volume = fs.volume
    places = volume.layout.places
    await make(fs.ops, b"plan.bin", ORIGINAL)
    node = volume.resolve(b"plan.bin")
    volume.store.db.execute("INSERT INTO copies VALUES (?, ?, ?, ?, ?, ?)",
                            (node.fid, node.head, 0, "ab" * 32, 0, 100))
    places.note_arrival()  # a vault that ever synced
    looked = []
    real = type(places).copies_of
    monkeypatch.setattr(type(places), "copies_of", lambda self, fid: looked.append(fid) or real(self, fid))
    info = await fs.ops.open(node.ino, os.O_RDONLY, ME)
    try:
        reads = []
        for arrival in (False, False, False, True, False):
            if arrival:  # records of another file, then of this one
                places.note_arrival(["0" * 32])
                reads.append(await _uncached_read(fs, info.fh))
                places.note_arrival([node.fid])
            reads.append(await _uncached_read(fs, info.fh))
    finally:
        await fs.ops.release(info.fh)
    assert all(got == ORIGINAL for got in reads), [got if isinstance(got, int) else len(got) for got in reads]
    assert len(looked) == 2, f"the copies looked up {len(looked)} time(s) in {len(reads)} reads, one arrival"


async def _uncached_read(fs, fh) -> bytes | int:
    fs.volume.files.cache.clear()  # from the .vf, through ``where``
    return await _handle_read(fs, fh)


# --- (2): a WRITE member's node document past the xattr cap (49t (6)'s arrival path)


def _members_xattrs(shared, total: int) -> tuple[int, int, float]:  # noqa: F811
    """alice's team/plan.txt, WRITE to bob; bob's signed state of it (what a WRITE member who writes the
    vault folder, or the server of his signed revisions, hands her) holding ``total`` bytes of xattrs in
    60 KB values; then alice chmods the file (a commit of it, sealed on the loop).  (The bytes her
    node holds, how many names, the seconds of her chmod.)"""
    value = b64e(b"x" * 60_000)
    change = {"xattrs": {f"user.v{i}": value for i in range(total // 60_000)}, "seq": ["bobs-device", 1]}

    async def scene() -> tuple[int, int, float]:
        drive, alice = shared.drive, shared.volumes["alice"]
        _, plan = await team_with_plan(shared)
        team = alice.tree.node(alice.tree.node(ROOT).children[b"team"])
        fid = alice.tree.node(team.children[b"plan.txt"]).fid
        planted(shared, bobs_node_doc(shared, fid, change))
        await trio.sleep(0)
        node = alice.tree.node(team.children[b"plan.txt"])
        start = time.monotonic()
        await drive.setattr(plan.st_ino, _mode(0o600), Fields(mode=True), None, ALICE)
        took = time.monotonic() - start
        return xattr_bytes(node.xattrs), len(node.xattrs), took

    return trio.run(scene)


def _mode(perm: int):
    attrs = pyfuse3.EntryAttributes()
    attrs.st_mode = stat.S_IFREG | perm
    return attrs


def test_a_members_node_document_past_the_xattr_cap_is_not_taken_whole(shared) -> None:  # noqa: F811
    held, names, took = _members_xattrs(shared, 8 * 1024 * 1024)
    print(f"alice's node holds {held} bytes in {names} names; her chmod took {took:.3f} s")
    assert held <= XATTR_BYTES_MAX, (
        f"alice's node holds {held} bytes of bob's xattrs ({names} names); her chmod took {took:.3f} s")


def test_a_members_node_document_within_the_xattr_cap_is_taken_control(shared) -> None:  # noqa: F811
    held, names, _ = _members_xattrs(shared, 60_000)
    assert (held, names) == (60_000 + len("user.v0"), 1)


def _alices_node_doc(shared, fid: str, change: dict) -> dict:  # noqa: F811
    """alice's own node document of ``fid`` with its sealed attributes changed, signed by her: what her
    other device, on a version from before the xattr cap, commits."""
    alice = shared.volumes["alice"]
    dek = alice.find(fid).dek
    doc = shared.store.get(fid)
    attrs = {**open_node_attrs(doc, dek), **change}
    plain = json.dumps(attrs, separators=(",", ":")).encode()
    body = {k: v for k, v in doc.items() if k not in ("_rev", "sig")}
    body["enc"] = b64e(aead.seal(dek, plain, aead.ad("node", fid)))
    return sign_doc(alice.key.user_id, alice.key.identity.sign, body)


def _values(count: int, fill: bytes) -> dict[str, str]:
    """``count`` xattrs of 60 KB each (two are past the cap), as a node document holds them."""
    return {f"user.v{i}": b64e(fill * 60_000) for i in range(count)}


def _refused_said(shared, fid: str) -> bool:  # noqa: F811
    return any(each["kind"] == "forged-write" and each["subject"] == fid
               for each in alarms.for_user(shared.volumes["alice"].key.user_id).as_list())


def _past_the_cap_scene(shared, first: dict | None, then: dict) -> tuple[object, bool, bool]:  # noqa: F811
    """alice's team/plan.txt, WRITE to bob; ``first`` (her other device's state, signed by her), then
    ``then`` (bob's) come.  (Her node, whether her state was refused (said), whether bob's was.)"""

    async def scene() -> tuple[object, bool, bool]:
        alice = shared.volumes["alice"]
        await team_with_plan(shared)
        team = alice.tree.node(alice.tree.node(ROOT).children[b"team"])
        fid = alice.tree.node(team.children[b"plan.txt"]).fid
        hers = False
        if first is not None:
            planted(shared, _alices_node_doc(shared, fid, first))
            hers = _refused_said(shared, fid)
        planted(shared, bobs_node_doc(shared, fid, then))
        await trio.sleep(0)
        return alice.tree.node(team.children[b"plan.txt"]), hers, _refused_said(shared, fid)

    return trio.run(scene)


def test_a_members_state_past_the_xattr_cap_is_refused_said_and_the_file_keeps_its_own(shared) -> None:  # noqa: F811
    node, _, said = _past_the_cap_scene(shared, None, {"xattrs": _values(2, b"b"), "mode": 0o100600,
                                                       "seq": ["bobs-device", 1]})
    assert said, "refused, said (forged-write)"
    assert not node.xattrs and stat.S_IMODE(node.mode) != 0o600, "the file keeps what it had, whole"


def test_her_own_state_past_the_xattr_cap_from_her_other_device_is_taken_whole(shared) -> None:  # noqa: F811
    node, refused, _ = _past_the_cap_scene(shared, {"xattrs": _values(2, b"a"), "seq": ["her-old-laptop", 1]},
                                           {"xattrs": _values(2, b"a"), "seq": ["bobs-device", 1]})
    assert not refused, "her own legacy state is no member's input: never refused"
    assert sorted(node.xattrs) == [b"user.v0", b"user.v1"] and node.xattrs[b"user.v1"] == b"a" * 60_000


def test_a_members_state_holding_no_more_than_her_node_past_the_cap_is_taken(shared) -> None:  # noqa: F811
    """Her legacy node past the cap (her other device's): bob's edit of the file carries it, or a value
    of his in place of one of hers, no larger, and is taken, as her own set of it would be."""
    node, _, said = _past_the_cap_scene(shared, {"xattrs": _values(2, b"a"), "seq": ["her-old-laptop", 1]},
                                        {"xattrs": {**_values(2, b"a"), "user.v1": b64e(b"b" * 60_000)},
                                         "seq": ["bobs-device", 1]})
    assert not said, "holding no more than her node holds: no refusal"
    assert node.xattrs[b"user.v1"] == b"b" * 60_000, "bob's value taken"


def test_her_state_is_put_back_over_a_members_past_the_xattr_cap(shared) -> None:  # noqa: F811
    """Refused, his state was left the store's current row until her next commit of the file: her
    next unlock loaded his values whole.  Her kept state is committed over it at once (``recommit``)."""

    async def scene() -> None:
        alice = shared.volumes["alice"]
        await team_with_plan(shared)
        team = alice.tree.node(alice.tree.node(ROOT).children[b"team"])
        node = alice.tree.node(team.children[b"plan.txt"])
        doc = bobs_node_doc(shared, node.fid, {"xattrs": _values(2, b"b"), "seq": ["bobs-device", 1]})
        (rev,) = shared.store.put_many([{**doc, "_rev": shared.store.get(node.fid)["_rev"]}])
        out = absorb_arrivals(alice, [{**doc, "_rev": rev}])
        assert out.recommit == [(node, rev)], "her state, kept, goes back over his at once"
        await alice.save_node(node)  # what the mount's ``_recommit`` does
        stored = open_node_attrs(shared.store.get(node.fid), node.dek)
        assert not stored.get("xattrs"), "the store's current state is hers again"

    trio.run(scene)
