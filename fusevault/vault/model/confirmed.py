"""The settings that count: signed by their user, and confirmed on this device.

The seed 000 settings live in clear fields of the user's UserDetails, which
anyone who writes the store (a server, a peer, the vault folder) can change.
So every reader takes them from here, never from the document directly:

- The document counts only if it is signed with this user's own signing key
  (the one opened with their master key, not a key the document names).  A
  document that is not (unsigned, signed by someone else, or re-signed under
  a swapped key) is ignored with an alarm, and the settings last confirmed on
  this device are used (or the safe defaults: no watching, no deletion, the
  default TTL).
- The folder and deletion settings (``GUARDED``) are applied only with the
  value this device last confirmed (``fusevault config set`` or ``config
  confirm`` here), or a safe one (no folder, no deletion).  A different value
  that arrived from elsewhere is *pending*: ``config show`` lists it, ``config
  confirm`` applies it.  A safe value applied from her signed document (turned
  off on another device) becomes this device's confirmed value: her older
  signed document, replayed, then waits as pending rather than matching the
  old confirmation again.
- ``passphrase_expiry_ttl`` from a signed document applies at once if it is no
  longer than the one this device confirmed (shorter is safer); a longer one is
  pending (a shorter one applied is recorded as confirmed, like a safe value).
  A device that confirmed nothing yet compares with the default TTL.
- Only from the newest body of her document this device saw: each device
  remembers the digests of the signed bodies it saw (in order); one seen
  before another that came after it is older, a replay (attack round 10b),
  whose safer values apply while it is served but are not recorded as
  confirmed (her current document, back, is then not merely pending).
  ``settings.save`` writes ``settings_at_us`` in each body (above the one it
  replaces), so a body she signs again is never one seen before, and a
  version vector (vault/model/lineage.py; ``next_vector``): one below the
  newest seen here, never seen itself, is older too, and one made on a device
  that had not seen that one (concurrent: the server withheld it) is not the
  newest either, whatever the clocks say (an alarm).  Bodies without a vector
  are ordered by ``settings_at_us``, as before.

What this device confirmed is kept outside the vault, in the user's state
directory (``paths.state_dir()/confirmed/<hash of vault dir and user>``),
AES-GCM sealed under a key derived from the user's master key
(``MasterKey.seal_device``), written temp + fsync + rename.  Outside the
vault because the vault folder and its store are what the attacker writes; a
``local_docs`` row would live in that same store.sqlite, where an old sealed
row could be put back.  Sealed so that the paths do not leak and no one
without the user's key can make one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass, fields, replace
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fusevault import paths
from fusevault.crypto.keys import MasterKey
from fusevault.crypto.signing import canonical, signer_of, verify_doc
from fusevault.errors import Forged, InvalidInput
from fusevault.vault.model import device, device_file, lineage
from fusevault.vault.model.alarms import Alarms, for_user
from fusevault.vault.model.settings import FOLDERS, STAMP, Settings, change

GUARDED = (*FOLDERS, "delete_file_from_source")
TTL = "passphrase_expiry_ttl"
SAFE = {"source_dir_to_watch": None, "target_dir_to_dump": None, "peer_dir_for_storage": None,
        "delete_file_from_source": False}
KIND = "confirmed-settings"
SEEN = "seen-user-documents"
KEEP_SEEN = 256  # the newest signed bodies remembered (a replay of an older one is rarer than that)
log = logging.getLogger(__name__)
# One writer at a time in this process: a reader recording a safer value must not overwrite what a
# `config set` in another thread confirms meanwhile.
_writing = threading.Lock()


@dataclass(frozen=True)
class Effective:
    settings: Settings  # what is applied
    pending: dict  # setting -> the value that arrived and waits for `config confirm`
    signed: bool  # whether the user document's signature held


def own_signature(doc: dict, key: MasterKey) -> bool:
    """Whether ``doc`` is signed by this user with their own key (not one the document names)."""
    identity = key.identity
    if identity is None or signer_of(doc) != key.user_id:
        return False
    private: Ed25519PrivateKey = identity.sign
    try:
        verify_doc(private.public_key(), doc)
    except Forged:
        return False
    return True


def _file(root: Path | str, user_id: str) -> tuple[Path, str]:
    path = paths.confirmed_file(root, user_id)
    return path, path.name


def mark_signed(root: Path | str, user_id: str) -> None:
    """Remember that this device saw the user's document signed (vault/model/migrate.py): from then on an
    unsigned one is a forgery, never a document from before signatures to sign."""
    path, _ = _file(root, user_id)
    mark = path.with_suffix(".signs")
    if not mark.exists():
        mark.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(mark, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        os.fsync(fd)
        os.close(fd)


def signed_before(root: Path | str, user_id: str) -> bool:
    path, _ = _file(root, user_id)
    return path.with_suffix(".signs").exists()


def read(root: Path | str, key: MasterKey, alarms: Alarms | None = None) -> Settings | None:
    """What this device last confirmed, or None (never, or the file is not ours)."""
    path, name = _file(root, key.user_id)
    try:
        # One that does not read (a link, a FIFO, another user's file, one too large) is damaged.
        values = device_file.read_json(path, key, KIND, name=name)
        if values is None:
            return None
        return Settings(**{f.name: values[f.name] for f in fields(Settings) if f.name in values})
    except (device_file.Damaged, ValueError, TypeError):
        (alarms if alarms is not None else for_user(key.user_id)).warn(
            "confirmed-settings", str(path), "the settings confirmed on this device were damaged or "
            "replaced: the safe defaults apply until `fusevault config confirm`")
        return None


def write(root: Path | str, key: MasterKey, settings: Settings) -> None:
    """Remember ``settings`` as confirmed on this device (temp, fsync, rename; off the trio loop)."""
    with _writing:
        _write(root, key, settings)


def _write(root: Path | str, key: MasterKey, settings: Settings) -> None:
    path, name = _file(root, key.user_id)
    device_file.write(path, key, KIND, json.dumps(settings.as_dict(), sort_keys=True).encode(), name=name)


def _ttl(settings: Settings) -> float:
    try:
        return settings.ttl_seconds()
    except (KeyError, ValueError, TypeError):
        return float("inf")  # malformed: never "shorter"


def effective(user_doc: dict | None, key: MasterKey, root: Path | str,
              alarms: Alarms | None = None) -> Effective:
    """The settings to apply for this user on this device, and what waits for confirmation."""
    if user_doc is None:
        raise InvalidInput("this vault's user document is missing")
    alarms = alarms if alarms is not None else for_user(key.user_id)
    mine = read(root, key, alarms)
    base = mine or Settings()
    try:
        offered = Settings.of(user_doc)
    except TypeError:
        offered = None
    signed = offered is not None and own_signature(user_doc, key)
    if not signed:
        alarms.warn("forged-settings", key.user_id, "the settings in this user's document are not "
                    "signed with their key: they are ignored, the ones confirmed on this device apply "
                    "(see `fusevault config show`)")
        pending = {} if offered is None else {
            k: getattr(offered, k) for k in (*GUARDED, TTL) if getattr(offered, k) != getattr(base, k)}
        return Effective(base, pending, False)
    applied: dict = {}
    pending = {}
    for name in GUARDED:
        value = getattr(offered, name)
        if value == getattr(base, name) or value == SAFE[name]:
            applied[name] = value
        else:
            applied[name] = getattr(base, name)
            pending[name] = value
    if _ttl(offered) <= _ttl(base):
        applied[TTL] = offered.passphrase_expiry_ttl
    else:
        applied[TTL] = base.passphrase_expiry_ttl
        pending[TTL] = offered.passphrase_expiry_ttl
    if _newest_seen(root, key, user_doc, alarms):
        _remember_safer(root, key, mine, base, applied)
    return Effective(replace(offered, **applied), pending, True)


def _newest_seen(root: Path | str, key: MasterKey, user_doc: dict, alarms: Alarms | None = None) -> bool:
    """Whether ``user_doc`` (signed by her) is the newest body of it this device saw: not one seen before
    another (a replay by the store or the server, attack round 10b), nor one made apart from the newest
    seen here (concurrent: its version vector neither above nor below, vault/model/lineage.py);
    remembers it.  Only the newest records a safer value as confirmed here: her older body, replayed
    once, must not make its value this device's choice (her current one would then only be pending)."""
    digest = hashlib.sha256(canonical(user_doc)).hexdigest()
    made = user_doc.get(STAMP)
    made = made if isinstance(made, int) and not isinstance(made, bool) else -1
    try:
        vector = lineage.of(user_doc)
    except lineage.Malformed:  # her fusevault writes none such: a store writer's rewrite
        return False
    with _writing:
        kept = _seen(root, key)
        seen, newest, tips = kept["bodies"], kept["newest"], kept["tips"]
        if vector is not None and tips:
            if lineage.older(tips, vector, made):
                return False  # a body of hers was seen here that was signed after this one
            tips = lineage.add(tips, vector, made)
            result = len(tips) == 1
            if not result and alarms is not None:
                alarms.warn("concurrent-settings", key.user_id, "two bodies of this user's settings were "
                            "signed on devices that had not seen each other's (the server may have withheld "
                            "one): which is her last cannot be told; values that differ from the ones "
                            "confirmed here wait for `fusevault config confirm`, or `config set` here")
        elif digest in seen:
            return digest == seen[-1]
        elif made < newest:  # signed before one this device saw (``settings_at_us``): older, never seen
            return False
        else:
            tips = lineage.stamped_only(tips, made) if vector is None else [(vector, made)]
            result = True
        record = {**kept, "bodies": seen if digest in seen else [*seen, digest][-KEEP_SEEN:],
                  "newest": max(newest, made), "tips": tips}
        if record != kept:
            _keep_seen(root, key, record)
        return result


