"""Group commit with a sync peer: a metadata change the kernel was answered for, still waiting
for its group commit (vault/tree/inodes.py), meets a peer's change of the same file in the pull.

Two devices, each a real `fusevault mount`, meet through a pouchdb-server on loopback.  The
window is an hour (FUSEVAULT_GROUP_WINDOW), so a change waits until something commits it: the
test decides when, not the machine's speed: an fsync of the mount's root folder commits what
waits (fsyncdir), as the window's end would.
"""

from __future__ import annotations

import os
from pathlib import Path

from conftest import first_device, mounted, new_device, settled, sync_answer, sync_status, wait_for

from fusevault.vault.format.atomic import fsync_dir  # in a mount: commits what waits (fsyncdir)


def _node_revs(vault: Path) -> dict[str, str]:
    """The current revision of every node document in a device's store."""
    from fusevault.store.local import LocalStore
    from fusevault.vault.model.nodes import NODE

    store = LocalStore(vault / "store.sqlite")
    try:
        return dict(store.db.execute("SELECT id, rev FROM docs WHERE type = ?", (NODE,)).fetchall())
    finally:
        store.close()


def _holds(vault: Path, doc_id: str, rev: str) -> bool:
    """Whether a device's store has this revision (current, in a history or a conflict's branch)."""
    from fusevault.store import replica
    from fusevault.store.local import LocalStore

    store = LocalStore(vault / "store.sqlite")
    try:
        return not replica.missing(store, {doc_id: [rev]})
    finally:
        store.close()


def test_a_grouped_rename_the_pull_meets_is_committed_first_and_kept(couchdb_url: str, monkeypatch,
                                                                     tmp_path: Path) -> None:
    """The desktop renames a file, and the rename waits for its group commit while the laptop's
    edit of that file arrives.  The pull commits the rename first, so the two are concurrent
    revisions, and the conflict rules keep both changes (docs/ARCHITECTURE.md "Sync", rule 3:
    the edited contents under the renamed name), on both devices.  Before, the pull stored the
    laptop's revision and took it into the node in memory, name and all, and the desktop's group
    commit then saved that state: its acknowledged rename was lost on both devices, no conflict seen."""
    monkeypatch.setenv("FUSEVAULT_GROUP_WINDOW", "3600")
    laptop = first_device(couchdb_url, tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        (a / "f").write_text("as it was")
        wait_for(lambda: settled(a), "the laptop to send the file")
        desktop = new_device(couchdb_url, tmp_path, "desktop")
        with mounted(desktop, tmp_path / "b") as b:
            # Both at rest: all sent, and the desktop's pull caught up (no batch on its way).
            wait_for(lambda: (b / "f").exists() and settled(a) and settled(b)
                     and sync_status(b)["pending_down"] == 0, "the file to reach the desktop")
            laptop_before, desktop_before = _node_revs(laptop), _node_revs(desktop)

            os.rename(b / "f", b / "g")
            # It waits for its group commit (nothing in the desktop's store yet): with a peer too.
            assert _node_revs(desktop) == desktop_before
            (a / "f").write_text("edited on the laptop")  # committed at once (its close or release)
            wait_for(lambda: _node_revs(laptop) != laptop_before and settled(a), "the edit to be sent")
            edited = {i: r for i, r in _node_revs(laptop).items() if laptop_before.get(i) != r}
            # The desktop's pull stores the laptop's revision (nothing here commits the rename).
            wait_for(lambda: all(_holds(desktop, i, r) for i, r in edited.items()),
                     "the desktop to pull the laptop's edit")

            fsync_dir(b)
            wait_for(lambda: settled(b), "the desktop to send what it holds")
            want = ["g"]
            wait_for(lambda: sorted(os.listdir(a)) == sorted(os.listdir(b)) == want,
                     lambda: f"the rename kept on both devices: laptop {sorted(os.listdir(a))}, "
                             f"desktop {sorted(os.listdir(b))}")
            wait_for(lambda: (a / "g").read_text() == (b / "g").read_text() == "edited on the laptop",
                     "the edit kept on both devices")


def test_a_change_in_its_group_commit_window_is_counted_as_not_sent(couchdb_url: str, monkeypatch,
                                                                   tmp_path: Path) -> None:
    """A rename waiting for its group commit is in no store yet, so no peer's ``pending_up`` counts
    it: the mount's sync status counts it as ``uncommitted`` (fs/lifecycle.py), until it is
    committed and sent.  The tests' ``settled`` (tests/conftest.py) answers from that in one look."""
    monkeypatch.setenv("FUSEVAULT_GROUP_WINDOW", "3600")
    laptop = first_device(couchdb_url, tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        (a / "f").write_text("as it was")
        wait_for(lambda: settled(a), "the laptop to send the file")
        os.rename(a / "f", a / "g")
        answer = sync_answer(a)
        (peer,) = answer["peers"]
        assert (answer["uncommitted"], peer["pending_up"]) == (1, 0), answer
        assert not settled(a)
        fsync_dir(a)  # commits what waits
        wait_for(lambda: settled(a), "the rename to be sent")
        assert sync_answer(a)["uncommitted"] == 0
