"""fs/drive.py seats: a retired seat's number goes to another user only if the kernel was never given
its inodes, and one uid traded between users cannot use up the shared mount (attack round 20 (4))."""

from __future__ import annotations

import os

import pytest

from fusevault.fs.drive import MAX_SEATS, RETIRED_PER_UID, Drive


def _drive() -> Drive:
    return Drive(lambda uid: True, lambda: os.stat("/"), lambda: os.statvfs("/"))


def test_a_seat_never_unlocked_gives_its_number_to_the_next_seat() -> None:
    drive = _drive()
    for turn in range(MAX_SEATS + 5):  # two claims of one uid, traded: no number used up
        seat = drive.add_seat(1001, 1001, f"user{turn % 2}")
        assert seat.number == 1
        drive.unseat(seat)
    assert drive.add_seat(1002, 1002, "bob").number == 1


def test_a_seat_once_unlocked_keeps_its_number_and_comes_back_to_its_user() -> None:
    drive = _drive()
    alice = drive.add_seat(1001, 1001, "alice")
    alice.ops.gate.opened = True  # the kernel may hold inode numbers of hers
    drive.unseat(alice)
    carol = drive.add_seat(1001, 1001, "carol")
    assert carol.number != alice.number and drive.seat_of(1001) is carol
    drive.unseat(carol)  # never unlocked: its number is free again
    assert drive.add_seat(1001, 1001, "alice") is alice and drive.seat_of(1001) is alice


def test_a_uid_given_to_too_many_users_gets_no_new_seat_and_the_others_still_do() -> None:
    drive = _drive()
    for n in range(RETIRED_PER_UID):
        seat = drive.add_seat(1001, 1001, f"claim{n}")
        seat.ops.gate.opened = True
        drive.unseat(seat)
    with pytest.raises(OverflowError, match="uid 1001"):
        drive.add_seat(1001, 1001, "one more")
    assert drive.add_seat(1001, 1001, "claim0").number == 1  # a user it had before: her seat back
    assert drive.add_seat(1002, 1002, "bob").number == RETIRED_PER_UID + 1
