"""Sealed file keys (``.vfkey`` files) mirrored as documents, so peers have them.

A share's keys are files at seed 003's places, and peers replicate
documents, so each key file has a ``FileKey`` document whose id names its
place (the ids are hex, so an id from a peer never names another path):

    vfkey-u-<recipient>-<owner>-<fid>   users/<recipient>/shared/<owner>_<fid>.vfkey
    vfkey-g-<group>-<fid>-<recipient>   groups/<group>/own/<fid>/keys/<recipient>.vfkey

The mirror is a three-way merge against what it last saw agree on both
sides (a local document): a key file written or removed here becomes a new
revision, and a revision from a peer is written to (or removed from) its
place.  When both changed, a key beats none and a later epoch an earlier
one; otherwise the document, on which every replica agrees, wins.  When two
replicas' revisions meet as branches, the later epoch also wins, whichever
branch CouchDB's rule made current, and of one epoch the record bound the most
to its group (below), then the one its owner signed last (``signed_at_us``); nor is
a record ever written over one of the same epoch bound more or signed later
(``_unbinds``: attack rounds 47b (1), 49b (1), 50c (1)).  The key
is sealed to its recipient: a peer learns only who shares with whom, by id.

A key counts only if the file's owner signed it (``vault/model/grants.py``:
``owner``, ``fid``, ``recipient`` and ``sig`` travel in the document): a
forged document (a server's, any epoch) never replaces a genuine key file,
and a genuine key file replaces a forged document (one with the file's epoch and
sealed key but other signed fields, or one that does not read, too: 46c (3)).  "The file's owner" is
the one the store's node names, under her user document there, only until a key is held here: then it
is pinned (``_PINS``) and every record of it judged under that signer and key alone (the server's node
or user document naming another changes nothing: attack round 53c (4)).  Her signing key is pinned too, by
owner (``_OWNER_PINS``), at the first key of hers pinned here: a key document with no pin of its own (her
new file's, a key granted again after it was gone on both sides) whose records are hers is judged under
that key, not under the user document the store holds for her now (attack round 54b (4)).

Nor does a genuine one of an earlier epoch than the key file's (a server
serving an older revision again): the key file stays and is the document's
next revision.  A deletion (a bare revision anyone holding the database may
make) removes a key file only once its grant is gone as someone signed it:
the file's owner gave the file a later epoch (a share revoked), or a group's
owner took the recipient out of it (in a body she signed after the newest of
hers noted for that key, with him in it; her older body served again still
verifies, attack round 42a (4), 43b (3)).  "She" is the group's owner the key's
signature names: the file's owner, sealing a key for a member reached through
a group, signs in the group, its owner and that owner's signing key as her pins
admitted its body (the server's user's body naming itself owner is refused
there), and her bodies count only under exactly that key: never under the
user document the store holds for her, which the server may replace with one
of its own key (46c (1)).  A body's owner is the server's to choose (any user
may sign a body naming herself owner, and serve it as current when a device
first meets the group: 43b (1), 44b (1)), the key's signature is not.  A key
signed before groups were bound names none (or, 67f51c6, the two ids without
the key): its group's owner is then taken to be its signer, the file's owner,
under the user document the key itself is checked under (a key of a group
another user owns is then taken by its file's re-key only, until the file's
owner's next unlock signs it again with the group's owner and her key).
Until then the file stays; one still
refused once the peer's changes are all taken in (``caught_up``) and refused for a
while (``SAY_REFUSED_AFTER``, from its first refused deletion: one undone and made
again is the same, 42a (3), unless the key stood undeleted for long since and the first is
a day old, 43b (5), 44b (2);
longer while the pull is behind, 42a (5)) is said
(attack round 19, tests/mount/test_trust_attack_round19_keys.py).  The while: her move out of a
share removes the member's keys at once and raises the node's epoch only when
its re-key is done, and key documents are pushed before node documents, so
another device of hers (or the member's) meets the removal before its reason
(attack round 41b (3)).  Her signed request for the re-key is no reason: the
server can replay an old one; only the new epoch, as she signed it, is.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path

import trio

from fusevault.encoding import b64e
from fusevault.errors import Conflict, CorruptData, VaultError
from fusevault.shortening import shortened
from fusevault.store import replica
from fusevault.store.local import LocalStore
from fusevault.store.unreadable import Unreadable
from fusevault.vault.format.layout import Layout, is_id
from fusevault.vault.model import sharing
from fusevault.vault.model.alarms import for_user
from fusevault.vault.model.freshness import made_at
from fusevault.vault.model.grants import (
    genuine_in_store,
    genuine_under,
    group_of,
    judged_by,
    owner_named,
    signed_in_store,
    signed_under,
)
from fusevault.vault.model.sharing import KeyRecord
from fusevault.vault.model.trust import self_signed

log = logging.getLogger(__name__)

PREFIX = "vfkey-"
# Key files other processes wrote are found by a full look this often (this
# process's own writes are seen at the next push).
RESCAN_EVERY = 60.0
# Seconds a key's deletion is refused, the pull caught up, before it is said: the owner's re-key
# that takes it comes after it (her device pushes the key documents first, and re-keys a folder of
# many files for a while).  A server delaying its forged deletion gains as much, no more: it is
# still refused, and said.
SAY_REFUSED_SECONDS = 15


def _say_refused_after() -> float:
    """``SAY_REFUSED_SECONDS``, or shorter (1 s at least) where FUSEVAULT_SAY_REFUSED_SECONDS says so:
    the tests whose scenes wait for a refused deletion to be said, its reason never coming
    (tests/mount/test_trust_attack_round19_keys.py, 41b), shorten it, as FUSEVAULT_LONGPOLL_SECONDS
    shortens the pull's longpoll.  Shorter never takes a deletion (it stays refused, the key kept):
    it only says the refusal sooner.  Anything else (longer, zero, not a number) is the default."""
    return float(shortened("FUSEVAULT_SAY_REFUSED_SECONDS", SAY_REFUSED_SECONDS))


SAY_REFUSED_AFTER = _say_refused_after()
# The same while, the pull behind (full batches, more waiting): a long backlog may still hold the
# reason, but a server keeping its feed full for good (echoes) must not keep a deletion unsaid.  Of
# the default while, whatever the knob above says.
SAY_REFUSED_BEHIND_AFTER = 6.0 * SAY_REFUSED_SECONDS
# Seconds a key's first refused deletion is remembered: another refused deletion of the same key within
# it, after the first was undone, is the same one made again (said at once), however long the key stood
# between (a delete / restore cycle slower than ``SAY_REFUSED_BEHIND_AFTER``: attack round 44b (2)).
REFUSED_REMEMBERED_FOR = 86400.0
_HEX = "[0-9a-f]{32}"
_USER_KEY = re.compile(rf"vfkey-u-({_HEX})-({_HEX})-({_HEX})")
_GROUP_KEY = re.compile(rf"vfkey-g-({_HEX})-({_HEX})-({_HEX})")
_BASE = "key-files"  # the local document: doc id -> fingerprint both sides last had
# The local documents ``key-group-members/<group key document's id>``, one per key (a settle writes only
# the notes it changed, never all: attack round 44b (3)): ``{"owner": the key's group owner
# (``_group_owner``), "made_at_us": the newest (None: unstamped)}`` of a body of the group that owner
# signed with the key's recipient in it, while the (genuine, signed) key was here (``_note_member``).
# Dropped with the key.
_NOTES = "key-group-members/"
# The older versions' local documents: every note in one (``{doc id: [owner, made_at_us]}``; before that
# ``{"<group>-<member>": made_at_us}``) and the owner pinned per group.  Taken into ``_NOTES`` once and
# removed (``_migrate``): the owner is the key's own now, no pin (44b (1)).
_MEMBERS = "key-group-members"
_OWNERS = "key-group-owners"
Note = tuple[str, int | None]  # (the key's group owner, made_at_us or None: unstamped)
# The local documents ``key-signers/<key document's id>``, one per key held here signed: ``{"owner": the
# file's owner, "key": her signing key (base64 of the raw Ed25519 public key)}``, the signer and key under
# which the key was judged genuine when it came to be held (``_pin``: its file's node here naming her, her
# self-signed user document).  Every record of that key document is then judged under them alone, never
# under the node or user document the store holds now (the server's to serve, and to serve again changed:
# attack round 53c (4)).  Dropped with the key (a later key pinned anew).
_PINS = "key-signers/"
Pin = tuple[str, str]  # (the file's owner, her signing key)
# The local documents ``key-owners/<owner id>``: ``{"key": her signing key}`` (as in ``_PINS``), the key of
# the first key of hers pinned here (``_pin``), or, kept from a version before these, the one key all her
# key documents' pins name (``_owner_pins``).  A key document with no pin of its own, whose records are
# hers (its file's node here naming her, or none here and the record naming her), is judged under it alone,
# and pinned to it when its key is held: never under the user document the store holds for her now, so
# no key of hers after the first is trust on first use again (attack round 54b (4)).  Never dropped: a
# user's signing key never changes (a user document naming another is the store's, refused).
_OWNER_PINS = "key-owners/"
# The group owner a key names (``_group_owner``): her id, and the key her bodies are checked under (None:
# under her user document in the store, she being the key's own signer).
GroupOwner = tuple[str, str | None]

Key = KeyRecord  # (epoch, sealed key, the owner's signature)


def is_key_doc(doc_id: str) -> bool:
    return doc_id.startswith(PREFIX)


def names(doc_id: str) -> tuple[str, str] | None:
    """(fid, recipient) a key document's id names."""
    if found := _USER_KEY.fullmatch(doc_id):
        return found.group(3), found.group(1)
    if found := _GROUP_KEY.fullmatch(doc_id):
        return found.group(2), found.group(3)
    return None