def next_vector(root: Path | str, key: MasterKey) -> lineage.Vector:
    """The version vector of her settings body this device signs now: above each body seen here
    (``settings.save``; this device's id is kept from now on, and a record copied from elsewhere signs
    under a new one: vault/model/device.py)."""
    with _writing:
        kept = _seen(root, key)
        here = device.binding(_seen_file(root, key)[0])
        if not kept["device"] or kept["bound"] != here:
            if not kept["device"] or kept["bound"]:  # none yet, or written elsewhere (none: from before)
                kept["device"] = device.new_id()
            kept["bound"] = here
            _keep_seen(root, key, kept)
        return lineage.next_after([v for v, _ in kept["tips"]], kept["device"])


def _seen_file(root: Path | str, key: MasterKey) -> tuple[Path, str]:
    path, name = _file(root, key.user_id)
    return path.with_suffix(".seen"), name


def _seen(root: Path | str, key: MasterKey) -> dict:
    """This device's record of her settings bodies seen (under ``_writing``)."""
    path, name = _seen_file(root, key)
    try:
        # Sealed bound to the settings' file name, not its own (as it always was); none kept: {}.
        kept = device_file.read_json(path, key, SEEN, name=name) or {}
        seen, newest = kept["bodies"], kept["newest"]
        if not isinstance(newest, int) or not isinstance(seen, list) or not all(
                isinstance(d, str) for d in seen):
            raise ValueError("not a record of bodies")
        tips = [(lineage.parsed(v), int(m)) for v, m in kept.get("tips", [])]
        return {"bodies": seen, "newest": newest, "tips": tips, "device": str(kept.get("device") or ""),
                "bound": str(kept.get("bound") or "")}
    except (device_file.Damaged, ValueError, TypeError, KeyError):
        # none yet, or damaged or not ours: started afresh (it was only a memory of bodies)
        return {"bodies": [], "newest": -1, "tips": [], "device": "", "bound": ""}


