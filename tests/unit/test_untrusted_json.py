"""The one parser for JSON from outside the process (fusevault/encoding.py)."""

from __future__ import annotations

import json
import random

import pytest

from fusevault.encoding import JSON_DEPTH, RefusedJson, loads_untrusted


@pytest.mark.parametrize("depth", [JSON_DEPTH + 1, 2000, 100_000])
def test_nesting_too_deep_is_a_value_error_not_a_recursion_error(depth: int) -> None:
    for opening, closing in (("[", "]"), ('{"a":', "}")):
        text = opening * depth + "1" + closing * depth
        with pytest.raises(RefusedJson):
            loads_untrusted(text)
        with pytest.raises(ValueError):
            loads_untrusted(text.encode())


def test_nesting_up_to_the_limit_and_brackets_inside_strings_are_fine() -> None:
    assert loads_untrusted("[" * JSON_DEPTH + "]" * JSON_DEPTH) is not None
    # Brackets in strings, escaped quotes and backslashes do not nest anything.
    tricky = {"a": "[" * 500, "b": '\\"' + "{" * 500, "c\\": "]" * 500 + "\\", "é[": "ü{" * 100}
    for text in (json.dumps(tricky), json.dumps(tricky, ensure_ascii=False)):
        assert loads_untrusted(text) == tricky
        assert loads_untrusted(text.encode()) == tricky
    # A string of closing brackets cannot hide real nesting after it.
    hidden = '{"a": "' + "]" * 200 + '\\\\", "b": ' + "[" * 100 + "]" * 100 + "}"
    with pytest.raises(RefusedJson):
        loads_untrusted(hidden)


def test_the_depth_measured_is_the_true_depth() -> None:
    rng = random.Random(7)
    atoms = ["", "[", "]", '{"}', "\\", "é[", '\\"]', 1, None, 2.5]
    keys = ["k", "[", "}", "\\"]

    def make(depth: int) -> object:
        if depth == 0 or rng.random() < 0.01:
            return rng.choice(atoms)
        # One branch goes on down, its siblings stay shallow (the size stays small).
        inner = [make(depth - 1)] + [make(min(depth - 1, 2)) for _ in range(rng.randint(0, 2))]
        rng.shuffle(inner)
        if rng.random() < 0.5:
            return inner
        return {rng.choice(keys) + str(i): value for i, value in enumerate(inner)}

    def deepest(value: object) -> int:
        inner = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        return (1 + max(map(deepest, inner), default=0)) if isinstance(value, (dict, list)) else 0

    for _ in range(500):
        value = make(rng.randint(0, JSON_DEPTH + 10))
        text = json.dumps(value)
        if deepest(value) > JSON_DEPTH:
            with pytest.raises(RefusedJson):
                loads_untrusted(text)
        else:
            assert loads_untrusted(text) == value


@pytest.mark.parametrize("text", ["NaN", "[1, Infinity]", '{"a": -Infinity}',
                                  '{"start": 1e400}', "[-2E+999]"])
def test_non_finite_numbers_are_refused(text: str) -> None:
    assert json.loads(text) is not None  # json.loads takes them
    with pytest.raises(RefusedJson):
        loads_untrusted(text)


def test_input_over_the_limit_is_refused_before_parsing() -> None:
    with pytest.raises(RefusedJson):
        loads_untrusted(b"[" + b"0," * 100 + b"0]", limit=100)
    assert loads_untrusted(b"[0,0]", limit=5) == [0, 0]


@pytest.mark.parametrize("data", [b"", b"\xff\xfe\xfd", b"{", b"[1,]", b"\x00"])
def test_malformed_input_is_a_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        loads_untrusted(data)


def test_any_encoding_json_loads_takes() -> None:
    for encoding in ("utf-8", "utf-16", "utf-32"):
        assert loads_untrusted('{"é": [1.5, 2]}'.encode(encoding)) == {"é": [1.5, 2]}
