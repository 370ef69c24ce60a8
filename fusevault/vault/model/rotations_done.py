"""This device's memory of the key-rotation requests of group owners it carried out.

A group owner's ``group member remove`` signs a ``Rotation`` for each file of another user shared
with the group (vault/model/sharing.py ``rotations``), naming the file's key epoch as his device
sees it.  He cannot read her node, so that epoch is whatever the store showed him in clear: a
writer of the store moved it up (the request then named an epoch the file never had, and was
dropped: the removed member kept the key, attack round 20 (3)) or down (then it looked done).  So
her device does not judge a group owner's request by its epoch: it carries it out unless it did so
before, and remembers its digest here; a replay of it (the server, the store writer) finds it done
and asks for nothing (a replay re-keyed her tree at every unlock: round 19 (3)).  A request is
known by what its signer signed (``digest``), a random nonce among it, so a second removal is never
the first one again (attack round 21 (1) and (2)).  A device that
never saw a request carries it out once: a re-key is always safe, only its cost is repeated.  Her
own requests (``unshare``) name the epoch her own verified tree had, and are judged by it
(vault/services/rotation.py ``resume``).

Kept beside what this device confirmed for her (paths.confirmed_file, temp + fsync + rename); not
sealed: it holds digests of documents the store holds in clear anyway.  Lost, it only costs one
more re-key per request replayed.

Beside it, the members this device sealed each of her group shares' keys to (``sealed_members``):
a member the group's signed body no longer names is a removal even if its request was withheld
(attack round 22a (3)).  Lost, a removal made before the loss is carried out only through its request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path

from fusevault import paths
from fusevault.crypto.signing import canonical, signer_of
from fusevault.encoding import JSON_LIMIT, loads_untrusted
from fusevault.errors import VaultError
from fusevault.vault.format.atomic import atomic_write
from fusevault.vault.model import device_file

KEEP = 512  # requests remembered (the oldest forgotten first)
DONE_LIMIT = 1 << 20  # the record's bound: KEEP digests are some 35 KB of JSON; a larger file is none of ours
log = logging.getLogger(__name__)


def digest(doc: dict) -> str:
    """The request as its signer signed it: the signer and what the signature covers
    (``signing.canonical``), never the bytes around it a store writer may change freely (the ``sig``
    object's other members, ``_rev``): one with a padded ``sig`` object was new each time, and
    re-keyed her file at every replay (attack round 21 (2)).  The caller has verified the signature;
    a request that cannot be put in canonical form has none (``Forged``)."""
    signed = f"{signer_of(doc)}\n".encode() + canonical(doc)
    return hashlib.sha256(signed).hexdigest()


def _place(root: Path | str, user_id: str) -> Path:
    return paths.confirmed_file(root, user_id, ".rotations")


def _done(root: Path | str, user_id: str) -> list[str]:
    try:
        kept = loads_untrusted(device_file.read_own(_place(root, user_id), DONE_LIMIT))
    except FileNotFoundError:
        return []
    except (OSError, device_file.Damaged, VaultError, ValueError) as err:  # a link, a FIFO, ...: damaged
        log.error("this device's record of the key rotations it did is unreadable (%s): not used", err)
        return []
    return [d for d in kept if isinstance(d, str)] if isinstance(kept, list) else []


def done(root: Path | str, user_id: str, doc: dict) -> bool:
    """Whether this device carried out ``doc`` for ``user_id`` already."""
    return digest(doc) in _done(root, user_id)


def remember(root: Path | str, user_id: str, doc: dict) -> None:
    """``doc`` carried out here (a failure to record it costs one more re-key if it is replayed)."""
    kept = [d for d in _done(root, user_id) if d != digest(doc)]
    path = _place(root, user_id)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(path, json.dumps([*kept, digest(doc)][-KEEP:]).encode())
    except OSError as err:
        log.error("could not record a key rotation done on this device: %s", err)


# --- the members this device sealed each group share's keys to (attack round 22a (3))
#
# A member's removal reaches her device as two documents: the group owner's signed body without the
# member, and his Rotation request.  The request alone asked for the re-key, so a server (or a writer of
# the vault folder) that deleted it left the removed member holding her file's key, nothing said.  The
# signed body is enough: this device remembers, per share of hers with a group (its Share id), the members
# it sealed that share's keys to; a member the group's admitted body no longer names is a removal, and her
# files shared with the group are re-keyed as if the request were there (rotation.py ``resume``).

SEALED_KEEP = 4096  # shares remembered (the oldest forgotten first: then taken as they are, no re-key)
# The record's bound: SEALED_KEEP shares, each with its group's members (no number of members is bounded):
# what loads_untrusted parses at most.
SEALED_LIMIT = JSON_LIMIT


def _sealed_place(root: Path | str, user_id: str) -> Path:
    return paths.confirmed_file(root, user_id, ".sealed-members")


def sealed_members(root: Path | str, user_id: str) -> dict[str, set[str]]:
    """Share id -> the group members this device sealed that share's keys to (none known: absent)."""
    kept = _record(_sealed_place(root, user_id), "the group members it sealed keys to", SEALED_LIMIT)
    return {sid: {m for m in members if isinstance(m, str)} for sid, members in kept.items()
            if isinstance(sid, str) and isinstance(members, list)}


def remember_members(root: Path | str, user_id: str, sealed: dict[str, set[str]]) -> None:
    """Record the members each share in ``sealed`` has its keys sealed to now (the others kept); a
    failure to record costs at most one more re-key, or a removal seen only through its request."""
    kept = sealed_members(root, user_id)
    for sid in sealed:
        kept.pop(sid, None)  # re-inserted last: the newest are the ones kept
    kept.update(sealed)
    rows = list(kept.items())[-SEALED_KEEP:]
    path = _sealed_place(root, user_id)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(path, json.dumps({sid: sorted(members) for sid, members in rows}).encode())
    except OSError as err:
        log.error("could not record the group members this device sealed keys to: %s", err)


# Beside them, when this device last re-keyed a file for a key at a group's place whose record names no
# group (vault/services/stale_keys.py ``counts_as_removal``): such a key is either one sealed before keys
# named their group (its recipient removed since: re-keyed) or a user's share's key copied there (by a
# vault-folder writer or the server: no removal).  The record cannot tell them apart, so each place costs
# at most one re-key per ``UNBOUND_EVERY`` (attack rounds 46c (2), 47b (1)).  At most ``UNBOUND_KEEP``
# places are kept; past them the record is full for ``UNBOUND_EVERY`` and no further place counts: a place
# forgotten costs nothing, never one more re-key (a copier with more places than that had every pass
# re-key them again: 49b (2)).  Lost, it costs one more re-key per place.
UNBOUND_EVERY = 24 * 3600.0  # seconds between two re-keys for a key naming no group at one place
UNBOUND_KEEP = 1024  # places remembered; past them, no further place counts until the day is over
UNBOUND_LIMIT = 4 << 20  # the record's bound: UNBOUND_KEEP places and times, some 200 KB of JSON


class UnboundRekeys(dict[str, float]):
    """Key place -> when this device re-keyed its file for a key there naming no group (less than
    ``UNBOUND_EVERY`` ago); ``full_since``: when it last re-keyed for more places than ``UNBOUND_KEEP``
    within that while (None: not then): until ``UNBOUND_EVERY`` after it, no further place counts."""

    full_since: float | None = None

    def copy(self) -> UnboundRekeys:
        out = UnboundRekeys(self)
        out.full_since = self.full_since
        return out


def _unbound_place(root: Path | str, user_id: str) -> Path:
    return paths.confirmed_file(root, user_id, ".unbound-rekeys")


def _when(value: object, now: float) -> float | None:
    """A time of the record, if it reads and is less than ``UNBOUND_EVERY`` before ``now``."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) \
            and now - value < UNBOUND_EVERY:
        return float(value)
    return None


def unbound_rekeys(root: Path | str, user_id: str, now: float) -> UnboundRekeys:
    """This device's re-keys for keys naming no group, those less than ``UNBOUND_EVERY`` before ``now``
    (older ones pruned; at most ``UNBOUND_KEEP``), and whether the record is full (``full_since``)."""
    kept = _record(_unbound_place(root, user_id), "its re-keys for keys naming no group", UNBOUND_LIMIT)
    places = kept.get("places")
    if not isinstance(places, dict):  # the record before 49b (2): the places alone
        places, kept = kept, {}
    rows = [(at, when) for at, value in places.items() if isinstance(at, str) and (when := _when(value, now))
            is not None]
    out = UnboundRekeys(rows[-UNBOUND_KEEP:])
    out.full_since = _when(kept.get("full_since"), now)
    return out


def remember_unbound(root: Path | str, user_id: str, recent: UnboundRekeys) -> None:
    """Record ``recent`` (``unbound_rekeys``' with this pass's re-keys added last): its newest
    ``UNBOUND_KEEP`` places and, if it holds more (some forgotten), full since its newest re-key.  A
    failure to record costs at most one more re-key per place."""
    full_since = recent.full_since
    if len(recent) > UNBOUND_KEEP:
        full_since = max(full_since or 0.0, *recent.values())
    rows = dict(list(recent.items())[-UNBOUND_KEEP:])
    path = _unbound_place(root, user_id)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(path, json.dumps({"places": rows, "full_since": full_since}).encode())
    except OSError as err:
        log.error("could not record this device's re-keys for keys naming no group: %s", err)


def _record(path: Path, what: str, limit: int) -> dict:
    """One of this device's records (a JSON object, at most ``limit`` bytes), or {} when there is none
    or it does not read (logged: a lost record costs at most one more re-key)."""
    try:
        kept = loads_untrusted(device_file.read_own(path, limit))
    except FileNotFoundError:
        return {}
    except (OSError, device_file.Damaged, VaultError, ValueError) as err:  # a link, a FIFO, ...: damaged
        log.error("this device's record of %s is unreadable (%s): not used", what, err)
        return {}
    return kept if isinstance(kept, dict) else {}
