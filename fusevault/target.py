"""Which vault a command is about: a running mount (asked on its control
socket) found from a path inside it, or a vault directory opened in-process."""

from __future__ import annotations

import os
from pathlib import Path

from fusevault import passphrase, paths
from fusevault.errors import MountPointError, VaultError
from fusevault.mounts import fusevault_mounts

# The vault a command is about when --vault is not given: it means what --vault means
# (README "Users and groups"), never "here, or the only mount" (round 53t (4)).
VAULT_ENV = "FUSEVAULT_VAULT"

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


def named_vault(args) -> Path | None:
    """The vault the caller named: --vault, else $FUSEVAULT_VAULT (for a command that has --vault)."""
    vault = getattr(args, "vault", None)
    if vault is None and hasattr(args, "vault") and os.environ.get(VAULT_ENV):
        vault = Path(os.environ[VAULT_ENV])
    return vault


def _vault_of(mountpoint: str) -> str | None:
    """The vault a mount serves, as it says; None when it does not answer."""
    from fusevault.fs import control

    try:
        return control.request(paths.socket_of(Path(mountpoint)), {"cmd": "status"}).get("vault")
    except (OSError, ValueError, AttributeError):
        return None


def _mount_of_vault(vault: Path) -> str | None:
    wanted = str(vault.resolve())
    return next((mountpoint for mountpoint in fusevault_mounts() if _vault_of(mountpoint) == wanted), None)


def _from_env(args, request: dict, path_keys: tuple[str, ...], follow: bool) -> None:
    """$FUSEVAULT_VAULT as --vault.  A path the command line names (PATH, --mount)
    keeps its meaning (a path in a mount) when that mount serves the vault the
    variable names; in a mount of another vault it is refused: a request is never
    served by a vault the caller did not name.  A path in no mount is relative to
    the vault's root, as with --vault (it was refused, pointing at --vault: round
    54b (3)).  Every path named is judged, not only the first: a --mount of another
    vault beside a PATH in no mount was passed over, and the variable's vault
    answered instead of the one the command line named (round 55b (3))."""
    vault = named_vault(args)
    if vault is None or args.vault is not None:
        return
    given = [request[key] for key in path_keys if request.get(key) is not None]
    if getattr(args, "place", None) is not None:
        given.append(args.place)
    inside = False
    for n, place in enumerate(given):
        try:
            mountpoint = locate(place, follow)[0]
        except MountPointError:
            continue  # in no mount: relative to the vault's root
        served = _vault_of(mountpoint)
        if served is None:
            raise MountPointError(f"the mount at {mountpoint} does not answer")
        if served != str(vault.resolve()):
            raise MountPointError(f"{place} is in the vault mounted at {mountpoint}, but ${VAULT_ENV} names "
                                  f"{vault}: unset {VAULT_ENV}, or give --vault")
        inside = inside or n == 0  # the path the request is about keeps its mount's meaning
    if not inside:
        args.vault = vault  # exactly as --vault: its mount, else the vault opened here


def ask(args, request: dict, path_keys: tuple[str, ...] = (), timeout: float | None = 60,
        follow: bool = True) -> dict:
    """Send ``request`` to the vault the arguments name; raise Answered on an error.

    Entries of ``path_keys`` are paths given on the command line: inside a
    mount they are made relative to its root; with --vault they already are.
    ``follow=False``: a symbolic link at the end of such a path stays a link.
    """
    from fusevault.fs import control

    _from_env(args, request, path_keys, follow)
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
        place = getattr(args, "place", None)
        if vault is None and place is not None and "place" not in path_keys \
                and locate(place, follow)[0] != mountpoint:
            # --mount names one mount, PATH another: neither is taken over the other (round 55b (3)).
            raise MountPointError(f"{place} is not in the vault mounted at {mountpoint}, where the path "
                                  "given is: name one vault")
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

