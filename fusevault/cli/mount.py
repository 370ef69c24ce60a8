"""``fusevault mount | unmount``: the command's side of a mount.

``mount`` checks what it can before it asks for a passphrase (the mount
point, the vault's modes, the options), then hands over to the mount's server
(fs/daemon.py starts it, fs/server.py is what runs in it).  ``unmount`` asks
FUSE to unmount, waits for the server to have saved, and never says
"unmounted" over data it could not save.
"""

from __future__ import annotations

import argparse
import logging
import os
import pwd
import subprocess
from pathlib import Path

from fusevault import passphrase, paths
from fusevault.cli.options import Command, passphrase_options
from fusevault.cli.options import about as _about
from fusevault.errors import InvalidInput, MountPointError, SaveFailed

log = logging.getLogger("fusevault")


def add_commands(command: Command) -> None:
    p = command("mount", "unlock a vault and mount it", "fusevault mount ~/vault ~/Private")
    p.add_argument("vault", type=Path)
    p.add_argument("mountpoint", type=Path)
    p.add_argument("--user", help="which user of the vault (default: the only one)")
    p.add_argument("--foreground", "-f", action="store_true", help="stay attached, log to stderr")
    p.add_argument("--allow-other", action="store_true",
                   help="a shared mount (root): every Linux user mapped with `user add --uid` "
                        "unlocks their own keys in it with `fusevault unlock`")
    p.add_argument("--allow-other-users", action="store_true",
                   help="your drive, usable by other Linux users (a service, a container) as far as "
                        "its mode bits allow, checked by the kernel; a non-root user needs "
                        "user_allow_other in /etc/fuse.conf")
    p.add_argument("-o", dest="options", action="append", default=[], metavar="OPTION[,OPTION...]",
                   help="mount options as in /etc/fstab: allow_other (= --allow-other-users), "
                        "default_permissions (always on)")
    passphrase_options(p)

    p = command("unmount", "save everything and unmount", "fusevault unmount ~/Private")
    p.add_argument("mountpoint", type=Path)


def cmd_mount(args: argparse.Namespace) -> int:
    from fusevault.fs import daemon, mount

    _mount_options(args)
    mountpoint = mount.prepare(args.vault, args.mountpoint)
    secret = None
    if args.allow_other:
        if os.geteuid() != 0:
            raise InvalidInput("a shared mount (--allow-other) is root's to make: run it as root")
        if args.user:
            raise InvalidInput("a shared mount serves every user with a uid: leave out --user")
        if args.allow_other_users or args.options:
            raise InvalidInput("--allow-other (each user unlocks their own keys) takes no -o and no "
                               "--allow-other-users (others use one user's drive)")
    else:
        paths.control_socket(mountpoint)  # a runtime folder others could reach: refused before asking
        secret = passphrase.get(args.passphrase_fd, args.passphrase_file, about=_about(args.vault, args.user))
    mount = {"vault": str(args.vault), "mountpoint": str(args.mountpoint), "user": args.user,
             "allow_other": args.allow_other, "allow_other_users": args.allow_other_users,
             "verbose": args.verbose,
             "dirs": {"runtime": args.runtime_dir, "state": args.state_dir, "config": args.config_dir}}
    answer = daemon.launch(args.argv, mount, secret, foreground=args.foreground)
    if answer == "ok":
        print(f"mounted {args.vault} at {mountpoint}")
        return 0
    code, _, message = answer.partition(" ")
    log.error("%s", message or "the mount server exited before it was ready")
    return int(code) if code.isdigit() else 1


def _mount_options(args: argparse.Namespace) -> None:
    """``-o a,b`` as in /etc/fstab, into the flags they stand for; then whether
    FUSE lets this user open the mount to others (before a passphrase or a fork)."""
    from fusevault.fs.mount import user_allow_other

    for option in ",".join(args.options).split(","):
        if option == "allow_other":
            args.allow_other_users = True
        elif option not in ("", "default_permissions"):
            raise InvalidInput(f"unknown mount option {option!r}: -o takes allow_other, default_permissions")
    if args.allow_other_users and os.geteuid() != 0 and not user_allow_other():
        raise MountPointError("only root may let other users into a mount, unless /etc/fuse.conf has a "
                              "line `user_allow_other`: add it (as root), or mount as root")


def cmd_unmount(args: argparse.Namespace) -> int:
    from fusevault.fs import control, daemon
    from fusevault.mounts import mount_path

    mountpoint = mount_path(args.mountpoint)
    _check_unmount(args.mountpoint)
    pid = None
    socket_path = paths.socket_of(mountpoint)  # before: a server that exits removes it
    try:
        pid = control.request(socket_path, {"cmd": "status"}).get("pid")
    except (OSError, ValueError):
        pass  # no server answering (it died): unmounting still cleans up
    result = subprocess.run(["fusermount3", "-u", str(mountpoint)], capture_output=True, text=True)
    if result.returncode != 0:
        if "busy" in result.stderr.lower():
            raise MountPointError(f"{args.mountpoint} is busy: close the files and shells using it")
        raise MountPointError(f"cannot unmount {args.mountpoint}: {result.stderr.strip()}")
    if pid and not daemon.wait_exited(pid, 600):
        raise SaveFailed(f"{args.mountpoint} is unmounted, but its server (pid {pid}) is still "
                         "saving after 10 minutes: see the mount's log")
    _check_saved(socket_path, args.mountpoint)
    print(f"unmounted {args.mountpoint}")
    return 0


def _check_saved(socket_path: Path, shown: Path) -> None:
    """Never say "unmounted" over data the server could not save."""
    from fusevault.fs.mount import outcome_path

    outcome = outcome_path(socket_path)
    try:
        failures = outcome.read_text().strip()
    except FileNotFoundError:
        return
    outcome.unlink(missing_ok=True)
    raise SaveFailed(f"unmounted {shown}, but {failures} thing(s) could not be saved: "
                     "see the mount's log")


def _check_unmount(path: Path) -> None:
    """Only a fusevault mount, and only its owner's (or root's)."""
    from fusevault import mounts
    from fusevault.errors import PermissionDenied

    found = mounts.find(path)
    if found is None:
        raise MountPointError(f"nothing is mounted at {path}")
    if not found.fusevault:
        raise MountPointError(f"{path} is not a fusevault mount ({found.fstype}): "
                              "fusevault unmounts only its own; use umount or fusermount3 -u")
    if not found.mine():
        if found.owner == 0:
            raise PermissionDenied(f"{path} is root's {'shared ' if found.shared else ''}mount: "
                                   "only root can unmount it")
        raise PermissionDenied(f"{path} is {_user_name(found.owner)}'s mount: "
                               "only they or root can unmount it")


def _user_name(uid: int | None) -> str:
    try:
        return pwd.getpwuid(uid).pw_name if uid is not None else "another user"
    except KeyError:
        return f"uid {uid}"


COMMANDS = {"mount": cmd_mount, "unmount": cmd_unmount}
