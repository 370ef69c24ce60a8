"""A user's settings, kept in their seed 000 UserDetails document.

The folder settings and ``delete_file_from_source`` are the seed's fields;
``passphrase_expiry_ttl`` keeps the seed's shape ``{"ttl": "10", "unit":
"day"}``.  ``import_into`` (where in the vault imports go) and
``settle_seconds`` (how long a file must stay unchanged before it is
imported) are fusevault's own.  The document is not encrypted (the seed says
so), so docs/SECURITY.md lists these paths as visible to the store.
"""

from __future__ import annotations

import math
import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from fusevault.encoding import SAFE_INTEGER
from fusevault.errors import InvalidInput
from fusevault.host_access import Direct, HostAccess
from fusevault.host_access.pseudo_fs import kernel_pseudo
from fusevault.mounts import fusevault_mounts, within
from fusevault.vault.model import key_memory, lineage
from fusevault.vault.model.setting_names import KEYS, STAMP

FOLDERS = ("source_dir_to_watch", "target_dir_to_dump", "peer_dir_for_storage")
MAX_AHEAD_US = 366 * 86400 * 10**6  # how far another device's clock may run ahead of this one's
TTL_UNITS = {"min": 60, "hr": 3600, "day": 86400}
# The longest TTL (about ten years): `config set` refuses more, and a longer one stored (by an older
# version, or from another device's document) counts as this: time_t cannot hold the expiry of
# 10**12 days, and `unlock` unlocked, then exited 70 (attack round 49t (3)).
LONGEST_TTL_DAYS = 3653
LONGEST_TTL = LONGEST_TTL_DAYS * 86400
_UNIT_WORDS = {"m": "min", "min": "min", "mins": "min", "minute": "min", "minutes": "min",
               "h": "hr", "hr": "hr", "hrs": "hr", "hour": "hr", "hours": "hr",
               "d": "day", "day": "day", "days": "day"}
_TRUE = {"on", "yes", "true", "1"}
_FALSE = {"off", "no", "false", "0"}
_UNSET = {"", "none", "off", "-"}


@dataclass(frozen=True)
class Settings:
    source_dir_to_watch: str | None = None
    target_dir_to_dump: str | None = None
    peer_dir_for_storage: str | None = None
    delete_file_from_source: bool = False
    passphrase_expiry_ttl: dict = field(default_factory=lambda: {"ttl": "8", "unit": "hr"})
    import_into: str = "Imported"
    settle_seconds: float = 2.0

    @classmethod
    def of(cls, user_doc: dict) -> Settings:
        known = {k: user_doc[k] for k in cls.__dataclass_fields__ if user_doc.get(k) is not None}
        return cls(**known)

    def as_dict(self) -> dict:
        return asdict(self)

    def ttl_seconds(self) -> float:
        """The TTL in seconds, at most ``LONGEST_TTL``; KeyError, ValueError or TypeError if the stored
        value is none (the document is anyone's input: "nan", a list, an unknown unit)."""
        seconds = float(self.passphrase_expiry_ttl["ttl"]) * TTL_UNITS[self.passphrase_expiry_ttl["unit"]]
        if math.isnan(seconds):
            raise ValueError("the TTL is not a number")
        return min(seconds, LONGEST_TTL)


assert KEYS == tuple(Settings.__dataclass_fields__), "setting_names.KEYS names the fields of Settings"


def parse(key: str, text: str) -> object:
    """The stored value of ``fusevault config set KEY TEXT`` (no file-system checks)."""
    if key in FOLDERS:
        if text.strip().lower() in _UNSET:
            return None
        if not os.path.isabs(text):
            raise InvalidInput(f"{key} must be an absolute path")
        return os.path.normpath(text)
    if key == "delete_file_from_source":
        if text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        raise InvalidInput("delete_file_from_source is on or off")
    if key == "passphrase_expiry_ttl":
        return parse_ttl(text)
    if key == "import_into":
        parts = [p for p in text.split("/") if p not in ("", ".")]
        if ".." in parts or (parts and parts[0] == ".versions"):
            raise InvalidInput("import_into is a folder inside the vault, like Imported or Photos/phone")
        return "/".join(parts)
    if key == "settle_seconds":
        try:
            seconds = float(text)
        except ValueError:
            seconds = math.nan
        if not 0.1 <= seconds <= 3600:
            raise InvalidInput("settle_seconds is a number of seconds from 0.1 to 3600")
        return seconds
    raise InvalidInput(f"unknown setting {key!r}; the settings are: {', '.join(KEYS)}")


def parse_ttl(text: str) -> dict:
    """``10 day``, ``10day``, ``30 min``, ``8 hours``, ``0.5 min`` -> {"ttl": "10", "unit": "day"}."""
    found = re.fullmatch(r"(\d+(?:\.\d+)?)([a-z]+)", text.replace(" ", "").lower())
    unit = _UNIT_WORDS.get(found.group(2)) if found else None
    if unit is None or float(found.group(1)) == 0:
        raise InvalidInput("passphrase_expiry_ttl is a number and a unit: min, hr or day (like '10 day')")
    number = float(found.group(1))
    if number * TTL_UNITS[unit] > LONGEST_TTL:
        raise InvalidInput(f"passphrase_expiry_ttl is {LONGEST_TTL_DAYS} day (about ten years) at most")
    return {"ttl": str(int(number)) if number.is_integer() else str(number), "unit": unit}


def change(current: Settings, changes: dict[str, str]) -> Settings:
    return replace(current, **{key: parse(key, text) for key, text in changes.items()})


