"""Where fusevault keeps its own files: platformdirs defaults, env and flag overrides.

    runtime  sockets of running mounts   FUSEVAULT_RUNTIME_DIR or --runtime-dir
    state    logs                        FUSEVAULT_STATE_DIR   or --state-dir
    config   settings                    FUSEVAULT_CONFIG_DIR  or --config-dir
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import platformdirs

APP = "fusevault"
_overrides: dict[str, str] = {}


def override(kind: str, path: str | None) -> None:
    if path:
        _overrides[kind] = path


def _dir(kind: str, default: str) -> Path:
    path = Path(_overrides.get(kind) or os.environ.get(f"FUSEVAULT_{kind.upper()}_DIR") or default)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def runtime_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.access(base, os.W_OK):
        default = platformdirs.user_runtime_dir(APP)
    else:  # no session runtime dir (cron, ssh without a login session, root)
        default = f"/tmp/{APP}-{os.getuid()}"
    return _dir("runtime", default)


def state_dir() -> Path:
    return _dir("state", platformdirs.user_state_dir(APP))


def config_dir() -> Path:
    return _dir("config", platformdirs.user_config_dir(APP))


# Shared mounts (root's, `--allow-other`) put their sockets where every user
# looks: a fixed system directory, not root's runtime directory.
SHARED_SOCKETS = Path("/run/fusevault")


def _socket_name(mountpoint: Path) -> str:
    return hashlib.sha256(str(mountpoint).encode()).hexdigest()[:16] + ".sock"


def control_socket(mountpoint: Path) -> Path:
    """The socket of this user's mount at ``mountpoint`` (an absolute path, not resolved here)."""
    sockets = runtime_dir() / "mounts"
    sockets.mkdir(exist_ok=True, mode=0o700)
    return sockets / _socket_name(mountpoint)


def shared_socket(mountpoint: Path, create: bool = False) -> Path:
    """The socket of a shared mount at ``mountpoint``, which any local user may reach."""
    if create:
        SHARED_SOCKETS.mkdir(parents=True, exist_ok=True, mode=0o755)
    return SHARED_SOCKETS / _socket_name(mountpoint)


def socket_of(mountpoint: Path) -> Path:
    """The socket to ask about ``mountpoint``: the user's own mount, else a shared one."""
    own = control_socket(mountpoint)
    if own.exists():
        return own
    shared = shared_socket(mountpoint)
    return shared if shared.exists() else own