def place(layout: Layout, doc_id: str) -> Path | None:
    """The key file a document mirrors (None: not a key document's id)."""
    if found := _USER_KEY.fullmatch(doc_id):
        return sharing.user_key_path(layout, *found.groups())
    if found := _GROUP_KEY.fullmatch(doc_id):
        return sharing.group_key_path(layout, *found.groups())
    return None


def scan(layout: Layout) -> dict[str, Key]:
    """Every key file of the vault, by the id of its document (a worker thread's job)."""
    found: dict[str, Key] = {}
    # Only folders named as fusevault names them: another is no place of a key (layout.py ``checked_id``).
    for recipient in filter(is_id, _listdir(layout.root / "users")):
        for name in _listdir(layout.user_dir(recipient) / "shared"):
            if name.endswith(".vfkey") and "_" in name:
                _add(layout, found, f"{PREFIX}u-{recipient}-{name[:-6].replace('_', '-', 1)}")
    for group in filter(is_id, _listdir(layout.root / "groups")):
        own = layout.group_dir(group) / "own"
        for fid in _listdir(own):
            for name in _listdir(own / fid / "keys"):
                if name.endswith(".vfkey"):
                    _add(layout, found, f"{PREFIX}g-{group}-{fid}-{name[:-6]}")
    return found


def _add(layout: Layout, found: dict[str, Key], doc_id: str) -> None:
    if (path := place(layout, doc_id)) is None:
        return  # not a name fusevault writes
    try:
        if (key := sharing.read_key(path)) is not None:
            found[doc_id] = key
    except VaultError as err:
        log.warning("a key file is not mirrored to peers: %s", err)


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _key_of(doc: dict | None) -> Key | None:
    if doc is None:
        return None
    try:
        return sharing.key_record(doc)
    except (KeyError, TypeError, ValueError):
        log.warning("key document %s is malformed: not written", doc.get("_id"))
        return None


def _fingerprint(key: Key | None) -> str | None:
    return None if key is None else hashlib.sha256(b"%d:" % key[0] + key[1]).hexdigest()[:32]


def _document_wins(doc: Key | None, file: Key | None, base: str | None) -> bool:
    if _fingerprint(file) == base:
        return True  # only the document changed
    if _fingerprint(doc) == base:
        return False  # only the file changed
    if doc is None or file is None:
        return doc is not None
    return doc[0] >= file[0]


def _binding(key: Key) -> int:
    """How much of the group binding ``key``'s record names (``grants.group_of``): 0 none (sealed before
    44b), 2 the group and its owner (67f51c6), 3 those and her signing key (46c (1)).  Records of one epoch
    are signed in that order (her unlock re-signs a key with more, never less), and the mirror judges a
    removal under the owner ``_group_owner`` reads from it: one with less than 3 under the key's signer."""
    bound = group_of(key)
    return 0 if bound is None else len(bound)


