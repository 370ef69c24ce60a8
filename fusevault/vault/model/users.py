"""Users: the seed 000 UserDetails document, their key pairs, unlocking."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from fusevault.crypto import aead, recovery
from fusevault.crypto.identity import Identity, open_identity, seal_identity
from fusevault.crypto.kdf import default_params
from fusevault.crypto.keys import (
    MasterKey,
    check_master,
    checksum,
    new_wrapped_master,
    open_master,
    wrap_master,
)
from fusevault.crypto.signing import sign_doc, signer_of, verify_doc
from fusevault.errors import (
    AlreadyExists,
    CorruptData,
    Forged,
    InvalidInput,
    NoRecoveryKey,
    VaultError,
)
from fusevault.store import Store
from fusevault.vault.format.layout import Layout, validate_name
from fusevault.vault.model import confirmed, key_memory, shapes
from fusevault.vault.model.alarms import Alarms, for_user
from fusevault.vault.model.nodes import NODE, VERSION, Node, new_id, node_doc, node_from_doc, open_node_doc

USER = "UserDetails"
DEFAULT_TTL = {"ttl": "8", "unit": "hr"}


def find_user(store: Store, username: str | None,
              pick: Callable[[list[dict]], dict | None] | None = None) -> dict:
    """The user named ``username`` (or the caller's, by Linux uid).  Several
    documents claiming one name (a store writer can plant one, and chooses the
    store's order) are refused unless ``pick`` (the caller's pins,
    ``Trust.trusted_user``) chooses one."""
    users = list(store.iter_type(USER))
    if username is not None:
        return shapes.one_named(users, "username", username, "user", pick,
                                " (`fusevault user show ID` prints its fingerprint) and remove the impostor")
    if not users:
        raise CorruptData("the vault has no user")
    if len(users) == 1:
        return users[0]
    mine = [d for d in users if d.get("uid") == os.getuid()]
    if len(mine) == 1:
        return mine[0]
    raise InvalidInput("this vault has several users: say which with --user NAME")


def create_user(layout: Layout, store: Store, username: str, passphrase: bytes,
                uid: int | None = None, recovery_secret: bytes | None = None) -> str:
    """A new user; with ``recovery_secret``, their master key is also wrapped under it."""
    validate_name("user", username)
    if any(d.get("username") == username for d in store.iter_type(USER)):
        raise AlreadyExists(f"user {username!r} already exists")
    user_id = new_id()
    fields, master = new_wrapped_master(user_id, passphrase, default_params())
    key = MasterKey(user_id, master)
    root_fid = new_id()
    dek = aead.new_key()
    uid = os.getuid() if uid is None else uid
    if any(d.get("uid") == uid for d in store.iter_type(USER)):
        raise AlreadyExists(f"Linux uid {uid} is already mapped to another user of this vault: "
                            f"give {username}'s with --uid N")
    identity = Identity.new(user_id)
    key.identity = identity
    root = Node(1, root_fid, user_id, dek, stat.S_IFDIR | 0o755, uid, os.getgid())
    created = int(time.time())
    doc = {
        "_id": user_id,
        "type": USER,
        "username": username,
        "uid": uid,
        "created_at": created,
        **fields,
        "checksum": checksum(fields),
        **seal_identity(key, identity),
        **({recovery.FIELD: recovery.wrap(user_id, master, recovery_secret, int(time.time()), pairs=True)}
           if recovery_secret is not None else {}),
        "root": root_fid,
        "passphrase_expiry_ttl": dict(DEFAULT_TTL),
        "source_dir_to_watch": None,
        "target_dir_to_dump": None,
        "peer_dir_for_storage": None,
        "delete_file_from_source": False,
    }
    layout.make_user_dirs(user_id)
    # Signed from birth: readers pin the keys it names, and the signature
    # covers the seed 000 settings and the TTL (vault/model/trust.py).
    signed = sign_doc(user_id, identity.sign, doc)
    store.put_many([signed, sign_doc(user_id, identity.sign, node_doc(root, key, lambda ino: root_fid))])
    store.sync()
    confirmed.mark_signed(layout.root, user_id)  # this device: an unsigned one later is forged
    key_memory.remember(layout.root, signed)  # its keys: a body with older ones is never used here
    return user_id


def ensure_identity(store: Store, doc: dict, key: MasterKey, root: Path | str) -> dict:
    """Give a user from before key pairs existed (vault format 1, early) their pairs.

    Only such a user: a document without its sealed pairs that shows any sign of a user who had them
    (public keys, a signature, a node of hers she signed, or this device saw her keys or her
    signature) was stripped by whoever writes the store.  Given new pairs, they signed every unsigned
    document in her name there, a planted Share included, and her devices took them for hers
    (attack round 40c (1)): refused, one line, nothing made.  Stripped of every such sign as well, on a
    device that never saw her: the seal of her master key under her passphrase, which only it makes, says
    she has pairs (every user made or given a passphrase since attack round 80b (5)).  Pairs made here
    are marked ``minted``: vault/model/migrate.py then signs none of her grants or settings."""
    if "en_private_keys" in doc:
        return doc
    if key.pairs_sealed or _had_pairs(store, doc, root):
        if (restored := _kept_pairs(store, doc, key, root)) is not None:
            return restored
        for_user(doc["_id"]).warn("forged-user", doc["_id"], "this user's key pairs are missing from their "
                                  "document in the store (removed by its writer?): no new ones were made")
        raise Forged(f"the key pairs of user {doc.get('username')!r} are missing from the store (removed by "
                     "whoever writes it?): restore the vault folder from a backup or sync it from another "
                     "device of theirs")
    identity = Identity.new(doc["_id"], signs=False, minted=True)  # signed, marked by vault/model/migrate.py
    doc = {**doc, **seal_identity(key, identity)}
    doc["_rev"] = store.put_many([doc])[0]
    key.identity = identity
    store.sync()
    return doc


def _kept_pairs(store: Store, doc: dict, key: MasterKey, root: Path | str) -> dict | None:
    """Her newest body this device keeps (signed by her remembered key, her pairs sealed in it under
    her master key), put back in the store in place of the stripped one; None if none is kept."""
    body = key_memory.kept_body(key_memory.remembered(root, doc["_id"]))
    if body is None or "en_private_keys" not in body:
        return None
    identity = open_identity(key, body)  # sealed under her master key, or it is no body of hers
    restored = {k: v for k, v in body.items() if k != "_rev"}
    if "_rev" in doc:
        restored["_rev"] = doc["_rev"]
    restored["_rev"] = store.put_many([restored])[0]
    store.sync()
    key.identity = identity
    for_user(doc["_id"]).warn("forged-user", doc["_id"], "this user's key pairs were missing from their "
                              "document in the store (removed by its writer?): put back from this device's "
                              "copy of it")
    return restored


def _had_pairs(store: Store, doc: dict, root: Path | str) -> bool:
    user_id = doc["_id"]
    if any(k in doc for k in ("sig", "public_box", "public_sign")):
        return True
    if confirmed.signed_before(root, user_id) or key_memory.remembered(root, user_id) is not None:
        return True
    # A vault from before pairs has no signature anywhere; the first of hers found ends the look.
    return any(d.get("owner") == user_id and signer_of(d) == user_id for d in store.iter_type(NODE))


def root_of(root: Path | str, doc: dict, key: MasterKey, store: Store) -> str:
    """Her root folder's id.  The clear ``root`` of her document in the store is its writer's to change:
    pointed at a folder she shares, what she made at the top of her mount went into it, its keys sealed
    to its members (attack round 40c (2)).  Taken from her document if her own key signed it (or it is
    from before signatures: nothing of hers signs yet); else from the newest body of hers this device
    keeps; else only if it names what only a root is: a live folder of hers, signed by her, in no
    folder (a device without memory, her document's settings forged: it still mounts); else refused,
    one line."""
    user_id = doc["_id"]
    if confirmed.own_signature(doc, key):
        return _root_field(doc)
    kept = key_memory.remembered(root, user_id)
    signs = key.identity is not None and key.identity.signs
    if "sig" not in doc and not signs and kept is None and not confirmed.signed_before(root, user_id):
        return _root_field(doc)  # from before signatures (vault/model/migrate.py signs it)
    body = key_memory.kept_body(kept)
    if body is not None and isinstance(body.get("root"), str):
        return body["root"]
    if _is_a_root(store, key, doc.get("root")):
        return _root_field(doc)
    raise Forged(f"the document of user {doc.get('username')!r} in the store is not signed with their key, "
                 "and this device keeps none of theirs: which folder is their vault's top cannot be told "
                 "(restore the vault folder from a backup, or sync it from another device of theirs)")


def _is_a_root(store: Store, key: MasterKey, fid: object) -> bool:
    """Whether ``fid`` names a live folder of hers, signed by her own key, that is in no folder."""
    found = store.get(fid) if isinstance(fid, str) else None
    if (found is None or found.get("_deleted") or found.get("delete") or found.get("owner") != key.user_id
            or not confirmed.own_signature(found, key)):
        return False
    try:
        node, links = node_from_doc(found, *open_node_doc(found, key))
    except (VaultError, KeyError, TypeError, ValueError):
        return False
    return node.is_dir and not links and not node.trashed


def _root_field(doc: dict) -> str:
    if not isinstance(value := doc.get("root"), str):
        raise CorruptData(f"the document of user {doc.get('username')!r} names no root folder")
    return value


def owned_docs(store: Store, user_id: str) -> list[dict]:
    """Every document a user owns (nodes, versions, records)."""
    return [d for kind in (NODE, VERSION, "ImportRecord", "LinkRecord")
            for d in store.iter_type(kind) if d.get("owner") == user_id]


def unlock(doc: dict, passphrase: bytes) -> MasterKey:
    if doc.get("checksum") != checksum(doc):
        raise CorruptData(f"the key material of user {doc.get('username')!r} is damaged")
    master, pairs = open_master(doc["_id"], doc, passphrase)
    key = MasterKey(doc["_id"], master)
    key.pairs_sealed = pairs
    if "en_private_keys" in doc:
        key.identity = open_identity(key, doc)
    return key


def unlock_here(root: Path | str, doc: dict, passphrase: bytes, alarms: Alarms | None = None,
                store: Store | None = None) -> MasterKey:
    """``unlock`` on this device: with the newest key fields it saw (vault/model/key_memory.py), so
    her older body served again (from before ``passwd`` or a revoked recovery key) never decides
    what opens her vault; the replay is said.  A body of hers newer than remembered is remembered;
    with ``store``, a fork's winner or a revocation this device saw is written back (``judged``)."""
    body, verdict = key_memory.newest(root, doc)
    key = unlock(body, passphrase)
    judged(root, doc, key, alarms, store, (body, verdict))
    return key


def judged(root: Path | str, doc: dict, key: MasterKey, alarms: Alarms | None = None,
           store: Store | None = None, seen: tuple[dict, str] | None = None) -> None:
    """Her user document, from the store or just arrived from a peer, judged against the newest key
    fields this device saw (key_memory.newest): remembered if it is the newest; a replay said; a
    fork (two devices changed her keys apart) or a recovery key she revoked here said, and with
    ``store`` the winner written back as her next revision, signed, so every device ends with the
    same keys (the document's other fields kept: they are hers, her signature on them holds)."""
    body, verdict = seen or key_memory.newest(root, doc)
    said = alarms if alarms is not None else for_user(key.user_id)
    name = doc.get("username")
    if verdict == key_memory.REPLAY:
        said.warn("rollback", f"keys {doc['_id']}",
                  f"rollback: the store offers an older body of the keys of user {name!r} than this device "
                  "saw (a passphrase or recovery key change undone by the server or the vault folder?): the "
                  "newer keys apply here")
        return
    if verdict == key_memory.FORK:
        said.warn("keys-diverged", f"diverged {doc['_id']}",
                  f"the keys of user {name!r} were changed on two devices that had not seen each other's "
                  "change: the later one applies here and is written back; a passphrase set on the other "
                  "device no longer opens this vault")
    if verdict == key_memory.MERGED:
        said.warn("keys-diverged", f"diverged {doc['_id']}",
                  f"the keys of user {name!r} were changed on two devices that had not seen each other's "
                  "change: the passphrase set last with `passwd` stays, the other change is taken too, and "
                  "both are written back; a passphrase she replaced no longer opens this vault")
    if not confirmed.own_signature(doc, key):
        return
    if verdict == key_memory.CURRENT:
        key_memory.remember(root, doc)
        return
    assert key.identity is not None  # own_signature held
    # The settings the newest this device knows, not the old body's (round 21 (3)); its lists merged.
    back = sign_doc(doc["_id"], key.identity.sign, key_memory.signing_base(root, doc, True, body))
    if store is not None:
        store.put_many([back])
        store.sync()
    key_memory.remember(root, back)


class Opened(NamedTuple):
    """Her master key, and whether the wrapping that opened it says she has key pairs."""

    master: bytes
    pairs: bool


def check_passphrase(root: Path | str, doc: dict, passphrase: bytes) -> Opened:
    """Her master key, if ``passphrase`` opens what a key change builds on (WrongPassphrase if not):
    ``passwd`` checks the current one before it asks for a new one (a mistyped one is exit 3 at once)."""
    return _opened(_base(root, doc)[1], passphrase)


def change_passphrase(store: Store, root: Path | str, doc: dict, old: bytes, new: bytes,
                      opened: Opened | None = None) -> None:
    """``old`` replaced by ``new``; ``opened``: what ``check_passphrase(old)`` gave (not opened twice)."""
    served, base = _base(root, doc)
    master, claimed = opened if opened is not None else _opened(base, old)
    fields = wrap_master(doc["_id"], master, new, default_params(), pairs=_has_pairs(base, claimed))
    # The recovery wrapping (if any) is of the same master key: it stays valid.  The wrapping replaced
    # is retired: a body still carrying it never wins again, whatever its number (key_memory.newest).
    _save(store, root, served, {**base, **fields, "checksum": checksum(fields)}, master,
          retiring=key_memory.wrapping_digest(base))


def _has_pairs(base: dict, claimed: bool) -> bool:
    """Whether a new wrapping of her master key says she has key pairs (crypto/keys.py ``_kek_ad``): her
    body holds them, or the wrapping that opened her key said so (``claimed``: a body stripped of them
    keeps the claim, attack round 81a (4)).  A key change of a user from before pairs (run before her
    first mount) seals the older AD; her first unlock gives her pairs."""
    return "en_private_keys" in base or claimed


def _base(root: Path | str, doc: dict) -> tuple[dict, dict]:
    """The store's body as it counts (``doc``, or if her key remembered here did not sign it, her newest
    body this device keeps: ``key_memory.own_body``), and what a key change builds on: the newest body
    of hers this device knows, its lists this device's alone until her own key (opened with the master
    key it unwraps) confirms the first is hers (``_save`` merges them then)."""
    served = key_memory.own_body(root, doc)
    return served, key_memory.signing_base(root, served, False)


def _master(doc: dict, passphrase: bytes) -> bytes:
    return _opened(doc, passphrase).master


def _opened(doc: dict, passphrase: bytes) -> Opened:
    if doc.get("checksum") != checksum(doc):
        raise CorruptData(f"the key material of user {doc.get('username')!r} is damaged")
    return Opened(*open_master(doc["_id"], doc, passphrase))


def _save(store: Store, root: Path | str, served: dict, doc: dict, master: bytes,
          revoking: str | None = None, retiring: str | None = None) -> None:
    """Store ``doc`` (``_base`` of the store's body ``served``, its key fields changed), signed again by
    its user over every field, a key sequence above any this device knows (above ``served``'s only if
    she signed it), the recovery wrappings she revoked and the passphrase wrappings she replaced carried
    on (``revoking``, ``retiring``: one now); remembered here as the newest (key_memory).  A ``served``
    body her key did not sign is never signed over: refused (``_refuse_unsigned``)."""
    identity = open_identity(MasterKey(doc["_id"], master), doc) if "en_private_keys" in doc else None
    hers = identity is not None and _signed_with(identity, served)
    if identity is not None and not hers:
        _refuse_unsigned(root, served, identity)
    kept = key_memory.remembered(root, doc["_id"])
    revoked = key_memory.revoked(kept, served if hers else None)
    retired = key_memory.retired(kept, served if hers else None)
    doc = {**doc, key_memory.SEQ: key_memory.next_seq(root, served, hers),
           key_memory.REVOKED_FIELD: sorted({*revoked, *([revoking] if revoking else [])}),
           key_memory.RETIRED_FIELD: sorted({*retired, *([retiring] if retiring else [])})}
    if identity is not None:
        doc = sign_doc(doc["_id"], identity.sign, doc)
    store.put_many([doc])
    store.sync()
    key_memory.remember(root, doc, revoking, retiring)


def _refuse_unsigned(root: Path | str, served: dict, identity: Identity) -> None:
    """Refuse (with an alarm) to sign over ``served``, a body of hers her key did not sign, unless it is
    one from before signatures (no ``sig``, her sealed identity not marked as signing, never seen signed
    on this device: vault/model/migrate.py signs those).  Every field of it but the ones changed would
    be signed as hers: her sealed private keys, ``public_box``, ``uid``, name or root as the store's
    writer left them (attack round 22 (6); a device without her mark: round 40c (5))."""
    user_id = served["_id"]
    if "sig" not in served and not identity.signs and not confirmed.signed_before(root, user_id) \
            and key_memory.remembered(root, user_id) is None:
        return
    for_user(user_id).warn("forged-settings", user_id, "this user's document in the store is not signed "
                           "with their key (the store's writer changed it?): nothing was signed over it")
    raise Forged(f"the document of user {served.get('username')!r} in the store is not signed with their "
                 "key (its writer changed it?): refused to sign over it; see `fusevault status` alarms")


def _signed_with(identity: Identity, doc: dict) -> bool:
    try:
        return verify_doc(identity.sign.public_key(), doc) == doc["_id"]
    except Forged:
        return False


# --- the recovery key (crypto/recovery.py)


def has_recovery_key(doc: dict) -> bool:
    return recovery.FIELD in doc


def create_recovery_key(store: Store, root: Path | str, doc: dict, passphrase: bytes, secret: bytes) -> None:
    """Wrap the user's master key under ``secret`` too (replacing an earlier recovery key)."""
    served, base = _base(root, doc)
    master, claimed = _opened(base, passphrase)
    wrapped = recovery.wrap(doc["_id"], master, secret, int(time.time()), pairs=_has_pairs(base, claimed))
    _save(store, root, served, {**base, recovery.FIELD: wrapped}, master)


def revoke_recovery_key(store: Store, root: Path | str, doc: dict, passphrase: bytes) -> None:
    served, base = _base(root, doc)
    if not has_recovery_key(base):
        raise NoRecoveryKey(f"user {doc.get('username')!r} has no recovery key")
    master = _master(base, passphrase)
    _save(store, root, served, {k: v for k, v in base.items() if k != recovery.FIELD}, master,
          revoking=key_memory.recovery_digest(base))


def recover(doc: dict, secret: bytes) -> Opened:
    """The master key, opened with the recovery key instead of the passphrase."""
    if not has_recovery_key(doc):
        raise NoRecoveryKey(f"user {doc.get('username')!r} has no recovery key (none was made, "
                            "or it was revoked)")
    master, claimed = recovery.open_wrapping(doc["_id"], doc[recovery.FIELD], secret)
    if doc.get("checksum") != checksum(doc) or not check_master(doc, master):
        raise CorruptData(f"the key material of user {doc.get('username')!r} is damaged")
    return Opened(master, claimed)


def reset_passphrase(store: Store, root: Path | str, doc: dict, secret: bytes, new: bytes) -> None:
    """A forgotten passphrase: a new one, the master key opened with the recovery key."""
    served, base = _base(root, doc)
    master, claimed = recover(base, secret)
    fields = wrap_master(doc["_id"], master, new, default_params(), pairs=_has_pairs(base, claimed))
    _save(store, root, served, {**base, **fields, "checksum": checksum(fields)}, master,
          retiring=key_memory.wrapping_digest(base))
