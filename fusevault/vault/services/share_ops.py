"""Sharing, unsharing and listing shares, done by the owner on their loaded Volume.

``share`` seals the DEK of the file (or of everything in the folder) for each
recipient, then commits the ``Share`` document.  ``unshare`` deletes the
document together with a ``Rotation`` document, removes the recipient's keys
(of every file of hers that holds them, also one moved out of the folder
since), and has the keys changed (vault/services/rotation.py): every node under
the share, and each file moved out, gets a new DEK sealed for whoever still has
a share, and only then is the ``Rotation`` deleted.  The grant revoked is
always the one named, never a stored body's fields; a share the store lost
(deleted or withheld) that this device remembers, or whose keys are still
there, is taken back all the same (with an alarm), and one whose re-key this
device still owes (vault/model/rekeys_owed.py: an unshare cut short) is
finished (attack round 58d (1)).
"""

from __future__ import annotations

import os
from pathlib import Path

from fusevault.encoding import name_to_str
from fusevault.errors import (
    Conflict,
    InvalidInput,
    NameClash,
    NotFound,
    PermissionDenied,
    VaultNotFound,
)
from fusevault.store import tombstone
from fusevault.vault.files.sidecar import vfmeta_bytes
from fusevault.vault.format.atomic import atomic_write
from fusevault.vault.format.layout import Layout, is_id
from fusevault.vault.model import (
    left_kept,
    lineage,
    meta_files,
    rekeys_owed,
    rotations_done,
    sealed_for,
    sharing,
)
from fusevault.vault.model.grants import key_signed
from fusevault.vault.model.groups import find_group
from fusevault.vault.model.nodes import Node
from fusevault.vault.model.sharing import Grant, acl_lines, share_doc, share_perm
from fusevault.vault.model.users import find_user
from fusevault.vault.services import rotation
from fusevault.vault.volume import ROOT_INODE, Volume


def _grantee(volume: Volume, target: str, revoking: bool = False) -> tuple[str, bool, str]:
    """(id, is a group, label) of ``bob`` or ``@team``.  ``revoking`` (unshare): one the
    store has no document of is found through the pins of this device, since a store
    writer withholding it must not stop the key being taken back (never for a share)."""
    # A name several documents claim goes to the one this user trusts (pinned), or is refused.
    if target.startswith("@"):
        if not revoking and volume.trust is not None and (why := volume.trust.group_dispute(target[1:])):
            raise NameClash(f"{why}: refused")  # taking keys back from it stays possible
        trusted = volume.sharing.groups if volume.sharing is not None else {}
        try:
            group = find_group(volume.store, target[1:], lambda found: _only(
                [g for g in found if g["_id"] in trusted]))
        except VaultNotFound:
            if revoking and volume.trust is not None and (gid := volume.trust.pinned_group_named(target[1:])):
                return gid, True, target
            raise
        if volume.trust is not None and (why := volume.trust.group_name_taken(group)):
            raise NameClash(f"group {target[1:]!r} ({group['_id']}) is not the one this device knows by that "
                            f"name ({why}): refused; give the id of the group you mean")
        return group["_id"], True, target
    pick = volume.trust.trusted_user if volume.trust is not None else None
    try:
        user = find_user(volume.store, target, pick)
    except VaultNotFound:
        if revoking and volume.trust is not None and (uid := volume.trust.pinned_user_named(target)):
            return uid, False, target
        raise
    if user["_id"] == volume.key.user_id:
        raise InvalidInput("you already have every right to your own files")
    if volume.trust is not None and (why := volume.trust.name_taken(user)):
        # A pinned user's document deleted and another planted under the name: never granted.
        raise NameClash(f"user {target!r} ({user['_id']}) is not the one this device knows by that name "
                        f"({why}): refused; compare `fusevault user show {user['_id']}` with them, then "
                        f"`fusevault user trust` it if it is genuine")
    return user["_id"], False, target


def _only(found: list[dict]) -> dict | None:
    return found[0] if len(found) == 1 else None


def _own(volume: Volume, path: bytes) -> Node:
    # A user from before key pairs, opened without a mount, has neither shares nor
    # pinned keys (both come with the key pairs): share and unshare sign, pin
    # and warn through ``volume.trust`` from here on, which is then set.
    if volume.sharing is None or volume.trust is None:
        raise InvalidInput("your key pairs are made at your next mount: mount once, then share")
    node = volume.resolve(path)
    if node.owner != volume.key.user_id:
        raise PermissionDenied(f"{name_to_str(path)} is not yours: only its owner shares it")
    if node.ino == ROOT_INODE:
        raise InvalidInput("share a folder or a file, not the whole vault")
    return node