def _order(key: Key) -> tuple[int, int]:
    """Of two records of one epoch, which she signed later: the one bound the more (``_binding``), then the
    one signed later (``signed_at_us``, signed in, each above the record it replaced; none: from before it,
    below any: attack round 50c (1)).  Two fully bound records may name different keys of the group's owner
    (her record from before a ``fusevault user trust`` re-pin, and the one her unlock signed again after it):
    only the signed time tells the re-signed one."""
    return _binding(key), -1 if key.signed_at_us is None else key.signed_at_us


def _unbinds(doc: Key, file: Key) -> bool:
    """Whether ``doc`` is an older record of the file's epoch (``_order``): one naming less of the group
    binding (47b (1), 49b (1)), or as much but signed before the file's (50c (1)): her older record served
    again, which would have the mirror judge the member's removal under another owner (or owner key), and
    her sweep judge the key apart."""
    return doc.epoch == file.epoch and _order(doc) < _order(file)


def _same_binding(doc: Key, file: Key) -> bool:
    """Two records naming the same group, owner and key (her two devices' re-signs of one key, apart): the
    older one is no replay worth an alarm, only the older of two equal bindings."""
    return group_of(doc) == group_of(file)


class KeyMirror:
    """Keeps a replica's key files and FileKey documents in step (trio thread)."""

    def __init__(self, store: LocalStore, layout: Layout) -> None:
        self.store = store
        self.layout = layout
        self._cue: int | None = None  # sharing.key_writes() at the last full look
        self._looked_at = -math.inf
        self._lock = trio.Lock()
        # Deletions refused (judged again at each ``caught_up``); since when each key document's deletion
        # was first refused, and for the key of which epoch (kept while the deletion is undone meanwhile:
        # a deletion undone and made again is no new one, attack round 42a (3)); those of them said.
        self._refusing: set[str] = set()
        self._refused_since: dict[str, tuple[float, int]] = {}
        self._said: set[str] = set()
        # Since when each key whose deletion was refused stands again (both sides agree): one that
        # stood ``SAY_REFUSED_BEHIND_AFTER`` is a new while at its next deletion (attack round 43b (5)),
        # once its first is ``REFUSED_REMEMBERED_FOR`` old (44b (2)).
        self._restored_at: dict[str, float] = {}
        # Group bodies' signatures checked here, by group id: (the body's revision, its owner's user
        # document's revision, signed by that owner).  Checked again when either changes: a body
        # checked before its owner's user document came is no forgery (attack round 43b (7)).
        self._signed_groups: dict[str, tuple[str, str | None, bool]] = {}
        # The same under a group owner's key a key record names (``_owners_group``), by group id: (the
        # body's revision, the key, signed under it).  One per group: a key of another checks it again.
        self._keyed_groups: dict[str, tuple[str, str, bool]] = {}
        # The notes (``_NOTES``) of the keys read so far (None: none); those a settle changed (written
        # at its end, each its own local document: attack round 43b (4), 44b (3)).
        self._notes: dict[str, Note | None] = {}
        self._noted: set[str] = set()
        self._unnoted: set[str] = set()
        self._migrated = False
        # The pins (``_PINS``) of the keys read so far (None: none), and those a settle changed (written at
        # its end, with the notes).
        self._pins: dict[str, Pin | None] = {}
        self._repinned: set[str] = set()
        # The owners' pins (``_OWNER_PINS``), read at first use, and those a settle made (written with them).
        self._owner_pins: dict[str, str] | None = None
        self._owners_pinned: set[str] = set()
        # Leaves of key documents with no pin kept open under a forged winner, by document and leaf revision:
        # (a digest of the record, the owner it was judged under, that owner's user document's revision, her
        # pin (``_OWNER_PINS``), genuine).  Judged again only when the owner, her user document or her pin
        # changes (attack round 53c (1), (3), 54b (4)): the owner is the store's node's, unchecked, so no
        # refusal under them is final, nor worth judging again as is.
        self._leaf_verdicts: dict[str, dict[str, tuple[bytes, object, str | None, str | None, bool]]] = {}

    async def refresh(self) -> None:
        """Key files written or removed here into documents (before a push)."""
        async with self._lock:  # one look at a time, for all the peers' pushes
            cue = sharing.key_writes()
            if cue == self._cue and trio.current_time() - self._looked_at < RESCAN_EVERY:
                return
            files = await trio.to_thread.run_sync(scan, self.layout)
            if sharing.key_writes() != cue:
                return  # a key was written meanwhile: looked at again at the next push
            self._cue, self._looked_at = cue, trio.current_time()
            ids = set(files) | set(replica.get_local(self.store, _BASE))
            ids |= {doc["_id"] for doc in self.store.iter_type(sharing.FILE_KEY)}
            self._settle(ids, files)

    def unmirrored(self) -> int:
        """Key files not mirrored into documents yet, as far as this process knows: re-keys under
        way (their key files come after their node's commit) and one more if a key file was
        written since the last look (the next push looks)."""
        return sharing.keys_owed() + (sharing.key_writes() != self._cue)

    def arrived(self, doc_ids: Iterable[str]) -> None:
        """Key documents a peer sent, into their places: called before the
        tree takes the arrival in, so it finds the keys."""
        files: dict[str, Key] = {}
        if doc_ids := list(doc_ids):
            for doc_id in doc_ids:
                _add(self.layout, files, doc_id)
            self._settle(doc_ids, files)

    def caught_up(self) -> None:
        """The peer's changes are all taken in (the replicator's pull): the deletions refused
        are judged again (the grant's end may have come after them: a later batch, the owner's
        rotation), and those still refused, and refused for ``SAY_REFUSED_AFTER`` or more, are
        said, once each (the rest at a later ``caught_up``: the pull's long poll comes back)."""
        self._judge(SAY_REFUSED_AFTER)

    def behind(self) -> None:
        """A batch of the peer's changes was pulled, more may be waiting (a full batch, or echoes):
        judged as at ``caught_up``, but said only after ``SAY_REFUSED_BEHIND_AFTER`` (a long backlog
        may still hold the reason).  A server whose changes feed is never empty (it echoes what this
        replica holds, for ever) no longer keeps a refused deletion unsaid (attack round 42a (5))."""
        self._judge(SAY_REFUSED_BEHIND_AFTER)

    def _judge(self, after: float) -> None:
        if not self._refusing:
            return
        ids, self._refusing = self._refusing, set()
        files: dict[str, Key] = {}
        for doc_id in ids:
            _add(self.layout, files, doc_id)
        self._settle(ids, files)
        now = time.monotonic()
        due = {i for i in self._refusing if now - self._refused_since.get(i, (now, 0))[0] >= after}
        for doc_id in sorted(due - self._said):
            self._removal_refused(doc_id, files.get(doc_id))
        self._said |= due

    def _refusing_removal(self, doc_id: str, held: Key) -> None:
        """The deletion of ``held``'s document is refused: judged again at each ``caught_up``.  Its
        while runs from the first refused deletion of this key (``held``'s epoch), not from this one:
        a server that undoes its deletion before the while is over and makes it again is said as
        one that leaves it (attack round 42a (3)); her re-key explains one deletion, never that."""
        self._refusing.add(doc_id)
        since = self._refused_since.get(doc_id)
        restored = self._restored_at.pop(doc_id, None)
        # A key that stood undeleted for long since its last refused deletion: this one is a new
        # deletion (her move out of the share, a day later), not the earlier one made again (43b (5)).
        # Only past ``REFUSED_REMEMBERED_FOR`` from the first: within it a repeat is said at once (44b (2)).
        now = time.monotonic()
        stood = restored is not None and now - restored >= SAY_REFUSED_BEHIND_AFTER \
            and since is not None and now - since[0] >= REFUSED_REMEMBERED_FOR
        if since is None or since[1] != held.epoch or stood:  # a later key: a new grant, a new while
            self._refused_since[doc_id] = (time.monotonic(), held.epoch)
            self._said.discard(doc_id)

    def _settle(self, doc_ids: Iterable[str], files: dict[str, Key]) -> None:
        base = replica.get_local(self.store, _BASE)
        before = dict(base)
        updates: list[dict] = []
        for doc_id in doc_ids:
            if (path := place(self.layout, doc_id)) is None:
                continue
            try:
                self._settle_one(doc_id, path, files, base, updates)
            except CorruptData as err:
                # A row whose body does not read (a store writer's): skipped
                # alone, said; the other keys are mirrored and sync goes on.
                log.warning("key document %s is left out: %s", doc_id, err)
        self._write_notes()  # conservative whatever comes of the updates: written first
        self._write_pins()
        try:
            if updates:
                self.store.put_many(updates)
        except Conflict:
            self._cue = None  # changed by a peer meanwhile: settled again at the next look (the next push)
            return
        if base != before:
            replica.put_local(self.store, _BASE, base)

    def _settle_one(self, doc_id: str, path: Path, files: dict[str, Key], base: dict,
                    updates: list[dict]) -> None:
        """One key: its document and its file brought together (``_settle``)."""
        try:
            doc = self._current(doc_id)
        except Unreadable as err:
            # A row that does not read (a name given twice, no JSON: a writer of the vault folder's, at an
            # id anyone predicts from the store's clear ids) is a malformed document: her genuine key file
            # replaces it (its rev is what the put names), as 46c (3) has it.  Skipped, it kept her key
            # from ever being mirrored while the sync status said nothing pending (attack round 80b (2)).
            log.warning("key document %s does not read (%s): a genuine key file replaces it", doc_id, err)
            doc = {"_id": doc_id, "_rev": err.rev}
        in_doc, in_file = _key_of(doc), files.get(doc_id)
        doc_ok, file_ok = self._genuine(doc_id, in_doc), self._genuine(doc_id, in_file)
        if doc is not None and in_doc is None:  # malformed (logged)
            if in_file is None or not file_ok:
                return  # the file stays as it is
            doc_ok = False  # a genuine key file answers it, as any forged document (attack round 46c (3))
        group = _GROUP_KEY.fullmatch(doc_id)
        # Noted only for a genuine signed key (an unsigned one's removal is taken anyway), under a body the
        # group owner it names signed: a forged key document the server serves notes nothing (44b (1), (3)).
        if group is not None and (vouched := in_file if _vouched(in_file, file_ok) else
                                  in_doc if _vouched(in_doc, doc_ok) else None) is not None:
            owner = self._group_owner(doc_id, vouched)
            self._note_member(doc_id, group.group(1), group.group(3), owner)  # to beat
        if doc_ok and in_doc is not None and in_doc.sig is None and in_file is not None \
                and in_file.sig is not None and file_ok:
            doc_ok = False  # an unsigned key never replaces a signed one
        if _fingerprint(in_doc) == _fingerprint(in_file) and (doc_ok or not file_ok):
            pass  # the same key (a document with its bytes but other signed fields, forged: answered below)
        elif not doc_ok:
            self._refused(doc_id)
            if in_file is None or not file_ok:
                return
            updates.append(_document(doc_id, doc, in_file))  # the genuine key replaces it
            in_doc = in_file
        elif not file_ok:
            if in_doc is None:
                if in_file is not None and base.get(doc_id) == _fingerprint(in_file):
                    # A key mirrored here whose file's node now names another owner (re-signed by any
                    # user): its bare deletion is still refused, and said (attack round 43b (6)).
                    self._refusing_removal(doc_id, in_file)
                return  # a forged key file, no document: never mirrored
            sharing.write_key(path, in_doc.epoch, in_doc.key, signed=in_doc.signed_fields(),
                              mirrored=True)
        elif _document_wins(in_doc, in_file, base.get(doc_id)):
            if in_doc is None:
                assert in_file is not None  # their fingerprints differ
                if not self._removal_taken(doc_id, in_file):
                    self._refusing_removal(doc_id, in_file)
                    return  # the key file stays, and what both last had: judged again
                sharing.remove_key(path, keep_folder=True, mirrored=True)
            elif in_file is not None and in_doc.epoch < in_file.epoch:
                # Never written over a later epoch (epochs only grow: a revoked share, a member gone).
                self._replay_refused(doc_id, in_doc, in_file)
                updates.append(_document(doc_id, doc, in_file))  # the key file's is the newest revision
                in_doc = in_file
            elif in_file is not None and _unbinds(in_doc, in_file):
                # Her older record of the same epoch, from before 44b's or 46c's binding, served again over
                # the bound one: never written (the key would name no group, or no owner's key, again, which
                # her sweep and this mirror's removals judge apart: attack rounds 47b (1), 49b (1)), nor her
                # record signed before the file's naming the group owner's older key (50c (1)); the file
                # answers it (said, unless both name the same binding: her two devices' re-signs).
                if not _same_binding(in_doc, in_file):
                    self._unbinding_refused(doc_id, in_doc, in_file)
                updates.append(_document(doc_id, doc, in_file))
                in_doc = in_file
            else:
                sharing.write_key(path, in_doc.epoch, in_doc.key, signed=in_doc.signed_fields(),
                              mirrored=True)
        else:
            updates.append(_document(doc_id, doc, in_file))
            in_doc = in_file
        if (fingerprint := _fingerprint(in_doc)) is None:
            base.pop(doc_id, None)
            self._refused_since.pop(doc_id, None)  # the key gone on both sides: a later one, a new while
            self._restored_at.pop(doc_id, None)
            self._said.discard(doc_id)
            self._unnote(doc_id)
            self._unpin(doc_id)
        else:
            if in_doc is not None:
                self._pin(doc_id, in_doc)  # the key held here: pinned to its signer, if genuine
            if group is not None and base.get(doc_id) != fingerprint and in_doc is not None \
                    and _vouched(in_doc, self._genuine(doc_id, in_doc)):
                owner = self._group_owner(doc_id, in_doc)
                self._note_member(doc_id, group.group(1), group.group(3), owner)  # new here
            if doc_id in self._refused_since:  # its deletion undone: since when it stands
                self._restored_at.setdefault(doc_id, time.monotonic())
            base[doc_id] = fingerprint

    def _refused(self, doc_id: str) -> None:
        """Said to the file's owner (and in the log): a forged key document is not written."""
        fid, recipient = names(doc_id) or ("", "")
        node = self.store.get(fid) if fid else None
        owner = node.get("owner") if node else None
        who = owner if isinstance(owner, str) else recipient
        for_user(who).warn("forged-key", doc_id, f"refused key document {doc_id}: not signed by the "
                           "file's owner, not written")

    def _removal_taken(self, doc_id: str, held: Key) -> bool:
        """May a key document's deletion remove the key file ``held``?  Only once its grant is
        gone as someone signed it: the file's owner signed a later epoch for the file (a share
        revoked: vault/services/share_ops.py ``unshare`` rotates), or the group's owner, if she
        is the one the key names (``_group_owner``), signed the group without the recipient
        (``group member remove``).  A bare deletion alone (a server's) never takes a recipient's
        current key.  (A file's deletion is no reason: the trash and gc leave its keys, and her own
        older deletion may be served again.)  An unsigned key (its owner's from before signatures)
        nothing here vouches for: taken."""
        if held.sig is None:
            return True
        fid, recipient = names(doc_id) or ("", "")
        node = self.store.get(fid) if fid else None
        epoch = node.get("epoch") if node else None
        if isinstance(epoch, int) and epoch > held.epoch and node is not None \
                and node.get("owner") == held.owner and self._signed_by_owner(doc_id, node, held.owner):
            return True  # epochs only grow: a replayed older node never shows a later one
        found = _GROUP_KEY.fullmatch(doc_id)
        return found is not None and self._member_removed(doc_id, found.group(1), recipient,
                                                          self._group_owner(doc_id, held))

    def _member_removed(self, doc_id: str, group_id: str, member: str, owner: GroupOwner | None) -> bool:
        """Did the group's owner take ``member`` out of it?  Only a body without him signed by its owner
        who is the key's ``owner`` (``_group_owner``: the one the file's owner signed into the key, as her
        pins had it, else the file's owner herself; a body's owner is any user the server likes, 43b (1),
        44b (1)), newer (its signed ``made_at_us``, which each signing raises) than the newest body of that
        owner's noted for this key (``_NOTES``): a group carries no epoch, and her body from before the
        member joined, or her removal of him from before this key was granted (43b (3)), served again,
        still verifies (attack round 42a (4)).  None noted, or only unstamped ones (43b (2)), or a body of
        another owner: refused (the re-key takes it)."""
        body = self.store.get(group_id) if owner is not None else None
        if owner is not None and body is not None and body.get("owner") != owner[0]:
            log.warning("group %s names owner %s, not %s whom key %s names: no reason to remove it (the "
                        "re-key is)", group_id, str(body.get("owner"))[:64], owner[0], doc_id)
        group = self._owners_group(group_id, owner)
        members = group.get("users") if group is not None else None
        if owner is None or group is None or not isinstance(members, dict) or member in members:
            return False
        noted = self._note_of(doc_id)
        made = _stamp(group)
        return noted is not None and noted[0] == owner[0] and noted[1] is not None and made is not None \
            and made > noted[1]

    def _note_member(self, doc_id: str, group_id: str, member: str, owner: GroupOwner | None) -> None:
        """The group's current body, if the key's group ``owner`` (``_group_owner``) signed it as its owner
        with ``member`` in it, noted for the genuine key document ``doc_id`` (what a removal must be newer
        than: ``_member_removed``).  A body without him, or of another owner, is no note (the server's own
        user's body, current when his key comes, once took his key later: attack round 44b (1)); his key
        is then taken by the re-key only, or noted under that owner's next body with him."""
        group = self._owners_group(group_id, owner)
        if group is not None and owner is not None and _names_member(group, member):
            self._note(doc_id, owner[0], _stamp(group))

    def _note(self, doc_id: str, owner: str, made: int | None) -> None:
        old = self._note_of(doc_id)
        if (merged := _merge_note(old, (owner, made))) != old:
            self._notes[doc_id] = merged
            self._noted.add(doc_id)
            self._unnoted.discard(doc_id)

    def _unnote(self, doc_id: str) -> None:
        """The key gone on both sides: its note goes too (a later key is noted anew)."""
        if self._note_of(doc_id) is not None:
            self._unnoted.add(doc_id)
            self._noted.discard(doc_id)
        self._notes.pop(doc_id, None)

    def _write_notes(self) -> None:
        """What this settle noted, written once, one local document per key it changed (each read again
        first: never lower what another mirror of this store noted)."""
        if not (self._noted or self._unnoted):
            return
        bodies: dict[str, dict | None] = {}
        for doc_id in self._noted:
            if (note := self._notes.get(doc_id)) is not None:
                self._notes[doc_id] = note = _merge_note(_note_read(self.store, doc_id), note)
                bodies[_NOTES + doc_id] = _note_body(note)
        for doc_id in self._unnoted:
            bodies[_NOTES + doc_id] = None
        self._noted, self._unnoted = set(), set()
        replica.put_locals(self.store, bodies)

    def _note_of(self, doc_id: str) -> Note | None:
        if not self._migrated:
            _migrate(self.store)
            self._migrated = True
        if doc_id not in self._notes:
            self._notes[doc_id] = _note_read(self.store, doc_id)
        return self._notes[doc_id]

    def _owners_group(self, group_id: str, owner: GroupOwner | None) -> dict | None:
        """The group's current body if it names the key's group ``owner`` (``_group_owner``; None: an
        unsigned key's, none) its owner and she signed it: under the key the key record names for her
        (as the file's owner pinned it: attack round 46c (1)), else (a record without one: she is the
        key's own signer, 332f9b3) under her user document in the store, the one the key itself is
        checked under (replaced, the key is no longer genuine here).  A body naming another owner is
        never a reason nor noted."""
        if owner is None:
            return None
        who, public = owner
        if public is None:
            group = self._signed_group(group_id)
            return group if group is not None and group["owner"] == who else None
        group = self.store.get(group_id)
        if group is None or group.get("owner") != who or not isinstance(rev := group.get("_rev"), str):
            return None
        checked = (rev, public)
        if (found := self._keyed_groups.get(group_id)) is None or found[:2] != checked:
            found = (*checked, signed_under(group, who, public))
            self._keyed_groups[group_id] = found
        return group if found[2] else None

    def _signed_group(self, group_id: str) -> dict | None:
        """The group's current body if the owner it names signed it (checked once per revision of
        the body and of the owner's user document: hers may come after it, 43b (7))."""
        group = self.store.get(group_id)
        if group is None or not isinstance(rev := group.get("_rev"), str) \
                or not isinstance(owner := group.get("owner"), str):
            return None
        user = self.store.get(owner)
        checked = (rev, user.get("_rev") if user is not None else None)
        if (found := self._signed_groups.get(group_id)) is None or found[:2] != checked:
            found = (*checked, signed_in_store(self.store, group, owner))
            self._signed_groups[group_id] = found
        return group if found[2] else None

    def _removal_refused(self, doc_id: str, held: Key | None) -> None:
        """Said to the recipient and the file's owner (the node's, and the key's signer: a node re-signed
        by another owner, 43b (6)): a key document's deletion was refused."""
        self._say(doc_id, f"deletion {doc_id}", f"refused the deletion of key document {doc_id}: unsigned, "
                  "and the file and its grant are as they were (its key is this epoch's, and no later one "
                  f"came within {SAY_REFUSED_AFTER:.0f}s); the key is kept",
                  also=held.owner if held is not None else None)

    def _replay_refused(self, doc_id: str, doc: Key, file: Key) -> None:
        self._say(doc_id, f"older {doc_id}", f"refused key document {doc_id} of epoch {doc.epoch}: older "
                  f"than the key of epoch {file.epoch} held here (served again?); the newer key is kept")

    def _unbinding_refused(self, doc_id: str, doc: Key, file: Key) -> None:
        less = "no group" if doc.group is None else "its group but not as much of its owner" \
            if _binding(doc) < _binding(file) else "an earlier signing of its group binding"
        self._say(doc_id, f"unbound {doc_id}", f"refused key document {doc_id} of epoch {doc.epoch}: it "
                  f"names {less}, over the key of that epoch held here bound to group {file.group} (an older "
                  "record served again?); the bound key is kept")

    def _say(self, doc_id: str, subject: str, text: str, also: str | None = None) -> None:
        fid, recipient = names(doc_id) or ("", "")
        node = self.store.get(fid) if fid else None
        owner = node.get("owner") if node else None
        for who in dict.fromkeys(w for w in (recipient, owner, also) if isinstance(w, str) and w):
            for_user(who).warn("forged-key", subject, text)

    def _genuine(self, doc_id: str, key: Key | None) -> bool:
        """Whether ``key`` is the file's owner's: under the key document's pin (``_PINS``) if it has one,
        else under the pin of the owner the store's node names (``_OWNER_PINS``; no node: the record's own
        owner) if she has one, else as the store's node and user documents have it (``genuine_in_store``)."""
        if key is None:
            return True
        named, group = names(doc_id), _GROUP_KEY.fullmatch(doc_id)
        if named is None:
            return False
        group_id = group.group(1) if group is not None else None
        pin = self._pin_of(doc_id) or self._owners_pin(owner_named(self.store, key, named[0]))
        if pin is not None:
            return genuine_under(key, *pin, *named, group_id)
        return genuine_in_store(self.store, key, *named, group_id)

    def _current(self, doc_id: str) -> dict | None:
        """The document, once its other branches are closed (two replicas
        changed it while apart).  CouchDB's rule may have picked the branch
        with the earlier key: a later epoch on another branch becomes a new
        revision first, so an older key never replaces a newer one; nor, of
        one epoch, a key bound less than another branch's (``_rank``: the
        server's older record beside her re-signed one, 49b (1)); nor a
        forged winner a genuine leaf (ranked first by genuineness, 50c (2)).

        Closed only under a genuine winner: under a forged or malformed one, a leaf is closed only when
        it is malformed, or refused under the key document's pin (``_PINS``: final, whatever the store
        says).  With no pin, what a leaf is judged by (its file's node and owner's user document) is the
        server's to serve and to serve again changed: a refusal under them is never final (closed then,
        her genuine key was gone for good once her node or user document came back: 51a (3), (5), 53c
        (1)); kept open, a leaf is judged again only when they change (``_leaf_genuine``: judged at every
        look, the server's leaves flooded the loop, 52b (3), 53c (3))."""
        doc = self.store.get(doc_id)
        others = replica.other_leaves(self.store, doc_id)
        if doc is None or not others:
            self._leaf_verdicts.pop(doc_id, None)
            return doc
        current = _key_of(doc)
        named = names(doc_id)
        node = self.store.get(named[0]) if named is not None else None
        owner_named = (node.get("owner"),) if node else None  # as ``grants.judged_by`` reads it
        users: dict[object, str | None] = {}
        judged = [(leaf, key, key is not None and self._leaf_genuine(doc_id, leaf["_rev"], key, owner_named,
                                                                      users))
                  for leaf in others for key in (_key_of(leaf),)]
        keys = [key for _, key, genuine in judged if genuine and key is not None]
        held = current if current is not None and self._genuine(doc_id, current) else None
        best = max(keys, key=_rank) if keys else None
        if best is not None and (held is None or _rank(best) > _rank(held)):
            self.store.put_many([_document(doc_id, doc, best)])
        elif held is None:
            final = self._pin_of(doc_id) is not None
            for leaf, key, _ in judged:  # none genuine: close those that never can be
                if key is None or final:
                    replica.close_leaf(self.store, doc_id, leaf["_rev"])
            kept = {leaf["_rev"] for leaf, key, _ in judged if key is not None and not final}
            verdicts = self._leaf_verdicts.get(doc_id, {})
            if kept:
                self._leaf_verdicts[doc_id] = {rev: v for rev, v in verdicts.items() if rev in kept}
            else:
                self._leaf_verdicts.pop(doc_id, None)
            return self.store.get(doc_id)
        for leaf in others:
            replica.close_leaf(self.store, doc_id, leaf["_rev"])
        self._leaf_verdicts.pop(doc_id, None)
        return self.store.get(doc_id)

    def _leaf_genuine(self, doc_id: str, rev: str, key: Key, node: tuple[object] | None,
                      users: dict[object, str | None]) -> bool:
        """``_genuine`` of another branch's record ``key`` (its revision ``rev``): with no pin, judged again
        only when the owner it is judged under or that owner's user document's revision changed since
        (``grants.judged_by``: the owner the file's ``node`` names, a 1-tuple, or None: no node here, the
        record's own), as ``_signed_group`` judges a group body; a pinned one always (its refusal closes
        it).  ``users``: the user documents' revisions read so far for this document's leaves (the store
        read once per owner, not per leaf; None: none, or deleted).  The owner's pin (``_OWNER_PINS``) is
        part of what it was judged by: one made since judges it again."""
        if self._pin_of(doc_id) is not None:
            return self._genuine(doc_id, key)
        owner = node[0] if node is not None else key.owner
        if owner not in users:
            user = self.store.get(owner) if isinstance(owner, str) else None
            users[owner] = user.get("_rev") if user is not None and not user.get("_deleted") else None
        record = hashlib.sha256(repr(key).encode()).digest()[:16]  # the record, compact
        checked = (record, owner, users[owner], self._owner_pin_of(owner))
        verdicts = self._leaf_verdicts.setdefault(doc_id, {})
        if (found := verdicts.get(rev)) is None or found[:4] != checked:
            found = (*checked, self._genuine(doc_id, key))
            verdicts[rev] = found
        return found[4]

    def _signed_by_owner(self, doc_id: str, doc: dict, owner: str | None) -> bool:
        """Whether the file's ``owner`` signed ``doc`` (her node): under the key document's pin if it has
        one (her user document replaced by the server's, a node it signed under it is none of hers: 53c
        (4)), else under her own pin if she has one (54b (4)), else under her user document in the store."""
        if (pin := self._pin_of(doc_id) or self._owners_pin(owner)) is not None:
            return owner == pin[0] and signed_under(doc, pin[0], pin[1])
        return signed_in_store(self.store, doc, owner)

    def _group_owner(self, doc_id: str, key: Key) -> GroupOwner | None:
        """``_group_owner`` of the key held for ``doc_id``: with no owner's key the record names (her
        bodies then checked under the file owner's own), the key document's pin if it has one (53c (4)),
        else her own pin if she has one (54b (4))."""
        owner = _group_owner(key)
        if owner is not None and owner[1] is None \
                and (pin := self._pin_of(doc_id) or self._owners_pin(owner[0])) is not None \
                and pin[0] == owner[0]:
            return pin
        return owner

    def _pin_of(self, doc_id: str) -> Pin | None:
        if doc_id not in self._pins:
            self._pins[doc_id] = _pin_from(replica.get_local(self.store, _PINS + doc_id))
        return self._pins[doc_id]

    def _pin(self, doc_id: str, key: Key) -> None:
        """The key held here for ``doc_id`` (signed, genuine): pinned to its signer and her signing key, if
        not yet, and only once its file's node is here naming her (with no node, a record is judged under
        the owner it names itself: any user's), under her own pin (``_OWNER_PINS``), else under her
        self-signed user document, whose key then becomes her pin (``_PINS``, 54b (4))."""
        named = names(doc_id)
        if named is None or key.sig is None or key.owner is None or self._pin_of(doc_id) is not None:
            return
        node = self.store.get(named[0])
        if node is None or node.get("_deleted") or node.get("owner") != key.owner:
            return
        if (public := self._owner_pin_of(key.owner)) is None:
            owner, user = judged_by(self.store, key, named[0])
            public = user.get("public_sign") if owner == key.owner and user is not None \
                and self_signed(user) else None
        group = _GROUP_KEY.fullmatch(doc_id)
        if isinstance(public, str) \
                and genuine_under(key, key.owner, public, *named, group.group(1) if group else None):
            self._pins[doc_id] = (key.owner, public)
            self._repinned.add(doc_id)
            if self._owner_pin_of(key.owner) is None:
                assert self._owner_pins is not None  # read by ``_owner_pin_of``
                self._owner_pins[key.owner] = public
                self._owners_pinned.add(key.owner)

    def _owner_pin_of(self, owner: object) -> str | None:
        """``owner``'s signing key as pinned here (``_OWNER_PINS``), or None."""
        if self._owner_pins is None:
            self._owner_pins, adopted = _owner_pins(self.store)
            self._owners_pinned |= adopted
        return self._owner_pins.get(owner) if isinstance(owner, str) else None

    def _owners_pin(self, owner: object) -> Pin | None:
        """(``owner``, her pinned signing key) if she has a pin (``_OWNER_PINS``), else None."""
        public = self._owner_pin_of(owner)
        return None if public is None or not isinstance(owner, str) else (owner, public)

    def _unpin(self, doc_id: str) -> None:
        """The key gone on both sides: its pin goes too (a later key is pinned anew)."""
        if self._pin_of(doc_id) is not None:
            self._pins[doc_id] = None
            self._repinned.add(doc_id)

    def _write_pins(self) -> None:
        bodies: dict[str, dict | None] = {_PINS + doc_id: _pin_body(self._pins.get(doc_id))
                                          for doc_id in self._repinned}
        for owner in self._owners_pinned:  # an owner's pin never replaces one stored (another mirror's)
            if _owner_pin_read(self.store, owner) is None and self._owner_pins is not None:
                bodies[_OWNER_PINS + owner] = {"key": self._owner_pins[owner]}
        replica.put_locals(self.store, bodies)
        self._repinned, self._owners_pinned = set(), set()


