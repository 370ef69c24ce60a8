"""Files others share with the user, inside the user's tree, and who may do what.

At load, every ``.vfkey`` the user can find (``users/<me>/shared/`` and the
key folders of their groups) gives a DEK; the node documents those DEKs open
become *guest* nodes in the Volume, next to the user's own.  A guest node
whose parent the user cannot open is a share's root: it is shown in a
virtual folder, ``shared/<owner>/`` for a share with the user, or
``groups/<group>/`` for one with a group, and its real parent is kept as a
*phantom* (no key, no name, never shown) so the node's document keeps its
links when the user writes it.

``Guests.perm`` answers what the user may do with a node: everything with
their own, nothing with a phantom, list a virtual folder, and for a guest
node the best permission of the shares on it or a folder above it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections import Counter, defaultdict
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from fusevault.crypto.identity import open_file_key, public_box, seal_file_key
from fusevault.crypto.keys import MasterKey
from fusevault.crypto.signing import signature_of, signer_of
from fusevault.encoding import b64d, b64e
from fusevault.errors import CorruptData, Forged, VaultError
from fusevault.store import Store
from fusevault.vault.format.layout import Layout
from fusevault.vault.model import grants as granting
from fusevault.vault.model import left_kept, names, sealed_for, shapes, sharing
from fusevault.vault.model.groups import GROUP, can_write
from fusevault.vault.model.nodes import VERSION, Node, node_from_doc, open_node_attrs, wrapping_ok
from fusevault.vault.model.sharing import Grant, Reach, gives_as_much
from fusevault.vault.model.trust import Trust
from fusevault.vault.model.users import USER

log = logging.getLogger(__name__)

OWN = "OWN"
LIST = "LIST"  # a virtual folder: listed, never changed
SHARED_DIR = names.SHARED
GROUPS_DIR = names.GROUPS


def _better(a: str | None, b: str) -> str:
    return b if a is None or (can_write(b) and not can_write(a)) else a


@dataclass
class Guests:
    """The shares a Volume knows, read from the store at load (and after a change)."""

    user_id: str
    grants: list[Grant]
    groups: dict[str, dict]  # group id -> Group document
    users: dict[str, dict]  # user id -> UserDetails document
    by_fid: dict[str, list[Grant]] = field(default_factory=dict)
    # Share roots reaching this user: fid -> their best permission.
    roots: dict[str, str] = field(default_factory=dict)
    virtual: set[int] = field(default_factory=set)
    phantoms: set[int] = field(default_factory=set)
    # Guest nodes whose share ended while the user had unsaved writes in
    # them: they keep their key and names (no path reaches them: their
    # permission is gone) until those writes are saved (vault/services/absorbing.py).
    leaving: set[int] = field(default_factory=set)
    # Files whose newest document could not be taken in yet (fids): a guest's
    # under a key not sealed to the user yet, or one whose version was being
    # committed here meanwhile.  Looked at again at the next change.
    awaiting: set[str] = field(default_factory=set)
    # (Share id, recipient) of each grant in force here that her newer re-key left out (``_left_out``):
    # taken back on another device, so sealed no key here either, a new file's included, until she
    # shares again (``seal_keys`` ``chosen``: her command's own grant; attack round 71d (1)).
    left: set[tuple[str, str]] = field(default_factory=set)
    # For each of ``left`` (and those kept on this device, vault/model/left_kept.py): the files whose
    # record of hers left it out (fid -> that record's epoch), kept on this device at each unlock: a
    # rollback of those records in the store undoes nothing (attack round 75a (2), (3)).
    left_seen: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    # Share ids the rotations running here take back (vault/services/rotation.py ``rotate``): each new
    # key's record lists those on a folder over its file (``sealed_for`` ``taken``, attack round 73a (4)).
    taking: Counter[str] = field(default_factory=Counter)
    # Her record of a node's key, kept when the node took a state under an older key of hers (fid -> the
    # record, her proof checked then: ``sealed_for.below``): a WRITE member's state under the key he held,
    # her own older state.  The re-key that state is owed lists what that record listed taken (and the
    # Group bodies it saw) though the node no longer holds it (vault/files/rekeying.py ``_held_record``):
    # else, on the device that unshared (``left`` empty there), the new key's record named nothing taken
    # and her other device, served the Share again, sealed the new key to it (attack round 76a (3)).
    below: dict[str, dict] = field(default_factory=dict)
    # The contents of another writer's state taken in (judged) while the file was busy here
    # (fid -> CONTENTS values, vault/tree/arrivals.py): a re-key seals these next, whatever
    # refused document is stored over them meanwhile (``reopen``).
    held: dict[str, dict] = field(default_factory=dict)
    # The user's pinned keys (vault/model/trust.py): only grants and groups signed
    # by their owners count, and keys are sealed to pinned keys only.
    trust: Trust | None = None
    # The Share documents as last checked (grants.py): a reload given what changed checks only that.
    checked: granting.SharesChecked = field(default_factory=granting.SharesChecked)
    # The document ids of ``grants`` (``knows``), indexed with them.
    _grant_ids: set[str] = field(default_factory=set, init=False, repr=False)

    def __post_init__(self) -> None:
        self._index()

    def reload(self, store: Store, changed: Iterable[dict] | None = None) -> None:
        """Read the shares, groups and users again (after a share or unshare).  ``changed``: the
        documents committed since the last read (vault/services/absorbing.py): of the Shares only those
        are read and checked again (``grants.verified_grants``).  Read whole and checked at every
        change of any user's document, for every seat, on the loop, 2,000 Shares cost a shared mount
        ~0.25 s a `config set` (attack round 69d (2))."""
        users = _users(store, self.trust)
        # Every changed document a Share's id names, or this seat's sharing state knows (``knows``), is
        # read again whatever its type now: a Share replaced by a body of another kind (or deleted with
        # that kind's type) stayed counted for the life of the seat (attack round 71c (1)).
        ids = None if changed is None else {
            d["_id"] for d in changed if isinstance(d.get("_id"), str)
            and (d.get("type") == sharing.SHARE or d.get("_deleted") or self.knows(d["_id"]))}
        self.grants, self.groups = granting.verified_grants(store, self.trust, self.checked, ids)
        self.users = users
        self._index()

    def _index(self) -> None:
        self.roots = {}
        self.by_fid = defaultdict(list)
        self._grant_ids = {sharing.doc_id(g.fid, g.grantee) for g in self.grants}
        for grant in self.grants:
            self.by_fid[grant.fid].append(grant)
        for reach in self.my_reaches():
            self.roots[reach.grant.fid] = _better(self.roots.get(reach.grant.fid), reach.perm)

    @classmethod
    def read(cls, store: Store, user_id: str, trust: Trust | None = None) -> Guests:
        users = _users(store, trust)
        checked = granting.SharesChecked()
        grants, groups = granting.verified_grants(store, trust, checked)
        return cls(user_id, grants, groups, users, trust=trust, checked=checked)

    def knows(self, doc_id: object) -> bool:
        """Whether ``doc_id`` is the id of a Share kept as checked (refused ones too), of a grant, Group
        or user document in force here: any change of the document stored there, of whatever type
        (another kind, a deletion, a bare one), is a change of shares, groups or users (attack round
        71c (1)).  A look each (``kinds`` builds the whole map)."""
        return isinstance(doc_id, str) and (
            doc_id in self.checked.by_id or doc_id in self.groups or doc_id in self.users
            or doc_id in self._grant_ids)

    def kinds(self) -> dict[str, str]:
        """The type of each Share, Group and user document in force here, by id.  A deletion that
        arrives bare (a peer's tombstone carries no ``type``) of one of these is a change of shares,
        groups or users; of any other id it changes nothing here, so it costs no reload."""
        known = {sharing.doc_id(g.fid, g.grantee): sharing.SHARE for g in self.grants}
        # Every Share kept as checked, a refused one too: its deletion is taken out of ``checked`` (69d (2)).
        known.update(dict.fromkeys(self.checked.by_id, sharing.SHARE))
        known.update(dict.fromkeys(self.groups, GROUP))
        known.update(dict.fromkeys(self.users, USER))
        return known

    def members(self) -> dict[str, dict[str, str]]:
        # Only users whose document is here: a missing one (withheld, or removed
        # under older code) stays in the signed document and is reached by nothing.
        return {gid: {u: p for u, p in (g.get("users") or {}).items() if u in self.users}
                for gid, g in self.groups.items()}

    def reaches(self, grant: Grant) -> list[Reach]:
        return sharing.reaches(grant, self.members())

    def my_reaches(self) -> list[Reach]:
        return [r for g in self.grants for r in self.reaches(g) if r.recipient == self.user_id]

    def givers(self) -> set[str]:
        """Users who share something with this user."""
        return {r.grant.owner for r in self.my_reaches()}

    def my_key_paths(self, layout: Layout, owner: str, fid: str) -> list[Path]:
        """Where a key of ``owner``'s node ``fid`` sealed to this user would be."""
        paths = [r.key_path(layout, fid) for r in self.my_reaches() if r.grant.owner == owner]
        return [p for p in dict.fromkeys(paths) if p.exists()]

    def public(self, user_id: str) -> X25519PublicKey | None:
        """The key to seal to: a current user's pinned key (never a document's newer one)."""
        doc = self.users.get(user_id)
        if not doc or not doc.get("public_box"):
            return None
        if self.trust is None:
            return public_box(doc)
        if (public := self.trust.box_key(user_id)) is None:
            self.trust.alarms.warn("unpinned", user_id, f"user {doc.get('username')!r} has no keys pinned "
                                   "on this device: nothing is sealed to them")
        return public

    def may_seal(self, node: Node, grant: Grant) -> bool:
        """Keys are sealed only for this user's own grants on this user's own
        nodes: never on someone else's behalf."""
        return node.owner == self.user_id and grant.owner == self.user_id

    # --- what a user may do

    def perm(self, node: Node, nodes: dict[int, Node]) -> str | None:
        if node.owner == self.user_id:
            return OWN
        if node.ino in self.virtual:
            return LIST
        best = None
        seen = 0
        while node is not None and node.ino not in self.phantoms and seen < 4096:
            if self.roots.get(node.fid) is not None and (perm := self._root_perm(node)) is not None:
                best = _better(best, perm)
            node = nodes.get(node.links[0][0]) if node.links else None
            seen += 1
        return best

    def writes(self, signer: str, owner: str, grants: Iterable[Grant]) -> bool:
        """Whether one of ``grants``, made by ``owner``, gives ``signer`` WRITE."""
        return any(grant.owner == owner and any(r.recipient == signer and can_write(r.perm)
                                                for r in self.reaches(grant)) for grant in grants)

    def writes_at(self, start: Node, get: Callable[[int], Node | None], signer: str, owner: str,
                  beside: Iterable[Node] = ()) -> bool:
        """WRITE on ``start`` for ``signer`` by a grant of ``owner``'s on it or, failing that, on every
        folder it sits in, all the way up: every way to the top passes such a grant.  ``beside``:
        folders it is to be named in too (the load's names another node held first, shown beside it
        once judged: linking.py ``_link_beside``).  A phantom (a folder this user cannot see) with no
        grant on the way says no.  The one rule a writer's change of another's node is judged by:
        a document of it (vault/tree/authorship.py ``writes_at``) and a seat's own write through the
        mount (vault/tree/access.py ``may``): a name in a folder he cannot see or write is a name
        his change rewrites too (attack round 73d (6)).  Each node is looked at once (a cycle ends
        the walk)."""
        seen, todo, granted = {start.ino}, [start], False
        while todo:
            each = todo.pop()
            # Asked at every write of a member's through the mount, each a walk to the top: the grants
            # looked at only where there are some (a folder chain 1,500 deep cost its writer's mkdir,
            # rm -r and her trash twice the time: round 24c's scene).
            if (grants := self.by_fid.get(each.fid)) and self.writes(signer, owner, grants):
                granted = True
                continue
            parents = [get(ino) for ino, _ in each.links]
            if each is start:
                parents += beside
            if not parents or each.ino in self.phantoms:
                return False  # the top (or a folder this user cannot see) with no grant on the way
            for parent in parents:
                if parent is None:
                    return False
                if parent.ino not in seen:
                    seen.add(parent.ino)
                    todo.append(parent)
        return granted

    def _root_perm(self, node: Node) -> str | None:
        """This user's best permission from shares on ``node`` made by its owner."""
        best = None
        for grant in self.by_fid.get(node.fid, ()):
            if grant.owner == node.owner:
                for reach in self.reaches(grant):
                    if reach.recipient == self.user_id:
                        best = _better(best, reach.perm)
        return best

    def covering(self, node: Node, nodes: dict[int, Node], behind: Container[str] = ()) -> list[Grant]:
        """Every share on ``node`` or a folder above it (the node's ACL), made
        by the owner of the node it names: another's grant there is no grant.
        Not above a node in ``behind`` (loaded in an older state than the
        device saw: the folder it names is no place the owner chose)."""
        return self._covering_walk(node, nodes, behind)[0]

    def _covering_walk(self, node: Node, nodes: dict[int, Node],
                       behind: Container[str] = ()) -> tuple[list[Grant], set[int]]:
        """``covering``, and the folders (inodes) its walk went through."""
        found: list[Grant] = [g for g in self.by_fid.get(node.fid, ()) if g.owner == node.owner]
        walked: set[int] = set()
        if node.ino in self.phantoms or not node.links or node.fid in behind:
            return found, walked
        # Above each of its names: a file hard-linked into two folders is shared by both (a folder has
        # one name, round 28c).  Else a re-key sealed it only to the first name's shares, and an unshare
        # of that folder took keys another share still gives (attack round 31a (4)).
        # Each folder once: names in every folder of a chain share the folders above (round 32a (1)).
        for parent, _ in node.links:
            folder, seen = nodes.get(parent), 0
            while folder is not None and seen < 4096 and folder.ino not in walked:
                walked.add(folder.ino)
                found += [g for g in self.by_fid.get(folder.fid, ()) if g.owner == folder.owner
                          and g not in found]
                if folder.ino in self.phantoms or not folder.links or folder.fid in behind:
                    break
                folder = nodes.get(folder.links[0][0])
                seen += 1
        return found, walked

    def new_readers(self, node: Node, parent: Node, nodes: dict[int, Node],
                    behind: Container[str] = ()) -> list[Grant] | None:
        """The shares a new name of ``node`` in the folder ``parent`` would add to those it has
        (``covering``): each share on ``parent`` or a folder above it, made by its owner, whose
        grantee (a user, or a group) the file's shares do not already give as much.  None: not
        known here, as the way up from ``parent`` ends (a folder this user cannot open, the top)
        before it meets a folder of the file's names: the owner's shares above are not known.

        A file with several names is sealed to every share above any of them (round 31a), so a
        new name is a new reader list: the owner's choice alone (attack round 45t (1))."""
        have, walked = self._covering_walk(node, nodes, behind)
        added: list[Grant] = []
        folder: Node | None = parent
        for _ in range(4096):
            if folder is None:
                return None
            if folder.ino in walked:
                break  # from here up, the shares are those of a name the file has
            added += [g for g in self.by_fid.get(folder.fid, ()) if g.owner == folder.owner]
            if folder.ino in self.phantoms or not folder.links or folder.fid in behind:
                return None
            folder = nodes.get(folder.links[0][0])
        else:
            return None
        return [g for g in added if not any(gives_as_much(e, g) for e in have)]

    # --- keys for recipients

    def seal_keys(self, layout: Layout, node: Node, grants: Iterable[Grant], key: tuple[bytes, int],
                  chosen: bool = False) -> int:
        """Seal ``key`` (the node's DEK and its epoch, taken on the trio thread:
        a worker thread reading them from the node could pair one key's epoch
        with another's DEK) for every recipient of ``grants``; never to one her
        newer re-key left out (``left``) unless ``chosen`` (her share command's
        grant: sharing again)."""
        dek, epoch = key
        written = 0
        for grant in grants:
            if not self.may_seal(node, grant):
                continue
            for reach in self.reaches(grant):
                public = self.public(reach.recipient)
                if public is None:
                    continue
                if not chosen and (sharing.doc_id(grant.fid, grant.grantee), reach.recipient) in self.left:
                    continue
                self.left.discard((sharing.doc_id(grant.fid, grant.grantee), reach.recipient))
                self.left_seen.pop((sharing.doc_id(grant.fid, grant.grantee), reach.recipient), None)
                path = reach.key_path(layout, node.fid)
                if _newer_key(path, epoch, self.trust, node.owner, node.fid, reach.recipient):
                    continue  # the owner gave the file a newer key meanwhile: never taken back
                sealed = seal_file_key(public, reach.recipient, node.owner, node.fid, epoch, dek)
                granting.write_signed_key(self.trust, path, node.owner, node.fid, reach.recipient, epoch,
                                          sealed, group=self.group_bound(grant))
                written += 1
        return written

    def key_epoch(self, layout: Layout, fid: str, grants: Iterable[Grant]) -> int:
        """The newest epoch of the keys of ``fid`` sealed to recipients of ``grants``."""
        top = 0
        for grant in grants:
            for reach in self.reaches(grant):
                try:
                    found = sharing.read_key(reach.key_path(layout, fid))
                except VaultError:
                    continue
                if found is not None:  # any key's epoch, even a forged one's: the next is above it
                    top = max(top, found[0])
        return top

    def fill_missing(self, layout: Layout, nodes: dict[int, Node],
                     keys: list[tuple[Node, bytes, int]], behind: Container[str] = (),
                     key: MasterKey | None = None) -> int:
        """Seal keys nobody has sealed yet (a member who joined a group later,
        a crash between a share and its keys) for every node whose DEK this
        user holds (``keys``: node, DEK, epoch, taken on the trio thread): so
        a group's new member needs nobody's passphrase.  A key is only ever
        created here, never replaced: the owner giving the file a new key
        meanwhile has the last word.  ``key``: her master key, by which a node's record counts only
        where her proof checks (``sealed_for.hers``: a member who writes the node makes none, attack
        round 73a (1)); None only where the records given are hers (a caller's own)."""
        # Every record is read first (``_left_out`` fills ``left``), then keys are sealed, never to a
        # grant in ``left`` (as in ``seal_keys``): a grant one file's record shows taken back is sealed no
        # other file either, one without a record or moved in since, whatever the order of the nodes
        # (attack round 72c (1)).
        todo: list[tuple[Node, bytes, int, Grant, str, Path, granting.GroupBinding | None]] = []
        for node, dek, epoch in keys:
            record = _record_of(node, dek, epoch, key)
            for grant in self.covering(node, nodes, behind):
                if not self.may_seal(node, grant):
                    continue
                for reach in self.reaches(grant):
                    path = reach.key_path(layout, node.fid)
                    bound = self.group_bound(grant)
                    if reach.recipient == self.user_id or _good_key(path, self.trust, node.owner, node.fid,
                                                                   reach.recipient, epoch, bound):
                        continue
                    if record is not None and self._left_out(record, node, grant, reach.recipient):
                        continue
                    todo.append((node, dek, epoch, grant, reach.recipient, path, bound))
        written = 0
        for node, dek, epoch, grant, recipient, path, bound in todo:
            if (sharing.doc_id(grant.fid, grant.grantee), recipient) in self.left:
                continue
            public = self.public(recipient)
            if public is not None:
                sealed = seal_file_key(public, recipient, node.owner, node.fid, epoch, dek)
                written += granting.write_signed_key(self.trust, path, node.owner, node.fid, recipient, epoch,
                                                     sealed, replace=os.path.exists(path), group=bound)
        return written

    def keep_below(self, key: MasterKey, node: Node, epoch: int) -> None:
        """Before ``node`` (hers) takes a state under the key of ``epoch``: below the held key's, her
        record of the held key kept aside for the re-key that state is owed (``below``, attack round
        76a (3)).  Call it with the node's key and record still the held ones."""
        kept = sealed_for.below(key, node.owner, node.fid, node.epoch, node.dek, node.sealed_for, epoch,
                                self.below.get(node.fid))
        if kept is not None:
            self.below[node.fid] = kept

    def note_left(self, layout: Layout, nodes: dict[int, Node], keys: list[tuple[Node, bytes, int]],
                  behind: Container[str] = (), key: MasterKey | None = None,
                  kept: Mapping[tuple[str, str], Mapping[str, int]] | None = None) -> set[tuple[str, str]]:
        """Fill ``left`` from her records of the keys held (``keys``, as ``fill_missing`` takes them),
        sealing nothing: run at unlock before any re-key (vault/services/rotation.py ``resume``), as a
        re-key seals to and records every grant in force here but those of ``left`` (``seal_keys``,
        vault/model/her_keys.py ``recipients``, vault/files/rekeying.py ``_taken``).  One made before it
        (her old request served again, a rollback, a debt) sealed the new key to a Share her other
        device took back, and its record named it, so the records that showed it taken back were gone
        for every device (attack round 74a (1)).  A recipient holding a good key of the epoch (her
        sharing again, whose command sealed it) is not left out, as in ``fill_missing``; the key files
        are read only for those her records leave out."""
        for node, dek, epoch in keys:
            record = _record_of(node, dek, epoch, key)
            if record is None:
                continue  # no record that counts: nothing left out (and no walk up for it)
            for grant in self.covering(node, nodes, behind):
                if not self.may_seal(node, grant):
                    continue
                for reach in self.reaches(grant):
                    if reach.recipient == self.user_id or not self._outside(record, grant, reach.recipient):
                        continue
                    if not _good_key(reach.key_path(layout, node.fid), self.trust, node.owner, node.fid,
                                     reach.recipient, epoch, self.group_bound(grant)):
                        self._left_out(record, node, grant, reach.recipient)
        return self._kept_left(layout, keys, kept or {}, key)

    def _kept_left(self, layout: Layout, keys: list[tuple[Node, bytes, int]],
                   kept: Mapping[tuple[str, str], Mapping[str, int]],
                   key: MasterKey | None) -> set[tuple[str, str]]:
        """Take into ``left`` each grant this device keeps taken back (``kept``: vault/model/left_kept.py,
        what the records of an earlier unlock here showed) that is in force here, unless her positive
        evidence on one of its kept files gives it again (``_judged``): a good key of hers for the
        recipient at the epoch her record left it out or later (her sharing again, on any device), her
        proven record of such an epoch sealing to it (``covers``), a Group body here newer than that
        record saw (a member added since); and no other of them holds her proven record of such an
        epoch without it.  Those are returned (no longer kept).  A file loaded without her record of
        that epoch (her older state served again, one rebuilt from unreadable documents, a member's
        state under the key he holds: none of them her evidence) resolves nothing: the grant stays left
        out, said (attack round 75a (2), (3))."""
        by_fid = {node.fid: node for node, _, _ in keys}
        in_force = {sharing.doc_id(g.fid, g.grantee): g for g in self.grants}
        resolved: set[tuple[str, str]] = set()
        reached: dict[str, dict[str, Reach]] = {}  # Share id -> recipient -> its reach (a group's once)
        for place, seen in kept.items():
            grant = in_force.get(place[0])
            if grant is not None and place[0] not in reached:
                reached[place[0]] = {r.recipient: r for r in self.reaches(grant)}
            reach = reached[place[0]].get(place[1]) if grant is not None else None
            if grant is None or reach is None:
                continue  # not in force here now: kept for when the store serves it again
            mine = self.left_seen.setdefault(place, {})
            for fid, epoch in seen.items():
                left_kept.witnessed(mine, place[0], fid, epoch)
            if place in self.left:
                continue  # the records here say it too
            judged = [self._judged(layout, grant, reach, by_fid.get(fid), epoch, key)
                      for fid, epoch in seen.items()]
            if False in judged and True not in judged:  # her newest evidence of it here decides
                resolved.add(place)
                self.left_seen.pop(place, None)
                continue
            self.left.add(place)
            if self.trust is not None:
                self.trust.alarms.warn(
                    "grant-record-lost", f"{place[0]}:{place[1]}",
                    f"the grant of {grant.fid} to {place[1]} is in force here; her re-key on another device "
                    "took it back (this device's record of it), and the store now serves its files "
                    "without her record of that (an older, unreadable or member's state): not sealed to "
                    "it; share again to give it")
        return resolved

    def _judged(self, layout: Layout, grant: Grant, reach: Reach, node: Node | None, epoch: int,
                key: MasterKey | None) -> bool | None:
        """Whether the file ``node`` (kept as one whose record of ``epoch`` left ``reach`` out) still
        shows it left out: False where her newer evidence there says otherwise (``_kept_left``), None
        where it shows nothing (not held here, or no record of hers of that epoch or later)."""
        if node is None or not node.dek:
            return None
        if _good_key(reach.key_path(layout, node.fid), self.trust, node.owner, node.fid, reach.recipient,
                     epoch, self.group_bound(grant)):
            return False  # a key of hers of that epoch or later: given again
        record = _record_of(node, node.dek, node.epoch, key) if node.epoch >= epoch else None
        if record is None:
            return None  # older, rebuilt, or a member's: not her evidence
        if sealed_for.covers(record, grant.owner, grant.fid, grant.grantee, reach.recipient):
            return False  # her newer re-key sealed to it: given again
        body = self.groups.get(grant.grantee) if grant.group else None
        # A member added since the body that record saw; nothing else undoes a grant she took back: not a
        # record that merely does not list it (her re-key of a file rebuilt here, whose Group body is the
        # older one served again, has no earlier record to carry the body she saw: ``_groups_seen``).
        return not (grant.group and sealed_for.group_newer(record, grant.fid, grant.grantee, body))

    def _outside(self, record: dict, grant: Grant, recipient: str) -> bool:
        """Whether the re-key that made the node's key (``record``: vault/model/sealed_for.py) left this
        recipient of ``grant`` out, as one taken back (``_left_out``)."""
        if sealed_for.covers(record, grant.owner, grant.fid, grant.grantee, recipient):
            return False
        body = self.groups.get(grant.grantee) if grant.group else None
        if grant.group and sealed_for.group_newer(record, grant.fid, grant.grantee, body):
            return False  # a member added since
        # A grant her re-keys never took back is not: her share made on another device before this re-key
        # reached it, a group shared since, a member whose user document the re-key lacked (73a (2), (4)).
        return sealed_for.left_out(record, grant.fid, grant.grantee, body)

    def _left_out(self, record: dict, node: Node, grant: Grant, recipient: str) -> bool:
        """Whether the re-key that made the node's key (``record``: vault/model/sealed_for.py) left this
        recipient of ``grant`` out: a grant (a Share, a Group body) in force here that her newer re-key
        did not seal to is one she took back on another device (the server serving it again here, attack
        round 71d (1)), said (once: ``note_left`` and ``fill_missing`` both ask), never sealed; a group's
        member added since (its body newer than the one the re-key saw) is not.  Sharing again seals the
        key itself (vault/services/share_ops.py)."""
        if not self._outside(record, grant, recipient):
            return False
        place = (sharing.doc_id(grant.fid, grant.grantee), recipient)
        left_kept.witnessed(self.left_seen.setdefault(place, {}), place[0], node.fid, record["epoch"])
        if place in self.left:
            return True
        self.left.add(place)
        if self.trust is not None:
            what = f"group {grant.grantee}" if grant.group else "share"
            subject = f"{sharing.doc_id(grant.fid, grant.grantee)}:{recipient}"
            self.trust.alarms.warn(
                "replayed-grant", subject,
                f"the {what} of {grant.fid} to {recipient} is in force here, but her newer key of file "
                f"{node.fid} (epoch {record['epoch']}) was made without it (taken back on another device, or "
                "the store serves an older body again): not sealed to it; share again to give it")
        return True

    def group_bound(self, grant: Grant) -> granting.GroupBinding | None:
        """For a key sealed through a group share: the group, its owner as this user's pins admitted its
        body (``verified_grants``) and her signing key as pinned, signed into the key: the key mirror
        (which has no pins) checks that owner's bodies, and so her removal of the member, under exactly
        that key, never the store's user document of hers (the server's to replace: attack round 44b
        (1), 46c (1)).  Without a pin of her key (none: no trust), the two ids.  None for a user's share."""
        owner = (self.groups.get(grant.grantee) or {}).get("owner") if grant.group else None
        if not isinstance(owner, str):
            return None
        pin = self.trust.pin(owner) if self.trust is not None else None
        public = _canonical_key(pin.sign) if pin is not None else None
        return (grant.grantee, owner) if public is None else (grant.grantee, owner, public)

    def held_keys(self, nodes: dict[int, Node]) -> list[tuple[Node, bytes, int]]:
        """(node, DEK, epoch) of every node whose key this user holds, for ``fill_missing``."""
        return [(node, node.dek, node.epoch) for node in nodes.values()
                if node.dek and node.ino not in self.virtual and node.ino not in self.phantoms]


def _record_of(node: Node, dek: bytes, epoch: int, key: MasterKey | None) -> dict | None:
    """The node's record of its key at ``epoch`` (a copy) if it counts: hers where ``key`` is given
    (``sealed_for.hers``: a member who writes the node makes none, attack round 73a (1))."""
    record = sealed_for.in_force(node.sealed_for, epoch)
    if record is not None and key is not None and not sealed_for.hers(key, node.fid, epoch, dek,
                                                                      node.sealed_for):
        return None  # not hers: as a node with no record
    return record


def grants_ok(trust: Trust | None, found: sharing.KeyRecord, owner: str, fid: str, recipient: str,
              path: Path) -> bool:
    """Whether the key at ``path`` was signed by the file's owner for ``recipient``, at its place."""
    return trust is None or granting.key_signed(trust, found, owner, fid, recipient, sharing.key_group(path))


def _newer_key(path: Path, epoch: int, trust: Trust | None, owner: str, fid: str, recipient: str) -> bool:
    """Whether the owner's genuine key there is newer (a forged one never is)."""
    try:
        found = sharing.read_key(path)
    except VaultError:
        return False
    return (found is not None and found[0] > epoch and found.sig is not None
            and grants_ok(trust, found, owner, fid, recipient, path))


def _canonical_key(public_b64: str) -> str | None:
    """A pinned signing key as a key record names it (``sharing.owner_key_ok``), or None."""
    try:
        canonical = b64e(b64d(public_b64))
    except (ValueError, TypeError):
        return None
    return canonical if sharing.owner_key_ok(canonical) else None


def _good_key(path: Path, trust: Trust | None, owner: str, fid: str, recipient: str, epoch: int,
              bound: granting.GroupBinding | None = None) -> bool:
    """A key there the owner signed (an unsigned or forged one is made again),
    of this epoch or a newer one.  One of this epoch at a group's place that does not name ``bound`` (the
    group, its owner and her key as this user pins them now: ``Guests.group_bound``) is signed again with
    it: one signed before the group was bound (``KeyRecord.group``, 44b (1)) or before its owner's key was
    (``KeyRecord.group_owner_key``, 46c (1)), or before records were stamped (``KeyRecord.signed_at_us``,
    50c (1): the mirror keeps, of one epoch, the record signed last; an unstamped one ranks below it): the
    key mirror takes the group owner's removal of its recipient only under the key signed in.  At most once
    per key per unlock (``fill_missing`` runs at unlock); one naming the group is signed again only when
    ``bound`` names a key (nothing better else)."""
    try:
        found = sharing.read_key(path)
    except VaultError:
        return False
    if found is None or (found.sig is None and trust is not None):
        return False  # none, or from before signatures: sealed again, signed
    if trust is not None and bound is not None and found[0] == epoch and sharing.key_group(path) \
            and (found.group is None or (len(bound) == 3 and (granting.group_of(found) != bound
                                                              or found.signed_at_us is None))):
        return False
    return found[0] >= epoch and grants_ok(trust, found, owner, fid, recipient, path)


def key_files(layout: Layout, user_id: str, groups: dict[str, dict]) -> dict[str, list[Path]]:
    """fid -> the ``.vfkey`` files sealed to this user (listed, not probed per file)."""
    found: dict[str, list[Path]] = defaultdict(list)
    shared = layout.user_dir(user_id) / "shared"
    for entry in _listdir(shared):
        if entry.endswith(".vfkey") and "_" in entry:
            found[entry[:-6].split("_", 1)[1]].append(shared / entry)
    for gid, group in groups.items():
        if user_id not in (group.get("users") or {}):
            continue
        own = layout.group_dir(gid) / "own"
        for fid in _listdir(own):
            path = own / fid / "keys" / f"{user_id}.vfkey"
            if path.exists():
                found[fid].append(path)
    return found


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def open_guest(doc: dict, key: MasterKey, paths: list[Path], trust: Trust | None = None,
               store: Store | None = None, held: Node | None = None,
               memory: WrappingMemory | None = None) -> tuple[Node, list] | None:
    """A node of another owner, opened with a key sealed to this user by
    that owner (signed); None if none opens it.  Its ``wrapped`` is the
    owner's own (``carried_wrapping``: ``held`` is the node this device holds
    at its id, ``store`` where her signed versions are looked for, ``memory``
    this device's ledger)."""
    fid, owner = doc["_id"], doc["owner"]
    for path in paths:
        try:
            found = sharing.read_key(path)
            if found is None or found[0] != doc.get("epoch", 0):
                continue  # a key of an older epoch: revoked since
            if not grants_ok(trust, found, owner, fid, key.user_id, path):
                continue  # not sealed by the file's owner (said by key_signed)
            dek = open_file_key(key.identity, owner, fid, found[0], found[1])
            attrs = open_node_attrs(doc, dek)
            node, links = node_from_doc(doc, dek, attrs)
        except VaultError as err:
            log.warning("a shared key for %s does not open it: %s", fid, err)
            continue
        node.wrapped = carried_wrapping(doc, node, trust, store, held, memory)
        return node, links
    return None


# The owner's signed versions of a file looked at for her wrapping of its key (``carried_wrapping``).
WRAPPING_VERSIONS = 64


class WrappingMemory(Protocol):
    """Where this device keeps the owner's wrappings found under her signature (vault/model/ledger.py)."""

    def wrapping_signed(self, fid: str, owner: str, epoch: int) -> dict[str, str] | None: ...

    def saw_wrapping(self, fid: str, owner: str, epoch: int, wrapping: dict[str, str]) -> None: ...

    def wrapping_looked(self, fid: str, owner: str, seen: bytes) -> bool: ...


class MembersWrapping(dict):
    """A member's wrapping, carried for want of one the owner signed (``carried_wrapping``): a held
    node's ``wrapped`` of this kind is no reason not to look for hers again.  ``nodes.key_fields``
    copies it into a plain dict: nothing of the mark is stored."""


def wrapping_of(doc: dict) -> dict:
    """A document's wrapping of its file's key for the owner (bounded by ``nodes.wrapping_ok``)."""
    return {k: doc[k] for k in ("en_file_dek", "owner_dek") if k in doc}


def carried_wrapping(doc: dict, fresh: Node, trust: Trust | None, store: Store | None,
                     held: Node | None, memory: WrappingMemory | None = None) -> dict:
    """The owner's wrapping of the file's key that this user's commits of it carry (``nodes.key_fields``),
    ``fresh`` being opened from ``doc``: the document's own when its owner signed it (or nothing is
    signed); else the one this device found under her verified signature at that key epoch (``memory``,
    this device's ledger: kept whatever the store says since), else the one held here at that epoch when
    taken from a state she signed, else one of her signed versions' at it, else, none found (a folder,
    loaded after a member's state), the document's, marked as a member's (``MembersWrapping``).
    No member's device can check a wrapping (it is sealed under the owner's master key): taken from any
    signer's state, one WRITE member's bad text was carried by every other member's next commit, each
    refused by the owner's device as a forgery of theirs (attack round 53c (2)).  Hers found in the
    store only, one revision of a member's over her version document hid it (56b (3)); and a member's,
    carried for want of hers and then held, was carried still after hers arrived (56b (1)).  What the
    ledger keeps answers for a state of the owner whose signature it was found under only: a member's
    own file's wrapping, kept at its id, was carried for another owner's file he made there later (58b
    (1))."""
    own = wrapping_of(doc)
    try:
        signer = signer_of(doc)
    except Forged:
        signer = None  # never admitted: not opened
    if trust is None or signer is None:
        return own
    if signer == doc.get("owner"):
        _remember(memory, doc, fresh, trust, own)
        return own
    kept = memory.wrapping_signed(fresh.fid, fresh.owner, fresh.epoch) if memory is not None else None
    if kept is not None:
        return kept
    if held is not None and held.wrapped and not isinstance(held.wrapped, MembersWrapping) \
            and held.epoch == fresh.epoch and held.owner == fresh.owner:
        return held.wrapped
    if store is not None and (found := _signed_wrapping(doc, fresh, trust, store, memory)) is not None:
        return found
    log.info("%s: no wrapping of its key its owner signed at epoch %d is held: a member's is carried",
             fresh.fid, fresh.epoch)
    return MembersWrapping(own)


def _remember(memory: WrappingMemory | None, doc: dict, fresh: Node, trust: Trust, wrapping: dict) -> None:
    """Keep ``wrapping``, of ``doc`` naming the owner as its signer, if her signature holds and none of
    hers is kept at the epoch yet (a signature check at most once per file and epoch: mostly a digest
    looked up, the load or the arrival having checked it already)."""
    if (memory is None or not wrapping
            or memory.wrapping_signed(fresh.fid, fresh.owner, fresh.epoch) is not None):
        return
    try:
        if trust.verify(doc, author=fresh.owner) != fresh.owner:
            return
    except Forged:
        return
    memory.saw_wrapping(fresh.fid, fresh.owner, fresh.epoch, wrapping)


def _signed_wrapping(doc: dict, fresh: Node, trust: Trust, store: Store,
                     memory: WrappingMemory | None = None) -> dict | None:
    """The wrapping of a version of the file its owner signed at ``fresh``'s epoch, or None.

    A version's ``by`` naming her is no signature of hers (anyone writes it): 65 altered copies of her
    version, each naming her and failing, hid her own past the bound (attack round 55a (1)).  So the
    bound counts signatures checked (the work a flood costs), and what cannot be flooded is looked at
    first: the version the state's ``head`` names (her contents' version when no writer since changed
    them: one document read), then any of her versions whose signature this device checked before
    (``Trust.verified_before``: a hash each, no signature checked), then the others in the store's
    order, at most ``WRAPPING_VERSIONS`` signatures checked in all, each once.  Only versions naming her
    are checked at all: a member's carry her wrapping too, and 64 of them hid hers (round 53).
    With ``memory``: the versions looked at with none of hers found are not looked at again while
    they stay the same (each member's state arriving looked again, up to 64 checks each: 56b (1)),
    and hers found is kept (``WrappingMemory.saw_wrapping``)."""
    candidates = {v["_id"]: v for v in store.by_file(VERSION, fresh.fid)
                  if isinstance(v.get("_id"), str) and _may_be_hers(v, fresh)}
    head = _head_version(store, fresh)
    first = [head] if head is not None and head.get("type") == VERSION and head.get("fid") == fresh.fid \
        and _may_be_hers(head, fresh) else []
    order = [*first, *(v for k, v in candidates.items() if not first or k != first[0].get("_id"))]
    if memory is not None and memory.wrapping_looked(fresh.fid, fresh.owner, _looked_at(order)):
        return None
    found = _hers_among(order, fresh, trust)
    if found is not None and memory is not None:
        memory.saw_wrapping(fresh.fid, fresh.owner, fresh.epoch, found)
    return found


def _hers_among(order: list[dict], fresh: Node, trust: Trust) -> dict | None:
    for version in order:
        if trust.verified_before(version, fresh.owner):
            return wrapping_of(version)
    for version in order[:WRAPPING_VERSIONS]:
        try:
            if trust.verify(version, author=fresh.owner) == fresh.owner:
                return wrapping_of(version)
        except Forged:
            continue
    return None


def _looked_at(order: list[dict]) -> bytes:
    """A digest of the versions a look checks (id, revision, signature each, in order)."""
    digest = hashlib.sha256()
    for version in order:
        for part in (version.get("_id"), version.get("_rev"), signature_of(version)):
            text = part if isinstance(part, str) else ""
            digest.update(len(text).to_bytes(8, "big") + text.encode("utf-8", "surrogatepass"))
    return digest.digest()


def _head_version(store: Store, fresh: Node) -> dict | None:
    """The document the state's ``head`` names, None if there is none or its row does not read (a
    store writer's ``[]``: raised, it stopped the member's whole unlock, attack round 55r (1); the
    versions ``by_file`` answers are still looked at, as it leaves such a row out too)."""
    if not isinstance(fresh.head, str):
        return None
    try:
        return store.get(fresh.head)
    except CorruptData as err:
        log.warning("%s: the version its state names does not read: %s", fresh.fid, err)
        return None


def _may_be_hers(version: dict, fresh: Node) -> bool:
    """Whether ``version`` says it is the owner's version of ``fresh``'s file at its epoch and carries a
    well-shaped wrapping (nothing verified).  Her signed version of another file was kept as her
    wrapping of this one when a store answered ``by_file`` with it (attack round 57b (1))."""
    wrapping = wrapping_of(version)
    return (version.get("fid") == fresh.fid and version.get("owner") == fresh.owner
            and version.get("epoch", 0) == fresh.epoch
            and _names_as_signer(version, fresh.owner) and bool(wrapping) and wrapping_ok(wrapping))


def _names_as_signer(doc: dict, user: str) -> bool:
    """Whether ``doc`` says ``user`` signed it (not verified; a malformed signature says no one)."""
    try:
        return signer_of(doc) == user
    except Forged:
        return False


def virtual_dir(ino: int, fid: str, like: Node) -> Node:
    node = Node(ino, fid, "", b"", stat.S_IFDIR | 0o555, like.uid, like.gid)
    node.atime = node.mtime = node.ctime = node.btime = like.ctime
    return node


def _users(store: Store, trust: Trust | None) -> dict[str, dict]:
    """The well-formed user documents by id, each observed by ``trust`` (changed keys are said)."""
    alarms = trust.alarms if trust is not None else None
    users = {u["_id"]: u for u in shapes.well_formed(store, USER, alarms)}
    if trust is not None:
        trust.observe(users.values())
    return users


def phantom(ino: int, fid: str) -> Node:
    """A folder a shared node names that this user does not hold: whose it is, nobody here knows (the
    naming node's owner names any id): no owner, so no grant counts on it and nothing is judged against
    one, until its own document makes it real (vault/tree/phantoms.py; attack round 70a (1))."""
    return Node(ino, fid, "", b"", stat.S_IFDIR | 0o000, 0, 0)