def _keep_seen(root: Path | str, key: MasterKey, record: dict) -> None:
    path, name = _seen_file(root, key)
    plain = {**record, "tips": [[v, m] for v, m in record["tips"]]}
    try:
        device_file.write(path, key, SEEN, json.dumps(plain).encode(), name=name)
    except OSError as err:
        log.error("could not record the user documents seen on this device: %s", err)


def _remember_safer(root: Path | str, key: MasterKey, mine: Settings | None, base: Settings,
                    applied: dict) -> None:
    """A safer value applied from her signed document (a folder or deletion off, a shorter TTL) becomes
    what this device confirmed: her older signed document, put back by the store or served by the
    server, then differs from it and waits as pending, instead of matching the old confirmation and
    turning watching and deletion back on (attack round 9b)."""
    safer = {name: value for name, value in applied.items() if value != getattr(base, name)}
    if not safer:
        return
    if mine is None and os.path.lexists(_file(root, key.user_id)[0]):  # a link too, even to nothing
        return  # damaged or not ours (read() raised the alarm): left for `config confirm` to replace
    with _writing:
        now = read(root, key)  # what another thread may have confirmed meanwhile
        if now != mine:
            return  # the next reader compares with that
        try:
            _write(root, key, replace(base, **safer))
        except OSError as err:  # the safer value still applies now; only the memory of it is lost
            log.error("could not record the settings applied on this device: %s", err)


def ttl_seconds(user_doc: dict | None, key: MasterKey, root: Path | str) -> float:
    """How long an unlock lasts: the authenticated TTL (the agent and the mount), at most
    ``LONGEST_TTL``.  One that is no TTL (confirmed from another device's document: anyone's input
    until signed, and a "nan" made the mount's expiry raise) is the default TTL, said in the log."""
    settings = effective(user_doc, key, root).settings
    try:
        return settings.ttl_seconds()
    except (KeyError, ValueError, TypeError):
        log.error("passphrase_expiry_ttl %r is no TTL: the default, %s, applies (`fusevault config set "
                  "passphrase_expiry_ttl` sets one)", settings.passphrase_expiry_ttl,
                  Settings().passphrase_expiry_ttl)
        return Settings().ttl_seconds()


def changed(now: Effective, user_doc: dict, changes: dict[str, str]) -> tuple[Settings, Settings]:
    """``config set`` on this device: (what the document holds after, what this device confirms).

    Only the settings named change: values pending from elsewhere stay pending."""
    in_doc = Settings.of(user_doc) if now.signed else now.settings
    return change(in_doc, changes), change(now.settings, changes)


def confirm(now: Effective) -> Settings:
    """``config confirm``: the settings with every pending value applied."""
    return replace(now.settings, **now.pending)


def load(store, key: MasterKey, root: Path | str) -> Settings:
    """The settings to apply: only authenticated, confirmed values (here, not in
    settings.py, which this module builds on)."""
    return effective(store.get(key.user_id), key, root).settings