def _pin_from(value: object) -> Pin | None:
    """A pin as stored (``_PINS``); anything else is none (the key judged as the store has it)."""
    if isinstance(value, dict) and isinstance(owner := value.get("owner"), str) \
            and isinstance(public := value.get("key"), str):
        return owner, public
    return None


def _pin_body(pin: Pin | None) -> dict | None:
    return None if pin is None else {"owner": pin[0], "key": pin[1]}


def _owner_pin_from(value: object) -> str | None:
    """An owner's pin as stored (``_OWNER_PINS``); anything else is none."""
    return public if isinstance(value, dict) and isinstance(public := value.get("key"), str) else None


def _owner_pin_read(store: LocalStore, owner: str) -> str | None:
    return _owner_pin_from(replica.get_local(store, _OWNER_PINS + owner))


def _owner_pins(store: LocalStore) -> tuple[dict[str, str], set[str]]:
    """The owners' pins as stored (``_OWNER_PINS``), and for an owner with none whose key documents are
    pinned (``_PINS``, by a version before owner pins), the one key all those pins name, adopted (the
    second item: to be written).  Pins naming two keys of one owner (one was a server's user document, at
    53c's trust on first use) adopt neither: said, and her next key pinned here pins her."""
    pins = {doc_id[len(_OWNER_PINS):]: public
            for doc_id, body in replica.locals_under(store, _OWNER_PINS).items()
            if (public := _owner_pin_from(body)) is not None}
    older: dict[str, set[str]] = {}
    for body in replica.locals_under(store, _PINS).values():
        if (pin := _pin_from(body)) is not None and pin[0] not in pins:
            older.setdefault(pin[0], set()).add(pin[1])
    adopted: set[str] = set()
    for owner, keys in older.items():
        if len(keys) == 1:
            pins[owner] = keys.pop()
            adopted.add(owner)
        else:
            log.warning("the key documents of user %s here are pinned to %d signing keys: none taken as hers",
                        owner, len(keys))
    return pins, adopted


