"""The session gate: whether a mount's user is unlocked, asked by the FUSE layer.

The ``Agent`` (agent/sessions.py) opens and closes it; the FUSE handlers
(fs/operations.py) only ask it: ``volume()`` and ``view()`` while unlocked,
``held()`` for requests on handles already open (also while locking), and
``forget`` for the kernel's forget requests, which must be counted even while
locked (``remnant``: inode -> lookups, given back to the tree at the next
unlock so the kernel's numbers stay right).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from fusevault.errors import Locked

if TYPE_CHECKING:
    from fusevault.vault.services.versions_view import VersionsView
    from fusevault.vault.volume import Volume

LOCKED = "the vault is locked: run `fusevault unlock`"


class Unlocked(Protocol):
    """What one unlock made (agent/sessions.py's Session), as far as the FUSE layer sees it."""

    volume: Volume
    view: VersionsView


class Gate:
    def __init__(self) -> None:
        self._session: Unlocked | None = None
        # While locking: the kernel writes back and forgets, nothing new opens.
        self._locking = False
        self._remnant: dict[int, int] = {}
        # Ever unlocked: only then has the kernel been given inode numbers of this tree (a shared
        # mount's seat never unlocked may hand its number to another: fs/drive.py ``unseat``).
        self.opened = False

    @property
    def session(self) -> Unlocked | None:
        """The unlocked session (also while locking), or None."""
        return self._session

    def volume(self) -> Volume:
        if self._session is None or self._locking:
            raise Locked(LOCKED)
        return self._session.volume

    def view(self) -> VersionsView:
        if self._session is None or self._locking:
            raise Locked(LOCKED)
        return self._session.view

    def held(self) -> Unlocked:
        """The session, for requests on handles already open (also while locking)."""
        if self._session is None:
            raise Locked(LOCKED)
        return self._session

    def forget(self, inode_list: list[tuple[int, int]]) -> None:
        if self._session is None:
            for ino, count in inode_list:
                if (left := self._remnant.get(ino, 0) - count) > 0:
                    self._remnant[ino] = left
                else:
                    self._remnant.pop(ino, None)
            return
        for ino, count in inode_list:
            if not self._session.view.owns(ino):
                self._session.volume.forget(ino, count)

    # --- the agent's side

    def open(self, session: Unlocked) -> None:
        """Unlocked: the lookup counts the kernel kept while locked go back to the tree."""
        for ino, count in self._remnant.items():
            if (node := session.volume.get(ino)) is not None:
                node.lookups = count
        self._remnant = {}
        self._session = session
        self.opened = True
        self._locking = False

    def locking(self, on: bool) -> None:
        """While locking nothing new is served; a lock that failed serves on."""
        self._locking = on

    def close(self) -> None:
        """Locked: what the kernel still counts is kept until the next unlock."""
        if self._session is not None:
            self._remnant = {node.ino: node.lookups for node in self._session.volume.nodes()
                             if node.lookups > 0}
        self._session = None
        self._locking = False
