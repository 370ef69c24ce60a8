"""For whom her re-key made a file's key: no device extends that key to anyone else (attack round 71d (1)).

Her re-key gives the file a key derived for the recipients her device sees then (vault/model/her_keys.py
``derived_dek``), and writes their list into the node's sealed fields with the key (``record``): the
grant (owner, file, grantee) and recipient of each, the signed version vector of each Group whose members
it reached, and the Shares her re-keys took back from it (``taken``).  Her other device, which may still
hold a grant she took back (a Share whose deletion the server kept from it and serves again, an older
Group body naming a member she removed), seals the key of that epoch to those the record names
(``covers``), and to any other grant but those it took back (``left_out``: a Share ``taken`` names, a
Group body here older than the one the re-key saw): her share made on her other device before this
re-key reached it, a group shared since, a member whose user document her device lacked at the re-key
are sealed as usual (attack round 73a (2), (4)).  A grant taken back is said (``replayed-grant``) and
sealed nothing until she shares again, whose command seals the key itself and writes each record naming
the Share taken again at that key, the Share out of ``taken`` (``given_again``,
vault/services/share_ops.py): a member added to the group since is sealed on every device (attack round
75a (1)); until then a member added to a group whose Share is ``taken`` is no member added since.  Each
such record counts the times it was written again at its key (``again``, under her proof): of two of hers
at one key a node keeps the later (``taken``, ``later``), so a state carrying her earlier one (a WRITE
member's replay, his honest edit made apart and settled) does not put the Share back in ``taken`` (attack
round 76a (1)).
The record is in her signed state of the node, sealed under the key: the server neither reads nor forges
it.  A member who writes the node holds the key, though: a record counts
only with her proof (``proof``: ``hers``, her master key's HMAC over the file, the epoch, the key and the
record), which her re-key writes and no member makes; her commits carry no other (vault/model/nodes.py
``node_doc``), and a member's state brings no other in (``taken``; attack round 73a (1)).  A node with no
record that counts (a first key, a re-key of older code, a record from before the proof: no migration, the
next re-key writes one) is sealed as before.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from typing import Any

from fusevault.crypto.keys import MasterKey
from fusevault.vault.format.layout import is_id
from fusevault.vault.model import lineage

# Entries of a record at most: a re-key reaches no more recipients than this (one past it keeps no
# record: sealed as before, the limit in docs/SECURITY.md); larger from a document is refused.
MAX_TO = 4096
MAX_ENTRY = 33 * 4 + 64  # characters of one entry of ``to``: four ids and a permission
MAX_GROUPS = 256
MAX_DEVICES = 64  # entries of a seen Group body's vector (her devices that signed it); past it: no record
# The record's JSON at most: what a re-key at every count above writes with real ids (~0.7 MB at 4,096
# recipients); a member's state holding a larger one was sealed again into each of her commits of the
# file, 40 MB each (attack round 73a (3)).  ``record`` writes none larger, ``shaped`` refuses one.
MAX_BYTES = 1 << 20
_ID = "[0-9a-f]{32}"
# One pattern an entry (a regular expression each: ~4,096 entries a list, checked at each state opened).
_TO = re.compile(rf"{_ID}:{_ID}:{_ID}:{_ID}:[A-Z]{{1,16}}(,[A-Z]{{1,16}}){{0,3}}")
_SHARE = re.compile(rf"share-{_ID}-{_ID}")
_PROOF = re.compile(r"[0-9a-f]{32}")
_FIELDS = frozenset({"epoch", "to", "groups", "above"})
_OPTIONAL = frozenset({"taken", "proof", "again"})  # since attack round 73a (older: no proof, no count)
# Times her share command wrote the record again at one key (``given_again``) at most: past it the record
# is not written again (the Share stays taken, said, until her next re-key).
MAX_AGAIN = 2**31


def record(epoch: int, recipients: list[str], groups: dict[str, lineage.Vector],
           above: list[str], taken: Iterable[str] | None = None) -> dict | None:
    """The record her re-key writes with the key of ``epoch``: ``recipients`` as ``derived_dek`` derived
    the key for them, the Group bodies seen, ``above``: the file and the folders over its names then (a
    share whose folder was not over it then is a move of hers since, not a grant she left out), and
    ``taken``: the Share ids her re-keys took
    back from it (``left_out``; None: no list, every grant outside the record counts as taken back);
    None past the bounds or off the shape ``shaped`` takes (no record, as before).  Counts only once
    ``proved``."""
    found = {"epoch": epoch, "to": sorted(recipients), "groups": groups, "above": sorted(set(above)),
             **({} if taken is None else {"taken": sorted(set(taken))})}
    return found if shaped(found) else None


def proved(key: MasterKey, fid: str, dek: bytes, found: dict | None) -> dict | None:
    """``found`` (``record``'s) with her proof of it for the key ``dek`` of ``fid``."""
    if found is None:
        return None
    return {**found, "proof": key.record_proof(fid, found["epoch"], dek, _digest(found))}


def hers(key: MasterKey, fid: str, epoch: int, dek: bytes | None, value: object) -> bool:
    """Whether ``value`` (a node's record, anyone's input) is one her re-key wrote for the key ``dek`` of
    ``fid`` at ``epoch``: her proof checks (``proved``)."""
    return (isinstance(value, dict) and bool(dek) and value.get("epoch") == epoch
            and key.proves_record(fid, epoch, dek, _digest(value), value.get("proof")))


def taken(key: MasterKey, owner: str, fid: str, epoch: int, dek: bytes | None, fresh: object,
          held: object) -> Any:
    """The record a node of ``owner`` keeps when it takes a state of key ``dek`` at ``epoch`` carrying
    ``fresh``, holding ``held``: on her device, the later (``later``) of ``fresh`` and ``held`` that are
    hers (``hers``) for that key (a member's state carries no record of his making, nor drops hers, nor
    brings back an earlier one of hers at that key: attack round 76a (1)), else none; on a member's (he
    cannot check hers), ``fresh`` as it came."""
    if owner != key.user_id:
        return fresh
    fresh_hers = hers(key, fid, epoch, dek, fresh)
    if fresh_hers and count(held) <= count(fresh):
        return fresh  # not earlier than the held (a tie: the last given): one proof checked, as before
    if hers(key, fid, epoch, dek, held):
        return later(held, fresh) if fresh_hers else held  # type: ignore[arg-type]  # dicts (``hers``)
    return fresh if fresh_hers else None


def below(key: MasterKey, owner: str, fid: str, epoch: int, dek: bytes | None, held: object,
          fresh_epoch: int, kept: dict | None) -> dict | None:
    """The record a node of ``owner`` holding ``held`` under the key ``dek`` at ``epoch`` keeps aside
    (``Guests.below``) when it takes a state under an older key (``fresh_epoch`` below: a WRITE member's
    state under the key he held, her own older state): ``held`` if hers for that key, else ``kept`` (the
    one kept aside before, when it is of a higher epoch still).  The re-key such a state is owed lists
    what it listed taken, though the node no longer holds it (attack round 76a (3)); None: nothing kept."""
    if owner != key.user_id or fresh_epoch >= epoch:
        return kept
    if hers(key, fid, epoch, dek, held) and (kept is None or kept["epoch"] <= epoch):
        return held  # type: ignore[return-value]  # ``hers`` checked it a dict
    return kept


def count(value: object) -> int:
    """The times her share command wrote the record again at its key (``given_again``): 0 for a re-key's
    record, or one of a build before the count (attack round 76a (1)); under her proof (``_digest``)."""
    again = value.get("again", 0) if isinstance(value, dict) else 0
    return again if isinstance(again, int) and not isinstance(again, bool) else 0


def later(first: dict, *others: dict) -> dict:
    """Of her records at one key (each ``hers``), the one written last: the highest ``count`` (her share
    command's writes at that key are ordered by it), the last given of equal counts.  Two records of one
    key her proof proves exist since her share command writes the record again (attack round 75a (1));
    without an order, any state carrying the earlier (a member's replay, his honest edit made apart and
    settled) put back the Share she gave again as taken (attack round 76a (1))."""
    best = first
    for other in others:
        if count(other) >= count(best):
            best = other
    return best


def _digest(value: dict) -> bytes:
    """The record less its proof (and ``covers``'s sets), as JSON in one form."""
    body = {k: v for k, v in value.items() if k in _FIELDS or k in ("taken", "again")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).digest()


def shaped(value: object) -> bool:
    """Whether a document's record has the shape ``record`` gives one (anyone's input, bounded): its
    entries of the shape of ids (``entry``, ``sharing.doc_id``), vectors of at most ``MAX_DEVICES``, at most
    ``MAX_BYTES`` of JSON in all (attack round 73a (3))."""
    if not isinstance(value, dict) or not _FIELDS <= set(value) <= _FIELDS | _OPTIONAL:
        return False
    epoch, to, groups = value["epoch"], value["to"], value["groups"]
    above, taken = value["above"], value.get("taken", [])
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch < 2**53:
        return False
    if "proof" in value and not (isinstance(value["proof"], str) and _PROOF.fullmatch(value["proof"])):
        return False
    again = value.get("again", 1)
    if isinstance(again, bool) or not isinstance(again, int) or not 1 <= again <= MAX_AGAIN:
        return False
    if not isinstance(above, list) or len(above) > MAX_TO or not all(is_id(f) for f in above):
        return False
    for entries, pattern in ((taken, _SHARE), (to, _TO)):
        if not isinstance(entries, list) or len(entries) > MAX_TO or not all(
                isinstance(e, str) and len(e) <= MAX_ENTRY and pattern.fullmatch(e) for e in entries):
            return False
    if not isinstance(groups, dict) or len(groups) > MAX_GROUPS or not all(
            is_id(g) and isinstance(v, dict) and len(v) <= MAX_DEVICES for g, v in groups.items()):
        return False
    try:
        if not all(lineage.parsed(v) for v in groups.values()):
            return False
    except ValueError:
        return False
    return len(json.dumps(value, separators=(",", ":"))) <= MAX_BYTES


def shared_fid(share_id: str) -> str | None:
    """The file (folder) a Share id of ``taken`` (``sharing.doc_id``) grants; None for no such id."""
    return share_id[6:38] if _SHARE.fullmatch(share_id) else None


def entry(owner: str, fid: str, grantee: str, recipient: str) -> str:
    """A recipient's place in the list (``her_keys.recipients`` adds the permission after it)."""
    return f"{owner}:{fid}:{grantee}:{recipient}:"


def in_force(value: Any, epoch: int) -> dict | None:
    """The node's record if it is the one of its key's epoch (a later re-key of older code keeps the
    earlier record in the node: not this key's): a copy, so the sets ``covers`` keeps are never
    written into the node's own, which its commits carry over."""
    return dict(value) if isinstance(value, dict) and value.get("epoch") == epoch else None


def covers(found: dict, owner: str, fid: str, grantee: str, recipient: str) -> bool:
    """Whether the re-key of the record sealed its key to ``recipient`` through that grant (whatever the
    permission then: a change of it is no new reader), or the grant is on a folder that was not over the
    file then (her move of it since: its new readers are hers to give).  A look in sets made once a
    record (``_named``): a big group's members each looked up at an unlock cost one look each."""
    to, above = _named(found)
    return fid not in above or entry(owner, fid, grantee, recipient) in to


def _named(found: dict) -> tuple[frozenset[str], frozenset[str]]:
    """The record's entries without their permission, and its folders, as sets (kept in the record)."""
    cached = found.get(_SETS)
    if cached is None:
        cached = (frozenset(r.rpartition(":")[0] + ":" for r in found["to"]), frozenset(found["above"]))
        found[_SETS] = cached
    return cached


_SETS = "\0sets"  # a key no document's record has (``shaped`` refuses any other field)


def left_out(found: dict, fid: str, grantee: str, body: dict | None) -> bool:
    """Whether a grant (its Share on ``fid`` to ``grantee``; ``body``: the Group body here of a group
    share, None for a user's) outside the record (not ``covers``, no member added since) is one her
    re-keys took back: its Share is one they took (``taken``: her unshare, carried from her earlier
    record), or a group share's body here is not the body they saw nor newer (an older one served
    again, naming a member she removed; one made apart).  A grant they never saw taken is not: her share
    made on her other device before this re-key reached it, a group shared since (attack round 73a (4)),
    a member under the very body the re-key saw (his user document missing then: 73a (2)); it is sealed
    as usual.  A record without ``taken`` (of no build that proves one) counts every grant
    outside it as taken back, as round 71d's did."""
    taken = found.get("taken")
    if taken is None or f"share-{fid}-{grantee}" in taken:
        return True
    seen = found["groups"].get(grantee)
    if body is None or seen is None:
        return False  # a user's share, or a group share the re-key did not see
    try:
        here = lineage.of(body)
    except lineage.Malformed:
        return True
    return here is None or lineage.compare(here, lineage.parsed(seen)) not in (lineage.Order.SAME,
                                                                                lineage.Order.NEWER)


def group_newer(found: dict, fid: str, group_id: str, body: dict | None) -> bool:
    """Whether the Group body here was signed after the one the re-key saw (a member added since is no
    member she removed); never for one the re-key did not see, nor for a body without a vector, nor for a
    group Share on ``fid`` her re-keys took back (``taken``): a member added since to a group she unshared
    is no member of a grant in force (her desktop's re-key, the Share served again there, saw its body: a
    member added later was sealed there; attack round 75a (1)).  Her share command, giving it again,
    takes it out of ``taken`` (``given_again``)."""
    seen = found["groups"].get(group_id)
    if seen is None or body is None or f"share-{fid}-{group_id}" in found.get("taken", ()):
        return False
    try:
        here = lineage.of(body)
    except lineage.Malformed:
        return False
    return here is not None and lineage.compare(here, lineage.parsed(seen)) is lineage.Order.NEWER


def given_again(found: dict, share_id: str, entries: Iterable[str], group_id: str | None,
                vector: lineage.Vector | None) -> dict | None:
    """Her record ``found`` of a node's key once her share command gave ``share_id`` again at that key
    (vault/services/share_ops.py ``_recorded_again``; ``proved`` afresh): the Share out of ``taken``,
    the recipients it sealed (``entries``, as ``her_keys.recipients`` names them) in ``to``, and for a
    group share (``group_id``) the Group body's ``vector`` here (kept the record's where that is newer:
    a member she removed elsewhere stays out, as ``rekeying._groups_seen`` keeps it), so a member added
    since is ``group_newer`` and sealed on every device.  Without it her unshare's record said the Share
    taken back for good: a member added after she shared again was sealed nothing, and said a replay
    (attack round 75a (1)).  Its count (``again``) one above ``found``'s: the later of the two at that key,
    whichever a state carries (``later``, attack round 76a (1)).  Every other Share her re-keys took back
    stays taken.  None when the record
    does not name the Share taken (nothing to give again: sealed as usual) or off the bounds."""
    taken = found.get("taken")
    if taken is None or share_id not in taken:
        return None
    groups = dict(found["groups"])
    if group_id is not None and vector is not None:
        try:
            before = lineage.parsed(groups[group_id]) if group_id in groups else None
        except ValueError:  # never in a record ``shaped`` took
            before = None
        if before is None or lineage.compare(vector, before) in (lineage.Order.SAME, lineage.Order.NEWER):
            groups[group_id] = vector
    rest = [t for t in taken if t != share_id]
    again = count(found) + 1  # ordered after ``found`` at this key (``later``: attack round 76a (1))
    if again > MAX_AGAIN:
        return None
    # Past the bounds (``MAX_TO`` with the members named, a vector of more than ``MAX_DEVICES``): the Share
    # out of ``taken`` says them all the same (a member under the body seen, one added since, or of a group
    # whose body no record saw, is no grant taken back: ``left_out``).
    tries = ((sorted({*found["to"], *entries}), groups), (list(found["to"]), groups),
             (list(found["to"]), found["groups"]))
    return next(({**written, "again": again} for to, seen in tries
                 if (written := record(found["epoch"], to, seen, found["above"], rest)) is not None
                 and shaped({**written, "again": again})), None)
