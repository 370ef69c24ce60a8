"""Keys of her files that no share reaches now: found, so that rotation.py gives those files new keys.

A revocation (her unshare, a member's removal from a group) re-keys the files the revoking device
knows.  Another device of hers that has not heard of it yet may meanwhile make a file in the share
and seal its key to the member the share no longer reaches: it cannot know.  Every device that
knows the revocation looks over her key files when a key, share, group or user document arrives,
and at unlock: a key she sealed, of the file's current epoch, for a recipient no share over the
file reaches now, is taken back and the file gets a new key (attack round 39b (1), (2)).

Only a revocation counts: a member out of the group's body its owner signed, or a share that no
grant in force here explains and that this device did not see and keep (vault/model/freshness.py
``remembered``: one the store withholds, or holds refused as a replay, is still in force here).
A key of an older epoch opens only what its recipient could read then: left alone, so a replay of
one costs no re-key.  A key whose share this device never saw (its key came first) costs one
re-key; the share, once here, seals the new key to its recipients.  At a group's place only a key whose
record names that group always counts (``counts_as_removal``); one naming none (sealed before keys
named their group, or a user's share's key copied there at no cost to whoever copies it: attack
rounds 46c (2), 47b (1)) counts at most once a day per place, further ones said, and for no further
place once more places than the record keeps counted within the day (49b (2)).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from fusevault.vault.format.layout import Layout, is_id
from fusevault.vault.model import rotations_done, sharing
from fusevault.vault.model.nodes import Node
from fusevault.vault.model.sharing import KeyRecord
from fusevault.vault.volume import Volume

SUFFIX = ".vfkey"
log = logging.getLogger(__name__)

Found = tuple[str, str, Path, str | None]  # (fid, recipient, key path, the group's id or None)


def listed(layout: Layout, me: str) -> list[Found]:
    """Every key file in the vault folder that may be of a file of ``me``'s (a worker thread's job):
    ``users/<recipient>/shared/<me>_<fid>.vfkey`` and ``groups/<gid>/own/<fid>/keys/<recipient>.vfkey``
    (whose file is whose is the tree's to say).  Names that are no ids, and links, are passed over."""
    out: list[Found] = []
    users = layout.root / "users"
    prefix = f"{me}_"
    for recipient in _folders(users):
        if recipient == me:
            continue
        shared = users / recipient / "shared"
        for name in _files(shared):
            fid = name[len(prefix):-len(SUFFIX)]
            if name.startswith(prefix) and name.endswith(SUFFIX) and is_id(fid):
                out.append((fid, recipient, shared / name, None))
    groups = layout.root / "groups"
    for group in _folders(groups):
        own = groups / group / "own"
        for fid in _folders(own):
            keys = own / fid / "keys"
            for name in _files(keys):
                recipient = name[:-len(SUFFIX)]
                if name.endswith(SUFFIX) and is_id(recipient):
                    out.append((fid, recipient, keys / name, group))
    return out


def unreached(volume: Volume, found: list[Found]) -> list[tuple[Node, str, Path]]:
    """Of ``found``, the keys of her live files at a place no share over the file gives a key now
    (on the trio thread: the tree and the shares change there), nor one this device saw and did not
    take back: a grant whose body the store withholds, or holds refused (a replay of an older body,
    another user's at its id), is no revocation (tests/mount/test_trust_attack_round12.py,
    round28a.py), and a group's whose body is not here is no removal
    (tests/mount/test_group_removal_rekey.py)."""
    assert volume.sharing is not None and volume.key is not None
    me = volume.key.user_id
    fresh = volume.trust.fresh if volume.trust is not None else None
    # Each group's members as its owner signed them: one whose user document is missing (withheld)
    # is reached by nothing now, but is no removal, and costs no re-key.
    signed = {gid: dict(g.get("users") or {}) for gid, g in volume.sharing.groups.items()}
    given: dict[str, set[Path]] = {}
    out = []
    for fid, recipient, path, group in found:
        node = volume.find(fid)
        if node is None or node.owner != me or not node.links or not node.dek:
            continue  # another's, in the trash (restored under a new key), or not open here
        if fid not in given:
            given[fid] = {r.key_path(volume.layout, fid) for g in volume.covering(node)
                          for r in sharing.reaches(g, signed)}
        if path in given[fid] or (group is not None and group not in volume.sharing.groups):
            continue
        if group is not None and recipient not in signed[group] and not _group_shares(volume, node, group):
            # At a group's path over a file no share of that group reaches, nor ever did as this
            # device saw: no member's removal, a planted copy (a genuine key of another share moved
            # there): said, and no re-key, or anyone who writes the vault folder or the server had
            # her re-seal any file at will (attack round 40a (1)).
            volume.trust.alarms.warn("forged-key", str(path), f"a key file of {fid} at group {group}'s "
                                     "place, though no share of that group reaches the file: left alone")
            continue
        if group is None or recipient in signed[group]:
            # Not a member's removal (signed by the group's owner): the share that gave it went.  Taken
            # back by this device, the key is stale; only seen gone, it may be withheld.
            grantee = group or recipient
            if fresh is None or any(fresh.remembered(sharing.doc_id(fid_above, grantee))
                                    for fid_above in above(volume, node)):
                continue
        out.append((node, recipient, path))
    return out


def ahead(volume: Volume, found: list[Found]) -> set[str]:
    """Of ``found``, the files the tree does not hold (on the trio thread): a key document that came
    before its file (her other device seals a new file's keys before committing it; its later commits
    move the file past them in the changes feed).  The look passed such a key over; once its file
    arrives, absorbing.py asks another (attack round 54a (1))."""
    return {fid for fid, _, _, _ in found if volume.find(fid) is None}


def counts_as_removal(volume: Volume, fid: str, recipient: str, path: Path, record: KeyRecord,
                      recent: rotations_done.UnboundRekeys, now: float) -> bool:
    """Whether her genuine key ``record`` at ``path`` (``unreached``'s) is a reason to re-key: at a
    user's place any is; at a group's place one whose record names that group is (readers refuse one
    naming another).  One naming no group there is either a key sealed before keys named their group,
    for someone no share reaches now (a member removed since: the rotation pass catches that only on
    the device that sealed to him, or through the owner's request the server may withhold), or a
    user's share's key copied there, genuine (her signature names no place), at no cost to whoever
    copies it (attack round 46c (2)).  The record cannot tell them apart, so it counts at most once per
    place per ``rotations_done.UNBOUND_EVERY`` (``recent``: this device's re-keys for such keys, by
    place; the one counted now added at ``now``): a removed member loses the key (47b (1)), a copier
    costs her one re-key a day, and each further copy is said, not re-keyed.  Once more places than
    ``UNBOUND_KEEP`` were re-keyed for within the day (``recent.full_since``), no further place counts
    until the day is over (said once): a place the record no longer holds costs nothing (49b (2))."""
    group = sharing.key_group(path)
    if group is None or record.group == group:
        return True
    at = place_name(volume, path)
    assert volume.trust is not None
    if at in recent:
        volume.trust.alarms.warn("rekey", f"{path} (names no group)", f"a key of file {fid} for {recipient} "
                                 f"at group {group}'s place names no group, and this device re-keyed the "
                                 "file for a key there less than a day ago: a copy of a key of another share "
                                 "(or a key sealed before keys named their group): no re-key until then")
        return False
    if recent.full_since is not None:
        volume.trust.alarms.warn("rekey", f"{volume.layout.root} (keys naming no group)", "keys at groups' "
                                 f"places naming no group: this device re-keyed files for more than "
                                 f"{rotations_done.UNBOUND_KEEP} such places within a day (copies of keys of "
                                 "other shares?): no re-key for a further one until a day after that "
                                 f"(first: a key of file {fid} for {recipient} at group {group}'s place)")
        return False
    log.info("a key of file %s for %s at group %s's place names no group (sealed before keys named their "
             "group, or a copy of another share's key), for someone no share reaches now: taken back, "
             "the file gets a new key (at most once a day for this place)", fid, recipient, group)
    recent[at] = now
    return True


def place_name(volume: Volume, path: Path) -> str:
    """A key's place as its path under the vault folder (the same on every pass)."""
    try:
        return path.relative_to(volume.layout.root).as_posix()
    except ValueError:
        return path.as_posix()


def _group_shares(volume: Volume, node: Node, group: str) -> bool:
    """Whether a share of ``group`` reaches ``node`` now, or this device saw one that did (taken back
    since or not: a removal of the share, or of a member, is a revocation)."""
    if any(g.group and g.grantee == group for g in volume.covering(node)):
        return True
    fresh = volume.trust.fresh if volume.trust is not None else None
    return fresh is not None and any(fresh.knows(sharing.doc_id(fid, group)) for fid in above(volume, node))


def above(volume: Volume, node: Node) -> set[str]:
    """The node and every folder it sits in, all the way up (fids; each once)."""
    out: set[str] = set()
    todo = [node]
    while todo:
        each = todo.pop()
        if each.fid in out:
            continue
        out.add(each.fid)
        todo += [parent for ino, _ in each.links if (parent := volume.get(ino)) is not None]
    return out


def _folders(path: Path) -> list[str]:
    return [e.name for e in _entries(path) if is_id(e.name) and e.is_dir(follow_symlinks=False)]


def _files(path: Path) -> list[str]:
    return [e.name for e in _entries(path) if e.is_file(follow_symlinks=False)]


def _entries(path: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as entries:
            return list(entries)
    except OSError:  # none, or not to be read: nothing found there (its keys, if any, stay)
        return []