def _rank(key: Key) -> tuple[int, int, int]:
    """Of two branches' keys, the one kept: the later epoch, then (of one epoch) the one bound the most
    (``_binding``), then signed last (``_order``): CouchDB's rule picks a branch by its revision id, which
    the server makes (49b (1), 50c (1))."""
    return key.epoch, *_order(key)


def _document(doc_id: str, doc: dict | None, key: Key | None) -> dict:
    rev = {"_rev": doc["_rev"]} if doc else {}
    if key is None:
        return {"_id": doc_id, **rev, "_deleted": True}
    return {"_id": doc_id, **rev, "type": sharing.FILE_KEY, "epoch": key.epoch, "key": b64e(key.key),
            **key.signed_fields()}


def _vouched(key: Key | None, genuine: bool) -> bool:
    """A key its file's owner signed (genuine, and signed: not one from before signatures)."""
    return key is not None and genuine and key.sig is not None


def _group_owner(key: Key) -> GroupOwner | None:
    """The group's owner a removal of the key's recipient must be signed by, and the key her bodies are
    checked under: the owner and key the key's signature names (``KeyRecord.group_owner``,
    ``group_owner_key``: the file's owner pinned them when she sealed it, attack round 46c (1)); else (a
    key signed before that was bound, or bound without the key, 67f51c6) the key's signer, the file's
    owner herself, under her user document in the store (44b (1): 332f9b3's rule; a key of a group
    another user owns is then taken by its file's re-key only, until her next unlock signs it again)."""
    if key.group is not None and key.group_owner is not None and key.group_owner_key is not None:
        return key.group_owner, key.group_owner_key
    return (key.owner, None) if key.owner is not None else None


