"""The mount's server: what runs in the process fs/daemon.py starts.

It does not import the command line (``python -m fusevault`` comes here when
$FUSEVAULT_SERVER is set): the command parsed the arguments and handed them
over with the passphrase.  Here the mount point is checked, the user
unlocked (a wrong passphrase is the command's one-line error) and the mount
served until it is unmounted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from fusevault import paths, systemd
from fusevault.errors import VaultError
from fusevault.fs import daemon

log = logging.getLogger("fusevault")


def main() -> int:
    os.umask(0o077)
    daemon.receive()
    server = daemon.handed()
    given = server.args
    args = argparse.Namespace(vault=Path(given["vault"]), mountpoint=Path(given["mountpoint"]),
                              user=given["user"], allow_other=given["allow_other"],
                              allow_other_users=given.get("allow_other_users", False))
    _log_to_stderr(given["verbose"])
    for kind, path in given["dirs"].items():
        paths.override(kind, path)
    try:
        return daemon.serve(server, args.mountpoint.resolve(),
                            lambda on_ready: serve_mount(args, server.secret, on_ready))
    except VaultError as err:  # in the foreground: one line, as from any command
        log.error("%s", err)
        return err.exit_code
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130


def _log_to_stderr(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if systemd.under_journal():  # the journal adds the unit's name and reads the level
        handler.setFormatter(systemd.JournalFormatter("%(message)s"))
    else:
        handler.setFormatter(logging.Formatter("fusevault: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
    logging.getLogger("httpx").setLevel(logging.DEBUG if verbose else logging.WARNING)


def serve_mount(args: argparse.Namespace, secret: bytes | None, on_ready: Callable[[], None] | None) -> int:
    from fusevault.fs.mount import check_mountpoint
    from fusevault.vault.format.layout import check_writable, open_layout
    from fusevault.vault.format.modes import check_private
    from fusevault.vault.model import users
    from fusevault.vault.services.opening import unlock_vault

    mountpoint = check_mountpoint(args.mountpoint)
    layout = open_layout(args.vault)
    check_private(layout.root)
    check_writable(layout.root)
    if args.allow_other:
        return _serve_shared(args, layout, mountpoint, on_ready)
    unlocked = unlock_vault(args.vault, args.user, secret)
    unlocked.user = users.ensure_identity(unlocked.store, unlocked.user, unlocked.key)
    unlocked.store.close()  # _serve opens its own
    return _serve(args, unlocked, mountpoint, on_ready)


def _mount_info(unlocked, vault: Path) -> dict:
    return {"vault": str(vault.resolve()), "user": unlocked.user.get("username")}


def _serve(args: argparse.Namespace, unlocked, mountpoint: Path, on_ready) -> int:
    import trio

    from fusevault.fs.mount import serve
    from fusevault.store import open_store
    from fusevault.vault.model.confirmed import ttl_seconds
    from fusevault.vault.model.meta_files import reconcile
    from fusevault.vault.services.opening import hold
    from fusevault.vault.volume import Volume

    hold(unlocked.layout)
    store = open_store(unlocked.layout.root, unlocked.layout.store)
    reconcile(unlocked.layout, store)
    volume = Volume.load(unlocked.layout, store, unlocked.key, unlocked.user["root"])
    ttl = ttl_seconds(store.get(unlocked.key.user_id), unlocked.key, unlocked.layout.root)
    trio.run(lambda: serve(volume, mountpoint, user=unlocked.user, ttl=ttl, on_ready=on_ready,
                           info=_mount_info(unlocked, args.vault), allow_other=args.allow_other_users))
    return 0


def _serve_shared(args: argparse.Namespace, layout, mountpoint: Path, on_ready) -> int:
    from fusevault.host_access import Spawner

    # First, while this process holds no key, no store and no thread: what
    # users ask of the host runs in helpers it forks (host_access.py).
    spawner = Spawner()
    try:
        import trio

        from fusevault.fs.shared import SharedMount
        from fusevault.store import open_store
        from fusevault.vault.model.meta_files import reconcile
        from fusevault.vault.services.opening import hold

        hold(layout)
        store = open_store(layout.root, layout.store)
        reconcile(layout, store)
        shared = SharedMount(layout, store, mountpoint, {"vault": str(args.vault.resolve()), "user": None},
                             spawner)
        trio.run(shared.serve, on_ready)
    finally:
        spawner.close()
    return 0