def _write_acls(volume: Volume, nodes: list[tuple[Node, bytes, int]]) -> None:
    """Seed 003's sidecar ACL of every file with contents, from the documents
    (``nodes``: each with its DEK and epoch, taken on the trio thread)."""
    for node, dek, epoch in nodes:
        acl = acl_lines(volume.covering(node))
        if node.content is not None:
            node.content.acl = acl
        if node.is_reg and node.head and volume.layout.vf_path(node.owner, node.fid).exists():
            atomic_write(volume.layout.vfmeta_path(node.owner, node.fid),
                         vfmeta_bytes(node.fid, node.owner, dek, acl, epoch), durable=False)


async def _settle(volume: Volume, nodes: list[Node]) -> None:
    volume.sharing.reload(volume.store)
    keys = [(node, node.dek, node.epoch) for node in nodes if node.dek]
    await volume.in_thread(_write_acls, volume, keys)
    await volume.in_thread(meta_files.reconcile, volume.layout, volume.store)


async def share(volume: Volume, path: bytes, target: str, perm: str) -> dict:
    node = _own(volume, path)
    grantee, group, label = _grantee(volume, target)
    grant = Grant(volume.key.user_id, node.fid, grantee, group, share_perm(perm))
    nodes = rotation.subtree(volume, node, volume.tree.behind)
    sealing = volume.sharing
    keys = [(n, (n.dek, n.epoch)) for n in nodes]

    def seal() -> int:
        return sum(sealing.seal_keys(volume.layout, n, [grant], key, chosen=True) for n, key in keys)

    keys = await volume.in_thread(seal)
    doc = share_doc(grant)
    # Given again: a re-key still owed for this Share no longer takes it back at each load (59c (1)).
    await volume.in_thread(rekeys_owed.given_again, volume.layout.root, volume.key, doc["_id"])
    # Nor do its recipients stay taken back as this device kept them (left_kept.py, attack round 75a (2)).
    await volume.in_thread(left_kept.given_again, volume.layout.root, volume.key, doc["_id"])
    old = await volume.store_call(volume.store.get, doc["_id"])
    if old is not None:
        doc["_rev"], doc["created_at"] = old["_rev"], old["created_at"]
    # Signed last: readers act on a Share only if its owner signed it (vault/model/grants.py).
    await volume.store_call(volume.store.put_many, [volume.trust.sign(doc)])
    await volume.store_call(volume.trust.save)
    await volume.in_thread(volume.store.sync)
    await _settle(volume, nodes)
    await _recorded_again(volume, grant, nodes)
    if group and await volume.in_thread(_sealed_to, volume, grant, label, _gone(old)):
        # A member the record holds that the group no longer names: re-keyed away now, not at some
        # later unlock (attack round 23a (2)).
        await rotation.resume(volume)
    return {"path": name_to_str(path), "with": label, "perm": grant.perm, "files": len(nodes), "keys": keys,
            "fingerprints": _fingerprints(volume, grant)}


class _Rekeyed(Exception):
    """The node's key changed since its record was read: that re-key wrote its own."""