def _names_member(group: dict | None, member: str) -> bool:
    return group is not None and isinstance(members := group.get("users"), dict) and member in members


def _stamp(group: dict) -> int | None:
    """A group body's ``made_at_us`` as its signature reads it: a whole float signs as the integer it
    equals (crypto/signing.py), so it is that integer, never an unstamped body (attack round 43b (2))."""
    value = group.get("made_at_us")
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return made_at(group)


def _merge_note(old: Note | None, new: Note) -> Note:
    """Two notes of one key: the newer stamp (a stamped body beats an unstamped one: bodies were
    stamped from a version on, so a stamped one with him is the newer).  A note of another owner is
    none of this key's group owner's (an older version's pin, a key signed again naming its group's
    owner, or a key its file's new owner signed): the new
    one replaces it."""
    if old is None or old[0] != new[0]:
        return new
    stamps = [m for m in (old[1], new[1]) if m is not None]
    return old[0], max(stamps) if stamps else None


def _note_from(value: object) -> Note | None:
    """A note as stored: ``{"owner", "made_at_us"}`` (or the older whole document's ``[owner,
    made_at_us]``); anything else is none (its key's removal refused: the safe side)."""
    if isinstance(value, dict):
        value = [value.get("owner"), value.get("made_at_us")]
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) \
            and (value[1] is None or (isinstance(value[1], int) and not isinstance(value[1], bool))):
        return value[0], value[1]
    return None


