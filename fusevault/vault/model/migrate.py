"""The unlock that signs what was the user's before documents were signed (vault format 3).

Vaults of format 2 hold unsigned documents.  The first unlock of each user
with this fusevault signs, in one transaction, their user document and every
document they own (nodes, versions, their shares and groups, their retention
and peers): the owner vouches for what their vault held then, as the issue
of signed documents asks ("the owner's next unlock signs what was theirs"),
so their shares keep working across the upgrade.  From that commit on, an
unsigned document in their name is refused by every reader (vault/model/trust.py).

What says "this user already signs", which no writer of the vault folder can
fake or remove: the ``signs`` flag sealed with their private keys
(crypto/identity.py, set at create_user and by this migration), and the mark
of this device (vault/model/confirmed.py).  Either and an unsigned own user
document is a stripped forgery: alarm, nothing signed.  (Pins are no such
sign: an admin command may pin before the user's first mount.)

What this first unlock cannot tell: a Share or Group a writer of the vault
folder planted BEFORE it, in a format-2 vault, is signed with the rest (the
vault held it then).  After it, the sealed flag makes every later planting
(or a stripped signature) a refused forgery.  The one way back is a whole
format-2 copy of the user's document kept from before the upgrade and put
back, on a device with no mark: docs/SECURITY.md "Out of reach" says so.

A user from before key pairs (format 1, early) gets them at her first unlock (vault/model/users.py
``ensure_identity``), marked ``minted``: her documents then are her files alone, and only those are
signed; a share, group, peers or retention document unsigned in her name is left unsigned and said.
Her document stripped of its pairs and of every signature by the vault folder's writer, so as to pass
for such a user, is refused outright where her wrapping says she has pairs (crypto/keys.py
``_kek_ad``), and otherwise gets none of what he planted signed (attack round 80b (5)).
"""

from __future__ import annotations

import dataclasses
import logging

from fusevault.crypto.identity import seal_identity
from fusevault.crypto.signing import signer_of
from fusevault.store import Store
from fusevault.vault.model.trust import USER, Trust, self_signed

log = logging.getLogger(__name__)

# Kinds whose documents name their owner in ``owner`` (Retention names them in ``user``).
OWNED = ("node", "FilesMetaData", "Share", "Group", "Rotation", "Peers")


# What a user from before key pairs could hold (her pairs ``minted`` at her first unlock since): her files.
# A share or group seals keys to public keys, and her settings and peers are what a writer of the vault
# folder wants changed: one of those unsigned in her name then was planted by whoever stripped her
# document of its pairs and every signature (attack round 80b (5)), never signed here.
FILES = ("node", "FilesMetaData")


def _say_not_signed(trust: Trust, kind: str, count: int) -> None:
    trust.alarms.warn("forged", f"unsigned {kind} {trust.user_id}",
                      f"{count} unsigned {kind} document(s) in this user's name were not signed: a vault "
                      "from before key pairs held none (planted by whoever writes the vault folder?); give "
                      "those shares, groups or settings again if they were hers")


def _own(doc: dict, user_id: str) -> bool:
    if doc.get("type") == "Retention":
        return doc.get("user") == user_id
    return doc.get("owner") == user_id


def sign_own(store: Store, trust: Trust, root=None) -> int:
    """Sign the user's unsigned documents if their user document is not signed yet.

    Never a user document that carries a signature that does not hold, nor an
    unsigned one where this device saw the user signed before (``root``: the
    vault's directory; vault/model/confirmed.py keeps that mark outside the vault):
    both are forgeries (someone stripped or broke the signature to have this
    unlock sign what they wrote), refused with an alarm.

    Returns how many documents were signed (0: nothing to do)."""
    from fusevault.vault.model import confirmed
    from fusevault.vault.model.confirmed import own_signature

    me = store.get(trust.user_id)
    if me is None:
        return 0
    if self_signed(me):
        if root is not None:
            confirmed.mark_signed(root, trust.user_id)
        trust.own_signed = True
        if not trust.identity.signs and own_signature(me, trust.key):
            # Signed before the flag existed: seal it now, or a stripped copy would migrate elsewhere.
            identity = dataclasses.replace(trust.identity, signs=True)
            store.put_many([trust.sign({**me, **seal_identity(trust.key, identity)})])
            store.sync()
            trust.key.identity = trust.identity = identity
        return 0
    if (signer_of(me) is not None or trust.identity.signs
            or (root is not None and confirmed.signed_before(root, trust.user_id))):
        trust.alarms.warn("forged-user", trust.user_id, "this user's document is not signed with their "
                          "key (forged or rolled back): it is not signed again, its settings are ignored")
        trust.own_signed = True
        return 0
    # The flag sealed with the keys: from this commit on every device knows this user signs.
    identity = dataclasses.replace(trust.identity, signs=True)
    docs = [{**me, **seal_identity(trust.key, identity)}]
    for kind in (*OWNED, "Retention"):
        unsigned = [d for d in store.iter_type(kind)
                    if _own(d, trust.user_id) and not d.get("_deleted") and signer_of(d) is None]
        if unsigned and identity.minted and kind not in FILES:
            _say_not_signed(trust, kind, len(unsigned))
            continue
        docs += unsigned
    # The user document last: until it is signed, a crash leaves a vault the next unlock finishes.
    signed = [trust.sign(d) for d in docs[1:]] + [trust.sign(docs[0])]
    store.put_many(signed)
    store.sync()
    trust.key.identity = trust.identity = identity
    trust.own_signed = True
    if root is not None:
        confirmed.mark_signed(root, trust.user_id)
    log.info("signed %d document(s) of user %s from before signatures", len(signed), trust.user_id)
    return len(signed)


def user_signed_by_self(store: Store, user_id: str) -> bool:
    doc = store.get(user_id)
    return doc is not None and doc.get("type") == USER and self_signed(doc)
