"""For whom her re-key made a file's key: no device extends that key to anyone else (attack round 71d (1)).

Her re-key gives the file a key derived for the recipients her device sees then (vault/model/her_keys.py
``derived_dek``), and writes their list into the node's sealed fields with the key (``record``): the
grant (owner, file, grantee) and recipient of each, and the signed version vector of each Group whose
members it reached.  Her other device, which may still hold a grant she took back (a Share whose deletion
the server kept from it and serves again, an older Group body naming a member she removed), seals the
key of that epoch only to those the record names (``covers``), or to a group's member added since (its
Group body here newer than the one the re-key saw).  A grant outside it is one her newer re-key left out:
taken for taken back (said, ``replayed-grant``) until she shares again, whose command seals the key
itself (vault/services/share_ops.py).  The record is in her signed state of the node, sealed under the
key: the server neither reads nor forges it.  A node with none (a first key, a re-key of older code: no
migration, the next re-key writes one) is sealed as before.
"""

from __future__ import annotations

from typing import Any

from fusevault.vault.model import lineage

# Entries of a record at most: a re-key reaches no more recipients than this (one past it keeps no
# record: sealed as before, the limit in docs/SECURITY.md); larger from a document is refused.
MAX_TO = 4096
MAX_ENTRY = 1024  # characters of one entry (ids and a permission)
MAX_GROUPS = 256


def record(epoch: int, recipients: list[str], groups: dict[str, lineage.Vector],
           above: list[str]) -> dict | None:
    """The record her re-key writes with the key of ``epoch``: ``recipients`` as ``derived_dek`` derived
    the key for them, the Group bodies seen, and ``above``: the file and the folders over its names
    then (a share whose folder was not over it then is a move of hers since, not a grant she left out);
    None past the bounds (no record, as before)."""
    if len(recipients) > MAX_TO or len(groups) > MAX_GROUPS or len(above) > MAX_TO or any(
            len(r) > MAX_ENTRY for r in [*recipients, *above]):
        return None
    return {"epoch": epoch, "to": sorted(recipients), "groups": groups, "above": sorted(set(above))}


def shaped(value: object) -> bool:
    """Whether a document's record has the shape ``record`` gives one (anyone's input, bounded)."""
    if not isinstance(value, dict) or set(value) != {"epoch", "to", "groups", "above"}:
        return False
    epoch, to, groups = value["epoch"], value["to"], value["groups"]
    above = value["above"]
    if not isinstance(above, list) or len(above) > MAX_TO or not all(
            isinstance(f, str) and len(f) <= MAX_ENTRY for f in above):
        return False
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch < 2**53:
        return False
    if not isinstance(to, list) or len(to) > MAX_TO or not all(
            isinstance(r, str) and len(r) <= MAX_ENTRY for r in to):
        return False
    if not isinstance(groups, dict) or len(groups) > MAX_GROUPS:
        return False
    try:
        return all(isinstance(g, str) and len(g) <= MAX_ENTRY and bool(lineage.parsed(v))
                   for g, v in groups.items())
    except ValueError:
        return False


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


def group_newer(found: dict, group_id: str, body: dict | None) -> bool:
    """Whether the Group body here was signed after the one the re-key saw (a member added since is no
    member she removed); never for one the re-key did not see, nor for a body without a vector."""
    seen = found["groups"].get(group_id)
    if seen is None or body is None:
        return False
    try:
        here = lineage.of(body)
    except lineage.Malformed:
        return False
    return here is not None and lineage.compare(here, lineage.parsed(seen)) is lineage.Order.NEWER
