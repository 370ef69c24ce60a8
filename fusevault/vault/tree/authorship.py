"""Who may write a node: the check every node and version document passes before it is used.

Every node and FilesMetaData document is signed by the user who wrote it
(``nodes.signed``, the last step before it is put).  A reader takes one in
only if (``Authorship``):

- its signature holds under a key the reader trusts (``Trust.verify``; an
  unsigned one only from an author who has signed nothing yet: vault format 2);
- its signer is the node's owner, or holds WRITE on the node by a grant of
  that owner (a Share on the node or a folder above it, as ``Guests``
  reads them: the grants work makes Guests ignore unsigned or forged ones).
  WRITE where it is: a grant on the node, or on every folder it sits in (all
  the way up).  For a node this reader already holds, the signer must also
  hold WRITE on every folder a new name of it goes into or an old one leaves
  (the node's own grant, READ or WRITE, puts no name in a folder);
- a document never puts a folder inside itself (vault/tree/arrivals.py,
  vault/tree/loading.py);
- a node is named only in folders of its own owner (or in a phantom, shown
  nowhere), whoever signs the name and whatever grant he holds (``may_name``:
  attack rounds 69b, 70a (4) (7), 71a (2) (3)), on arrival and at unlock;
- judged by the owner's own tree: a writer's document gives her file (or a file
  under her folder it moves) no name whose folder's shares give it to a user or
  group its names do not, with as much (a link, a move keeping another name, a
  new file named in several folders): who reads her file is hers to choose
  (attack round 45t (1)); at her unlock, such a name is shown, no key sealed by it;
- a new file's ``owner_dek`` (sealed to the owner's public key, which anyone
  can do) comes from a WRITE grantee, at key epoch 0, and never gives a node
  the owner already holds (or has wrapped versions of) another DEK.

The clear fields (``owner``, ``delete``, ``epoch``, ``fid``, ``_id``) are
signed like the rest.  A document whose ``delete`` was set or whose ``owner``
was changed in the store, and whose signature holds with the field as it was
(``delete`` false, ``owner`` its signer), is taken in as it was signed, with
an alarm: the file stays.  Anything else refused is not acted on: at unlock
the user's own node is rebuilt from her own material (vault/tree/undeleting.py,
issue 22), another owner's is left out (its folder lists the rest), while mounted the node
keeps what it had; an alarm names the file id and why (``fusevault status``,
the log).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Container, Iterable
from typing import TYPE_CHECKING, Protocol

from fusevault.crypto.signing import signature_of, signer_of
from fusevault.encoding import b64d
from fusevault.errors import Forged, VaultError
from fusevault.store import Store
from fusevault.vault.model import placement
from fusevault.vault.model.history import version_parents
from fusevault.vault.model.ledger import apart
from fusevault.vault.model.names import name_to_str
from fusevault.vault.model.nodes import ROOT_INODE, VERSION, Node, doc_dek, node_from_doc, open_node_doc
from fusevault.vault.model.sharing import gives_as_much
from fusevault.vault.model.trust import Trust

if TYPE_CHECKING:
    from fusevault.vault.tree.guests import Guests

log = logging.getLogger(__name__)

# How many versions of a writer's concurrent edit (his saves while apart) are vouched for, to copy it.
COPY_VERSIONS = 256

# ``leaf_verdict``: a concurrent revision is a state of the file, a writer's edit kept only as a copy,
# or refused.
KEPT, COPY, REFUSED = "kept", "copy", "refused"

# (node, its links as (parent fid, name), who signed it, a guest's)
Foreign = tuple[Node, list[tuple[str, bytes]], str, bool]


class Held(Protocol):
    """What judging asks of the tree the documents are for (vault/tree/namespace.py
    is one; the Volume facade answers the same): declared here, since the
    tree holds an Authorship and this module is below it."""

    sharing: Guests | None

    def find(self, fid: str | None) -> Node | None: ...

    def get(self, ino: int | None) -> Node | None: ...

    def covering(self, node: Node) -> list: ...

    def note_moved(self, node: Node, before: list) -> None: ...

    def widening(self, node: Node, into: Node,
                 leaving: Container[tuple[int, bytes]] = ()) -> tuple[Node, list | None] | None: ...


class Seen(Protocol):
    """What this device saw of the user's own files (vault/model/ledger.py's
    Ledger is it): declared here, as with ``Held``."""

    def was_at(self, fid: str) -> list[str] | None: ...

    def left_from(self, fid: str) -> list[str] | None: ...

    def place_unknown(self, fid: str) -> bool: ...

    def trashed_by_owner(self, fid: str) -> bool: ...

    def newer(self, fid: str, seq: tuple[str, int] | None) -> bool: ...

    def saw_placed(self, fid: str, parents: list[str], seq: tuple[str, int]) -> None: ...

    def written_while_granted(self, vid: str, signer: str, signature: str) -> bool: ...

    def granted_write(self, vid: str, signer: str, signature: str) -> None: ...


class _Beside:
    """A tree as it would hold ``hers`` in place of the node it loaded for the same file
    (``loaded_copy``); every other question goes to the tree."""

    def __init__(self, volume: Held, hers: Node) -> None:
        self.volume, self.hers = volume, hers
        self.sharing = volume.sharing

    def find(self, fid: str | None) -> Node | None:
        return self.hers if fid == self.hers.fid else self.volume.find(fid)

    def get(self, ino: int | None) -> Node | None:
        return self.volume.get(ino)

    def covering(self, node: Node) -> list:
        return self.volume.covering(node)

    def note_moved(self, node: Node, before: list) -> None:
        self.volume.note_moved(node, before)

    def widening(self, node: Node, into: Node,
                 leaving: Container[tuple[int, bytes]] = ()) -> tuple[Node, list | None] | None:
        return self.volume.widening(node, into, leaving)


def said_signer(doc: dict) -> str | None:
    """Who a document says signed it (unchecked; None if unsigned or malformed)."""
    try:
        return signer_of(doc)
    except Forged:
        return None


class Authorship:
    """One unlocked user's judge of node and version documents."""

    def __init__(self, trust: Trust, store: Store) -> None:
        self.trust = trust
        self.store = store
        self.user_id = trust.user_id
        # What this device saw of the user's own files (the ledger), set once
        # the ledger is open; and the vault the owner's placement stamps name.
        self.seen: Seen | None = None
        self.vault_id = ""
        # The owner's stamps taken (fid -> (its signature, its parents)): asked
        # again (a refused deletion put back), the same stamp gives the same place.
        self._stamps: dict[str, tuple[str, list[str]]] = {}
        self._quiet = 0  # ``leaf_verdict(said=False)`` under way: its refusals were said already

    def was_at(self, fid: str) -> list[str] | None:
        """The parents (fids) this device last saw the user's own file in, if known."""
        return None if self.seen is None else self.seen.was_at(fid)

    def was_placed(self, volume: Held, fid: str, placed: dict | None) -> list[str] | None:
        """Where the owner last put her file ``fid``, as far as this device can
        tell: the folders her stamp ``placed`` names (carried by a grantee's
        document: vault/model/placement.py) if it holds under her pinned key for
        this vault and file, names only folders of hers this load holds, and is
        newer than every state of the file this device saw from the device it
        names (then remembered, with the place, by the ledger: the same stamp
        carried again is no longer news, so a grantee can never carry an older
        stamp back over a move this device saw); else where this device last
        saw it (``was_at``)."""
        taken = self._stamp_taken(volume, fid, placed)
        return self.was_at(fid) if taken is None else taken

    def _stamp_taken(self, volume: Held, fid: str, placed: dict | None) -> list[str] | None:
        """The folders the owner's stamp ``placed`` puts her file in, if it is
        followed (``was_placed``); else None."""
        if placed is None or self.seen is None:
            return None
        sig = placed.get("sig")
        if (taken := self._stamps.get(fid)) is not None and taken[0] == sig and self.was_at(fid) == taken[1]:
            return taken[1]  # the same stamp, and no other place seen since (a move here ends it)
        public = self.trust.sign_key(self.user_id)
        found = None if public is None else placement.holds(public, self.vault_id, self.user_id, fid, placed)
        if found is None or not self.seen.newer(fid, found[1]):
            return None
        parents, seq = found
        if not parents:
            return None  # she stamps no place in no folder: never judged by one
        phantoms = volume.sharing.phantoms if volume.sharing is not None else ()
        for parent_fid in parents:
            parent = volume.find(parent_fid)
            if parent is None or not parent.is_dir or parent.owner != self.user_id or parent.ino in phantoms:
                return None  # a folder not hers, or not held here: not judged by it
        self._stamps[fid] = (str(sig), parents)
        self.seen.saw_placed(fid, parents, seq)
        return parents

    def placed_in(self, doc: dict) -> dict | None:
        """The owner's stamp a document of her file carries, if it opens under her key."""
        try:
            _, attrs = open_node_doc(doc, self.trust.key)
        except VaultError:
            return None
        return placement.shaped(attrs.get("placed"))

    def deny(self, doc: dict, why: str) -> None:
        self._alarm(doc, why)

    def _alarm(self, doc: dict, why: str) -> None:
        if self._quiet:
            return
        fid = str(doc.get("fid") or doc.get("_id"))
        self.trust.alarms.warn("forged-write", fid, f"refused a change of file {fid}: {why}")

    # --- the signature, and the clear fields it binds

    def concerns(self, doc: dict, givers: set[str] | frozenset = frozenset()) -> bool:
        """Whether this user takes ``doc`` in: theirs, signed by them, or a giver's."""
        owner = doc.get("owner")
        return owner == self.user_id or owner in givers or said_signer(doc) == self.user_id

    def admit(self, doc: dict) -> tuple[dict, str] | None:
        """(the document as its signer signed it, the signer), or None: refused, and said."""
        owner = doc.get("owner")
        try:
            return doc, self.trust.verify(doc, author=owner if isinstance(owner, str) else None)
        except Forged as err:
            why = str(err)
        restored = self._as_signed(doc)
        if restored is not None:
            fields = [k for k in ("delete", "owner") if restored[0].get(k) != doc.get(k)]
            if not self._quiet:
                self.trust.alarms.warn("forged-write", str(doc.get("_id")),
                                       f"the clear field(s) {', '.join(fields)} of file {doc.get('_id')} "
                                       "were changed in the store: the values its author signed are used")
            return restored
        self._alarm(doc, why)
        return None

    def _as_signed(self, doc: dict) -> tuple[dict, str] | None:
        """The document with ``delete`` and ``owner`` put back as signed, if that is what changed."""
        by = said_signer(doc)
        if by is None:
            return None
        tries = []
        if doc.get("delete") is not False:
            tries.append({"delete": False})
        if doc.get("owner") != by:
            tries.append({"owner": by})
        if len(tries) == 2:
            tries.append({**tries[0], **tries[1]})
        for change in tries:
            candidate = {**doc, **change}
            try:
                return candidate, self.trust.verify(candidate)
            except Forged:
                continue
        return None

    # --- WRITE

    def writes(self, sharing: Guests | None, signer: str, owner: str, grants: list) -> bool:
        return sharing is not None and sharing.writes(signer, owner, grants)

    def may_write(self, volume: Held, signer: str, owner: str, fid: str,
                  links: list[tuple[str, bytes]] | None = None, node: Node | None = None, *,
                  placed: bool = False, stamp: dict | None = None, beside: Iterable[Node] = ()) -> bool:
        """Whether ``signer`` holds WRITE on ``owner``'s node ``fid`` for a
        document naming ``links`` (parent fid, name; None: its names are not
        what is judged).

        Held here: he must write it as it stands (``writes_at``: a grant on
        it, or on every folder it sits in now), every folder a new link puts
        it in, and every folder a link it loses leaves.  Not held: every
        folder the document puts it in.  ``placed`` (at unlock: the tree was
        built from the documents themselves, no link is known to be new):
        where it sits, and the folders ``beside`` its names another node
        held first put it in once judged (linking.py ``_link_beside``;
        judged from none, a writer's file given her file's name left the
        tree: attack round 73d (3)).  A grant on the node never lets a new name go into a
        folder he does not write, nor does a folder he writes make the
        node's own READ a WRITE.  A folder this user cannot open (a phantom,
        or not held) puts nothing here, and is not judged.  ``stamp``: the
        owner's placement stamp the document carries; followed
        (``was_placed``), it is where the node is judged from, not where
        this tree holds it: she moved it on another device (of which this
        tree saw nothing)."""
        sharing = volume.sharing
        if sharing is None:
            return False
        held = node if node is not None and volume.get(node.ino) is node else None
        if signer != owner and self._place_unknown(owner, fid):
            # Her file whose place is not known here (her deletion came from another device, where she
            # may have moved it out of his reach first): a writer's document that has it named
            # somewhere is judged as from nowhere he writes (attack round 23a (3)).
            return False
        if signer != owner and self._back_from_owners_trash(volume, owner, fid, links, held, stamp):
            return False
        if placed:
            return held is not None and self.writes_at(volume, signer, owner, held, beside)
        if (held is not None and links is not None and owner == self.user_id and signer != owner
                and self._names_widen(volume, signer, held, links)):
            return False
        if held is not None and links is not None and owner == self.user_id and (
                parents := self._stamp_taken(volume, fid, stamp)) is not None:
            return self._writes_from(volume, signer, owner, parents, links)
        if held is not None and not self.writes_at(volume, signer, owner, held):
            return False
        own = self.writes(sharing, signer, owner, list(sharing.by_fid.get(fid, ())))
        if links is None:
            return held is not None or own
        now: dict[tuple[str, bytes], Node] = {}
        for ino, name in held.links if held is not None else ():
            if (parent := volume.get(ino)) is not None and ino not in sharing.phantoms:
                now[(parent.fid, name)] = parent
        named = {(parent, name) for parent, name in links if isinstance(parent, str)}
        new = [parent for fid_, name in named if (fid_, name) not in now
               if (parent := volume.find(fid_)) is not None and parent.ino not in sharing.phantoms]
        gone = [parent for key, parent in now.items() if key not in named]
        if held is None and owner == self.user_id:
            # Not in the tree (in the trash, say): the folders it was last seen
            # in here are the ones it leaves.
            gone = self._left(volume, self.was_at(fid), {fid_ for fid_, _ in named})
        if held is None and not new:
            return own  # placed nowhere here (its folder may come later: judged again then)
        if (held is None and owner == self.user_id and signer != owner
                and not self._one_gives_all(volume, new)):
            self._alarm({"_id": fid}, f"signed by {signer}, a new file named in folders whose shares give "
                        "it to others than one name would: refused (only its owner adds such a name)")
            return False
        return all(self.writes_at(volume, signer, owner, parent) for parent in [*new, *gone])

    def _names_widen(self, volume: Held, signer: str, held: Node, links: list[tuple[str, bytes]]) -> bool:
        """Whether a writer's document of this user's file ``held`` gives it (or a file under the
        folder it is) a name in a folder whose shares give it to others than its names do: who reads
        her file is hers to choose, the check a writer's own device makes (vault/tree/namespace.py
        ``_may_add_name``, attack round 45t (1)), made again here, as a device of his that skips it
        signs the same document.  A folder not held here is judged elsewhere (``may_write``).  Said."""
        sharing = volume.sharing
        phantoms = sharing.phantoms if sharing is not None else ()
        names = {(parent.fid, name): (ino, name) for ino, name in held.links
                 if (parent := volume.get(ino)) is not None}
        named = {(parent, name) for parent, name in links if isinstance(parent, str)}
        # The names it leaves, when it keeps one or has one only (a move); else (names only in new
        # folders) judged as if it kept them all: a move into one folder and a link into another
        # in one document are judged as one link, against the shares it has.
        kept = names.keys() & named
        leaving = {names[key] for key in names if key not in named} if kept or len(named) == 1 else set()
        for fid_ in sorted({parent for parent, _ in named} - {parent for parent, _ in names}):
            into = volume.find(fid_)
            if into is None or not into.is_dir or into.ino in phantoms:
                continue
            if volume.widening(held, into, leaving) is not None:
                self._alarm({"_id": held.fid}, f"signed by {signer}, it names the file in a folder whose "
                            "shares give it to others than its names do: refused (only its owner adds such "
                            "a name)")
                return True
        return False

    @staticmethod
    def _one_gives_all(volume: Held, folders: list[Node]) -> bool:
        """Whether the shares over one of ``folders`` give as much as those over all of them: a file a
        writer's device names in several at once is one it made in that folder and linked into the
        others (``_names_widen``, for a file this tree holds)."""
        over = [volume.covering(folder) for folder in dict.fromkeys(folders)]
        every = [g for grants in over for g in grants]
        return len(over) < 2 or any(all(any(gives_as_much(e, g) for e in base) for g in every)
                                    for base in over)

    def _back_from_owners_trash(self, volume: Held, owner: str, fid: str,
                                links: list[tuple[str, bytes]] | None, held: Node | None,
                                stamp: dict | None) -> bool:
        """Whether a writer's document would bring back another user's file that her own signed state
        put in the trash, as this device last saw it.  A grantee's device keeps no place of her files
        (``was_at`` is her own device's), and she may have moved it out of his folder before deleting
        it, out of this user's sight; the trash is hers, so only she brings it back (attack round 24a
        (3)).  Unless the document carries her placement stamp, newer than every state of hers seen
        here, putting it where the document does: she restored it there since, and he wrote it after.
        Said here: the callers' "no WRITE on it" would not tell why."""
        if owner == self.user_id or self.seen is None or not self.seen.trashed_by_owner(fid):
            return False
        if links is not None:
            there = sorted({parent for parent, _ in links if isinstance(parent, str)})
        else:
            there = sorted({p.fid for ino, _ in (held.links if held is not None else ())
                            if (p := volume.get(ino)) is not None})
        placed = stamp if stamp is not None else (held.placed if held is not None else None)
        public = self.trust.sign_key(owner)
        found = None if public is None else placement.holds(public, self.vault_id, owner, fid, placed)
        if found is not None and found[0] and found[0] == there and self.seen.newer(fid, found[1]):
            return False
        self._alarm({"_id": fid}, f"another user's document brings it back from the trash of its owner "
                    f"{owner}, who alone restores it: refused")
        return True

    def _place_unknown(self, owner: str, fid: str) -> bool:
        """Whether ``fid`` is this user's own file out of the tree whose place this device does not know
        (``Seen.place_unknown``): hers alone to put back anywhere."""
        return owner == self.user_id and self.seen is not None and self.seen.place_unknown(fid)

    def _writes_from(self, volume: Held, signer: str, owner: str, parents: list[str],
                     links: list[tuple[str, bytes]]) -> bool:
        """``may_write`` from where the owner's stamp put the node (``parents``,
        folders of hers this tree holds): WRITE in every one of them, all the
        way up (a grant on the node alone does not do: its names there are not
        known), and in every folder the document puts it in or takes it out of."""
        where = [parent for fid in parents if (parent := volume.find(fid)) is not None]
        named = {parent for parent, _ in links if isinstance(parent, str)}
        return all(self.writes_at(volume, signer, owner, parent)
                   for parent in [*where, *self._left(volume, sorted(named), set(parents))])

    @staticmethod
    def _left(volume: Held, parents: list[str] | None, kept: set[str]) -> list[Node]:
        """The folders of ``parents`` (fids) not in ``kept`` that this user holds
        (one not held, or a phantom, cannot be judged, and puts nothing here)."""
        sharing = volume.sharing
        phantoms = sharing.phantoms if sharing is not None else ()
        return [parent for fid in parents or () if fid not in kept
                if (parent := volume.find(fid)) is not None and parent.ino not in phantoms]

    def writes_at(self, volume: Held, signer: str, owner: str, start: Node,
                  beside: Iterable[Node] = ()) -> bool:
        """WRITE on ``start`` by a grant on it or, failing that, on every
        folder it sits in (and ``beside``), all the way up: every way to the
        top passes a grant of ``owner``'s to ``signer`` (guests.py
        ``Guests.writes_at``: a seat's own write through the mount asks the
        same)."""
        sharing = volume.sharing
        return sharing is not None and sharing.writes_at(start, volume.get, signer, owner, beside)

    def may_name(self, volume: Held, signer: str | None, owner: str, parent: Node) -> bool:
        """Whether a document of ``owner``'s node, signed by ``signer``, may give it a name in ``parent``.
        Only in a folder of the node's own owner (judged there by ``may_write``), or in a phantom (a
        share root's parent this user cannot open: shown nowhere, its names judged again once it is
        real: vault/tree/phantoms.py): no flow of fusevault's names a node in another owner's folder
        (a move or a hard link across owners is refused, ``CrossOwner``, a restore too; a writer's new
        file in her folder is hers: namespace.py ``create``), so whoever signs such a name, and
        whatever grant he holds there, it is a forgery.  Taken from anyone, a user's own document
        named his file or folder in her root (attack round 69b); from the folder's owner, it
        outlived his revocation (70a (4)); from a writer, her file went into a folder of his there
        (70a (7)); from the node's owner with her WRITE grant (69b's and 70a's rule), what she saved
        in his folder named in her docs was sealed to him and lost with him (71a (3)), and every
        Share signed anywhere made her seat walk his names' folders up to that grant (71a (2)).
        A view folder (``shared/``, ``groups/`` and those in them) holds no name of any document
        (71a (4)).  An owner compare: no grant changes the answer, so a change of shares judges
        nothing again.  The load and an arrival both ask this (linking.py ``names_across``,
        arrivals.py ``relink``)."""
        sharing = volume.sharing
        if parent.owner == owner or sharing is None:
            return True
        return parent.ino in sharing.phantoms and parent.ino not in sharing.virtual

    def name_refused(self, node: Node, signer: str | None, parent: Node, name: bytes) -> None:
        """``may_name`` refused: said, naming the signer, the folder and its owner."""
        self._alarm({"_id": node.fid}, f"signed by {signer}, it names {node.owner}'s file "
                    f"{name_to_str(name)!r} in folder {parent.fid} of {parent.owner or 'nobody'}: a file "
                    "is named only in folders of its own owner: that name is left out")

    def writer_of(self, sharing: Guests | None, signer: str, owner: str) -> bool:
        """Whether ``owner`` gave ``signer`` WRITE on anything (a deleted node's place is not known)."""
        return sharing is not None and self.writes(sharing, signer, owner, list(sharing.grants))

    def writes_where_it_left(self, volume: Held, signer: str, owner: str, fid: object) -> bool:
        """WRITE on ``owner``'s file ``fid`` that is out of the tree (in the trash, or replaced by a
        rename): by a grant on the file itself, or, for a file of this user's, in every folder this
        device last saw it in (all of them held here, all the way up).  Nothing else: WRITE on any
        other folder of hers made a READ recipient of the file a writer of its history once it was
        in the trash, to choose what ``restore`` brings back or make gc drop a version she keeps
        (attack round 21b).  A file whose place is not known here is hers alone to write: so is
        one whose deletion came from another device of hers (``Seen.left_from``: she may have
        moved it out of his reach there first, attack round 22a (2))."""
        sharing = volume.sharing
        if sharing is None or not isinstance(fid, str):
            return False
        # A folder trashed with it is judged the same way, from where that folder was: walked with a
        # list, not a call per folder, so a chain of folders as deep as a writer likes to make it
        # (attack round 24c (2)) is judged like any other, never a RecursionError out of the trash or
        # gc.  A folder met twice (a cycle, or two ways to one) is refused, as the ways cannot all be
        # judged from it.
        seen, todo = {fid}, [fid]
        while todo:
            each = todo.pop()
            if self.writes(sharing, signer, owner, list(sharing.by_fid.get(each, ()))):
                continue
            # Where it left from as this device knows it: none once her deletion came
            # from another device (she may have moved it there first: round 22a (2)).
            parents = self.seen.left_from(each) if owner == self.user_id and self.seen is not None else None
            if not parents:
                return False
            for parent_fid in parents:
                parent = volume.find(parent_fid)
                if parent is not None and parent.ino not in sharing.phantoms:
                    if not self.writes_at(volume, signer, owner, parent):
                        return False
                elif parent is not None or parent_fid in seen:
                    return False
                else:
                    seen.add(parent_fid)
                    todo.append(parent_fid)
        return True

    # --- owner_dek: a new file made by a WRITE grantee

    def owner_dek_ok(self, doc: dict, signer: str, dek: bytes, held: Node | None = None) -> bool:
        """A DEK sealed to the owner's public key is taken only for a new file of a grantee's."""
        if "owner_dek" not in doc or signer == doc.get("owner"):
            return True
        if doc.get("epoch", 0) != 0:
            self._alarm(doc, "a key sealed to its owner by another user, at a new key epoch")
            return False
        if held is not None and held.dek and held.dek != dek:
            self._alarm(doc, "another user's document gives the owner's file another key")
            return False
        if doc.get("owner") == self.user_id and self._wrapped_otherwise(doc["_id"], dek):
            self._alarm(doc, "another user's document gives the owner's file another key")
            return False
        return True

    def _wrapped_otherwise(self, fid: str, dek: bytes) -> bool:
        """Whether a version the owner wrapped (``en_file_dek``) holds another DEK."""
        for version in self.store.by_file(VERSION, fid):
            if "en_file_dek" not in version:
                continue
            try:
                if doc_dek(version, self.trust.key, fid) != dek:
                    return True
            except VaultError:
                continue  # not the owner's wrapping: proves nothing
        return False

    # --- at unlock: nodes signed by others than their owner

    def settle(self, volume: Held, foreign: list[Foreign], leave: Callable[[Node], None],
               keep: Callable[[Node], bool] = lambda node: False,
               beside: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
        """After an unlock placed every node: those a grantee wrote whose
        grantee holds no WRITE where they are leave the tree (with what is
        under them: ``leave`` takes one out), and are said.  All are judged
        before any leaves.  One ``keep`` rebuilds from its owner's own
        material (the user's own node: issue 22) stays, said, with what is
        under it: a READ recipient's rename or chmod hides nothing of hers.

        Returned: the user's own files a grantee's document moved from where
        this device last saw them (``was_at``) into or out of a folder the
        grantee holds no WRITE on, with the folders (fids) they sit in now.
        They stay where they are, said, but no key is sealed by that place
        (the ledger keeps them ``behind``): leaving them out would hide the
        owner's file, and their earlier name is not known.

        ``beside`` (fid -> folder fids): names of a node another node held
        first, shown beside that one once judged (linking.py
        ``_link_beside``): judged with the names it holds, as where it sits
        then (judged from none, a writer's file given her file's name, her
        file his edit named as another took first, left the tree or lost
        his edit: attack round 73d (3))."""
        refused: list[tuple[Node, str]] = []
        beside = beside or {}
        moved: dict[str, list[str]] = {}
        for node, links, signer, guest in foreign:
            placed = volume.find(node.fid) or node  # where the unlock put it (its own names: judged)
            mine = not guest and node.owner == self.user_id
            if mine and any(volume.find(parent) is None for parent, _ in links):
                # Into a folder this device does not hold (in her trash, his own tree, an id of
                # nothing): no WRITE there can be judged, and with no name here her file would be
                # in no folder and not in her trash, hidden from her and from her unshare of him
                # (attack round 28c (3)).  Refused: rebuilt where she left it.
                refused.append((placed, signer))
                continue
            waiting = [folder for fid in beside.get(node.fid, ()) if (folder := volume.find(fid)) is not None]
            if not self.may_write(volume, signer, node.owner, node.fid, node=placed, placed=True,
                                  beside=waiting):
                refused.append((placed, signer))
                continue
            unseen = mine and self.was_at(node.fid) is None  # asked first: a stamp taken below is seen
            was = self.was_placed(volume, node.fid, node.placed) if mine else None
            now = sorted({parent.fid if (parent := volume.get(ino)) is not None else ""
                          for ino, _ in placed.links} | {folder.fid for folder in waiting})
            if unseen and volume.sharing is not None:
                # This device never saw where she put it: only his word says where it is, and a stamp
                # of hers he carries may be an older one (any is news here).  Any share of hers it is
                # not under now is one it may have left: a key of it sealed for one (which only her
                # device seals) is taken back and it gets a new key (attack round 37b (4)).
                volume.note_moved(placed, [g for g in volume.sharing.grants if g.owner == self.user_id])
                folders = [folder for fid in now if (folder := volume.find(fid)) is not None]
                if was is None and not self._one_gives_all(volume, folders):
                    # Named by him in several folders, none of them seen here: as a new file's (45t (1)).
                    self._alarm({"_id": node.fid}, f"named by {signer} in folders whose shares give it to "
                                "others than one name would (only its owner adds such a name): shown where "
                                "it is, but no share there gets its key")
                    moved[node.fid] = now
            if was is None or was == now:
                continue
            # A folder it was seen in that this load does not hold (refused, damaged, withheld) cannot
            # vouch for the move: judged as failed.  One removed (its deletion signed) is judged by where
            # it was: a writer's move inside a share, then his rmdir of the folder it left, took the file
            # out of every share (attack round 39a (2)).
            judged = self._judged_from(volume, was, now)
            changed = [] if judged is None else (self._left(volume, judged, set(now))
                                                 + self._left(volume, now, set(judged)))
            if judged is None or not all(self.writes_at(volume, signer, node.owner, parent)
                                         for parent in changed):
                how = ("from a folder not held here (withheld, or its place not known)" if judged is None
                       else "from or into a folder they hold no WRITE on")
                self._alarm({"_id": node.fid}, f"moved by {signer} {how}: shown where it is, but no share "
                            "there gets its key")
                moved[node.fid] = now
            elif self._widened(volume, placed, judged, now):
                self._alarm({"_id": node.fid}, f"named by {signer} in a folder whose shares give it to "
                            "others than its names did (only its owner adds such a name): shown where it is, "
                            "but no share there gets its key")
                moved[node.fid] = now
            # Moved by a writer while she was away (judged or not): the shares it left take their keys back
            # and it gets a new key, as at her own move (vault/services/rotation.py ``keep_moves_rekeyed``;
            # one it left from a folder since removed too: attack round 37b (5)).
            volume.note_moved(placed, self._covering_as_seen(volume, was))
        kept = [node for node, signer in refused if keep(node)]
        for node, signer in refused:
            if node in kept:
                self.trust.alarms.warn("rebuilt", node.fid, f"refused a change of file {node.fid}: signed "
                                       f"by {signer}, who holds no WRITE on it: rebuilt from what she signed")
                continue
            self._alarm({"_id": node.fid}, f"signed by {signer}, who holds no WRITE on it: left out")
            todo = [node]
            while todo:
                each = todo.pop()
                if each.ino == ROOT_INODE or volume.get(each.ino) is not each:
                    continue
                todo += [c for i in (each.children or {}).values() if (c := volume.get(i)) is not None]
                leave(each)
        return moved

    def _widened(self, volume: Held, node: Node, judged: list[str], now: list[str]) -> bool:
        """Whether a writer's change of her ``node``'s folders, from ``judged`` to ``now`` (fids), while
        this device was away gave it, or a file under the folder it is, a name where shares give it to
        others than its names did (``_names_widen`` at unlock, where the tree already holds the new
        names: judged from where it was).  A file's only name moved is a move, not a new name."""
        sharing = volume.sharing
        new = [folder for fid in now if fid not in judged if (folder := volume.find(fid)) is not None]
        if sharing is None or not new:
            return False
        adds = [g for folder in new for g in volume.covering(folder)]
        before = self._covering_as_seen(volume, judged)

        def own(each: Node) -> list:
            return [g for g in sharing.by_fid.get(each.fid, ()) if g.owner == each.owner]

        files: list[tuple[Node, list]] = []
        if not node.is_dir and (set(now) & set(judged) or len(now) > 1):
            files.append((node, before + own(node)))
        elif node.is_dir:  # each file under it with a name outside it: it had that name's shares, and these
            under, todo = {node.ino}, [node]
            while todo:
                each = todo.pop()
                for ino in (each.children or {}).values():
                    if ino not in under and (child := volume.get(ino)) is not None:
                        under.add(ino)
                        todo.append(child)
            for ino in under:
                each = volume.get(ino)
                if each is None or each.is_dir:
                    continue
                outside = [parent for p, _ in each.links
                           if p not in under and (parent := volume.get(p)) is not None]
                if outside:
                    had = [g for parent in outside for g in volume.covering(parent)]
                    files.append((each, before + own(each) + had))
        return any(not any(gives_as_much(e, g) for e in have) for _, have in files for g in adds)

    def _judged_from(self, volume: Held, was: list[str], now: list[str]) -> list[str] | None:
        """The folders (fids) a move from ``was`` is judged from: each one this load holds, and for one
        removed since (a deletion its author signed is the current document) the held folders this
        device last saw it in, all the way up (``was_at``).  None if one is not held and not removed
        (withheld, refused), or its place was never seen here."""
        out: set[str] = set()
        seen: set[str] = set()
        todo = list(was)
        while todo:
            fid = todo.pop()
            if fid in seen:
                continue
            seen.add(fid)
            if fid in now or volume.find(fid) is not None:
                out.add(fid)
                continue
            try:
                doc = self.store.get(fid)
            except VaultError:
                return None
            # Signed, and ``delete`` as signed (a bare ``_deleted`` is anyone's with the database, and the
            # clear field a store writer's to flip): a folder withheld cannot be taken for removed.
            admitted = self.admit(doc) if doc is not None else None
            if admitted is None or admitted[0].get("delete") is not True:
                return None
            if not (parents := self.was_at(fid)):
                return None
            todo += parents
        return sorted(out)

    def _covering_as_seen(self, volume: Held, folders: list[str]) -> list:
        """Every share over the folders ``folders`` (fids), where each is now and where this device
        last saw it and each folder above it (``was_at``, all the way up; a folder removed since
        counts by where it was).  A folder moved since too (his next move, of the folder the file
        left) is judged by its old place as well: judged where it is now, the shares the file left
        were the ones it still has, and nothing was re-keyed (attack round 37b (1)).  Each folder
        once (a cycle ends the walk)."""
        found: dict = {}
        seen: set[str] = set()
        todo = list(folders)
        while todo:
            fid = todo.pop()
            if fid in seen:
                continue
            seen.add(fid)
            if (folder := volume.find(fid)) is not None:  # else gone since (removed): where it was counts
                found.update(dict.fromkeys(volume.covering(folder)))
            todo += self.was_at(fid) or []
        return list(found)

    def deleted(self, volume: Held, doc: dict, signer: str) -> bool:
        """A deletion signed by another than the owner.  Of a file of this user's
        that this device last saw in folders it holds: refused (True: the
        caller keeps the file) unless the signer holds WRITE in every one.
        Else (a place not known) said if they may not write the owner's files."""
        owner = doc.get("owner")
        was = self._left(volume, self.was_placed(volume, doc["_id"], self.placed_in(doc)), set()
                         ) if owner == self.user_id else []
        if was:
            if all(self.writes_at(volume, signer, self.user_id, parent) for parent in was):
                return False
            self._alarm(doc, f"deleted by {signer}, who holds no WRITE where it was: it stays")
            return True
        if not self.writer_of(volume.sharing, signer, owner):
            self._alarm(doc, f"deleted by {signer}, who holds no WRITE: the file is left out")
        return False

    def leaf_ok(self, volume: Held, doc: dict) -> bool:
        """A concurrent revision of a node of this user's (services/conflicts.py): theirs or a writer's.

        A writer's branch is judged with the names it gives the node, as any
        writer's node document is (``may_write`` with its links, from where the
        node sits here): settling may keep those names (rule 3), so a branch
        moving her file into a folder he does not write, or out of one, is
        refused whole (attack round 22b (7)).  One that is his edit where he
        wrote it (``leaf_verdict``: COPY) is not the file's state either, but
        no forgery: False, unsaid."""
        return self.leaf_verdict(volume, doc) == KEPT

    def leaf_verdict(self, volume: Held, doc: dict, said: bool = True) -> str:
        """``leaf_ok``'s verdict: KEPT (a state of the file), COPY (a writer's edit kept only as a
        conflict copy where he wrote it: ``writers_copy``) or REFUSED (said, unless ``said`` is False:
        the current revision, judged and said as it arrived or was loaded)."""
        if not said:
            self._quiet += 1
            try:
                return self.leaf_verdict(volume, doc)
            finally:
                self._quiet -= 1
        admitted = self.admit(doc)
        if admitted is None:
            return REFUSED
        doc, signer = admitted
        if signer == doc.get("owner") == self.user_id:
            return KEPT
        opened = self._branch(doc) if doc.get("owner") == self.user_id else None
        if opened is not None and self.may_write(volume, signer, self.user_id, doc["_id"], opened[1],
                                                 volume.find(doc["_id"]), stamp=opened[0].placed) \
                and self.owner_dek_ok(doc, signer, opened[0].dek, volume.find(doc["_id"])):
            return KEPT
        if opened is not None and self.writers_copy(volume, doc, signer, opened):
            return COPY
        self._alarm(doc, f"a concurrent revision signed by {signer}, who holds no WRITE on it")
        return REFUSED

    def current_copy(self, volume: Held, doc: dict) -> bool:
        """Whether ``doc``, the current revision of her file (a writer's branch CouchDB's rule picked),
        is a writer's edit to keep only as a copy (``writers_copy``).  Judged unsaid: refused as the
        file's state when it arrived (vault/tree/arrivals.py ``may_take``), and said there if not."""
        if doc.get("owner") != self.user_id or "owner_dek" in doc:
            return False
        try:
            signer = self.trust.verify(doc, author=self.user_id)
        except Forged:
            return False
        opened = self._branch(doc) if signer != self.user_id else None
        return (opened is not None and not self.may_write(volume, signer, self.user_id, doc["_id"], opened[1],
                                                          volume.find(doc["_id"]), stamp=opened[0].placed)
                and self.writers_copy(volume, doc, signer, opened))

    def writers_copy(self, volume: Held, doc: dict, signer: str, opened: tuple[Node, list]) -> bool:
        """Whether a writer's concurrent revision of her file, refused as a change of it where it sits
        here, is his edit made over a state before her re-key of it (her move out of his share, most
        often): judged from that state, not from where her move put it.  Judged from here, his branch
        read as his moving her file into his folder under a key he forged, and his genuine edit was
        called a forgery and dropped (attack round 41b (5)).

        His: sealed under an older key than hers (her wrapping he carried: only a key he was given
        opens what he sealed, so nothing of hers after the re-key is in it), his WRITE on every folder
        it names, as grants stand now (a folder she took from him, or holds apart, refuses it), a
        state of his device newer than any this device saw (a replay of one seen is refused: said),
        and no key of his making (``owner_dek``).  Kept only as a conflict copy in the folder he
        wrote it in (services/conflicts.py), never as her file's state or place."""
        node, links = opened
        held = volume.find(doc["_id"])
        sharing = volume.sharing
        if (held is None or held.owner != self.user_id or "owner_dek" in doc or not links
                or node.epoch >= held.epoch or node.seq is None or sharing is None
                or self.seen is None or self._place_unknown(self.user_id, doc["_id"])):
            return False
        if not self.seen.newer(doc["_id"], apart(node.seq, signer)):
            return False
        for parent_fid, _ in links:
            parent = volume.find(parent_fid) if isinstance(parent_fid, str) else None
            if (parent is None or not parent.is_dir or parent.ino in sharing.phantoms
                    or not self.writes_at(volume, signer, self.user_id, parent)):
                return False
        return True

    def loaded_copy(self, volume: Held, doc: dict, signer: str, opened: tuple[Node, list],
                    hers: Node) -> bool:
        """Whether ``doc``, a writer's current revision of her file that the load placed, is his edit to
        keep only as a copy (``writers_copy``) beside ``hers``, her own leaf of the file: judged as if
        the tree held hers (``_Beside``), as it does once the load takes her leaf in its place.
        Judged from his state, the load placed her file where his document says: a false forged-write
        at every unlock (attack round 42b (4)), or, his version withheld, her file hidden for good
        (42b (3)).  Unsaid: the settling says what is to be said."""
        return self.writers_copy(_Beside(volume, hers), doc, signer, opened)

    def vouch_copy(self, fid: str, signer: str, node: Node) -> None:
        """The versions of a writer's edit kept as a conflict copy (``writers_copy``), his signed ones
        from its head back to the first of another's, are admitted as written while granted
        (``version_ok``): judged against the file where her move put it, they were his forgery, and
        the copy read EIO."""
        if self.seen is None:
            return
        todo, seen = [node.head], set()
        while todo and len(seen) < COPY_VERSIONS:
            vid = todo.pop()
            if not isinstance(vid, str) or vid in seen:
                continue
            seen.add(vid)
            doc = self.store.get(vid)
            if doc is None or doc.get("type") != VERSION or doc.get("fid") != fid:
                continue
            try:
                if self.trust.verify(doc, author=self.user_id) != signer:
                    continue  # hers (judged as hers), or another's: not vouched for here
                wrapped = doc.get("en_file_dek")
                dek = node.dek if wrapped is None else self.trust.key.unwrap_dek(fid, b64d(wrapped))
                parents = version_parents(doc, dek)
            except (VaultError, KeyError, TypeError, ValueError):
                continue
            self.seen.granted_write(vid, signer, signature_of(doc))
            todo += parents

    def _branch(self, doc: dict) -> tuple[Node, list[tuple[str, bytes]]] | None:
        """A branch of this user's node opened (its node, its links), or None if it does not open."""
        try:
            return node_from_doc(doc, *open_node_doc(doc, self.trust.key))
        except VaultError:
            return None

    # --- versions, and the nodes a file's history goes through

    def accepts(self, volume: Held) -> Callable[[dict], bool]:
        """For ``history.lineage``: whether a version or replaced node's document may be used."""
        owners: dict[str, str | None] = {}  # fid -> its owner, for this one use

        def accept(doc: dict) -> bool:
            try:
                if doc.get("type") == VERSION:
                    return self.version_ok(volume, doc, owners)
                return self.detached_ok(volume, doc)
            except VaultError:
                raise  # the store's (unreadable, locked): the request says it, no document is to blame
            except Exception as err:  # a bug an odd document reached: that document alone is refused
                log.exception("judging document %s failed", str(doc.get("_id"))[:80])
                fid = str(doc.get("fid") or doc.get("_id"))
                self.trust.alarms.warn("malformed", fid, f"refused a document of file {fid}: it could not "
                                       f"be judged ({type(err).__name__}); the others are used")
                return False  # never the whole trash, history or gc (attack round 24c (2))
        return accept

    def file_owner(self, volume: Held, fid: object, owners: dict[str, str | None]) -> str | None:
        """The owner of the file ``fid`` names: of its node in the tree, else of
        its node document as its signer signed it (the trash, a replaced file)."""
        if not isinstance(fid, str):
            return None
        if (node := volume.find(fid)) is not None and node.dek:
            return node.owner
        if fid not in owners:
            doc = self.store.get(fid)
            admitted = self.admit(doc) if doc is not None and not doc.get("_deleted") else None
            owner = admitted[0].get("owner") if admitted is not None else None
            owners[fid] = owner if isinstance(owner, str) else None
        return owners[fid]

    def detached_ok(self, volume: Held, doc: dict) -> bool:
        """A node document out of the tree (the trash, a replaced file): signed by its owner or a writer."""
        admitted = self.admit(doc)
        if admitted is None:
            return False
        doc, signer = admitted
        if signer == doc.get("owner"):
            return True
        if not self.writes_where_it_left(volume, signer, doc.get("owner"), doc.get("_id")):
            self._alarm(doc, f"signed by {signer}, who holds no WRITE on it where it was")
            return False
        if "owner_dek" in doc and doc.get("owner") == self.user_id:
            # A key he sealed to her: only for a new file of his (never one she
            # wrapped versions of), as for a node in the tree.
            try:
                dek = doc_dek(doc, self.trust.key)
            except VaultError:
                self._alarm(doc, "its key sealed to its owner does not open")
                return False
            return self.owner_dek_ok(doc, signer, dek)
        return True

    def version_ok(self, volume: Held, doc: dict, owners: dict[str, str | None] | None = None) -> bool:
        """Whether a FilesMetaData document was written by its file's owner or a WRITE grantee.

        Its ``owner`` must be the owner of the file its ``fid`` names: else any
        holder of the DEK could sign one in their own name into another's history."""
        owner = doc.get("owner")
        if owner != self.file_owner(volume, doc.get("fid"), {} if owners is None else owners):
            self._alarm(doc, f"version {doc.get('_id')} names another owner than its file's")
            return False
        try:
            signer = self.trust.verify(doc, author=owner if isinstance(owner, str) else None)
        except Forged as err:
            self._alarm(doc, f"version {doc.get('_id')}: {err}")
            return False
        if signer == owner:
            return True
        vid, signature = str(doc.get("_id")), signature_of(doc)
        if self.seen is not None and self.seen.written_while_granted(vid, signer, signature):
            # Admitted here while his grant was in force: his genuine edit stays his, whatever
            # happened to the grant since.  Judged by today's grants, the file he saved last read EIO
            # after his removal, and the re-key that takes his key back stopped at it (attack round
            # 41c (6)).  The very document (its signature) only: a rewrite of it is judged anew.
            return True
        node = volume.find(doc.get("fid"))
        if node is not None and node.owner == owner:
            ok = self.may_write(volume, signer, owner, node.fid, None, node)
        else:  # a file out of the tree (in the trash, or replaced by a rename): where it left
            ok = self.writes_where_it_left(volume, signer, owner, doc.get("fid"))
        if not ok:
            self._alarm(doc, f"version {doc.get('_id')} signed by {signer}, who holds no WRITE on it")
        elif self.seen is not None:
            self.seen.granted_write(vid, signer, signature)
        return ok
