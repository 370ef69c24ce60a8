"""The names an import's copy is put beside its place under (imports/importer.py ``_copy_names``) are
never longer than ``longest_copy_name``, the one ``Importer._past_path_max`` counts: a numbered or
random name, or a year past 9999, passed the bound the check counted, and the copy's record was
dropped at every start, the source imported again each time (attack round 64c (1))."""

from __future__ import annotations

import itertools

import pytest

from fusevault.imports.importer import _copy_names, longest_copy_name
from fusevault.vault.model import names
from fusevault.vault.services.conflict_copies import NUMBERED, copy_name

YEAR_14645 = 400_000_000_000 * 10**9


@pytest.mark.parametrize("mtime_ns", [0, 1_700_000_040 * 10**9, YEAR_14645, -YEAR_14645, 2**62 * 10**9,
                                      -(2**62) * 10**9], ids=["1970", "2023", "year_14645", "year_-10706",
                                                              "past_gmtime", "before_gmtime"])
@pytest.mark.parametrize("name", [b"a", b"report.pdf", b".hidden", b"n" * 255, b"x" * 250 + b".txt",
                                  b"a." + b"x" * 220, b"." + b"e" * 254])
def test_no_copy_name_is_longer_than_the_longest_counted(name: bytes, mtime_ns: int) -> None:
    longest = len(longest_copy_name(name))
    given = list(itertools.islice(_copy_names(name, mtime_ns), NUMBERED + 20))  # random ones too
    assert max(len(copy) for copy in given) <= longest  # seen before the fix: +1 a year past 9999
    assert all(len(copy) <= names.MAX_BYTES for copy in given)
    assert len(set(given[:NUMBERED])) == NUMBERED  # numbered names all differ


def test_a_far_future_mtime_shows_the_last_four_digit_year() -> None:
    assert next(_copy_names(b"a", YEAR_14645)) == b"a (conflict import 9999-12-31 23.59)"


@pytest.mark.parametrize("name", [b"a." + b"x" * 220, b"a" * 100 + b"." + b"x" * 127, b"n" * 255])
@pytest.mark.parametrize("device", ["laptop", "import 1000", "d" * 300, "\u00e9" * 200])
def test_a_copys_name_is_a_name_whatever_the_extension_and_the_device(name: bytes, device: str) -> None:
    """A long extension kept whole made a 266-byte name beside (refused once the whole copy was written,
    at every retry of an import: attack round 65a (1)); so would a long device label (a peer's)."""
    copy = copy_name(name, device, 1_700_000_040 * 10**9)
    assert len(copy) <= names.MAX_BYTES
    copy.decode("utf-8")  # a label is never cut inside a character
    assert b"(conflict " in copy


def test_a_long_extension_goes_into_the_stem_as_names_beside_does() -> None:
    assert copy_name(b"a." + b"x" * 220, "import", 0).endswith(b" (conflict import 1970-01-01 00.00)")
    assert copy_name(b"report.pdf", "import", 0) == b"report (conflict import 1970-01-01 00.00).pdf"
