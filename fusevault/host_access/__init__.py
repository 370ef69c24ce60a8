"""Host paths touched with one Linux user's rights, never with root's.

A shared mount runs as root and serves many users.  Whatever one of them
asks it to do on the host's file system (export into a folder, read a
watched folder, delete an imported source) must be done with *their*
rights: otherwise any user could make root write a setuid binary into
/usr/local/bin or read /root/.ssh.  Checking paths first (``os.access``,
``realpath``) is not enough: the answer is root's, and the path can change
between the check and the use.

So the operation itself runs in a helper process that has dropped to the
caller's uid, gid and supplementary groups before it touches anything.  The
kernel then checks every component of every path, symbolic links included,
exactly as it would for the user: nothing needs re-checking here.  Files the
helper opens come back as descriptors (``SCM_RIGHTS``); the mount reads and
writes their contents through those, and can do no more with them than the
user could.

The helpers are forked by a *spawner*: a tiny process forked from the
mount before it holds any key or starts a thread, which stays root only to
fork and drop privileges.  A helper is therefore a copy of a process that
never knew a secret, and it is single-threaded (forking the mount itself,
with its threads and its users' keys, would be neither).

``Direct`` does the same operations in-process, for a personal mount: its
server already runs as the user (or is root's own mount).

    mount (root, keys) ──spawn(uid)──▶ spawner (root, no keys)
         ▲                                  │ fork, setgroups/setgid/setuid
         └──── requests, fds (SCM_RIGHTS) ── helper (the user)

Here: ``protocol`` (what a caller may ask), ``operations`` (doing it, and
``Direct``), ``wire`` (the messages between the mount, the spawner and the
helpers), ``helper`` (``AsUser``, and the helper's loop), ``spawner``.
"""

from fusevault.host_access.helper import AsUser
from fusevault.host_access.operations import SAFE_MODE_BITS, Direct
from fusevault.host_access.protocol import HostAccess
from fusevault.host_access.spawner import Spawner

__all__ = ["SAFE_MODE_BITS", "AsUser", "Direct", "HostAccess", "Spawner"]