async def _recorded_again(volume: Volume, grant: Grant, nodes: list[Node]) -> None:
    """Her records of the keys held, for the Share she gave again (attack round 75a (1)).  Her unshare's
    re-key listed it in each record's ``taken``; sharing again seals the key of that epoch (``seal_keys``
    ``chosen``) with no re-key, so each record went on saying it taken back, and on every device (and at
    every later re-key, ``rekeying._taken``) a member added to the group since, or one whose key was not
    sealed then, was left out for good, said as a replay.  Each of her nodes under it whose record names it
    taken gets a record at the same key, proved afresh, that says it given (``sealed_for.given_again``);
    only once the Share is stored (a record saying it given before that would let its older body, served
    again, count).  Its pairs in ``left`` go too: her command gives it to every member it reaches now."""
    share_id = sharing.doc_id(grant.fid, grant.grantee)
    volume.sharing.left.difference_update({p for p in volume.sharing.left if p[0] == share_id})
    body = volume.sharing.groups.get(grant.grantee) if grant.group else None
    try:
        vector = lineage.of(body) if isinstance(body, dict) else None
    except lineage.Malformed:
        vector = None
    entries = [f"{sealed_for.entry(r.grant.owner, r.grant.fid, r.grant.grantee, r.recipient)}{r.perm}"
               for r in volume.sharing.reaches(grant)]
    for node in nodes:
        held, dek, epoch = node.sealed_for, node.dek, node.epoch
        # Her proof checked only where the record names the Share (a share of a large folder whose
        # records do not: one look each, no digest of each record).
        if not isinstance(held, dict) or share_id not in (held.get("taken") or ()) \
                or not volume.sharing.may_seal(node, grant) \
                or not sealed_for.hers(volume.key, node.fid, epoch, dek, held):
            continue
        again = sealed_for.proved(volume.key, node.fid, dek, sealed_for.given_again(
            held, share_id, entries, grant.grantee if grant.group else None, vector))
        if again is None:
            continue

        def change(node: Node = node, again: dict = again, key: tuple[bytes, int] = (dek, epoch)) -> None:
            if (node.dek, node.epoch) != key or not node.links:
                raise _Rekeyed  # refused before anything changed (``commit_node``)
            node.sealed_for = again

        try:
            await volume.tree.commit_node(node, change)
        except (_Rekeyed, Conflict):
            # Re-keyed meanwhile (its record is that re-key's), or another writer's state stored and not
            # taken in yet: this record stays her unshare's, said at the next unlock; sharing again writes it.
            continue


def _gone(doc: dict | None) -> bool:
    """Whether the store has no live Share at this id (never written, deleted or withheld)."""
    return doc is None or doc.get("_deleted") is True


def _sealed_to(volume: Volume, grant: Grant, label: str, missing: bool) -> bool:
    """Remember the members a group share's keys are sealed to now (``_rekey_for_removals``), with
    those this device recorded as sealed to before, whether or not the store still has the Share:
    the record is this device's own, and a Share withheld says nothing of who holds keys, so a removal
    not yet carried out stays one (attack round 23a (2)).  True when the record names a member the
    group no longer does (a re-key is due)."""
    root, me = volume.layout.root, volume.key.user_id
    share_id = sharing.doc_id(grant.fid, grant.grantee)
    now = set((volume.sharing.groups.get(grant.grantee) or {}).get("users") or {})
    before = rotations_done.sealed_members(root, me).get(share_id, set())
    if missing and before:
        # This device sealed keys for this share, and the store no longer has it (as ``unshare``).
        volume.trust.alarms.warn("share-missing", share_id, f"the store no longer has share {share_id} "
                                 f"(shared again with {label}) that this device sealed keys for: deleted "
                                 "or withheld, the store may have been tampered with; the members its "
                                 "keys were sealed to are kept, and any no longer in the group re-keyed away")
    rotations_done.remember_members(root, me, {share_id: now | before})
    return bool(before - now)


def _fingerprints(volume: Volume, grant: Grant) -> dict[str, str | None]:
    """The pinned key fingerprint of each recipient (``user show`` prints the same)."""
    out = {}
    for reach in volume.sharing.reaches(grant):
        user = volume.sharing.users.get(reach.recipient, {})
        out[user.get("username", reach.recipient)] = volume.trust.fingerprint_of(reach.recipient)
    return out