def check(settings: Settings, vault_root: str, host: HostAccess | None = None) -> None:
    """Refuse folder settings that cannot work (checks the file system: not on the trio loop)."""
    # Every path is compared resolved: a vault named relative to the current
    # directory (`mount vault drive`), or through a symbolic link, is still itself.
    vault_root = os.path.realpath(vault_root)
    mounts = [os.path.realpath(point) for point in fusevault_mounts()]
    real = {}
    host = host or Direct()  # whose rights: in a shared mount, the user's (host_access.py)
    for key in FOLDERS:
        path = getattr(settings, key)
        if path is None:
            continue
        if not _isdir(host, path):
            raise InvalidInput(f"{key}: {path} is not an existing folder")
        real[key] = host.realpath(path)
        for mountpoint in mounts:
            if within(real[key], mountpoint):
                raise InvalidInput(f"{key}: {path} is inside the mounted vault at {mountpoint}")
        if within(real[key], vault_root):
            raise InvalidInput(f"{key}: {path} is inside the vault's own directory {vault_root}")
        _no_pseudo_folder(host, key, path)
        needs = os.R_OK | os.X_OK
        if key != "source_dir_to_watch" or settings.delete_file_from_source:
            needs |= os.W_OK
        if not host.access(path, needs):
            verb = "write to" if needs & os.W_OK else "read"
            raise InvalidInput(f"{key}: you cannot {verb} {path}")
    source = real.get("source_dir_to_watch")
    if source is None:
        return
    for mountpoint in mounts:
        if within(mountpoint, source):
            raise InvalidInput(f"source_dir_to_watch: {settings.source_dir_to_watch} contains the "
                               f"mounted vault at {mountpoint} (it would import the vault into itself)")
    if within(vault_root, source):
        raise InvalidInput(f"source_dir_to_watch: {settings.source_dir_to_watch} contains the vault's "
                           f"own directory {vault_root} (it would import its encrypted files)")
    for key in ("target_dir_to_dump", "peer_dir_for_storage"):
        other = real.get(key)
        if other is not None and (within(other, source) or within(source, other)):
            raise InvalidInput(f"{key} and source_dir_to_watch must not be inside one another "
                               f"({getattr(settings, key)}, {settings.source_dir_to_watch})")


def refuse_pseudo_folder(key: str, path: str, fd: int) -> None:
    """InvalidInput if the folder ``fd`` (the setting ``key``, ``path``) lies on a kernel pseudo file
    system (host_access/pseudo_fs.py): /proc/<pid> watched imported root's view of a root process
    (attack round 69d (1)); none holds a user's documents, nor takes an export or a peer's vault.  One whose
    file system does not answer root (her own FUSE, mounted without allow_other) is no kernel one: each
    source is judged again as it is opened (``importer.open_source``), and refused if it cannot be."""
    try:
        name = kernel_pseudo(fd)
    except OSError:
        return
    if name is not None:
        raise InvalidInput(f"{key}: {path} is on the kernel's {name} file system, not a folder of documents")


def _no_pseudo_folder(host: HostAccess, key: str, path: str) -> None:
    """``refuse_pseudo_folder`` for the folder ``path`` as the user opens it (one that does not open is
    left to the checks that follow to say)."""
    try:
        fd = host.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        refuse_pseudo_folder(key, path, fd)
    finally:
        os.close(fd)


def _isdir(host: HostAccess, path: str) -> bool:
    """``os.path.isdir`` as ``host`` sees it."""
    try:
        return stat.S_ISDIR(host.lstat(host.realpath(path)).st_mode)
    except OSError:
        return False


def save(store, user_id: str, settings: Settings, sign, vector: dict[str, int] | None = None,
         root: Path | str | None = None, hers: Callable[[dict], bool] | None = None) -> None:
    """Write the settings into the user's document (the key fields are left alone),
    signed again with the user's key (``sign``: ``Trust.sign``).  ``vector``: its version vector
    (``confirmed.next_vector``: above each body this device saw; vault/model/lineage.py).  With
    ``root`` (the vault) and ``hers`` (whether her own key signed a body: ``confirmed.own_signature``),
    the body is built on the newest of hers this device knows (``key_memory.signing_base``): a store
    body she did not sign is never signed over (attack round 22 (6)): her newest body this device
    keeps is (``key_memory.own_body``; none kept: ``Forged``, nothing saved), and the signed body
    becomes the newest this device knows, its settings those the key record keeps (round 22 (1))."""
    current = store.get(user_id)
    if root is not None and hers is not None:
        # A body she did not sign: her newest this device keeps instead, or refused (Forged).
        current = key_memory.signing_base(root, key_memory.own_body(root, current, hers(current)), True)
    elif root is not None:
        current, _ = key_memory.newest(root, current)
    doc = {k: v for k, v in current.items() if k != lineage.FIELD}  # never one copied from before
    # A time in each body: never byte for byte one she signed before (vault/model/confirmed.py tells an
    # older body, replayed, by having seen it before another).
    stamp, before = time.time_ns() // 1000, doc.get(STAMP)
    if isinstance(before, int) and not isinstance(before, bool) and (
            before < stamp + MAX_AHEAD_US or lineage.FIELD not in current):
        # Above the body it replaces.  From one with a vector, never far ahead (its vector orders
        # it below this one).  From one without (older code: its stamp is all that orders it on
        # every device), however far ahead: else this body would be below it everywhere (attack
        # round 12 (8)); at most 2**53-1, which a server still holds exactly.
        stamp = max(stamp, min(before + 1, SAFE_INTEGER))
    vectored = {lineage.FIELD: vector} if vector else {}
    signed = sign({**doc, **settings.as_dict(), STAMP: stamp, **vectored})
    store.put_many([signed])
    store.sync()
    if root is not None and hers is not None:
        key_memory.remember(root, signed)  # the key record's settings: these, from now
