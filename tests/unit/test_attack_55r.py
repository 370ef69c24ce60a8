"""Review of attack round 55's fixes (55r), unit.

55r (2), low: look-alikes of ``.versions`` whose dot is a non-ASCII punctuation mark pass
``names.looks_reserved`` (55b (2) / 55d (2)'s general rule).

- Attacker: whoever names a top folder that lands at her root (a drop into a box at the root, a
  transfer received there, a link fetched there, a watched folder imported into it): 53d (4)'s.
- Steps (``test_55r_2_a_dot_like_mark_before_versions_looks_reserved``): ``names.looks_reserved`` of
  ``\\u0702versions`` (SYRIAC SUBLINEAR FULL STOP: a dot on the base line), ``\\u00b7versions`` (MIDDLE
  DOT), ``\\u2e33versions`` (RAISED DOT), ``\\u0387versions`` (GREEK ANO TELEIA).
- Seen: False for each (its skeleton is ``versions``); ``ls -a`` at her root shows ``\\u0702versions``
  beside ``.versions``, where a font draws the mark as a dot.  Expected: True, as for ``\\u2024versions``
  (ONE DOT LEADER, NFKD's ``.``) and ``\\ua4f8versions`` (a Lisu letter like a dot), both True now.
- Cause: vault/model/names.py ``skeleton``: ``_blank_at_end`` takes any non-ASCII character that is no
  letter or digit off the START of the name too, so the mark standing in for ``.versions``'s leading dot
  is taken away before ``_stands_in`` (which lets any non-ASCII character stand in for a kept one, the dot
  included) can compare; the names are then one character short of the kept one.
- Impact: low (as 55b (2), 55d (2)): a folder that reads as her history view at her root.
- Suggested fix: for a kept name that starts with ``.``, also judge the name with only its end stripped
  (or ``"." + skeleton`` when what the start lost was one non-ASCII mark); or take blanks off the start
  only when they are unseen / spaces.
- Fixed: ``looks_reserved`` takes a non-ASCII name whose skeleton is a dotted kept name less its dot,
  and whose first character is not ASCII, for that name (``names._marked_first``).
"""

from __future__ import annotations

import pytest

from fusevault.vault.model import names


@pytest.mark.parametrize("mark", ["\u0702", "\u00b7", "\u2e33", "\u0387"])
def test_55r_2_a_dot_like_mark_before_versions_looks_reserved(mark: str) -> None:
    assert names.looks_reserved(f"{mark}versions".encode())


@pytest.mark.parametrize("mark", ["\u2024", "\ua4f8"])
def test_control_a_dot_by_compatibility_or_a_dot_like_letter_looks_reserved(mark: str) -> None:
    assert names.looks_reserved(f"{mark}versions".encode())


def test_control_versions_without_its_dot_stays() -> None:
    assert not names.looks_reserved(b"versions")


@pytest.mark.parametrize("name", ["\u65e5\u672cversions", "\u00e9versions", "versions\u00b7"])
def test_control_a_word_ending_in_versions_or_versions_marked_after_stays(name: str) -> None:
    assert not names.looks_reserved(name.encode())
