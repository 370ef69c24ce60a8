"""Text encodings for binary values and file names inside JSON documents,
the one way a name from outside is shown, and the one parser for JSON that
comes from outside this process."""

from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

# A CouchDB server (and PouchDB) parses numbers as doubles: an integer beyond
# this would come back rounded, and a signature over it would no longer hold.
SAFE_INTEGER = 2**53 - 1


def b64e(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64d(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def name_to_str(name: bytes) -> str:
    # File names are arbitrary bytes; surrogateescape round-trips any of them
    # through JSON (json.dumps escapes the lone surrogates).
    return name.decode("utf-8", "surrogateescape")


def str_to_name(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def is_text(value: object) -> bool:
    """Whether ``value`` is a str of Unicode text: no lone surrogate, which JSON's ``\\udXXX`` escapes
    let a peer send, and which neither UTF-8 nor SQLite takes (attack round 80c (4))."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown(text: object) -> str:
    """A name from outside (a sender's, a link owner's, a dropper's, a store writer's) as it may
    reach a terminal or a log: as it is when every character prints, else its repr.  Any of them
    may carry ESC, BEL or CR, which a terminal obeys (set the clipboard, overwrite the line above),
    or a line break, which writes a line of its own (a forged message, a forged log entry): every
    message, table row and progress line that holds such a name passes it through here.
    ``str.isprintable`` is false for every control (Cc), format (Cf: the bidirectional marks,
    overrides and isolates, U+061C too), line and paragraph separator (Zl, Zp) and surrogate, and
    ``repr`` writes exactly those out.  Not a string (a field of a store's document may be
    anything): its ``str``, shown the same way."""
    text = text if isinstance(text, str) else str(text)
    return text if text.isprintable() else repr(text)


# What a terminal obeys: C0 controls but tab and newline, DEL, C1 controls, the bidirectional
# marks, overrides and isolates (they reorder what is shown; U+061C ARABIC LETTER MARK does what
# U+200F does), and lone surrogates (bytes a file name held that are no UTF-8).
_OBEYED = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
                     "\ud800-\udfff]")

# Every line break ``str.splitlines`` knows (the journal's formatter splits with it), and
# U+2028/U+2029, which some viewers break lines at too.
_LINE_BREAK = re.compile("[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")


def shown_time(seconds: object, pattern: str = "%Y-%m-%d %H:%M", *, late: str = "never") -> str:
    """A time (seconds since the epoch) in local time, as a command prints an expiry; ``late`` for
    one beyond what the platform's time_t holds (a TTL or an expiry saved by an older version or
    another device: ``time.localtime`` raises OverflowError or OSError there, and a command that
    had done its work exited 70, attack round 49t (3)), ``"unknown"`` for what is no time."""
    import time

    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or math.isnan(seconds):
        return "unknown"
    try:
        return time.strftime(pattern, time.localtime(seconds))
    except (OverflowError, OSError, ValueError):
        return late if seconds > 0 else "unknown"


def shown_brief(value: object, limit: int = 80) -> str:
    """``shown(value)`` cut to ``limit`` characters (a value from outside quoted in a one-line
    error: vault.json's id or store)."""
    text = shown(value)
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


def cut(text: str, limit: int) -> str:
    """``text`` if it is at most ``limit`` characters, else its start and its end with its whole
    length said between them, ``limit`` characters in all (``limit`` at least 100): a line quoting
    a name from outside (a location 256 folders of 255 bytes deep: ~390 KB shown) stays bounded,
    and both its ends are kept: the end, often a file's own name and the reason, the longer."""
    if len(text) <= limit:
        return text
    marker = f" [... cut: {len(text):,} characters in all ...] "
    kept = max(limit, 100) - len(marker)
    head = kept // 3
    return f"{text[:head]}{marker}{text[len(text) - (kept - head):]}"


def defused(text: str) -> str:
    """``text`` with every character a terminal would obey written out (``\\x1b``, ``\\u202e``),
    lines and tabs kept: what the ``fusevault`` command prints passes through here
    (cli/terminal.py), so a name no message thought of passing through ``shown`` still cannot
    act on her terminal."""
    return _OBEYED.sub(_written_out, text)


def one_line(text: str) -> str:
    """``text`` with every line break written out (``\\n``, ``\\u2028``): what is meant as one line
    (a log record's message, a task's last error) stays one line whatever names from outside it
    holds, so no one can write a line (a forged log entry, time and level and all) of his own."""
    return _LINE_BREAK.sub(_written_out, text)


def name_start(name: str, limit: int = 200) -> str:
    """The start of a file name, at most ``limit`` bytes of it, for a hidden temporary name made
    from it (``.NAME.fvpart-TAG``).  A name may be 255 bytes and a file system counts bytes, not
    characters: 200 characters of a Japanese or Greek name were up to 800 bytes, and the temporary
    of a valid name could not be made at all (ENAMETOOLONG; attack round 26b2, holes 1 and 2)."""
    return bytes_start(name.encode("utf-8", "surrogateescape"), limit).decode("utf-8", "surrogateescape")


def bytes_start(name: bytes, limit: int) -> bytes:
    """At most ``limit`` bytes of ``name``: the one cut of every name made from another (a copy's, a
    name beside, ``NAME (2)``, a temporary's).  A UTF-8 name is cut at a character's start (half a
    character was a name shown with U+FFFD, refused by a file system of UTF-8 names: attack round
    69c (4)); bytes that are not UTF-8 are cut by bytes (no character to keep whole, and backing over
    "continuation bytes" could eat the whole name)."""
    limit = max(0, limit)
    if len(name) <= limit:
        return name
    try:
        name.decode("utf-8")
    except UnicodeDecodeError:
        return name[:limit]
    while limit > 0 and name[limit] & 0xC0 == 0x80:  # a continuation byte: back to its start
        limit -= 1
    return name[:limit]


def _written_out(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape", "backslashreplace").decode()


# --- JSON from the store, peers, the relay, links, helpers: hostile until parsed

JSON_LIMIT = 256 << 20  # bytes; more is refused before parsing (memory); a link version holds 64 MiB
JSON_DEPTH = 64  # nesting; none of our documents come near, and deeper ones break recursive code later


class RefusedJson(ValueError):
    """Well-formed enough, but refused: too long, too deep, or NaN/Infinity (a peer may skip
    the one document and go on; a ValueError alone may be a server that answers nonsense)."""


def _no_constant(name: str) -> Any:
    raise RefusedJson(f"JSON holds {name}, which is not a number")


def _finite(text: str) -> float:
    # "1e400" is no constant but reads as infinity all the same.
    if not math.isfinite(number := float(text)):
        raise RefusedJson(f"JSON holds {text[:40]}, which is no finite number")
    return number


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A name given twice reads as its last here and as its first to SQLite's json_extract (the store's
    # index of kinds and files): one document that two readers see as two (attack round 79a (1)).
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise RefusedJson("JSON gives a name twice in one object")
    return obj


_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite, object_pairs_hook=_unique)
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
_NOT_BRACKET_OR_QUOTE = bytes(c for c in range(256) if c not in _STEP and c != ord('"'))


def _depth(text: str) -> int:
    """The deepest nesting of ``text``, if it is valid JSON: brackets inside strings do not count.

    Every step is one pass in C (a regular expression over a million strings
    takes a second): outside strings valid JSON is ASCII, so the rest can go;
    without escaped backslashes and quotes, every quote opens or closes a
    string; two quotes with nothing between them can go (an empty string, or
    two strings merged into one); what is left between odd and even quotes
    is inside strings."""
    left = text.encode("ascii", "ignore").replace(b"\\\\", b"").replace(b'\\"', b"")
    left = left.translate(None, _NOT_BRACKET_OR_QUOTE).replace(b'""', b"")
    brackets = b"".join(left.split(b'"')[::2])
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


@dataclass(frozen=True)
class Spread:
    """How thinly a route's honest JSON answer holds its values: at least ``per_value`` bytes a value
    and ``per_container`` bytes an object or array, on average, past the first SPREAD_FREE of each.

    Within its byte cap, JSON of many small values parsed to 26 times its size (``[{}, {}, ...]``:
    a 64 MiB answer of the link store took the mount to 1.5 GB, attack round 53d (3)); a value
    costs tens of bytes parsed, an object 64 to 200.  Counted before parsing, in one pass in C:
    values as the ``,`` ``[`` ``{`` that precede them, containers as ``[`` ``{``, in strings too, so
    it is for answers whose strings are base64, ids and times (the link store's, the relay's), not
    for documents holding names."""

    per_value: int
    per_container: int


SPREAD_FREE = 256  # values, and containers, any answer may hold whatever its length
# Any answer of the relay or a link store: a few fields, base64, ids (memory: at most ~12 times).
NETWORK_SPREAD = Spread(per_value=4, per_container=32)


def _crowded(data: bytes | str, spread: Spread) -> str | None:
    """What ``data`` holds more of than ``spread`` lets it, if anything."""
    if isinstance(data, bytes):
        containers = data.count(b"[") + data.count(b"{")
        values = containers + data.count(b",")
    else:
        containers = data.count("[") + data.count("{")
        values = containers + data.count(",")
    if containers > SPREAD_FREE + len(data) // spread.per_container:
        return f"{containers} objects and arrays"
    if values > SPREAD_FREE + len(data) // spread.per_value:
        return f"{values} values"
    return None


def loads_untrusted(data: bytes | str, limit: int = JSON_LIMIT, *, spread: Spread | None = None) -> Any:
    """``json.loads`` for bytes someone else may have written.

    Whatever the input, the only error is a ValueError (what every caller
    already handles for malformed JSON); a RefusedJson for input over ``limit``
    bytes, nested deeper than JSON_DEPTH (json.loads itself raises
    RecursionError, which callers do not expect, and a document a little less
    deep would break recursive code later: a canonical form, a copy), or
    holding NaN or Infinity, also as a number too big for a float, 1e400 (json.dumps
    writes them, but none of our documents holds one, and they compare unequal to
    themselves), or giving a name twice in one object (no writer of ours does; readers
    disagree on which one counts); and, with a ``spread``, for more values than it lets
    ``data`` hold (Spread)."""
    if len(data) > limit:
        raise RefusedJson(f"JSON of {len(data)} bytes is over the limit of {limit}")
    if spread is not None and (crowded := _crowded(data, spread)):
        raise RefusedJson(f"JSON of {len(data)} bytes holding {crowded}: more than its kind holds")
    # Counting brackets is quick (in any encoding each is at least its byte): only a text with
    # many is measured.
    if isinstance(data, bytes):
        many = data.count(b"[") + data.count(b"{") > JSON_DEPTH
        text = data.decode(json.detect_encoding(data), "surrogatepass")  # as json.loads does
    else:
        many = data.count("[") + data.count("{") > JSON_DEPTH
        text = data
    if many and _depth(text) > JSON_DEPTH:
        raise RefusedJson(f"JSON nested deeper than {JSON_DEPTH}")
    try:
        return _DECODER.decode(text)
    except RecursionError:  # not reached after the check above, unless the stack is already deep
        raise RefusedJson("JSON nested too deep") from None
