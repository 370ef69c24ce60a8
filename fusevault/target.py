"""Which vault a command is about: a running mount (asked on its control
socket) found from a path inside it, or a vault directory opened in-process."""

from __future__ import annotations

import os
from pathlib import Path

from fusevault import passphrase, paths
from fusevault.errors import MountPointError, VaultError
from fusevault.mounts import fusevault_mounts

# trio, the control socket's module (which imports trio) and the vault's services are
# imported by the functions that use them: every command imports this module, and
# `fusevault --help` should not pay for them (tests/unit/test_cli_startup.py).


class Answered(VaultError):
    """An error a mount answered with; carries that error's exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.exit_code = code


def _real(path: str | Path, follow: bool) -> str:
    # realpath, not resolve(): the last part may not exist (a deleted file).
    # A str keeps a trailing slash (which follows a link; a Path drops it).
    head, name = os.path.split(os.fspath(path))
    if follow or name in ("", ".", ".."):
        return os.path.realpath(path)
    return os.path.join(os.path.realpath(head or "."), name)


def locate(path: str | Path, follow: bool = True) -> tuple[str, str]:
    """(mount point, path inside it) of a path in a mounted vault; ``follow=False``:
    a symbolic link at the end of the path is the link, not where it points."""
    full = _real(path, follow)
    best = ""
    for mountpoint in fusevault_mounts():
        inside = full == mountpoint or full.startswith(mountpoint.rstrip("/") + "/")
        if inside and len(mountpoint) > len(best):
            best = mountpoint
    if not best:
        raise MountPointError(f"{path} is not inside a mounted vault (or give --vault VAULT)")
    return best, os.path.relpath(full, best) if full != best else ""


def _mount_for(place: str | None, follow: bool = True) -> str:
    """The mount a path is in; with no path, the one here, else the only one there is."""
    if place is not None:
        return locate(place, follow)[0]
    try:
        return locate(Path("."))[0]
    except MountPointError:
        mounts = fusevault_mounts()
        if len(mounts) == 1:
            return mounts[0]
        raise MountPointError("say which vault: run this inside its mount, or give a path in it "
                              "(or --vault VAULT for one that is not mounted)") from None


def _mount_of_vault(vault: Path) -> str | None:
    from fusevault.fs import control

    wanted = str(vault.resolve())
    for mountpoint in fusevault_mounts():
        try:
            status = control.request(paths.socket_of(Path(mountpoint)), {"cmd": "status"})
        except (OSError, ValueError):
            continue
        if status.get("vault") == wanted:
            return mountpoint
    return None


def ask(args, request: dict, path_keys: tuple[str, ...] = (), timeout: float | None = 60,
        follow: bool = True) -> dict:
    """Send ``request`` to the vault the arguments name; raise Answered on an error.

    Entries of ``path_keys`` are paths given on the command line: inside a
    mount they are made relative to its root; with --vault they already are.
    ``follow=False``: a symbolic link at the end of such a path stays a link.
    """
    from fusevault.fs import control

    vault = getattr(args, "vault", None)
    mountpoint = _mount_of_vault(vault) if vault is not None else None
    if vault is not None and mountpoint is None:
        answer = _offline(args, request)
    else:
        if mountpoint is None:
            where = request.get(path_keys[0]) if path_keys else None
            mountpoint = _mount_for(where or getattr(args, "place", None), follow)
        for key in path_keys:
            if request.get(key) is not None and vault is None:
                found, inside = locate(request[key], follow)
                if found != mountpoint:
                    raise MountPointError(f"{request[key]} is not in the vault mounted at {mountpoint}")
                request[key] = inside
        try:
            answer = control.request(paths.socket_of(Path(mountpoint)), request, timeout)
        except (OSError, ValueError):
            raise MountPointError(f"the mount at {mountpoint} does not answer") from None
    if "error" in answer:
        raise Answered(answer["error"], answer.get("code", 1))
    return answer


def _offline(args, request: dict) -> dict:
    import trio

    from fusevault.vault.services.opening import hold, unlock_vault
    from fusevault.vault.services.requests import Requests
    from fusevault.vault.volume import Volume

    secret = passphrase.get(args.passphrase_fd, args.passphrase_file)
    unlocked = unlock_vault(args.vault, args.user, secret)
    lock = hold(unlocked.layout)

    async def run() -> dict:
        volume = Volume.load(unlocked.layout, unlocked.store, unlocked.key, unlocked.root())
        try:
            return await Requests(volume).handle(request)
        finally:
            await volume.close()

    try:
        return trio.run(run)
    finally:
        os.close(lock)

