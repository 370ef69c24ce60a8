"""The vault directory (seed 003's layout) and its format marker.

    VAULT/vault.json                      format version, vault id, store config, size padding
    VAULT/store.sqlite                    metadata documents (embedded store)
    VAULT/users/<uid>/meta.inf            seed 003 user meta info
    VAULT/users/<uid>/own/<fid>.vf        a file's sealed blocks and manifests
    VAULT/users/<uid>/own/<fid>.vfmeta    the sidecar: FILE_ID, OWNER_ID, ACL
    VAULT/users/<uid>/shared/             wrapped keys of files shared with uid
    VAULT/groups/                         group directories
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from fusevault.encoding import loads_untrusted, shown_brief
from fusevault.errors import (
    AlreadyExists,
    CorruptData,
    InvalidInput,
    NoSpace,
    UnsafeId,
    UnsupportedFormat,
    VaultNotFound,
    VaultReadOnly,
)
from fusevault.store.places import Places
from fusevault.vault.format import inside, marker_pins
from fusevault.vault.format import padding as paddings
from fusevault.vault.format.atomic import atomic_write

log = logging.getLogger(__name__)


# 2: manifests of runs (docs/FORMAT.md).  A vault of format 1 reads as it
# is and becomes 2 when a writer takes it (``upgrade``), so an older
# fusevault refuses it in one line rather than meet a manifest it cannot read.
# 3: documents are signed (vault/model/trust.py, vault/model/migrate.py).
# 4: manifests are trees that versions share (kinds 4 and 5, vault/format/manifest_tree.py);
# older manifests read as before, a file's next version is written as a tree.
# 5: those trees are Merkle trees (kinds 6 and 7): every reference holds the
# SHA-256 of the record it names; kinds 2 to 4 read as before, a file's next
# version is written in the hashed shape.
FORMAT_VERSION = 5
MARKER = "vault.json"
MARKER_LIMIT = 64 << 10  # a few hundred bytes are written

# Every id that becomes a name in the vault folder (a user's, a group's, a file's: users/<uid>/own/<fid>.vf,
# shared/<owner>_<fid>.vfkey, groups/<gid>/own/<fid>/keys/<uid>.vfkey) is one fusevault made:
# ``uuid4().hex`` (model/nodes.py ``new_id``).  Documents are unsigned until checked, and some never are
# (a planted UserDetails), so an id is checked here, where each path is made: "../x" or "/x" never is one.
_ID = re.compile(r"[0-9a-f]{32}")


def is_id(value: object) -> bool:
    """Whether ``value`` is a name fusevault makes for a user, group or file (32 lowercase hex digits)."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def checked_id(kind: str, value: object) -> str:
    """``value`` if it is such a name, else UnsafeId: no path is ever made of it."""
    if not is_id(value):
        raise UnsafeId(f"refused a {kind} id {str(value)[:80]!r}: not a name fusevault makes "
                       "(32 hex digits); as a path it would reach outside its place in the vault folder")
    return value  # type: ignore[return-value]


@dataclass
class Layout:
    root: Path
    vault_id: str
    store: dict
    # Size padding of what this replica writes (vault/format/padding.py); a vault
    # from before padding has no field: "none".  A file already padded stays
    # padded whatever this says (vault/files/content.py).
    padding: str = paddings.NONE

    @functools.cached_property
    def places(self) -> Places | None:
        """Where this replica's records sit (store/places.py), and what its readers
        check them with; a vault kept in CouchDB has no table (store/couch.py)."""
        kind = self.store.get("kind", "local")
        if kind == "couchdb" and isinstance(self.store.get("url"), str):
            from fusevault.store.couch import CouchPlaces  # CouchDB-Python only where it is used

            return CouchPlaces(self.store["url"])
        if kind != "local":
            return None
        return Places(self.root / "store.sqlite")

    def user_dir(self, user_id: str) -> Path:
        return self.root / "users" / checked_id("user", user_id)

    def own_dir(self, user_id: str) -> Path:
        return self.user_dir(user_id) / "own"

    def own_names(self, user_id: str) -> list[str]:
        """``own_dir`` as the names below the vault root (vault/format/inside.py walks them)."""
        return ["users", checked_id("user", user_id), "own"]

    def vf_path(self, owner: str, fid: str) -> Path:
        return self.own_dir(owner) / f"{checked_id('file', fid)}.vf"

    def vfmeta_path(self, owner: str, fid: str) -> Path:
        return self.own_dir(owner) / f"{checked_id('file', fid)}.vfmeta"

    def group_dir(self, group_id: str) -> Path:
        return self.root / "groups" / checked_id("group", group_id)

    def make_user_dirs(self, user_id: str) -> None:
        inside.make_dirs(self.root, ["users", checked_id("user", user_id)], ("own", "shared"))


def os_error(err: OSError, what: str) -> Exception:
    """Turn an OSError from vault I/O into the domain error a person understands."""
    if err.errno == errno.ENOSPC or err.errno == errno.EDQUOT:
        return NoSpace(f"no space left on the device holding the vault ({what})")
    if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return VaultReadOnly(f"cannot write to the vault ({what}): {err.strerror}")
    return err


def check_new(root: Path) -> None:
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise AlreadyExists(f"{root} already exists and is not an empty directory")


