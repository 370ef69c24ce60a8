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


@pytest.mark.parametrize("name", ["shared\u2800", "groups\u2800", ".versions\u2800", "shared\U0001d159",
                                  "shared\u2065"])
def test_a_views_name_with_an_invisible_symbol_after_it_looks_reserved(name: str) -> None:
    raw = name.encode()
    assert names.looks_reserved(raw)
    assert names.away_from_reserved(raw + b"/bob/contract.txt") == raw + b" (2)/bob/contract.txt"


@pytest.mark.parametrize("name", ["shared ", "shared\u200b", "shared\u3164", "shar\u0435d", "SHARED."])
def test_control_the_look_alikes_53d_names_still_look_reserved(name: str) -> None:
    assert names.looks_reserved(name.encode())


@pytest.mark.parametrize("name", ["\u2800shared", "\U0001d159groups", "shared\u2800\u2800.", "shared\ue000",
                                  "shared\U000e0020", "shar\u0435d\u2064", "gr\u0a66ups", "gr\u0966ups",
                                  "gr\u25cbups", "shar\u00e9d", "shar\u0065\u0301d", "shared\u1680",
                                  "shared\u2028", "shared\x01", "\u2800.versions"])
def test_other_blanks_and_stand_ins_look_reserved(name: str) -> None:
    """The rule, not a list: blanks before the name too, a private-use or tag character, any default
    ignorable, non-ASCII digits and symbols standing in for a letter, accents, other spaces, controls."""
    assert names.looks_reserved(name.encode())


@pytest.mark.parametrize("name", ["\u03bf\u03bc\u03ac\u03b4\u03b5\u03c2",
                                  "\u0433\u0440\u0443\u043f\u043f\u044b", "\u043e\u0431\u0449\u0438\u0435",
                                  "\u5171\u6709", "\u0938\u093e\u091d\u093e",
                                  "shares\u2800", "\u2800notes", "shared \u2605 notes", "gr\u0a66up",
                                  "shared\u2800 (2)", "caf\u00e9"])
def test_control_honest_names_and_other_words_stay(name: str) -> None:
    """Control: words of other scripts (Greek, Russian, Chinese, Hindi: no ASCII letter in place),
    another name with a blank, a longer name, the stable ``(2)`` name: not read as a view's."""
    raw = name.encode()
    assert not names.looks_reserved(raw)
    assert names.away_from_reserved(raw + b"/x") == raw + b"/x"
