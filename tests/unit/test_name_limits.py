"""Names made from names stay within a file system's 255 bytes (attack round 26b2, holes 1, 2, 4)."""

from __future__ import annotations

from fusevault.encoding import bytes_start, name_start
from fusevault.links.owner import NAME_MAX, unique_name

LONG = "日" * 85  # 255 bytes of UTF-8


def test_name_start_counts_bytes_and_cuts_no_character() -> None:
    start = name_start(LONG)
    assert start == "日" * 66 and len(start.encode()) == 198  # 200 would cut the 67th in two
    assert name_start("report.txt") == "report.txt"
    odd = b"\xff" * 300  # no UTF-8 at all: still a name, still cut
    assert len(name_start(odd.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")) == 200


def test_bytes_start() -> None:
    assert bytes_start("é".encode() * 3, 3) == "é".encode()
    assert bytes_start(b"abc", 10) == b"abc"


def test_a_numbered_name_fits_and_keeps_its_extension() -> None:
    name = (LONG[:83] + ".txt").encode()  # 253 bytes
    second = unique_name({name: 1}, name)
    assert len(second) <= NAME_MAX and second.endswith(b" (2).txt")
    second.decode()  # whole characters only
    third = unique_name({name: 1, second: 2}, name)
    assert len(third) <= NAME_MAX and third.endswith(b" (3).txt") and third != second


def test_a_long_extension_is_numbered_with_the_whole_name() -> None:
    name = b"a." + b"x" * 250
    assert len(unique_name({name: 1}, name)) <= NAME_MAX


def test_a_made_share_name_is_numbered_until_free_and_fits() -> None:
    """70c (3): ``NAME (ID)`` in a view folder is looked at: taken (another share's, under an id of the
    same 8 hex digits), it is numbered on, then the whole id; every one within 255 bytes."""
    from fusevault.vault.model import names

    fid = "ba581612" + "0" * 24
    name = LONG.encode()
    taken: set[bytes] = {name}
    made = []
    for _ in range(names.MADE_SHORT + 3):
        one = names.made(name, fid, taken)
        assert one not in taken and len(one) <= names.MAX_BYTES
        one.decode()
        taken.add(one)
        made.append(one)
    assert made[0].endswith(b" (ba581612)") and made[1].endswith(b" (ba581612 2)")
    assert made[names.MADE_SHORT].endswith(b" (%s)" % fid.encode())
    assert made[names.MADE_SHORT + 1].endswith(b" (%s 2)" % fid.encode())


def test_a_made_share_name_looks_at_few_names_past_many_of_one_prefix() -> None:
    """Many shares whose ids begin alike: each made name past ``MADE_SHORT`` goes to the whole id, a
    few looks each, not one per share made before it."""
    from fusevault.vault.model import names

    class Counted(set):
        looks = 0

        def __contains__(self, item: object) -> bool:
            Counted.looks += 1
            return super().__contains__(item)

    taken = Counted({b"plan.txt"})
    for n in range(2000):
        taken.add(names.made(b"plan.txt", f"ba581612{n:024x}", taken))
    assert len(taken) == 2001 and Counted.looks <= 2000 * (names.MADE_SHORT + 1)


def test_a_name_beside_is_numbered_then_takes_the_whole_id() -> None:
    """73d (1): ``NAME (also ID8 n)`` as before up to ``MADE_SHORT``, then the whole id, numbered on;
    the same inputs give the same names."""
    from fusevault.vault.model import names

    fid = "deadbeef" + "0" * 24
    taken: set[bytes] = {b"x.txt"}
    shown = []
    for _ in range(names.MADE_SHORT + 2):
        one = names.beside(b"x.txt", fid, taken)
        assert one not in taken and one == names.beside(b"x.txt", fid, set(taken))
        taken.add(one)
        shown.append(one)
    assert shown[:2] == [b"x (also deadbeef).txt", b"x (also deadbeef 2).txt"]
    assert shown[names.MADE_SHORT - 1] == b"x (also deadbeef %d).txt" % names.MADE_SHORT
    whole = fid.encode()
    assert shown[names.MADE_SHORT:] == [b"x (also %s).txt" % whole, b"x (also %s 2).txt" % whole]
    long = names.beside(LONG.encode(), fid, {names.beside(LONG.encode(), fid, ())})
    assert len(long) <= names.MAX_BYTES and long.endswith(b" (also deadbeef 2)")


def test_names_beside_look_at_few_names_past_many_of_one_prefix() -> None:
    """Many files of one name whose ids begin alike: each past ``MADE_SHORT`` a few looks, not one per
    file shown beside before it (73d (1))."""
    from fusevault.vault.model import names

    class Counted(set):
        looks = 0

        def __contains__(self, item: object) -> bool:
            Counted.looks += 1
            return super().__contains__(item)

    taken = Counted({b"x"})
    for n in range(2000):
        taken.add(names.beside(b"x", f"deadbeef{n:024x}", taken))
    assert len(taken) == 2001 and Counted.looks <= 2000 * (names.MADE_SHORT + 1)
