"""The grants her records showed taken back, kept on this device (attack round 75a (2), (3)).

A grant her re-key on another device took back (a Share served again here whose deletion the store
keeps from this device, a Group body naming a member she removed) is found left out only through her
record of the file's key (vault/model/sealed_for.py, ``Guests.note_left``, ``Guests.left``), and that
record lives in the node's state: the store's.  Served her own older states again, or unreadable ones
(rebuilt here from her material, with no record), or a WRITE member's states under the key he holds
(no record of hers), the next unlock found nothing left out, and its re-key and ``fill_missing`` sealed
the key to the grant taken back, unsaid.

So each grant found left out is kept here, outside the vault, sealed under her master key
(``seal_device``: no one without it makes or changes one), written temp + fsync + rename: its Share id,
the recipient, and the files whose record of hers left it out (fid -> that record's key epoch, at most
``WITNESSES``, the Share's folder always among them).  Every unlock takes them into ``left`` again
(``Guests.note_left``) unless her positive evidence on one of those files gives the grant again: a good
key of hers for the recipient of at least that epoch (her sharing again, on any device), her proven
record of such an epoch sealing to it, a Group body newer than that record saw; her share command here
drops the Share's entries (``given_again``).  A node loaded without her record of the epoch kept (older,
rebuilt, a member's) is no evidence, nor is a later record of hers that merely does not list the grant.

A record that does not open (damaged, not hers) is said, never fatal: the grants are then found only
through the records in the store, as before it; it is set aside (``.damaged``) at the next write.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from fusevault import paths
from fusevault.encoding import SAFE_INTEGER
from fusevault.errors import VaultError
from fusevault.vault.format.layout import is_id
from fusevault.vault.model import device_file, sealed_for

if TYPE_CHECKING:
    from fusevault.crypto.keys import MasterKey

KIND = "left-grants"
SUFFIX = ".left-grants"
# Grants kept at most (the oldest forgotten first, said): as many as a record names recipients.
KEEP = sealed_for.MAX_TO
# Files kept per grant (those of the newest epochs): one that resolves the grant is enough, more keep
# it judged when some are deleted or moved out.
WITNESSES = 4
log = logging.getLogger(__name__)
_writing = threading.Lock()

Place = tuple[str, str]  # (Share id, recipient)
Witnesses = dict[str, int]  # fid -> the epoch of her record there that left the grant out


class Kept(dict[Place, Witnesses]):
    """(Share id, recipient) -> its witnesses, oldest first; ``damaged``: the record did not open."""

    damaged: bool = False


def _place(root: Path | str, user_id: str) -> Path:
    return paths.confirmed_file(root, user_id, SUFFIX)


def read(root: Path | str, key: MasterKey) -> Kept:
    """The grants this device keeps taken back in the vault at ``root`` (none recorded: empty)."""
    out = Kept()
    try:
        record = device_file.read_json(_place(root, key.user_id), key, KIND)
        if record is None:
            return out
        rows = record.get("left")
        if not isinstance(rows, list):
            raise device_file.Damaged("it holds no list of grants")
    except device_file.Damaged as err:
        log.error("this device's record of the grants taken back does not open (%s): not used", err)
        out.damaged = True
        return out
    for row in rows[-KEEP:]:
        found = _row(row)
        if found is None:
            log.error("an entry of this device's record of the grants taken back is malformed: skipped")
            out.damaged = True
            continue
        out.pop(found[0], None)
        out[found[0]] = found[1]
    return out


def _row(row: object) -> tuple[Place, Witnesses] | None:
    if not isinstance(row, dict):
        return None
    share, recipient, seen = row.get("share"), row.get("recipient"), row.get("seen")
    if not (isinstance(share, str) and sealed_for.shared_fid(share) is not None and is_id(recipient)
            and isinstance(seen, dict) and 0 < len(seen) <= WITNESSES):
        return None
    if not all(is_id(fid) and isinstance(e, int) and not isinstance(e, bool) and 0 <= e <= SAFE_INTEGER
               for fid, e in seen.items()):
        return None
    return (share, str(recipient)), dict(seen)


def witnessed(seen: Witnesses, share: str, fid: str, epoch: int) -> None:
    """``fid``'s record at ``epoch`` left the grant of Share ``share`` out: kept among ``seen`` (those of
    the newest epochs, and always the Share's own folder: it stays while the Share means anything, where
    a file may be deleted, and her sharing again gives it a key too)."""
    seen[fid] = max(epoch, seen.get(fid, epoch))
    if len(seen) > WITNESSES:
        folder = sealed_for.shared_fid(share)
        del seen[min((f for f in seen if f != folder), key=lambda f: seen[f])]


def update(root: Path | str, key: MasterKey, found: Mapping[Place, Witnesses],
           dropped: Iterable[Place] = ()) -> None:
    """Keep the grants ``found`` left out here (merged with those kept), less ``dropped`` (her newer
    evidence here resolved them).  Written only when it changes; a failure is said (the grants are then
    found through the records in the store only, as before)."""
    with _writing:
        kept = read(root, key)
        before = {place: dict(seen) for place, seen in kept.items()}
        for place in dropped:
            kept.pop(place, None)
        for place, seen in found.items():
            mine = kept.pop(place, {})
            for fid, epoch in seen.items():
                witnessed(mine, place[0], fid, epoch)
            if mine:
                kept[place] = mine
        if kept == before and not kept.damaged:
            return
        try:
            _write(root, key, kept)
        except VaultError as err:
            log.error("%s", err)


def given_again(root: Path | str, key: MasterKey, share_id: str) -> None:
    """Share ``share_id`` is given again (her ``share`` here): none of its recipients is kept taken
    back.  Raises ``VaultError`` when it cannot be recorded (the caller stops: else the next unlock
    left out the grant she just gave)."""
    with _writing:
        kept = read(root, key)
        if not any(share == share_id for share, _ in kept):
            return
        for place in [p for p in kept if p[0] == share_id]:
            del kept[place]
        _write(root, key, kept)


def _write(root: Path | str, key: MasterKey, kept: Kept) -> None:
    path = _place(root, key.user_id)
    rows = list(kept.items())
    if len(rows) > KEEP:
        log.error("this device keeps more than %d grants taken back: the %d oldest forgotten", KEEP,
                  len(rows) - KEEP)
        rows = rows[-KEEP:]
    plain = json.dumps({"left": [{"share": share, "recipient": recipient, "seen": seen}
                                 for (share, recipient), seen in rows]}).encode()
    try:
        device_file.write(path, key, KIND, plain, set_aside=kept.damaged)
    except OSError as err:
        raise VaultError(f"could not record on this device the grants taken back ({err})") from err
