"""Key rotations: new data keys after a revocation, and the ones left pending.

``rotate`` gives a node and everything under it a new DEK (the next epoch: its
current contents are sealed again, old versions keep their own key), sealed for
whoever still has a share.  A rotation that a crash (or a removed group member,
who needs no one's passphrase to remove) leaves pending is finished at the
owner's next unlock (``resume``): a Rotation is signed (by her, or by the owner
of a group she shared the file with) and names the file's key epoch when it was
asked for, so a forged one is refused (an alarm) and a replayed one asks for
nothing (``_request``).

A request is deleted only as it was carried out (its ``_rev``): one that
replaced it during the re-key (a second member's removal) is carried out by
another pass (attack round 22a (7)).  The group owner's request is not the
only sign of a removal: his signed group body without the member is one too,
so a file of hers shared with a group that lost a member since this device
sealed its keys (vault/model/rotations_done.py ``sealed_members``) is
re-keyed even when the request was withheld (``_rekey_for_removals``,
attack round 22a (3)).  Nor is the request the only trace of a re-key her own
device owes (an unshare, a move out of a share, a key taken back): the device
records each before any key goes (vault/model/rekeys_owed.py) and pays it at
the next unlock whatever the store holds (``_pay_owed``, attack round 58d).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Container, Iterable
from pathlib import Path
from typing import Any

import trio

from fusevault.crypto.signing import signer_of
from fusevault.encoding import name_to_str
from fusevault.errors import Forged, VaultError
from fusevault.store import Store, tombstone
from fusevault.vault.format.layout import is_id
from fusevault.vault.model import left_kept, rekeys_owed, rotations_done, sharing
from fusevault.vault.model.grants import key_signed
from fusevault.vault.model.her_keys import her_key_at
from fusevault.vault.model.nodes import Node
from fusevault.vault.model.sharing import ROTATION, Grant
from fusevault.vault.model.trust import Trust
from fusevault.vault.services import stale_keys
from fusevault.vault.volume import Volume

log = logging.getLogger(__name__)


def request_doc(trust: Trust, existing: dict | None, node: Node) -> dict:
    """Her signed request (one pending in the store, of whatever signer, replaced): a crash
    before the rotation ends leaves one that her next unlock acts on."""
    doc = sharing.rotation_doc(node.owner, node.fid, node.epoch)
    if existing is not None and existing.get("_rev"):
        doc["_rev"] = existing["_rev"]
    return trust.sign(doc)


def subtree(volume: Volume, node: Node, behind: Container[str] = ()) -> list[Node]:
    """The node and everything under it (not what sits under it only as a
    file in ``behind`` says, an older state than the device saw: ledger.py)."""
    found, todo, reached = [], [node], {node.ino}
    while todo:
        current = todo.pop()
        found.append(current)
        if current.children:
            # Each node once, however many names reach it (a file's hard links; a folder named
            # twice is refused where it comes in, attack round 28c (1)).
            for i in current.children.values():
                if i not in reached and (child := volume.get(i)) is not None and child.fid not in behind:
                    reached.add(i)
                    todo.append(child)
    return found


async def rotate(volume: Volume, node: Node, request: dict | None = None) -> bool:
    """A new DEK for the node and everything under it, then forget ``request`` (the Rotation
    carried out, if any).  False when the request at its id changed meanwhile: a newer one (a
    second member's removal arriving during the re-key) is not deleted undone, but looked at
    again (``resume``; attack round 22a (7)).

    The node itself is given its new key last: its epoch above the request's says the
    whole rotation is done (``_request``), so one a crash interrupts is finished later.  The re-key
    this device owes the node (rekeys_owed.py), as recorded when this began, is paid once it has its
    new key: one recorded meanwhile stays owed (it may have taken keys this re-key sealed before)."""
    volume.rotating.add(node.fid)
    taking: set[str] = set()
    try:
        debt = (await volume.in_thread(rekeys_owed.owed, volume.layout.root, volume.key)).get(node.fid)
        nodes = subtree(volume, node)
        moved_out, traces = await _moved_out(volume, node, nodes)
        failed: list[tuple[Node, VaultError]] = []
        # Only her own nodes: another owner's node under her folder (a writer's own file he named
        # there, attack round 70a (2)) is his to re-key, never hers; tried, it failed the whole re-key
        # and kept her folder, and every request after it, under the old key for good.
        mine = [each for each in [*moved_out, *nodes[1:]] if each.owner == node.owner]
        if skipped := len(moved_out) + len(nodes) - 1 - len(mine):
            log.info("%s: %d node(s) of other owners under it keep their keys (theirs to re-key)",
                     _where(volume, node), skipped)
        # The Shares it takes back, said in each new key's record (vault/model/sealed_for.py ``taken``):
        # what this device owes for it (an unshare, a move out), what an unshare here took back.  Counted
        # in the sharing state while this rotation runs (another's at once adds its own: each record
        # keeps only those on a folder over its file).
        if volume.sharing is not None:
            taking = _shares_taken(volume, node, debt)
            volume.sharing.taking.update(taking)
        for each in mine:
            try:
                await volume.rekey(each)
            except VaultError as err:
                # One file that cannot be sealed again never keeps the rest (and the folder, last)
                # under the key a removed member kept: round 41c (6) stopped at the first.
                failed.append((each, err))
            await trio.sleep(0)
        if failed:
            # Said, and the rotation left unfinished: the node keeps its key, so the request stays
            # (its epoch not passed) and the next unlock tries again; the command fails in one line.
            _say_left_under_old_key(volume, node, failed)
            raise failed[0][1]
        # Their group keys taken back, and the trace with them, once they are re-keyed: a crash before
        # leaves the trace to the request's next try.
        await volume.in_thread(_take_back, traces)
        await volume.rekey(node)
        if debt is not None:
            await volume.in_thread(rekeys_owed.paid, volume.layout.root, volume.key, node.fid, debt.token)
    finally:
        volume.rotating.discard(node.fid)
        if volume.sharing is not None and taking:
            volume.sharing.taking.subtract(taking)
            volume.sharing.taking = +volume.sharing.taking  # counts at 0 dropped
    if request is None:
        return True
    return await volume.store_call(_forget, volume, request)


def _shares_taken(volume: Volume, node: Node, debt: rekeys_owed.Debt | None) -> set[str]:
    """The Share ids a rotation of ``node`` takes back: the debt's (rekeys_owed.py), and those an
    ``unshare`` on this device took back from the node itself (freshness.py ``took_back``: a debt record
    that did not open).  A re-key's record lists them; only these count as taken back on her other
    devices (attack round 73a (4))."""
    found = set(debt.shares) if debt is not None else set()
    fresh = volume.trust.fresh if volume.trust is not None else None
    if fresh is not None:
        found.update(sid for sid in fresh.taken_back if sid.startswith(f"share-{node.fid}-"))
    return found


def _say_left_under_old_key(volume: Volume, node: Node, failed: list[tuple[Node, VaultError]]) -> None:
    """Said, loudly: files under ``node`` that kept their key through its re-key (who lost access
    to the folder may still read them, and what is written to them next)."""
    if not failed:
        return
    shown = ", ".join(f"{volume.tree.path_of(each).decode(errors='replace')} ({err})"
                      for each, err in failed[:5])
    more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
    text = (f"{len(failed)} file(s) under {volume.tree.path_of(node).decode(errors='replace') or '/'} kept "
            f"their old key through a re-key (whoever lost access may still read them): {shown}{more}; "
            "the re-key is tried again at the next unlock")
    if volume.trust is not None:
        volume.trust.alarms.warn("rekey", node.fid, text)
    log.error("%s", text)


async def _moved_out(volume: Volume, node: Node, nodes: list[Node]) -> tuple[list[Node], list[Path]]:
    """Her files not under ``node`` now that a group sharing it holds keys of: moved out since (by her
    or by a writer), they were sealed to its members, a removed one too, so they are re-keyed with
    ``node`` (round 30b (2)).  A group's key folder of a file is the trace: a member's removal takes
    the departing member's key file and leaves the folder (``remove_key``).  With them, the key
    folders found (``_take_back``)."""
    me = volume.key.user_id
    groups = [g.grantee for g in volume.sharing.grants if g.group and g.fid == node.fid and g.owner == me]
    if not groups:
        return [], []
    # Not one under any share of the same group (a hard link's other name too): its keys there are in
    # force (attack round 31a (4)).
    shared = {group: {n.fid for g in volume.sharing.grants if g.group and g.grantee == group and g.owner == me
                      and (top := volume.find(g.fid)) is not None for n in subtree(volume, top)}
              for group in groups}
    inside = {n.fid for n in nodes}
    mine = [n for n in volume.nodes() if n.owner == me and n.fid not in inside]
    candidates = [(n.fid, sharing.group_keys_dir(volume.layout, group, n.fid)) for n in mine
                  for group in groups if n.fid not in shared[group]]

    def traced() -> list[tuple[str, Path]]:
        return [(fid, keys) for fid, keys in candidates
                if os.path.isdir(keys.parent) and not os.path.islink(keys.parent)]

    found = await volume.in_thread(traced)
    fids = {fid for fid, _ in found}
    return [n for n in mine if n.fid in fids], [keys for _, keys in found]


def _take_back(traces: list[Path]) -> None:
    """The keys in a group's key folders of files moved out of its share, and the folders."""
    for folder in traces:
        try:
            names = os.listdir(folder) if folder.is_dir() else []
        except OSError as err:
            log.warning("the group keys of a file moved out of its share at %s: %s", folder, err)
            names = []
        for name in names:
            if name.endswith(".vfkey") and is_id(name[:-len(".vfkey")]):
                sharing.discard_key(folder / name)
        sharing.drop_key_folder(folder)  # the trace goes: re-keyed once, not at each removal


async def keep_moves_rekeyed(volume: Volume, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """A session service: each of her files and folders moved out of a share here (or a hard link's
    name in it unlinked) has its keys taken back from whoever that share gave them to and gets a new
    key, under her signed request; so does each with a key no share reaches now, looked for when
    asked (``Inodes.check_keys``: at unlock, and when a key, share, group or user arrives).  Locked
    or unmounted first (or a crash during the re-key), the re-key is owed on this device
    (rekeys_owed.py, recorded before the keys went) and her next unlock does it (``resume``) whatever
    the store withholds of her request (attack round 58d (2)); a crash before it was recorded
    leaves the keys to her next ``unshare``, as a move done on another device, or by a member
    (share_ops.py)."""
    task_status.started()
    todo: dict[str, set[Grant]] = {}
    try:
        while True:
            await volume.tree.moves.wait()
            _add(todo, volume.tree.take_moved())
            if volume.tree.take_key_check():
                await _guarded(volume, "her shared files", _rekey_unreached(volume))
            while todo:
                fid = next(iter(todo))
                request = await _guarded(volume, fid, _taken_back(volume, fid, todo[fid]))
                del todo[fid]  # its request is in the store now, if it needs one
                if request is not None:
                    await _guarded(volume, fid, _rekey(volume, request))
    finally:
        # Before the session ends: each one's request written and keys taken back (quick), its re-key
        # left to the next unlock, so a lock right after the move does not forget it.
        with trio.CancelScope(shield=True):
            _add(todo, volume.tree.take_moved())
            for fid, lost in todo.items():
                await _guarded(volume, fid, _taken_back(volume, fid, lost))


def _add(todo: dict[str, set[Grant]], moved: dict[str, set[Grant]]) -> None:
    for fid, lost in moved.items():
        todo.setdefault(fid, set()).update(lost)


async def _guarded(volume: Volume, fid: str, work: Awaitable[object]) -> object:
    """``work`` on her file ``fid``, its failure said and never the end of the session."""
    try:
        return await work
    except VaultError as err:
        log.error("could not give %s a new key: %s", fid, err)
    except Exception:  # a session service: a bug must not end the mount
        log.exception("could not give %s a new key", fid)
    return None


async def _rekey(volume: Volume, request: dict) -> None:
    node = volume.find(str(request["fid"]))
    if node is not None and not await rotate(volume, node, request):
        await resume(volume)


async def _taken_back(volume: Volume, fid: str, lost: set[Grant]) -> dict | None:
    """Her ``fid`` left the shares ``lost``: the keys they gave of it and all below it (those a share
    above it now still explains stay) taken back, under her signed request for its re-key, written
    first; the request, or None if no key of hers was there."""
    node = volume.find(fid)
    if node is None or node.owner != volume.key.user_id or volume.trust is None or volume.sharing is None:
        return None
    keys = _keys_lost(volume, subtree(volume, node), lost)
    records = await volume.in_thread(sharing.read_keys, [path for _, _, path in keys])
    # Only a key she sealed counts: a file a vault-folder writer put at a key's name costs no re-key.
    found = [path for (each, recipient, path), record in zip(keys, records, strict=True) if record is not None
             and key_signed(volume.trust, record, volume.key.user_id, each, recipient,
                            sharing.key_group(path))]
    if not found:
        return None
    log.info("%s left a share: its keys are taken back and it gets a new key", _where(volume, node))
    return await _requested(volume, node, found, {sharing.doc_id(g.fid, g.grantee) for g in lost})


async def _rekey_unreached(volume: Volume) -> None:
    """Her files with a key of their current epoch that no share over them gives now (sealed by a
    device of hers that had not heard of a revocation yet: stale_keys.py): those keys taken back,
    and each file given a new key under her signed request, as a move out of a share is."""
    while volume.rotating:  # an unshare under way: its re-key takes these keys; looked at after it
        await trio.sleep(RETRY_UNREACHED)
    if volume.key is None or volume.trust is None or volume.sharing is None:
        return
    listed = await volume.in_thread(stale_keys.listed, volume.layout, volume.key.user_id)
    volume.tree.keys_ahead = stale_keys.ahead(volume, listed)
    found = stale_keys.unreached(volume, listed)
    records = await volume.in_thread(sharing.read_keys, [path for _, _, path in found])
    now, me = time.time(), volume.key.user_id
    recent = await volume.in_thread(rotations_done.unbound_rekeys, volume.layout.root, me, now)
    # Places of keys naming no group counted now (``counts_as_removal``): into ``recent`` only once their
    # file's re-key is asked (49b (3)).
    counting = recent.copy()
    stale: dict[str, list[Path]] = {}
    for (each, recipient, path), record in zip(found, records, strict=True):
        # Read now, on the trio thread: a re-key meanwhile (a group's removal carried out) moved the
        # epoch on, and this key opens nothing new.
        if (record is not None and record.epoch == each.epoch
                and key_signed(volume.trust, record, volume.key.user_id, each.fid, recipient,
                               sharing.key_group(path))
                and stale_keys.counts_as_removal(volume, each.fid, recipient, path, record, counting, now)):
            stale.setdefault(each.fid, []).append(path)
    asked: list[Path] = []
    try:
        await _rekey_stale(volume, stale, asked)
    finally:
        # Recorded as they were asked (her request written, the keys taken back), whatever ended the
        # loop: a re-key failing after that is no reason to re-key sooner, one skipped or not asked (an
        # unshare under way, a request that could not be written) is no re-key done (49b (3)).
        if marked := _asked_places(volume, asked, counting, recent):
            with trio.CancelScope(shield=True):
                await volume.in_thread(rotations_done.remember_unbound, volume.layout.root, me, marked)


async def _rekey_stale(volume: Volume, stale: dict[str, list[Path]], asked: list[Path]) -> None:
    """Each file of ``stale`` (fid -> its keys no share reaches) re-keyed under her signed request, the
    keys taken back; the keys of each request written added to ``asked``."""
    done: set[str] = set()
    # Folders first: a folder's re-key gives everything under it a new key, once.
    for fid in sorted(stale, key=lambda f: _depth(volume, f)):
        node = volume.find(fid)
        if node is None or fid in done:
            continue
        if any([await _carried_out_later(volume, above) for above in stale_keys.above(volume, node)]):
            # A re-key already asked for, of it or of a folder it is in (an unshare's, a move's,
            # before its re-key began): carried out by its asker, and two at once collide.
            continue
        if volume.rotating:  # looked at after the last wait: an unshare's re-key began meanwhile
            continue  # its keys left to the next look (not marked: 49b (3))
        log.info("%s has a key for someone no share of it reaches now: taken back, and it gets a new key",
                 _where(volume, node))
        under = {n.fid for n in subtree(volume, node)}
        done |= under
        found = [path for f in under & stale.keys() for path in stale[f]]
        request = await _requested(volume, node, found)
        asked.extend(found)
        await _guarded(volume, fid, _rekey(volume, request))


def _asked_places(volume: Volume, asked: list[Path], counting: rotations_done.UnboundRekeys,
                  recent: rotations_done.UnboundRekeys) -> rotations_done.UnboundRekeys | None:
    """``recent`` with the places of ``asked`` that ``counting`` counted now added (None: none was)."""
    out = recent.copy()
    for path in asked:
        if (at := stale_keys.place_name(volume, path)) in counting and at not in recent:
            out[at] = counting[at]
    return out if len(out) != len(recent) else None


async def _carried_out_later(volume: Volume, fid: str) -> bool:
    """Whether a request for new keys of ``fid`` stands that its asker or ``resume`` carries out:
    hers or a group owner's, signed, not done yet.  Any other document at its id (a store writer's,
    unsigned; a done one put back) is no reason to leave a key a removed member opens: skipped for
    it, the file kept that key for good (attack round 40a (5))."""
    doc = await volume.store_call(volume.store.get, f"rotate-{fid}")
    if doc is None or doc.get("_deleted") or (node := _request(volume, doc)) is None:
        return False
    if signer_of(doc) != volume.key.user_id:
        return not await volume.in_thread(rotations_done.done, volume.layout.root, volume.key.user_id, doc)
    return doc.get("epoch", 0) == node.epoch


def _depth(volume: Volume, fid: str) -> int:
    node = volume.find(fid)
    return volume.tree.path_of(node).count(b"/") if node is not None else 0


async def _requested(volume: Volume, node: Node, found: list[Path], shares: set[str] | None = None) -> dict:
    """Her signed request for the re-key of ``node`` written, then the keys ``found`` taken back
    (of the Shares ``shares``).  The re-key is first recorded as owed on this device (rekeys_owed.py):
    the request is the store's, which may withhold it, and a lock or a crash before the re-key left
    the file under the key taken back for good (attack round 58d (2))."""
    assert volume.trust is not None
    await volume.in_thread(rekeys_owed.owe, volume.layout.root, volume.key,
                           [(node.fid, node.epoch, shares or ())])
    existing = await volume.store_call(volume.store.get, f"rotate-{node.fid}")
    request = request_doc(volume.trust, existing, node)
    [request["_rev"]] = await volume.store_call(volume.store.put_many, [request])
    await volume.in_thread(_discard, found)
    return request


def _keys_lost(volume: Volume, nodes: list[Node], lost: set[Grant]) -> list[tuple[str, str, Path]]:
    """(fid, recipient, key path) of each key ``lost`` gave of ``nodes`` that no share above them now
    explains (read on the trio thread: the tree changes there)."""
    assert volume.sharing is not None
    reaches, out = volume.sharing.reaches, []
    for n in nodes:
        now = {r.key_path(volume.layout, n.fid) for g in volume.covering(n) for r in reaches(g)}
        out += [(n.fid, r.recipient, path) for g in lost for r in reaches(g)
                if (path := r.key_path(volume.layout, n.fid)) not in now]
    return out


def _discard(paths: list[Path]) -> None:
    for path in paths:
        sharing.discard_key(path)


# Seconds between looks for an unshare's re-key to end before her keys no share reaches are looked over.
RETRY_UNREACHED = 1

# A re-key takes a while (a folder of many files): a request or a group's change arriving meanwhile is
# carried out by another pass, up to this many; past them the next change or unlock goes on.
PASSES = 6


async def resume(volume: Volume) -> None:
    """At unlock: finish rotations left pending, seal keys others still lack."""
    if volume.sharing is None:
        return
    # Her records read first (``Guests.left`` filled): every re-key below seals to and records no grant
    # her other device took back, which the store serves again here (attack round 74a (1)); with the
    # grants this device kept from earlier unlocks' records, which the store may have rolled back or a
    # member's states dropped since (left_kept.py, attack round 75a (2), (3)): kept again first.
    root = volume.layout.root
    kept = await volume.in_thread(left_kept.read, root, volume.key)
    resolved = await volume.in_thread(volume.tree.note_left, volume.tree.held_keys(), kept)
    await _keep_left(volume, resolved)
    for n in range(PASSES):
        if not await _rotation_pass(volume, reload=n > 0):
            break
    else:
        log.warning("key rotations kept arriving while others were carried out: the rest at the next "
                    "change of groups or unlock")
    await _rekey_rolled_back(volume)
    await _put_back_over_replays(volume)
    keys = volume.tree.held_keys()
    written = await volume.in_thread(volume.tree.fill_missing, keys)
    await _keep_left(volume, ())  # what ``fill_missing`` found left out too
    if written:
        log.info("sealed %d file key(s) for new recipients", written)


async def _keep_left(volume: Volume, resolved: Iterable[tuple[str, str]]) -> None:
    """Keep on this device the grants left out here (``Guests.left`` with the files that showed it),
    less those ``resolved`` (vault/model/left_kept.py).  Read on the trio thread, as the re-keys read
    ``left`` (her_keys.py); written on a worker thread."""
    assert volume.sharing is not None
    seen = volume.sharing.left_seen
    found = {place: dict(seen[place]) for place in volume.sharing.left if seen.get(place)}
    await volume.in_thread(left_kept.update, volume.layout.root, volume.key, found, resolved)


async def _rotation_pass(volume: Volume, reload: bool) -> bool:
    """Carry out the Rotation requests of the store, then the removals from groups she shares with
    that no request asked for; whether anything was re-keyed or changed meanwhile (then one more
    pass: what arrived during a re-key is not lost)."""
    assert volume.sharing is not None
    if reload:
        # The shares, groups and users as the store holds them now: an unlock's tree takes in nothing
        # that arrives while an earlier pass re-keys, and a re-key seals to the members read here.
        volume.sharing.reload(volume.store)
    members = _group_members(volume)
    rotated: set[str] = set()
    again = False
    for doc in await volume.read_call(_requests_of, volume.store, volume.key.user_id):
        node = _request(volume, doc)
        if node is None or node.fid in volume.rotating:
            continue
        try:
            again |= await _carry_out(volume, node, doc, rotated)
        except VaultError as err:
            # Each request on its own: one that fails (said where it failed, its request kept for
            # the next unlock) never keeps the others, the removals from groups and the keys new
            # members lack from being carried out (attack round 70a (2)).
            log.error("the key rotation of %s failed (tried again at the next unlock): %s",
                      _where(volume, node), err)
    again |= await _pay_owed(volume, rotated)
    again |= await _rekey_for_removals(volume, members, rotated)
    return again


async def _pay_owed(volume: Volume, rotated: set[str]) -> bool:
    """The re-keys this device owes (vault/model/rekeys_owed.py: keys it took back, the new key not
    committed), finished whatever the store holds: her signed request may be withheld, and with it
    the only other trace (attack round 58d).  One found done since (the file past the epoch owed,
    under a key of hers derived for the recipients seen here: ``_her_key``) is paid without a re-key.
    True when it re-keyed."""
    root, me = volume.layout.root, volume.key.user_id
    debts = await volume.in_thread(rekeys_owed.owed, root, volume.key)
    if debts.damaged and volume.trust is not None:
        volume.trust.alarms.warn("rekeys-owed", me, "this device's record of the re-keys it owes (keys it "
                                 "took back) is damaged: what it held is owed only through the store's "
                                 "requests; run `fusevault unshare` again for any share you took back lately")
    rekeyed = False
    for debt in debts.values():
        node = volume.find(debt.fid)
        if node is None or node.owner != me or node.fid in volume.rotating:
            continue  # not in her tree now (kept owed: looked at again), or its re-key under way pays it
        if node.epoch > debt.epoch and _her_key(volume, node):
            await volume.in_thread(rekeys_owed.paid, root, volume.key, debt.fid, debt.token)
            continue
        log.warning("%s: a re-key this device owes since it took keys of it back (its request is not "
                    "in the store, or not yet): given a new key now", _where(volume, node))
        rotated.update(n.fid for n in subtree(volume, node))
        try:
            await rotate(volume, node)
        except VaultError as err:  # still owed: tried again at the next unlock (not at once: no more
            # passes for it); the others go on
            log.error("could not give %s the new key this device owes it: %s", _where(volume, node), err)
        else:
            rekeyed = True
    return rekeyed


async def _carry_out(volume: Volume, node: Node, doc: dict, rotated: set[str]) -> bool:
    """Act on one request for her ``node``; True when it re-keyed, or the request changed meanwhile."""
    if signer_of(doc) != volume.key.user_id:
        # A group owner's (a member's removal): the epoch it names is what the store showed him in
        # clear, which a writer of the store moves either way (attack round 20 (3)): done unless
        # this device did it before (vault/model/rotations_done.py).
        root, user_id = volume.layout.root, volume.key.user_id
        if await volume.in_thread(rotations_done.done, root, user_id, doc):
            log.info("the key rotation of %s was done here already", node.fid)
            return not await volume.store_call(_forget, volume, doc)
        log.info("a key rotation of %s asked by a group's owner", node.fid)
        rotated.update(n.fid for n in subtree(volume, node))
        await rotate(volume, node)
        await volume.in_thread(rotations_done.remember, root, user_id, doc)
        await volume.store_call(_forget, volume, doc)
        return True
    if node.epoch > doc.get("epoch", 0) and _her_key(volume, node):  # none: by the migration (migrate.py)
        # Done since she asked for it (a replay of her old request, or another device of hers
        # finished it): nothing to do, the request goes.
        log.info("the key rotation of %s was done already", node.fid)
        return not await volume.store_call(_forget, volume, doc)
    if doc.get("epoch", 0) > node.epoch:
        # Her own request names the epoch her own verified tree had: one above the file's is no
        # request of hers (acted on, it would be done again at every replay): refused and dropped.
        _said(volume, "forged", doc, f"for {_where(volume, node)}: asks for new keys from key epoch "
              f"{doc.get('epoch')}, which the file never had (it is at {node.epoch}); if you revoked a "
              "share of it, run `fusevault unshare` for it: that gives it new keys")
        return not await volume.store_call(_forget, volume, doc)
    log.info("finishing a key rotation of %s", node.fid)
    rotated.update(n.fid for n in subtree(volume, node))
    await rotate(volume, node, doc)
    return True


def _her_key(volume: Volume, node: Node) -> bool:
    """Whether the node's key at its epoch is one her device derived there (vault/model/her_keys.py
    ``her_key_at``): her re-key, made here or on another device of hers.  The node's epoch alone is
    no proof of it: a member's state claims any epoch under her older key (round 45c (4)), and a
    claim taken for her re-key dropped her request for good, the file left under her older key
    (round 50b (1)).  The load and the arrival take such a claim at her epoch; this is the last
    check.  A key of hers not found there costs one more re-key, nothing else.  Found by derivation
    only, never by her proof (``key_proof``): the request asks for a key made with its removal in view,
    and a key derived for the recipients seen here (or fewer) is one; her proof says only that her
    device made the key, maybe for recipients since removed (her other device's re-key at once)."""
    return bool(node.dek) and her_key_at(volume.tree, node, node.epoch, node.dek)


def _group_members(volume: Volume) -> dict[str, set[str]]:
    """Each admitted group's members as its owner signed them (a member whose user document is
    missing is still one: withholding it is no removal)."""
    assert volume.sharing is not None
    return {gid: set(g.get("users") or {}) for gid, g in volume.sharing.groups.items()}


async def _rekey_for_removals(volume: Volume, before: dict[str, set[str]], rotated: set[str]) -> bool:
    """Re-key each file of hers shared with a group that lost a member since this device sealed its
    keys (attack round 22a (3)): the group owner's signed body is the proof of the removal, his
    Rotation request only a reminder, which a server may withhold.  ``before``: the members read at
    the start of this pass, which what it re-keyed was sealed to; ``rotated``: fids re-keyed in it.
    True when it re-keyed."""
    assert volume.sharing is not None
    root, me = volume.layout.root, volume.key.user_id
    sealed = await volume.in_thread(rotations_done.sealed_members, root, me)
    now = _group_members(volume)  # a pass may have taken in a change of groups meanwhile
    record: dict[str, set[str]] = {}
    rekeyed = False
    grants = [g for g in volume.sharing.grants if g.group and g.owner == me]
    removed = await volume.store_call(_groups_removed, volume, grants, now, sealed)
    for grant in grants:
        node = volume.find(grant.fid)
        members = set() if grant.grantee in removed else now.get(grant.grantee)
        if members is None or node is None or node.owner != me:
            continue  # a group not admitted (withheld, refused): judged once its signed body is here
        share_id = sharing.doc_id(grant.fid, grant.grantee)
        lost = sealed.get(share_id, set()) - members
        if lost and node.fid in volume.rotating:
            continue  # re-keyed meanwhile by another task: judged at the next pass
        if lost:
            await volume.in_thread(_drop_members_keys, volume, grant.grantee, subtree(volume, node), lost)
        if lost and node.fid not in rotated:
            _say_lost(volume, grant.grantee, node, lost, grant.grantee in removed)
            rotated.update(n.fid for n in subtree(volume, node))
            await rotate(volume, node)
            rekeyed = True
        # Sealed to the members of now, and to those read at the start if it was re-keyed in this pass
        # (one removed during the re-key may hold its new key: the next pass re-keys it again).
        record[share_id] = members | (before.get(grant.grantee, set()) if node.fid in rotated else set())
    if any(sealed.get(share_id) != sealed_to for share_id, sealed_to in record.items()):
        await volume.in_thread(rotations_done.remember_members, root, me, record)
    return rekeyed


def _say_lost(volume: Volume, group_id: str, node: Node, lost: set[str], removed: bool) -> None:
    if removed:
        log.warning("group %s was removed (the store holds its deletion): giving %s new keys, which none of "
                    "its %d former member(s) holds", group_id, _where(volume, node), len(lost))
    else:
        log.warning("group %s lost %d member(s) since this device sealed the keys of %s: giving it new keys "
                    "(the group owner's request for it is not in the store, or not yet)",
                    group_id, len(lost), _where(volume, node))


def _groups_removed(volume: Volume, grants: list[Grant], now: dict[str, set[str]],
                    sealed: dict[str, set[str]]) -> set[str]:
    """The groups of ``grants`` not admitted whose deletion the store holds (``group remove``, or a
    ``user remove`` of their owner after it; attack round 23a (1)), among those this device recorded
    sealing keys to members of: each of those members is lost.  A group body merely missing (withheld)
    is no removal; a server's bare deletion costs one re-key, which is always safe."""
    return {g.grantee for g in grants if g.grantee not in now
            and sealed.get(sharing.doc_id(g.fid, g.grantee)) and volume.store.deleted(g.grantee)}


def _drop_members_keys(volume: Volume, group_id: str, nodes: list[Node], lost: set[str]) -> None:
    """The group key files of ``nodes`` sealed to members it lost: theirs no longer (a re-key under way
    when they left may have written them again with the old members)."""
    for node in nodes:
        for member in lost:
            path = sharing.group_key_path(volume.layout, group_id, node.fid, member)
            sharing.discard_key(path, keep_folder=True)


def _requests_of(store: Store, me: str) -> list[dict]:
    """The Rotation documents ``_request`` looks at: every one but another user's (theirs to judge).
    A read of every user's requests: on a worker thread from a snapshot (``read_call``), never on the
    loop that serves every user's files (store/short_calls.py, attack round 73b (1))."""
    return [doc for doc in store.iter_type(ROTATION)
            if not (isinstance(doc.get("owner"), str) and doc.get("owner") != me)]


def _forget(volume: Volume, doc: dict) -> bool:
    """Delete a request done already, unless it changed meanwhile (then it is looked at again:
    False)."""
    current = volume.store.get(str(doc["_id"]))
    if current is None or current.get("_deleted") is True:
        return True
    if current.get("_rev") != doc.get("_rev"):
        return False
    volume.store.put_many([tombstone(current)])
    return True


def _request(volume: Volume, doc: dict) -> Node | None:
    """Her file a Rotation document asks for new keys, or None.

    Acted on only in the shape fusevault writes (id ``rotate-<fid>`` of a file id, an
    ``epoch``), for a node of hers, and signed, under the key this device trusts, by her
    (``unshare``) or by the pinned owner of a group her signed grant shares that file with
    (``group member remove``).  Anything else is said and left alone: a store writer's or
    server's request (forged: otherwise it makes her client re-seal her whole tree), an
    unsigned one (an administrator's ``user remove``, or her own from before signed
    requests: she revokes with ``unshare`` again, which finishes it).  A Rotation of
    another user's file is theirs: not looked at.  Whether it is done already (its epoch
    passed: a replay) is the caller's (``resume``)."""
    fid, owner = doc.get("fid"), doc.get("owner")
    if isinstance(owner, str) and owner != volume.key.user_id:
        return None  # another user's request (a shared store): theirs to judge
    epoch = doc.get("epoch", 0)
    if not (is_id(fid) and owner == volume.key.user_id and doc.get("_id") == f"rotate-{fid}"
            and isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 0):
        _said(volume, "malformed", doc, "not of the shape fusevault writes")
        return None
    node = volume.find(fid)  # type: ignore[arg-type]
    if node is None or node.owner != volume.key.user_id or volume.trust is None:
        return None
    if (why := _unsigned_why(volume, doc, node)) is not None:
        _said(volume, "forged", doc, f"for {_where(volume, node)}: {why}; if you revoked a share of it (or "
              "an administrator removed a user you shared it with), run `fusevault unshare` for it again: "
              "that gives it new keys")
        return None
    return node


def _unsigned_why(volume: Volume, doc: dict, node: Node) -> str | None:
    """Why ``doc`` is no request of hers nor of a group owner she shares ``node`` with (None: it is)."""
    assert volume.trust is not None
    try:
        signer = signer_of(doc)
        if signer is None:
            return ("not signed (a forgery by the store's writer, an administrator's `user remove`, or one "
                    "from before signed requests)")
        volume.trust.verify(doc)
    except Forged as err:
        return f"refused: {err}"
    if signer == volume.key.user_id:
        return None
    shared = volume.sharing.by_fid.get(node.fid, []) if volume.sharing is not None else []
    if any(g.group and g.owner == volume.key.user_id and volume.trust.group_owner(g.grantee) == signer
           for g in shared):
        return None
    return f"refused: signed by {signer}, neither you nor the owner of a group you share it with"


def _where(volume: Volume, node: Node) -> str:
    try:
        return "/" + name_to_str(volume.path_of(node))
    except (VaultError, KeyError):  # no path reaches it: its id
        return node.fid


def _said(volume: Volume, kind: str, doc: dict, why: str) -> None:
    text = f"a Rotation document {str(doc.get('_id'))[:80]!r} {why}: not acted on"
    if volume.trust is not None:
        volume.trust.alarms.warn(kind, str(doc.get("_id"))[:80], text)
    else:
        log.warning("%s", text)


async def _rekey_rolled_back(volume: Volume) -> None:
    """A file of the user's loaded in an older state than this device saw (a
    rollback, reported) under an older key than seen holds a key that may
    have been revoked since: it gets a new one, above every epoch seen, before
    anything is written to it.  One that cannot (its older records are gone)
    does not open either: nothing is written to it."""
    ledger = volume.ledger
    if ledger is None:
        return
    for fid in sorted(ledger.rolled):
        node = volume.find(fid)
        if node is None or node.owner != volume.key.user_id or not node.dek:
            continue  # another's file: its owner gives it a new key
        log.info("giving %s, rolled back, a new key", fid)
        volume.tree.top_epochs[fid] = max(volume.tree.top_epochs.get(fid, 0), ledger.epochs.get(fid, 0))
        try:
            await volume.rekey(node)
        except VaultError as err:
            log.error("could not give the rolled-back file %s a new key: %s", fid, err)
            continue
        ledger.rolled.discard(fid)
        await trio.sleep(0)


async def _put_back_over_replays(volume: Volume) -> None:
    """Her own nodes rebuilt at this load from a refused replay of her own older
    document (vault/tree/rebuilding.py ``replays_refused``): the state rebuilt is
    committed over the replayed revision, so the store (and every peer it syncs
    with) holds her newer state again, not the replay, and the next unlock finds
    nothing to refuse.  One given a new key since (``_rekey_rolled_back``) was
    committed then."""
    ledger = volume.ledger
    if ledger is None:
        return
    for fid, rev in sorted(ledger.replays.items()):
        node = volume.find(fid)
        if node is not None and node.owner == volume.key.user_id and node.rev == rev:
            try:
                await volume.save_node(node)
            except VaultError as err:  # judged again at the next unlock
                log.error("could not put the newer state of %s back over a replay: %s", fid, err)
        ledger.replays.pop(fid, None)
        await trio.sleep(0)