async def unshare(volume: Volume, path: bytes, target: str) -> dict:
    node = _own(volume, path)
    grantee, group, label = _grantee(volume, target, revoking=True)
    # The grant is the one the owner names, never a stored body's fields: a forged document at
    # this id must neither point the revoke at another file or person nor stop it.
    grant = Grant(volume.key.user_id, node.fid, grantee, group, "READ")
    share_id = sharing.doc_id(node.fid, grantee)
    doc = await volume.store_call(volume.store.get, share_id)
    nodes = rotation.subtree(volume, node)
    reaches = volume.sharing.reaches(grant)
    # Her every file, not only what is under the folder now: one moved out of it since (by her, or by a
    # writer's move) keeps the keys sealed while it was in, which this revoke takes back (round 30b).
    inside = {n.fid for n in nodes}
    mine = [*nodes, *(n for n in volume.nodes() if n.owner == grant.owner and n.fid not in inside)]
    unexplained = _unexplained(volume, grant, mine)
    found = await volume.in_thread(_held_keys, volume.layout, grant, unexplained)
    # Outside the folder, only a key she sealed counts: anyone who writes the vault folder can put a file
    # at a key's name, and each would cost her a re-key of the file and all below it (round 31a (3)).
    outside = [(fid, p) for fid, p in found if fid not in inside]
    records = await volume.in_thread(sharing.read_keys, [p for _, p in outside])
    outside = [(fid, p) for (fid, p), record in zip(outside, records, strict=True) if record is not None
               and key_signed(volume.trust, record, grant.owner, fid, p.stem if group else grantee,
                              grantee if group else None)]
    held = [p for fid, p in found if fid in inside] + [p for _, p in outside]
    # The re-keys this device still owes for this share (rekeys_owed.py: an unshare or a move out of it
    # cut short, its keys gone): finished by this one, whatever the store holds (attack round 58d (1)).
    debts = await volume.in_thread(rekeys_owed.owed, volume.layout.root, volume.key)
    owing = [d.fid for d in debts.values() if share_id in d.shares]
    moved_out = _tops(volume, [n for fid in dict.fromkeys([*(f for f, _ in outside), *owing])
                               if fid not in inside and (n := volume.find(fid)) is not None
                               and n.owner == grant.owner])
    missing = doc is None or doc.get("_deleted") is True
    pending = await volume.store_call(volume.store.get, f"rotate-{grant.fid}")
    remembered = volume.trust.fresh is not None and volume.trust.fresh.remembered(share_id)
    if missing and not remembered and not held and pending is None and not owing:
        raise NotFound(f"{name_to_str(path)} is not shared with {label}")
    # Nothing known of the share but a request for new keys that was not acted on (unsigned: an
    # administrator's `user remove`, or hers from before signed requests): her command finishes it.
    if missing and (remembered or held):
        # The store has no Share this device saw, or keys sealed for it are still there: deleted or
        # withheld by the store's writer (or unshared on another device): the key is taken back anyway.
        volume.trust.alarms.warn("share-missing", share_id, f"the store no longer has share {share_id} "
                                 f"({name_to_str(path)} with {label}) that this device "
                                 f"{'saw' if remembered else 'sealed keys for'}: deleted or withheld, "
                                 "the store may have been tampered with; its keys are taken back anyway")
    request = rotation.request_doc(volume.trust, pending, node)
    # Each file moved out with keys of this share gets its own signed request: re-keyed below, or at her
    # next unlock if this command is cut short.
    elsewhere = [(n, rotation.request_doc(volume.trust, await volume.store_call(volume.store.get,
                                                                                f"rotate-{n.fid}"), n))
                 for n in moved_out]
    # Owed on this device before the Share or any key goes, paid only as each gets its new key
    # (``rotate``): the requests below are the store's to withhold, and a kill before the re-key left the
    # folder under the key the member kept, "not shared" to her unshare again (attack round 58d (1)).
    # Not recorded, nothing is taken back (the command fails, the share as it was).
    owes = [(n.fid, n.epoch, [share_id]) for n in [node, *moved_out]]
    # The newest body of the Share seen here is the one taken back (a later signing of hers is not).
    newest = volume.trust.fresh.newest_seen(share_id) if volume.trust.fresh is not None else None
    taken = {share_id: newest} if newest is not None else {}
    await volume.in_thread(rekeys_owed.owe, volume.layout.root, volume.key, owes, taken)
    if volume.trust.fresh is not None:
        # Taken back here before the store says it is gone: a reload of the grants meanwhile (this
        # mount's, a shared mount's store watcher) must not take her own unshare for a deletion by
        # someone else (freshness.py ``sweep``).  A failed put leaves the share in the store: a
        # second unshare finds it there.
        volume.trust.fresh.took_back(share_id)
    requests = [request, *(r for _, r in elsewhere)]
    async with volume.settled():
        # With the arrivals held off, and the grants read again at once: a writer's change that comes
        # from now on is judged without this share.  Taken in between by the grants before (his
        # WRITE still in force), its version's records were refused at the re-key, under the grants
        # after: the unshare failed (exit 5) and the file read EIO.
        revs = await volume.store_call(volume.store.put_many,
                                       [*([] if missing else [tombstone(doc)]), *requests])
        volume.sharing.reload(volume.store)
    for each, rev in zip(requests, revs[-len(requests):], strict=True):
        each["_rev"] = rev  # the request this unshare carries out: deleted only as it is (``rotate``)
    await volume.in_thread(volume.store.sync)
    # Owed again now the Share is gone: a re-key that began before (sealing to its recipients) must
    # not pay it; only one beginning from now seals to none of them.
    await volume.in_thread(rekeys_owed.owe, volume.layout.root, volume.key, owes, taken)
    # Not a key another share still gives (a hard link's other name under it: round 31a (4)).
    explained = dict(unexplained)
    paths = [key for n in nodes for reach in reaches
             if (key := reach.key_path(volume.layout, n.fid)) not in explained[n.fid]]

    def remove_keys() -> None:
        for each in dict.fromkeys([*paths, *held]):
            sharing.discard_key(each)

    await volume.in_thread(remove_keys)
    # The Share is remembered as deleted (and taken back, above: a second unshare says "not shared"),
    # saved at once: its old body is a replay from now.
    volume.sharing.reload(volume.store)
    await volume.store_call(volume.trust.save)
    done = [await rotation.rotate(volume, each, req) for each, req in [(node, request), *elsewhere]]
    if not all(done):
        # Another request replaced hers during the re-key (a group owner's removal): carried out now,
        # never left for whenever the next change or unlock comes.
        await rotation.resume(volume)
    if group:
        # Taken back and re-keyed: its keys are sealed to no member now (sharing it again starts anew,
        # and is no "share-missing").
        await volume.in_thread(rotations_done.remember_members, volume.layout.root, volume.key.user_id,
                               {share_id: set()})
    nodes += [n for each in moved_out for n in rotation.subtree(volume, each)]
    await _settle(volume, nodes)
    return {"path": name_to_str(path), "with": label, "files": len(nodes), "missing": missing}


