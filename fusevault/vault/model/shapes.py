"""The shape of the documents that grant: Share, Group and UserDetails, checked where they are read.

Anyone who writes the store can put a document of any shape, and a signature
(or an author from before signatures) says who made it, not that its fields
have the types the code indexes with.  A document of the wrong shape is
refused (an alarm, or a log line where no user is unlocked) and left out, so
one bad document never stops a mount or an admin command.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from fusevault.errors import NameClash, VaultNotFound
from fusevault.store import Store
from fusevault.vault.format.layout import is_id
from fusevault.vault.model.alarms import Alarms

log = logging.getLogger(__name__)

GROUP = "Group"
USER = "UserDetails"
SHARE = "Share"


def _str(doc: dict, *fields: str) -> bool:
    return all(isinstance(doc.get(f), str) for f in fields)


def share_ok(doc: dict) -> bool:
    # owner, fid and grantee become key files' paths (model/sharing.py ``key_path``).
    return (_str(doc, "_id", "owner", "fid", "grantee", "perm")
            and isinstance(doc.get("group", False), bool)
            and all(is_id(doc[f]) for f in ("owner", "fid", "grantee")))


def group_ok(doc: dict) -> bool:
    # Its id is groups/<gid>/ and each member's a key file's name in it (layout.py ``checked_id``).
    members = doc.get("users", {})
    return (_str(doc, "_id", "owner", "groupname")
            and is_id(doc["_id"]) and is_id(doc["owner"])
            and isinstance(members, dict)
            and all(is_id(u) and isinstance(p, str) for u, p in members.items()))


def user_ok(doc: dict) -> bool:
    # Its id is users/<uid>/, made and written at every mount (model/meta_files.py).
    return (_str(doc, "_id", "username")
            and is_id(doc["_id"])
            and all(doc.get(f) is None or isinstance(doc.get(f), str) for f in ("root", "public_box",
                                                                                "public_sign"))
            and (doc.get("uid") is None or (isinstance(doc.get("uid"), int)
                                            and not isinstance(doc.get("uid"), bool))))


_CHECKS = {SHARE: share_ok, GROUP: group_ok, USER: user_ok}


def ok(doc: dict, alarms: Alarms | None = None, kind: str | None = None) -> bool:
    """Whether ``doc`` has the shape of its kind (``kind``: the kind it was asked for as, which its
    body's type must be too); if not, say so (once) and refuse it."""
    check = _CHECKS.get(kind or doc.get("type"))  # type: ignore[arg-type]
    if (kind is None or doc.get("type") == kind) and (check is None or check(doc)):
        return True
    text = f"refused a malformed {kind or doc.get('type')} document {doc.get('_id')!r}: it is ignored"
    if alarms is not None:
        alarms.warn("malformed", str(doc.get("_id")), text)
    else:
        log.warning("%s", text)
    return False


def well_formed(store: Store, kind: str, alarms: Alarms | None = None) -> Iterator[dict]:
    """The documents of ``kind`` that have its shape.  Checked as ``kind``, not as the body says:
    the local store selects by the row's type column, which a store writer sets apart from the
    body (``{}`` typed only by its column had no check at all); and no body's ``_deleted`` passes
    unchecked (no store lists a deleted document by its type)."""
    for doc in store.iter_type(kind):
        if ok(doc, alarms, kind):
            yield doc


def one_named(docs: list[dict], field: str, name: str, what: str,
              pick: Callable[[list[dict]], dict | None] | None, way_out: str) -> dict:
    """The document whose ``field`` is ``name`` (or, if none, whose id is).
    Several claiming one name (a store writer can plant one, and chooses the
    store's order) are refused unless ``pick`` (what the caller trusts: its
    pins) chooses one; ``way_out`` ends the refusal's line."""
    matches = [doc for doc in docs if doc.get(field) == name]
    if len(matches) == 1:
        return matches[0]
    if not matches:  # an id names it too (the way out of a name several claim)
        matches = [doc for doc in docs if doc.get("_id") == name]
        if matches:
            return matches[0]
        raise VaultNotFound(f"no {what} {name!r} in this vault")
    if pick is not None and (chosen := pick(matches)) is not None:
        return chosen
    raise NameClash(f"{len(matches)} {what} documents claim the name {name!r} (ids "
                    f"{', '.join(d['_id'] for d in matches)}): refused; give the id instead of the name"
                    f"{way_out}")
