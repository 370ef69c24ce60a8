"""Attack round 55c in a real shared mount (root, ``--allow-other``, real Linux users): the scene of
55c (1), whose mechanism and full account are in tests/unit/test_attack_55c.py.

bob watches a folder of his, stops his helper (``kill -STOP``, his own process), asks two exports and
hangs up (his two ``HostThreads`` now held by calls waiting on the stopped helper: the watch's walk
and an export), locks, lets the helper go (``kill -CONT``) and unlocks; again.  At the lock the watch
is cancelled and its ``finally`` asks ``clean_up(os.close, root)``: no thread of his is free, the
clean-up is given up after ``CLEAN_UP_WAIT`` (10 s) before it ever started, and nobody closes root's
descriptor of his watched folder.
Fixed: that clean-up is queued and run by the first thread of his that is free (threads.py).

55c (2) (full account in the unit file): bob's watched folder holds report.txt and a folder of 45,000
names (255 bytes, not UTF-8, ending in ``.part``: listed, never imported) of one file of his: the
helper's answer for that folder passes wire.MAX_TOTAL, every walk fails with EIO, report.txt is never
imported and ``status`` says "import idle".  Control: 4,000 such names, report.txt imported.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from mount import test_attack_53b as a53b
from mount import test_shared_mount as shared
from mount.test_shared_mount import People

linux, place, python, shared_vault, people = (shared.linux, shared.place, shared.python, shared.shared_vault,
                                              shared.people)


def _held_within(mount: int, folder: Path, count: int, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while (held := a53b._held_of(mount, folder)) != count and time.monotonic() < deadline:
        time.sleep(0.2)
    return held


def _lock_and_leak(people: People, rounds: int) -> int:
    helper, mount, out = a53b._prepare(people)
    inbox = people.place / "bob" / "in-55c"
    people.ok("bob", f"rm -rf {inbox} && mkdir {inbox}")
    done = people.fusevault("bob", "config", "set", "source_dir_to_watch", str(inbox), "--mount",
                            str(people.mnt))
    assert done.returncode == 0, done.stderr
    assert _held_within(mount, inbox, 1, 20) == 1  # his watch holds its folder
    for _ in range(rounds):
        people.ok("bob", f"kill -STOP {helper}")
        try:
            clients = [a53b._export(people, "bob", out) for _ in range(2)]
            time.sleep(4)  # his walk and one export wait on his stopped helper: both his threads
            for client in clients:
                client.kill()
                client.wait(10)
            started = time.monotonic()
            locked = people.fusevault("bob", "lock", str(people.mnt))
            assert locked.returncode == 0, locked.stderr
            print(f"lock took {time.monotonic() - started:.1f} s")
            time.sleep(12)  # past CLEAN_UP_WAIT
        finally:
            people.ok("bob", f"kill -CONT {helper}")
        time.sleep(2)
        people.unlock("bob")
        time.sleep(3)  # his new watch holds the folder again
        print("root's descriptors of his watched folder:", a53b._held_of(mount, inbox))
    assert a53b._answers_within(people, "alice", "cat $M/alice.txt", 20) == "alice reads\n"
    return _held_within(mount, inbox, 1, 15)


def test_a_lock_while_his_threads_are_held_leaks_no_descriptor_of_his_watched_folder(people: People) -> None:
    # One round shows it (the attacker saw 1, 2, 3 held over two rounds): a round is 30 s of the suite.
    assert _lock_and_leak(people, rounds=1) <= 1


def _watch_with_many_names(people: People, names: int) -> bool:
    """bob watches a folder holding report.txt and a folder of ``names`` names (255 bytes, not UTF-8,
    ending in ``.part``: never imported, only listed) of one file of his: whether report.txt is
    imported within 40 s."""
    people.unlock("bob")
    bob = people.linux["bob"]
    inbox = people.place / "bob" / f"many-55c-{names}"
    people.ok("bob", f"rm -rf {inbox} && mkdir -p {inbox}/many && echo his report > {inbox}/report.txt"
                     f" && echo x > {inbox}/many/first")
    fd = os.open(inbox / "many", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for number in range(names):  # as root: quicker than his shell; hard links of his own file
            os.link("first", b"%06d" % number + b"\xff" * 244 + b".part", src_dir_fd=fd, dst_dir_fd=fd)
    finally:
        os.close(fd)
    assert os.stat(inbox / "many" / "first").st_uid == bob.pw_uid
    for key, value in (("settle_seconds", "0.3"), ("source_dir_to_watch", str(inbox))):
        done = people.fusevault("bob", "config", "set", key, value, "--mount", str(people.mnt))
        assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        if people.sh("bob", "cat $M/Imported/report.txt").returncode == 0:
            return True
        time.sleep(0.5)
    status = people.fusevault("bob", "status", str(people.mnt))
    print("his status:", status.stdout)
    return False


def test_control_a_folder_of_a_few_thousand_names_leaves_his_imports_going(people: People) -> None:
    assert _watch_with_many_names(people, int(os.environ.get("N55", "4000")))


def test_a_folder_of_many_names_in_his_watched_folder_leaves_his_imports_going(people: People) -> None:
    assert _watch_with_many_names(people, 45_000)
