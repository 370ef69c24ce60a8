"""Where fusevault keeps its own files: platformdirs defaults, env and flag overrides.

    runtime  sockets of running mounts   FUSEVAULT_RUNTIME_DIR or --runtime-dir
    state    logs                        FUSEVAULT_STATE_DIR   or --state-dir
    config   settings                    FUSEVAULT_CONFIG_DIR  or --config-dir
"""

from __future__ import annotations

import hashlib
import os
import shlex
import stat
from pathlib import Path

import platformdirs

from fusevault.errors import Unsafe

APP = "fusevault"
_overrides: dict[str, str] = {}


def override(kind: str, path: str | None) -> None:
    if path:
        _overrides[kind] = path


_checked: set[Path] = set()


def _dir(kind: str, default: str) -> Path:
    path = Path(_overrides.get(kind) or os.environ.get(f"FUSEVAULT_{kind.upper()}_DIR") or default)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path not in _checked:  # once per process and folder: the callers ask often
        _own_place(path, kind)
        _checked.add(path)
    return path


def _own_place(path: Path, kind: str) -> None:
    """``path`` is this user's own folder (not a link), and no one else may take it away: each folder
    above it belongs to this user or to root, and one others may write is sticky (/tmp).  Root's state
    (pins, the rollback ledger, logs) kept in a user's folder (``sudo -E`` keeps HOME) would be hers to
    replace or move away, and its logs written where her link points: refused, one line.  (A folder
    above that its group may write is taken: user private groups make homes so.)"""
    me = os.geteuid()
    how = f"set FUSEVAULT_{kind.upper()}_DIR to a folder of yours"
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode) or st.st_uid != me:
        raise Unsafe(f"the {kind} folder {path} is not a folder of yours (uid {me}): refused, another user "
                     f"could change what fusevault keeps there; {how}")
    for above in Path(os.path.realpath(path)).parents:
        st = os.stat(above)
        if st.st_uid not in (me, 0) or (st.st_mode & 0o002 and not st.st_mode & stat.S_ISVTX):
            raise Unsafe(f"the {kind} folder {path} is inside {above}, which another user may change "
                         f"(uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):o}): refused; {how}")


def runtime_dir() -> Path:
    """Where this user's mounts put their sockets: a folder only this user can reach.

    The passphrase of ``fusevault unlock`` goes to the socket found here, so a
    folder another user made (``/tmp/fusevault-<uid>`` is a name anyone can
    take first) is refused, never used."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.access(base, os.W_OK):
        default = platformdirs.user_runtime_dir(APP)
    else:  # no session runtime dir (cron, ssh without a login session, root)
        default = f"/tmp/{APP}-{os.getuid()}"
    path = Path(_overrides.get("runtime") or os.environ.get("FUSEVAULT_RUNTIME_DIR") or default)
    return private_dir(path)


def private_dir(path: Path) -> Path:
    """``path``, made 0700 if missing; refused unless it is this user's own
    folder (not a link) that nobody else may enter."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        path.mkdir(mode=0o700)  # exclusive: an existing one is checked like any other
    except FileExistsError:
        pass
    st = os.lstat(path)
    me = os.geteuid()
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise Unsafe(f"{path} is not a folder (a link or a file): refused, another user may have put "
                     f"it there; remove it or set FUSEVAULT_RUNTIME_DIR to a folder of yours")
    if st.st_uid != me:
        raise Unsafe(f"{path} belongs to uid {st.st_uid}, not to you (uid {me}): refused, its owner could "
                     f"listen for your passphrase there; have root remove it, or set "
                     f"FUSEVAULT_RUNTIME_DIR to a folder of yours")
    if st.st_mode & 0o077:
        raise Unsafe(f"others may enter {path} (mode {stat.S_IMODE(st.st_mode):o}): "
                     f"run `chmod 700 {shlex.quote(str(path))}`")
    return path


def state_dir() -> Path:
    return _dir("state", platformdirs.user_state_dir(APP))


def confirmed_file(root: Path | str, user_id: str, suffix: str = "") -> Path:
    """Where this device keeps what it confirmed or saw for a user of a vault (her settings, her
    newest keys, the key-rotation requests it carried out): outside the vault, which is what a
    writer of the store or the vault folder controls."""
    return state_dir() / "confirmed" / f"{record_name(root, user_id)}{suffix}"


def record_name(root: Path | str, user_id: str) -> str:
    """The name of what this device keeps for a user of the vault folder at ``root``: made of what the
    device decides (the folder's real path, the user id), never of the folder's own text (vault.json's
    ``vault_id`` is its writer's to change: a new one would be a device that saw nothing)."""
    return hashlib.sha256(f"{os.path.realpath(root)}\0{user_id}".encode()).hexdigest()[:32]


def config_dir() -> Path:
    return _dir("config", platformdirs.user_config_dir(APP))


# Shared mounts (root's, `--allow-other`) put their sockets where every user
# looks: a fixed system directory, not root's runtime directory.
SHARED_SOCKETS = Path("/run/fusevault")


def _socket_name(mountpoint: Path) -> str:
    return hashlib.sha256(str(mountpoint).encode()).hexdigest()[:16] + ".sock"


def control_socket(mountpoint: Path) -> Path:
    """The socket of this user's mount at ``mountpoint`` (an absolute path, not resolved here)."""
    return private_dir(runtime_dir() / "mounts") / _socket_name(mountpoint)


def shared_socket(mountpoint: Path, create: bool = False) -> Path:
    """The socket of a shared mount at ``mountpoint``, which any local user may reach."""
    if create:
        SHARED_SOCKETS.mkdir(parents=True, exist_ok=True, mode=0o755)
        st = os.lstat(SHARED_SOCKETS)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
            raise Unsafe(f"{SHARED_SOCKETS} must be a folder of root's that only root may write: "
                         f"remove it, and fusevault makes it again")
        SHARED_SOCKETS.chmod(0o755)  # under umask 077 as made: every user must reach the socket
    return SHARED_SOCKETS / _socket_name(mountpoint)


def socket_of(mountpoint: Path) -> Path:
    """The socket to ask about ``mountpoint``: the user's own mount, else a shared one."""
    shared = shared_socket(mountpoint)
    try:
        own = control_socket(mountpoint)
    except Unsafe:
        if shared.exists():  # root's, in a folder only root may write: no use of the refused one
            return shared
        raise
    if own.exists():
        return own
    return shared if shared.exists() else own
