"""The seed 003 sidecar (``<fid>.vfmeta``): FILE_ID, OWNER_ID, ACL, authenticated
under the file's key (not encrypted: it holds no secret)."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from fusevault.crypto import aead
from fusevault.encoding import b64d, b64e, loads_untrusted
from fusevault.errors import CorruptData
from fusevault.vault.format import inside
from fusevault.vault.format.vf import VF_FORMAT

if TYPE_CHECKING:
    from fusevault.vault.format.layout import Layout
    from fusevault.vault.model.alarms import Alarms

log = logging.getLogger("fusevault.vault.files.content")  # what `fusevault check` quiets (cli_check.py)


def vfmeta_bytes(fid: str, owner: str, dek: bytes, acl: list[str], epoch: int = 0) -> bytes:
    """The seed 003 sidecar, authenticated (not encrypted: it holds no secret)."""
    fields = {"FILE_ID": fid, "OWNER_ID": owner, "ACL": acl, "format": VF_FORMAT}
    if epoch:
        fields["epoch"] = epoch
    canon = json.dumps(fields, sort_keys=True).encode()
    fields["tag"] = b64e(aead.seal(dek, b"", aead.ad("vfmeta", canon)))
    return json.dumps(fields, indent=1).encode()


def write_vfmeta(layout: Layout, owner: str, fid: str, dek: bytes, acl: list[str], epoch: int) -> None:
    """The file's sidecar written (replaced) from the documents."""
    inside.write_file(layout.root, layout.own_names(owner), layout.vfmeta_path(owner, fid).name,
                      vfmeta_bytes(fid, owner, dek, acl, epoch))


def check_vfmeta(data: bytes, fid: str, owner: str, dek: bytes, epoch: int = 0,
                 alarms: Alarms | None = None) -> dict | None:
    """The sidecar's fields once authenticated; None when it must be written again from the documents.

    Nothing in it is used before its tag is checked under ``dek``: then its
    FILE_ID and OWNER_ID must be the node's.  One that does not authenticate
    is of another epoch of the file's key, or forged.  Its ``epoch`` is then
    only a claim: older than ``dek``'s (a crash between a revoke and the
    rewrite), the sidecar is written again from the documents; newer (a
    recipient not given the file's new key yet, or the owner's mount holding
    a version a recipient wrote under the older key), it cannot be checked
    and nothing is rewritten: the reader relies on the header and on the
    records' own authentication (the sidecar holds no secret and decides
    nothing), and raises an alarm when the claim cannot be true (another
    file's or owner's sidecar).  The same epoch and no authentication: EIO."""
    try:
        fields = loads_untrusted(data)
        tag = b64d(fields.pop("tag"))
        canon = json.dumps(fields, sort_keys=True).encode()
        claimed = int(fields.get("epoch", 0))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise CorruptData(f"sidecar of {fid} is damaged") from None
    try:
        aead.unseal(dek, tag, aead.ad("vfmeta", canon))
    except CorruptData:
        if claimed < epoch:
            return None
        if claimed == epoch:
            _sidecar_alarm(alarms, fid, f"the sidecar of file {fid} fails authentication")
            raise CorruptData(f"sidecar of {fid} fails authentication") from None
        if fields.get("FILE_ID") != fid or fields.get("OWNER_ID") != owner:
            _sidecar_alarm(alarms, fid, f"the sidecar of file {fid} claims a newer key but names another "
                           "file or owner: forged; not used (the file's records are checked on their own)")
        return {}  # unchecked: nothing of it is used, nothing is rewritten
    if fields.get("FILE_ID") != fid or fields.get("OWNER_ID") != owner:
        _sidecar_alarm(alarms, fid, f"the sidecar of file {fid} names another file or owner")
        raise CorruptData(f"sidecar of {fid} belongs to another file or owner")
    return None if claimed < epoch else fields


def _sidecar_alarm(alarms: Alarms | None, fid: str, text: str) -> None:
    if alarms is not None:
        alarms.warn("sidecar", fid, text)
    else:
        log.warning("%s", text)
