"""Inode and handle numbers, and the three ways their bits are laid out.

The kernel sees 64-bit numbers (pyfuse3's ``InodeT`` and ``FileHandleT``);
inside, an ``Inode`` or ``Handle`` is one user's own number, as their Volume
and ``.versions`` view give them out.  ``BITS`` says which range is whose:

- a Volume's own inodes are below ``view_base``;
- the ``.versions`` view mirrors live inode N as ``view_base + N`` and numbers
  version files from ``files_base`` up (vault/services/versions_view.py);
- a shared mount (fs/drive.py) puts a seat's number in the bits from
  ``seat_shift`` up, of inodes and handles alike (inode 1, the root, excepted).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NewType

from fusevault.vault.services.versions_view import FILE_BASE, VIEW_BASE

Inode = NewType("Inode", int)  # one user's inode number (a Volume's or its view's)
Handle = NewType("Handle", int)  # one user's file or directory handle


@dataclass(frozen=True)
class Bits:
    view_base: int = VIEW_BASE
    files_base: int = FILE_BASE
    seat_shift: int = 58

    @property
    def local(self) -> int:
        """The bits of a number below the seat's."""
        return (1 << self.seat_shift) - 1

    @property
    def max_seats(self) -> int:
        return (1 << (64 - self.seat_shift)) - 1

    def in_view(self, ino: int) -> bool:
        return ino >= self.view_base

    def seat(self, number: int) -> int:
        return number >> self.seat_shift

    def seated(self, seat: int, number: int) -> int:
        return (seat << self.seat_shift) | number


BITS = Bits()
assert BITS.view_base < BITS.files_base < 1 << BITS.seat_shift  # the view's numbers fit below a seat's