def create(root: Path, store: dict, vault_id: str | None = None,
           padding: str = paddings.DEFAULT) -> Layout:
    """A new, empty vault directory (``vault_id``: a replica of that vault)."""
    if padding not in paddings.SCHEMES:
        raise InvalidInput(f"unknown size padding {padding!r}: use {' or '.join(paddings.SCHEMES)}")
    if vault_id is not None and not is_id(vault_id):  # a replica's, named by the peer
        raise CorruptData(f"the vault id {shown_brief(vault_id)} is not one fusevault makes")
    root = Path(root)
    check_new(root)
    try:
        # Its owner's alone (docs/SECURITY.md): also a folder that was there, empty.
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        root.chmod(0o700)
        (root / "users").mkdir(mode=0o700)
        (root / "groups").mkdir(mode=0o700)
        layout = Layout(root, vault_id or uuid.uuid4().hex, store, padding)
        marker = {"format": FORMAT_VERSION, "vault_id": layout.vault_id,
                  "created_at": int(time.time()), "store": store, "padding": padding}
        atomic_write(root / MARKER, json.dumps(marker, indent=1).encode())
        marker_pins.keep(root, layout.vault_id, store)
    except OSError as err:
        raise os_error(err, "creating the vault") from None
    return layout


def read_marker(root: Path) -> bytes:
    """The vault marker's bytes: only a regular file is read (a named pipe there would hang every
    command, a link be followed); anything else is CorruptData, none FileNotFoundError."""
    os.lstat(root / MARKER)
    data = inside.read_file(root, [], MARKER, MARKER_LIMIT)
    if data is None:
        raise CorruptData(f"{root / MARKER} is no file fusevault wrote (a link, a pipe, a folder, too big)")
    return data


def open_layout(root: Path) -> Layout:
    root = Path(root)
    marker = root / MARKER
    if not root.is_dir():
        raise VaultNotFound(f"no vault at {root}")
    try:
        data = loads_untrusted(read_marker(root))
    except FileNotFoundError:
        raise VaultNotFound(f"{root} is not a fusevault vault (no {MARKER})") from None
    except PermissionError:
        raise VaultReadOnly(f"cannot read {marker}") from None
    except ValueError:
        raise CorruptData(f"{marker} is damaged") from None
    if not isinstance(data, dict) or not isinstance(data.get("format"), int):
        raise CorruptData(f"{marker} is damaged")
    if data["format"] > FORMAT_VERSION:
        raise UnsupportedFormat(
            f"vault format {data['format']} is newer than this fusevault supports "
            f"({FORMAT_VERSION}); upgrade fusevault")
    if data["format"] < 1:
        raise UnsupportedFormat(f"unknown vault format {data['format']}")
    padding = data.get("padding", paddings.NONE)
    if padding not in paddings.SCHEMES:
        raise UnsupportedFormat(f"{marker} asks for size padding {padding!r}, which this fusevault "
                                "does not know; upgrade fusevault")
    try:
        layout = Layout(root, _vault_id(marker, data.get("vault_id")), dict(data["store"]), padding)
    except (KeyError, TypeError, ValueError):
        raise CorruptData(f"{marker} is damaged") from None
    marker_pins.check(root, layout.vault_id, layout.store)  # before the store is opened or reached
    return layout


def _vault_id(marker: Path, value: object) -> str:
    """vault.json's id, only of the shape ``create`` makes (``uuid4().hex``).  It is the folder's clear
    text, its writer's to change: it names no file of this device (vault/model/renamed.py), and "../" or
    a line break in it is damage, refused before it reaches a path or a terminal."""
    if not is_id(value):
        raise CorruptData(f"{marker} is damaged: its vault id {shown_brief(value)} is not one fusevault "
                          "makes")
    return str(value)


def upgrade(layout: Layout) -> None:
    """Mark a vault of an older format as this one, before this process writes to it."""
    marker = layout.root / MARKER
    try:
        data = loads_untrusted(read_marker(layout.root))
        if data.get("format", FORMAT_VERSION) >= FORMAT_VERSION:
            return
        data["format"] = FORMAT_VERSION
        atomic_write(marker, json.dumps(data, indent=1).encode())
    except (OSError, ValueError, AttributeError, CorruptData):
        return  # read-only, or damaged: whoever writes next says so
    log.info("vault %s upgraded to format %d", layout.root, FORMAT_VERSION)


def check_writable(root: Path) -> None:
    # A new random name made with O_EXCL | O_NOFOLLOW: nothing planted at a name (a guessed pid) is
    # opened or truncated through, as root in a shared mount.
    probe = root / f".write-probe-{os.getpid()}-{uuid.uuid4().hex[:16]}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
        probe.unlink()
    except OSError as err:
        raise os_error(err, "checking the vault directory") from None


def validate_name(kind: str, name: str) -> str:
    # Shown as a folder name (shared/<owner>/, groups/<group>/): never "." or "..".
    if (not name or len(name) > 64 or name in (".", "..")
            or not all(c.isalnum() or c in "._-" for c in name)):
        raise InvalidInput(f"invalid {kind} name {name!r}: use letters, digits, '.', '_' or '-'")
    return name
