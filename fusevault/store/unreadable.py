"""The error of a stored row whose body is no document (a writer of the vault folder's)."""

from __future__ import annotations

from fusevault.errors import CorruptData


class Unreadable(CorruptData):
    """A stored row whose body is no document: what a commit replacing it must
    name as the revision it replaces is known still (``rev``)."""

    def __init__(self, text: str, rev: str) -> None:
        super().__init__(text)
        self.rev = rev