def _note_body(note: Note) -> dict:
    return {"owner": note[0], "made_at_us": note[1]}


def _note_read(store: LocalStore, doc_id: str) -> Note | None:
    return _note_from(replica.get_local(store, _NOTES + doc_id)) if _GROUP_KEY.fullmatch(doc_id) else None


def notes(store: LocalStore) -> dict[str, Note]:
    """Every key's note as stored, by its document's id (``fusevault`` tests, checks)."""
    return {doc_id[len(_NOTES):]: note for doc_id, body in replica.locals_under(store, _NOTES).items()
            if (note := _note_from(body)) is not None}


def _migrate(store: LocalStore) -> None:
    """The older versions' notes, once: the whole ``_MEMBERS`` document's notes per key (the 43b form)
    into one local document each, merged with any there; then ``_MEMBERS`` and ``_OWNERS`` removed, in the
    same transaction.  Notes of the oldest ``<group>-<member>`` form name no key nor owner: left out (the
    key is noted again under its group owner's current body at its next settle, as at a first meeting).
    The pins go: the owner is the key's own now (attack round 44b (1))."""
    old = replica.get_local(store, _MEMBERS)
    if not old and not replica.get_local(store, _OWNERS):
        return
    bodies: dict[str, dict | None] = {_MEMBERS: None, _OWNERS: None}
    for doc_id, value in old.items():
        if _GROUP_KEY.fullmatch(doc_id) and (note := _note_from(value)) is not None:
            bodies[_NOTES + doc_id] = _note_body(_merge_note(_note_read(store, doc_id), note))
    replica.put_locals(store, bodies)
