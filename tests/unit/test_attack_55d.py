"""Round 55d (unit): the names skeleton that judges a stranger's names at the root (53d (4), 53t (5)).

(2) ``shared\u2800`` (a Braille blank after the name) is not taken for ``shared``
    attacker: whoever puts a top name at the root of her drive: a dropper into a box at the root,
    a sender she receives from with `-o` the drive's root, a watched folder's file.
    steps: a drop (or a received folder) whose top is ``shared\u2800/bob/contract.txt``
    (U+2800 BRAILLE PATTERN BLANK, the usual "invisible character": a blank cell in every terminal
    and file manager, not a space to Python, not a format character, not Default_Ignorable).
    seen: ``names.looks_reserved`` False, so ``away_from_reserved`` keeps the name: the stranger's
    folder is made at the root and `ls` shows it as ``shared `` beside (or, with no share yet, in
    place of) the view; likewise U+1D159 (a musical null notehead, drawn as nothing) and U+2065
    (a Default_Ignorable code point the list of ``_IGNORED`` leaves out).  ``shared `` (a space),
    ``shared\u3164`` (a Hangul filler) and ``shared\u200b`` are caught.
    expected: the look-alike goes to ``NAME (2)`` as ``shared `` does (53d (4)).
    cause: fusevault/vault/model/names.py ``skeleton``: it drops Cf and ``_IGNORED`` characters and
    strips spaces and dots at the end, but a blank symbol (So) and a Default_Ignorable code point
    not yet assigned (Cn, U+2065) stay; the same-length rule ``_stands_in`` cannot see an added one.
    impact: low (53d (4)'s hole, through another character): a stranger's folder printed as the
    view's name at her root.
    fix: in ``skeleton``, also drop U+2800, U+2065 (all of Default_Ignorable: 2060-206F) and any
    character that is not printed with ink (e.g. strip every trailing non-alphanumeric that is not
    ASCII); or judge ``looks_reserved`` on the name with every non-ASCII non-letter removed.
"""

from __future__ import annotations

import pytest

from fusevault.vault.model import names


@pytest.mark.xfail(strict=True, reason="55d (2): a view's name followed by a blank symbol (U+2800, "
                                       "U+1D159) or U+2065 is not taken for the view's")
@pytest.mark.parametrize("name", ["shared\u2800", "groups\u2800", ".versions\u2800", "shared\U0001d159",
                                  "shared\u2065"])
def test_a_views_name_with_an_invisible_symbol_after_it_looks_reserved(name: str) -> None:
    raw = name.encode()
    assert names.looks_reserved(raw)
    assert names.away_from_reserved(raw + b"/bob/contract.txt") == raw + b" (2)/bob/contract.txt"


@pytest.mark.parametrize("name", ["shared ", "shared\u200b", "shared\u3164", "shar\u0435d", "SHARED."])
def test_control_the_look_alikes_53d_names_still_look_reserved(name: str) -> None:
    assert names.looks_reserved(name.encode())
