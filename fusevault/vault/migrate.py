"""The unlock that signs what was the user's before documents were signed (vault format 3).

Vaults of format 2 hold unsigned documents.  The first unlock of each user
with this fusevault signs, in one transaction, their user document and every
document they own (nodes, versions, grants, groups, their retention and
pins): the owner vouches for what their vault held then.  From that commit
on, an unsigned document in their name is refused by every reader
(vault/trust.py).
"""

from __future__ import annotations

import logging

from fusevault.crypto.signing import signer_of
from fusevault.store import Store
from fusevault.vault.trust import USER, Trust, self_signed

log = logging.getLogger(__name__)

# Kinds whose documents name their owner in ``owner`` (Retention names them in ``user``).
OWNED = ("node", "FilesMetaData", "Share", "Group", "Rotation", "Peers")


def _own(doc: dict, user_id: str) -> bool:
    if doc.get("type") == "Retention":
        return doc.get("user") == user_id
    return doc.get("owner") == user_id


def sign_own(store: Store, trust: Trust, root=None) -> int:
    """Sign the user's unsigned documents if their user document is not signed yet.

    Never a user document that carries a signature that does not hold, nor an
    unsigned one where this device saw the user signed before (``root``: the
    vault's directory; vault/confirmed.py keeps that mark outside the vault):
    both are forgeries (someone stripped or broke the signature to have this
    unlock sign what they wrote), refused with an alarm.

    Returns how many documents were signed (0: nothing to do)."""
    from fusevault.vault import confirmed

    me = store.get(trust.user_id)
    if me is None:
        return 0
    if self_signed(me):
        if root is not None:
            confirmed.mark_signed(root, trust.user_id)
        trust.own_signed = True
        return 0
    if signer_of(me) is not None or (root is not None and confirmed.signed_before(root, trust.user_id)):
        trust.alarms.warn("forged-user", trust.user_id, "this user's document is not signed with their "
                          "key (forged or rolled back): it is not signed again, its settings are ignored")
        trust.own_signed = True
        return 0
    docs = [me]
    for kind in (*OWNED, "Retention"):
        docs += [d for d in store.iter_type(kind)
                 if _own(d, trust.user_id) and not d.get("_deleted") and signer_of(d) is None]
    # The user document last: until it is signed, a crash leaves a vault the next unlock finishes.
    signed = [trust.sign(d) for d in docs[1:]] + [trust.sign(docs[0])]
    store.put_many(signed)
    store.sync()
    trust.own_signed = True
    if root is not None:
        confirmed.mark_signed(root, trust.user_id)
    log.info("signed %d document(s) of user %s from before signatures", len(signed), trust.user_id)
    return len(signed)


def user_signed_by_self(store: Store, user_id: str) -> bool:
    doc = store.get(user_id)
    return doc is not None and doc.get("type") == USER and self_signed(doc)
