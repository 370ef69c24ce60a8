"""The re-keys this device owes: keys of her files it took back whose new key is not committed yet.

Taking a key back (``unshare``, a file moved out of a share, a key no share reaches now) is two steps:
the recipient's key files go, then the file (and all under it) gets a new DEK.  Between them the
revoked member still opens whatever is written under the old DEK, and a crash, a kill or an unmount
can fall there.  Her signed ``Rotation`` request in the store was the only trace of the step left to
do, and whoever writes the store (the vault folder, a peer) may withhold any document: the next unlock
then never re-keyed, and ``unshare`` again said "not shared" (no Share, no key file left), the file
under the revoked DEK for good (attack round 58d (1), (2)).

So the debt is recorded here first, on this device, outside the vault (``paths.confirmed_file``, beside
rotations_done.py's records), sealed under her master key (``seal_device``: no one without it makes or
changes one), written temp + fsync + rename BEFORE any key file goes or the store says the share is
gone; it is paid (its entry dropped) only once the file's new key is committed here
(vault/services/rotation.py ``rotate``), or found committed by a device of hers since.  Every unlock
finishes what is owed whatever the store holds (rotation.py ``_pay_owed``), and ``unshare`` run again
for a share with a debt open finishes it.  Each entry: the file id, its key epoch when the key was taken
back (a later epoch under her own key says it was re-keyed since), the Share ids it was taken from (what
``unshare`` again is about) and a random token (a debt recorded again while a re-key of it runs is not
paid by that re-key, which began before it).

A record that does not open (damaged, not hers) is said, never fatal: what it owed is then owed only
through the store's requests, as before it; it is set aside (``.damaged``) when a new debt is recorded.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fusevault import paths
from fusevault.encoding import SAFE_INTEGER
from fusevault.errors import VaultError
from fusevault.vault.format.layout import is_id
from fusevault.vault.model import device_file

if TYPE_CHECKING:
    from fusevault.crypto.keys import MasterKey

KIND = "rekeys-owed"
SUFFIX = ".rekeys-owed"
# Debts kept at most (the oldest forgotten first, said): a debt is paid at the next unlock at the latest,
# so only files gone from her tree (purged) stay owed; this many is far above what is ever open.
KEEP = 4096
log = logging.getLogger(__name__)
# One writer at a time in this process (the unshare command and the session's move service).
_writing = threading.Lock()


@dataclass(frozen=True)
class Debt:
    fid: str
    epoch: int  # the file's key epoch when its keys were taken back
    shares: frozenset[str]  # the Share ids (sharing.doc_id) they were taken from (none: keys no share gave)
    token: str


class Owed(dict[str, Debt]):
    """fid -> what this device owes it, oldest first; ``damaged``: the record did not open."""

    damaged: bool = False

    def __init__(self) -> None:
        super().__init__()
        # The Shares an ``unshare`` here took back, their re-key still owed, each with the stamp of the
        # newest body of it seen here then: that body (or an older one) is taken back again at every
        # load, whatever the store serves (attack round 59c (1)); a newer signing of hers (sharing
        # again on another device) is not (61a (1)).  Not the Shares a debt merely names: a file moved
        # out of a folder names the folder's Share, still in force (60a (1)).
        self.taken: dict[str, int] = {}
        # The Shares of ``taken`` read from a record of the build before stamps (a list of ids): each
        # stamped at the first load that reads it (``taken_at_load``), then written back.
        self.unstamped: set[str] = set()


def _place(root: Path | str, user_id: str) -> Path:
    return paths.confirmed_file(root, user_id, SUFFIX)


def owed(root: Path | str, key: MasterKey) -> Owed:
    """The re-keys this device owes in the vault at ``root`` (none recorded: empty)."""
    out = Owed()
    try:
        record = device_file.read_json(_place(root, key.user_id), key, KIND)
        if record is None:
            return out
        rows, taken = record.get("owed"), record.get("taken", {})
        if isinstance(taken, list):
            # Written by a build of round 60a (no stamps): each taken back whatever its body, as that
            # build did, until the first load stamps it (``taken_at_load``); never the debts lost with
            # it (attack round 62a (2)).
            taken = {share: SAFE_INTEGER for share in taken if isinstance(share, str)}
            out.unstamped = set(taken)
        if not isinstance(rows, list) or not isinstance(taken, dict):
            raise device_file.Damaged("it holds no list of debts")
    except device_file.Damaged as err:
        log.error("this device's record of the re-keys it owes does not open (%s): not used", err)
        out.damaged = True
        return out
    for row in rows:
        debt = _debt(row)
        if debt is None:
            log.error("an entry of this device's record of the re-keys it owes is malformed: skipped")
            out.damaged = True
            continue
        out.pop(debt.fid, None)
        out[debt.fid] = debt
    out.taken = {share: made for share, made in taken.items()
                 if isinstance(made, int) and not isinstance(made, bool) and abs(made) <= SAFE_INTEGER}
    return out


def taken_at_load(root: Path | str, key: MasterKey,
                  taken_back: Callable[[str], int | None]) -> dict[str, int]:
    """The Shares to take back at this load (``Owed.taken``), each with its stamp.  Those of a record of
    the build before stamps (a list: taken back whatever its body) are stamped first with the body that
    build's ``unshare`` took back, as this build's records (share_ops.py ``unshare``): ``taken_back`` is
    freshness.py ``Freshness.taken_back_stamp``, the body this device's freshness record marks as taken
    back, the newest seen only where it marks none.  Not the newest seen alone: that build's loads take
    the listed Shares back as they begin and then admit a newer signing of hers (her re-share on another
    device), so after one such load the newest seen is her re-share, which, stamped as taken back, was
    taken back at every load of this build, for good while the debt was owed (attack round 64a (2)).
    One no body of which was ever seen here is dropped, as this build's ``unshare`` records none.  Where
    the mark is older than the body that build's unshare took back (its unshare cut short before the
    mark was saved, a mark left from an earlier unshare of the same Share, and no load of that build
    since), that body is not taken back again: docs/SECURITY.md's open list.  The record is written back at
    once: stamped at a later load, her re-share seen meanwhile (another device's newer signing) was
    taken back at every load while a debt named it, for good with a debt whose file is gone (attack
    round 63a (3)).  Written back only when it opened whole (a damaged one is set aside only by
    ``owe``, its alarm said first); not written, the stamps hold for this load and are tried again at
    the next."""
    with _writing:
        kept = owed(root, key)
        if not kept.unstamped:
            return kept.taken
        for share in kept.unstamped:
            made = taken_back(share)
            if made is None:
                kept.taken.pop(share, None)
            else:
                kept.taken[share] = made
        if not kept.damaged:
            try:
                _write(root, key, kept)
            except VaultError as err:
                log.error("%s", err)
        return kept.taken


def _debt(row: object) -> Debt | None:
    if not isinstance(row, dict):
        return None
    fid, epoch, shares, token = row.get("fid"), row.get("epoch"), row.get("shares"), row.get("token")
    whole = isinstance(epoch, int) and not isinstance(epoch, bool) and 0 <= epoch <= SAFE_INTEGER
    if not (is_id(fid) and whole and isinstance(token, str) and isinstance(shares, list)
            and all(isinstance(s, str) for s in shares)):
        return None
    return Debt(str(fid), epoch, frozenset(shares), token)


def owe(root: Path | str, key: MasterKey, debts: Iterable[tuple[str, int, Iterable[str]]],
        taken: dict[str, int] | None = None) -> dict[str, str]:
    """Record the re-keys of ``debts`` (fid, its key epoch now, the Share ids its keys are taken from)
    as owed, durably, before any key goes; fid -> the token its re-key pays.  One owed already keeps
    the lower epoch and the Shares of both, under a new token.  Raises ``VaultError`` when it cannot
    be recorded: then nothing may be taken back (the caller stops)."""
    with _writing:
        kept = owed(root, key)
        tokens = {}
        for fid, epoch, shares in debts:
            before = kept.pop(fid, None)
            if before is not None:
                epoch, shares = min(epoch, before.epoch), {*shares, *before.shares}
            tokens[fid] = secrets.token_hex(16)
            kept[fid] = Debt(fid, epoch, frozenset(shares), tokens[fid])
        for share, made in (taken or {}).items():  # the Shares an ``unshare`` takes back (``Owed.taken``)
            kept.taken[share] = max(made, kept.taken.get(share, made))
        _write(root, key, kept)
        return tokens


def paid(root: Path | str, key: MasterKey, fid: str, token: str) -> None:
    """The debt of ``fid`` recorded under ``token`` is paid (its new key committed).  One recorded
    again since (another token) stays; a failure to record it costs one more re-key at the next unlock."""
    with _writing:
        kept = owed(root, key)
        if (debt := kept.get(fid)) is None or debt.token != token:
            return
        del kept[fid]
        try:
            _write(root, key, kept)
        except VaultError as err:
            log.error("%s", err)


def given_again(root: Path | str, key: MasterKey, share_id: str) -> None:
    """Share ``share_id`` is given again (her ``share``): no longer taken back at each load (else her new
    Share was refused at the next one); the re-keys owed stay.  Raises ``VaultError`` when it cannot be
    recorded: then the share is not given (the caller stops)."""
    with _writing:
        kept = owed(root, key)
        if share_id not in kept.taken:
            return
        del kept.taken[share_id]
        _write(root, key, kept)


def _write(root: Path | str, key: MasterKey, kept: Owed) -> None:
    path = _place(root, key.user_id)
    rows = list(kept.values())
    if len(rows) > KEEP:
        log.error("this device owes more than %d re-keys: the %d oldest forgotten", KEEP, len(rows) - KEEP)
        rows = rows[-KEEP:]
    named = {share for d in rows for share in d.shares}  # a Share no debt names is owed nothing more
    plain = json.dumps({"owed": [{"fid": d.fid, "epoch": d.epoch, "shares": sorted(d.shares),
                                  "token": d.token} for d in rows],
                        "taken": {s: made for s, made in sorted(kept.taken.items()) if s in named}}).encode()
    try:
        # A damaged record is set aside, never read again: the new one starts from what opened.
        device_file.write(path, key, KIND, plain, set_aside=kept.damaged)
    except OSError as err:
        raise VaultError(f"could not record on this device the re-keys it owes ({err}): nothing taken "
                         "back; try again") from err
