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
from collections.abc import Callable
from pathlib import Path

from fusevault import log_lines, paths
from fusevault.errors import VaultError
from fusevault.fs import daemon

log = logging.getLogger("fusevault")


def main() -> int:
    os.umask(0o077)
    daemon.receive()
    server = daemon.handed()
    if server is None:
        raise SystemExit("fusevault: a mount server is started by `fusevault mount`")
    given = server.args
    args = argparse.Namespace(vault=Path(given["vault"]), mountpoint=Path(given["mountpoint"]),
                              user=given["user"], allow_other=given["allow_other"],
                              allow_other_users=given.get("allow_other_users", False))
    log_lines.to_stderr(given["verbose"])
    for kind, path in given["dirs"].items():
        paths.override(kind, path)
    secret = server.secret
    try:
        return daemon.serve(server, args.mountpoint.resolve(),
                            lambda on_ready: serve_mount(args, secret, on_ready))
    except VaultError as err:  # in the foreground: one line, as from any command
        log.error("%s", err)
        return err.exit_code
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130




def serve_mount(args: argparse.Namespace, secret: bytes | None, on_ready: Callable[[], None] | None) -> int:
    from fusevault.fs.mount import check_mountpoint
    from fusevault.vault.format.layout import check_writable, open_layout
    from fusevault.vault.format.modes import check_private

    mountpoint = check_mountpoint(args.mountpoint)
    layout = open_layout(args.vault)
    check_private(layout.root)
    check_writable(layout.root)
    if args.allow_other:
        from fusevault.host_access import Spawner

        # First, while this process holds no key, no store and no thread: what
        # users ask of the host runs in helpers it forks (host_access.py).
        spawner = Spawner()
        try:
            from fusevault.fs import shared

            shared.serve(layout, args.vault, mountpoint, spawner, on_ready)
        finally:
            spawner.close()
        return 0
    from fusevault.fs import personal

    personal.serve(args.vault, args.user, secret, mountpoint, on_ready,
                   allow_other_users=args.allow_other_users)
    return 0