def _tops(volume: Volume, nodes: list[Node]) -> list[Node]:
    """``nodes`` without those under another of them (a folder's re-key covers what is under it)."""
    below = {n.fid for each in nodes for n in rotation.subtree(volume, each)[1:]}
    return [n for n in nodes if n.fid not in below]


def _unexplained(volume: Volume, grant: Grant, nodes: list[Node]) -> list[tuple[str, set[Path]]]:
    """Each node's fid, with where the keys sealed by the other shares still in force on
    it (on a folder above) belong: a key there is no trace of this share."""
    out = []
    this = sharing.doc_id(grant.fid, grant.grantee)
    for n in nodes:
        others = [g for g in volume.covering(n) if sharing.doc_id(g.fid, g.grantee) != this]
        out.append((n.fid, {r.key_path(volume.layout, n.fid) for g in others
                            for r in volume.sharing.reaches(g)}))
    return out


def _held_keys(layout: Layout, grant: Grant, nodes: list[tuple[str, set[Path]]]) -> list[tuple[str, Path]]:
    """Key files sealed for ``grant``'s grantee (a user, or a group's members) of these
    nodes that no other share explains, each with its node's fid."""
    found = []
    for fid, explained in nodes:
        if grant.group:
            try:
                names = os.listdir(sharing.group_keys_dir(layout, grant.grantee, fid))
            except (FileNotFoundError, NotADirectoryError):
                continue
            # Only key files named as fusevault names them (another name is no user's: layout.py ``is_id``).
            here = [sharing.group_key_path(layout, grant.grantee, fid, name[:-len(".vfkey")])
                    for name in names if name.endswith(".vfkey") and is_id(name[:-len(".vfkey")])]
        else:
            here = [sharing.user_key_path(layout, grant.grantee, grant.owner, fid)]
        found += [(fid, p) for p in here if p not in explained and p.exists()]
    return found


def listing(volume: Volume, path: bytes | None) -> list[dict]:
    """Shares by this user (of ``path``, or all) and with them."""
    shares, me = volume.sharing, volume.key.user_id
    if shares is None:
        return []
    only = volume.resolve(path).fid if path else None
    out = []
    for grant in shares.grants:
        if only is not None and grant.fid != only:
            continue
        node = volume.find(grant.fid)
        if grant.owner == me:
            where = name_to_str(volume.path_of(node)) if node else grant.fid
        elif any(r.recipient == me for r in shares.reaches(grant)) and node:
            where = name_to_str(node.links[0][1]) if node.links else grant.fid
        else:
            continue
        group = shares.groups.get(grant.grantee, {}) if grant.group else {}
        user = shares.users.get(grant.grantee, {})
        out.append({"path": where, "fid": grant.fid, "perm": grant.perm,
                    "owner": shares.users.get(grant.owner, {}).get("username", grant.owner),
                    "with": "@" + group.get("groupname", grant.grantee) if grant.group
                    else user.get("username", grant.grantee),
                    "mine": grant.owner == me})
    return sorted(out, key=lambda e: (not e["mine"], e["path"], e["with"]))
