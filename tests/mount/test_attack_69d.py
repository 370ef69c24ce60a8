"""Attack round 69d: a local user of root's shared mount (real Linux user, real mount).

(1) The watched folder lends root's read rights where the kernel checks the *reader* at read time.
    Attacker: erin, a mapped user of root's shared mount (`--allow-other`), nothing more.
    Steps: `config set source_dir_to_watch /proc/<pid of a root process>` (accepted: a folder she may
    read and enter), `settle_seconds 0.3`; wait for `Imported/stat` in her vault; read it.
    Seen: her imported `stat` is root's view of that process: fields 26-28 (startcode, endcode,
    startstack) hold the process's real addresses.  Read by erin herself, the same file shows
    `1 1 0` (procfs's `do_task_stat` shows them only to a reader that may ptrace the process,
    judged against the reader's credentials at read(), not at open()).  Same for `wchan`,
    `timerslack_ns` (root's CAP_SYS_NICE at read).
    Expected (docs/SECURITY.md "The watched folder is read and emptied as its user", "Host paths
    are touched by a helper that is the caller ... the kernel checks every component of every path
    as it would for the user"): her import holds what she could read herself.
    Cause: the helper opens the source as her (host_access, `importer.open_source`), but the bytes
    are read in root's process with root's credentials (`importer.source_pieces` / `_read_from`:
    `os.pread` in `HostThreads` threads, fusevault/imports/importer.py:161,169; `host_access/rights.py`
    drops to the user's fsuid and capabilities only for an export's writes).  Files whose access
    check runs at read time (procfs `stat`, `wchan`, `timerslack_ns`; `%pK` pointers under
    kptr_restrict=1 in /proc/net/*) answer root.
    Impact: root's rights lent for reading: the memory layout (ASLR) of every root process (the
    mount itself, sshd...), kernel wait channels, pointers a kptr_restrict=1 kernel hides from
    users: the first step of an exploit.  End to end through the real command and mount.
    Not the known limit: SECURITY.md's "What remains" (shared mount) says the mount reads a source
    "as root's process" and draws from it only a read that blocks; that what such a read returns
    is root's view, not hers, is said nowhere.  Not run: a kernel with kptr_restrict=1 (Ubuntu's
    default; 0 on this machine, a global setting left alone), where the same import of
    /proc/<pid>/net/{tcp,udp,unix} would carry root's `%pK` kernel pointers (KASLR); hidepid=2 on
    /proc would stop the open (the helper), not this.
    Suggested fix: read an import's source in a thread with the user's fsuid/fsgid/groups and no
    capability (`rights.as_user`, as the export's writes are), and/or refuse watched folders on
    pseudo file systems (procfs, sysfs, debugfs: `statfs` f_type) at `config set` and at each walk.
    Fixed: both (docs/SECURITY.md "Round 69d (1)"): reads with her rights (`Importer._as_user`), kernel
    pseudo file systems refused by `fstatfs` (host_access/pseudo_fs.py) at `config set`, at the
    watch's start and for each source as it is opened.

Tried, held (read in the code, not run; no test kept: the suites that cover them exist):
the control socket's gate (an unmapped uid is answered and dropped at once, `_refuse` never blocks on
a fresh socket, admit's look-up at most once a second), `unmount` from a mapped user (refused), `..`
in a vault path (a literal name: `Namespace.resolve`), NUL in a folder setting (the helper answers
ValueError), a non-string `at`/`version` (one "internal error", the mount stays), `shares` (hers and
those reaching her only), an export's writes, `fchmod`, `utime` (the user's fsuid, no capability:
rights.py), an export into the mount (refused by the descriptor's real path), the watched folder
(held by descriptor, every name `O_NOFOLLOW`), the helper (undumpable; per-uid cap at the spawner).
(2) is in tests/inprocess/test_attack_69d.py.
Not tried: many uids from one user (subuid ranges through newuidmap: unmapped connections are let go
at once, so likely held); another user's `allow_other` FUSE mount planted in her world-writable
watched folder (would hold her one helper 120 s a call; needs user_allow_other); `sync status`'s
vault-wide counts (docs and bytes up) as a sign of other users' activity.
"""

from __future__ import annotations

import json
import subprocess

from mount import test_caller_rights
from mount.test_caller_rights import Erin, wait_for

# The real shared mount with erin mapped and unlocked (test_caller_rights.py's fixtures).
erin, python = test_caller_rights.erin, test_caller_rights.python
erin_in_shared_mount = test_caller_rights.erin_in_shared_mount
pytestmark = test_caller_rights.pytestmark  # root, useradd, setpriv


def _fields(text: str) -> list[str]:
    # comm (field 2) may hold spaces: count from after its closing parenthesis
    return text[text.rindex(")") + 2:].split()


def test_69d_1_a_watched_proc_folder_imports_only_what_she_may_read_herself(
        erin_in_shared_mount: Erin) -> None:
    her = erin_in_shared_mount
    roots = subprocess.Popen(["sleep", "600"])  # any process of root's
    try:
        pid = roots.pid
        own_view = _fields(her.ok(f"cat /proc/{pid}/stat"))
        assert own_view[23:26] == ["1", "1", "0"], own_view  # startcode, endcode, startstack: hidden from her
        result = her.fusevault("config", "set", "settle_seconds", "0.3", "--mount", her.mnt)
        assert result.returncode == 0, result.stderr
        # Refused at `config set`, in one line saying why (the setting is not kept).
        refused = her.fusevault("config", "set", "source_dir_to_watch", f"/proc/{pid}", "--mount", her.mnt)
        assert refused.returncode == 12, refused.stderr
        assert refused.stderr.strip().splitlines()[-1].endswith(
            f"source_dir_to_watch: /proc/{pid} is on the kernel's proc file system, not a folder of "
            "documents"), refused.stderr
        shown = her.fusevault("config", "show", "--mount", her.mnt)
        assert f"/proc/{pid}" not in shown.stdout, shown.stdout
        assert her.sh("test -e $M/Imported/stat").returncode != 0
    finally:
        roots.kill()
        roots.wait()


def test_69d_1_a_procfs_file_put_in_her_watched_folder_is_refused_as_a_source(
        erin_in_shared_mount: Erin) -> None:
    """The folder passes (hers, on an ordinary file system); a procfs file bind-mounted into it is judged
    by its own file system as it is opened: refused, said in ``status``, never imported; her own file
    beside it is (the control)."""
    her = erin_in_shared_mount
    roots = subprocess.Popen(["sleep", "600"])
    inbox = her.home / "inbox"
    her.ok(f"mkdir {inbox} && echo hers > {inbox}/mine.txt && : > {inbox}/stat")
    subprocess.run(["mount", "--bind", f"/proc/{roots.pid}/stat", str(inbox / "stat")], check=True)
    try:
        for key, value in (("settle_seconds", "0.3"), ("source_dir_to_watch", inbox)):
            result = her.fusevault("config", "set", key, value, "--mount", her.mnt)
            assert result.returncode == 0, result.stderr

        def said() -> bool:
            status = json.loads(her.fusevault("status", her.mnt, "--json").stdout)
            return "proc file system" in json.dumps(status["mounts"][0]["tasks"])

        wait_for("her own file imported", lambda: her.sh("cat $M/Imported/mine.txt").returncode == 0)
        wait_for("the procfs source refused, said in status", said)
        assert her.sh("test -e $M/Imported/stat").returncode != 0
    finally:
        subprocess.run(["umount", str(inbox / "stat")], check=False)
        roots.kill()
        roots.wait()
