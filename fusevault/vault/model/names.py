"""Names taken from documents: checked before they reach a folder, a path or the disk.

A name in a node's links, a version's ``file_name``, a trashed node's old
name, a user or group name shown as a folder: each came out of a document
that someone else may have written (any holder of the file's key can seal a
node document).  A name with ``/`` or NUL, ``.``, ``..``, an empty one or
one longer than 255 bytes would make the kernel refuse the whole folder
(EIO for ``ls``), or lead a path out of where it belongs (``export``,
``restore``).  Such a name is refused where it comes in: the link is
skipped (the rest of the folder lists) and an alarm says so.
"""

from __future__ import annotations

import itertools
import logging
import unicodedata
from collections.abc import Container, Iterator

from fusevault.encoding import bytes_start, name_to_str, str_to_name
from fusevault.errors import CorruptData
from fusevault.vault.model import alarms

log = logging.getLogger(__name__)

MAX_BYTES = 255  # NAME_MAX of Linux file systems (and of FUSE)

# The root's names the mount shows views under (the one definition, the FUSE handlers use it too):
# the read-only version history, and the folders where shares from others appear.  A real child of
# the root under one of them hides the view (a stranger's drop ``.versions`` read as her history,
# a drop ``shared/bob`` read as bob's share: attack round 52t (1), (2)), so whatever makes root
# children for her without her typing the name (drops, imports, ``restore --to``) avoids them.
VERSIONS = b".versions"
SHARED = b"shared"
GROUPS = b"groups"
RESERVED_AT_ROOT: frozenset[bytes] = frozenset({VERSIONS, SHARED, GROUPS})


def reserved_at_root(path: bytes) -> bytes | None:
    """The reserved root name ``path`` (relative to the root, ``/`` ignored) starts with, or None."""
    first = path.strip(b"/").split(b"/", 1)[0]
    return first if first in RESERVED_AT_ROOT else None


def away_from_reserved(path: bytes) -> bytes:
    """``path`` (relative to the root) with a first name that is, or looks like, a reserved one
    (``looks_reserved``) replaced by ``NAME (2)``, within ``MAX_BYTES`` (``ending``: a 255-byte
    look-alike made a 259-byte name, refused only once the whole source was written, at every retry:
    attack round 69c (5)); never a look-alike itself (it ends in ``(2)``).  One stable answer for one
    path (an importer finds again what it put there)."""
    first = like_reserved_at_root(path)
    if first is None:
        return path
    rest = path.strip(b"/")[len(first):]
    return ending(first, b" (2)") + rest


def ending(name: bytes, tail: bytes) -> bytes:
    """``name`` with ``tail`` added, ``name`` cut (``bytes_start``: at a character's start where it is
    UTF-8) so the whole is at most ``MAX_BYTES``: how every name made from another by adding to it is
    made (a copy's, a name beside, ``NAME (2)``, ``NAME (recovered ID)``).  ``tail`` is the caller's
    own, shorter than ``MAX_BYTES``."""
    return bytes_start(name, MAX_BYTES - len(tail)) + tail


def like_reserved_at_root(path: bytes) -> bytes | None:
    """The first name of ``path`` (relative to the root) if it is, or looks like, a reserved one."""
    first = path.strip(b"/").split(b"/", 1)[0]
    return first if looks_reserved(first) else None


def looks_reserved(name: bytes) -> bool:
    """Whether ``name`` is a name kept at the root, or one read as it (attack rounds 53d (4), 55b (2),
    55d (2)): a drop ``\u0455hared/bob/...`` (a Cyrillic dze), ``gr\u0a66ups`` (a Gurmukhi zero),
    ``shared\u200b`` (a zero-width space), ``shared\u2800`` (a braille blank) or ``shared `` printed
    as ``shared`` by ``ls`` beside the real view.  Judged on its ``skeleton``: the same as a kept
    name's; or, for a name not plain ASCII, of a kept name's length and differing from it only where
    the skeleton has non-ASCII characters (any may stand in for the ASCII letter it is beside, a
    letter, a digit or a symbol: no table of look-alikes is kept), with at least one ASCII letter of
    it in place.  Left: a name spelt whole in look-alikes of another script (no ASCII letter), as a
    word in that script is; ASCII stand-ins (``gr0ups``, typed and shown as they are)."""
    if name in RESERVED_AT_ROOT:
        return True
    seen = skeleton(name)
    for kept in _KEPT:
        if seen == kept:
            return True
        if not name.isascii() and len(seen) == len(kept) and _stands_in(seen, kept):
            return True
        if (kept.startswith(".") and not name.isascii() and _marked_first(name)
                and len(seen) == len(kept) - 1 and _stands_in(seen, kept[1:])):
            return True
    return False


def _marked_first(name: bytes) -> bool:
    """Whether ``name`` begins with something other than an ASCII character: a dot-like mark
    (U+0702, U+00B7, U+2E33) for the dot of ``.versions``, which ``skeleton`` takes off the start as
    what may read as blank, leaving ``versions``, or ``v\u0435rsions`` with a stand-in for a letter
    too (attack rounds 55r (2), 56b (2))."""
    return not name_to_str(name)[:1].isascii()


def _stands_in(seen: str, kept: str) -> bool:
    """Whether ``seen`` is ``kept`` with some letters swapped for non-ASCII characters, one ASCII
    letter kept.  Every non-ASCII character left in a skeleton has ink (``skeleton`` took the unseen
    ones out), and any may be drawn like the letter it replaces: a letter (``\u0455``), a digit
    (``\u0a66``, ``\u09e6``), a symbol; only an ASCII character that is not the kept one tells."""
    kept_letters = 0
    for mine, theirs in zip(seen, kept, strict=True):
        if mine == theirs:
            kept_letters += mine.isalpha()
        elif mine.isascii():
            return False
    return kept_letters > 0


_KEPT = tuple(sorted(name_to_str(n) for n in RESERVED_AT_ROOT))

# Unicode's Default_Ignorable_Code_Point in full (DerivedCoreProperties.txt, Unicode 15.1): shown as
# nothing whatever their category (format characters, marks, Hangul fillers that are letters, code
# points not assigned yet such as U+2065, which this Python's tables may not know).
_IGNORED = frozenset([0x00AD, 0x034F, 0x061C, 0x115F, 0x1160, 0x17B4, 0x17B5, *range(0x180B, 0x1810),
                      *range(0x200B, 0x2010), *range(0x202A, 0x202F), *range(0x2060, 0x2070), 0x3164,
                      *range(0xFE00, 0xFE10), 0xFEFF, 0xFFA0, *range(0xFFF0, 0xFFF9),
                      *range(0x1BCA0, 0x1BCA4), *range(0x1D173, 0x1D17B), *range(0xE0000, 0xE1000)])
# Categories drawn as nothing beside the letters, or left out by a font: format characters, controls,
# marks (an accent over the letter before it; NFKD takes it off a composed letter), private use and
# code points not assigned (no glyph: a terminal may draw none).
_UNSEEN = frozenset({"Cf", "Cc", "Mn", "Me", "Co", "Cn"})


def _unseen(c: str) -> bool:
    return ord(c) in _IGNORED or unicodedata.category(c) in _UNSEEN


def _blank_at_end(c: str) -> bool:
    """Whether ``c`` at either end of a name may read as nothing: a space, or a non-ASCII character
    that is not a letter or a digit (a symbol, punctuation, a spacing mark, a byte that is no UTF-8):
    which of these a font leaves blank has no Unicode property (U+2800 BRAILLE PATTERN BLANK and
    U+1D159 MUSICAL SYMBOL NULL NOTEHEAD are symbols, So), so all are taken off, not a list that
    misses one.  At worst an honest ``groups \u2605`` at the root takes ``(2)`` too."""
    return c.isspace() or (not c.isascii() and unicodedata.category(c)[0] not in "LN")


def skeleton(name: bytes) -> str:
    """``name`` as it reads: case folded, NFKD (compatibility forms, as full-width letters, made
    plain; accents taken apart), its unseen characters (``_unseen``: default-ignorable ones, format
    characters, controls, marks, private use, unassigned) taken out, what may read as blank taken off
    both ends (``_blank_at_end``), and dots after it."""
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", name_to_str(name)).casefold())
    text = "".join(c for c in text if not _unseen(c))
    start, end = 0, len(text)
    while start < end and _blank_at_end(text[start]):
        start += 1
    while end > start and (text[end - 1] == "." or _blank_at_end(text[end - 1])):
        end -= 1
    return text[start:end]


class BadName(CorruptData):
    """A name from a document that cannot be a file name (EIO where it is met)."""


def problem(name: bytes | str) -> str | None:
    """Why ``name`` cannot be a single file name, or None if it can."""
    raw = str_to_name(name) if isinstance(name, str) else name
    if not raw:
        return "an empty name"
    if raw in (b".", b".."):
        return f"the name {raw.decode()!r}"
    if b"/" in raw:
        return "a name with '/'"
    if b"\0" in raw:
        return "a name with NUL"
    if len(raw) > MAX_BYTES:
        return f"a name of {len(raw)} bytes (at most {MAX_BYTES})"
    return None


def valid(name: bytes | str) -> bool:
    return problem(name) is None


def check(name: bytes | str, where: str) -> bytes:
    """The name as bytes, or raise BadName naming ``where`` it came from (never the name itself)."""
    why = problem(name)
    if why is not None:
        raise BadName(f"{where}: refused {why}")
    return str_to_name(name) if isinstance(name, str) else name


def path_problem(path: bytes | str) -> str | None:
    """Why ``path`` (``/a/b`` in the vault, or ``a/b`` under a folder) is not a path of valid names."""
    raw = str_to_name(path) if isinstance(path, str) else path
    inner = raw.strip(b"/")
    if not inner:
        return None  # the root
    for part in inner.split(b"/"):
        why = problem(part)
        if why is not None:
            return f"a path with {why}"
    return None


def check_path(path: bytes | str, where: str) -> bytes:
    """A path from a document, each part a valid name; or raise BadName."""
    why = path_problem(path)
    if why is not None:
        raise BadName(f"{where}: refused {why}")
    return str_to_name(path) if isinstance(path, str) else path


def alarms_of(volume: object | None) -> alarms.Alarms | None:
    """The reader's alarm list (a volume without key pairs has one too), or None without a reader.

    ``volume``: a tree or a volume, asked for ``trust`` and ``key`` only
    (any object: this module is below both)."""
    trust = getattr(volume, "trust", None)
    if trust is not None:
        return trust.alarms
    key = getattr(volume, "key", None)
    return alarms.for_user(key.user_id) if key is not None else None


def refuse(volume: object | None, subject: str, why: str) -> None:
    """Raise the alarm for a refused name (once per subject), in the log and ``fusevault status``."""
    found = alarms_of(volume)
    if found is not None:
        found.warn("bad-name", subject, why)
    else:
        log.warning("%s", why)


def link_ok(volume: object | None, fid: str, name: bytes) -> bool:
    """Whether a link of node ``fid`` may show under ``name``; if not, the alarm is raised."""
    why = problem(name)
    if why is None:
        return True
    refuse(volume, fid, f"refused a link of node {fid}: {why} (the rest of its folder still lists)")
    return False


def beside(name: bytes, fid: str, taken: Container[bytes]) -> bytes:
    """A name of its own for node ``fid`` whose name ``name`` another live node of the folder holds
    (two devices gave one name while apart): ``notes (also 1a2b3c4d).txt``, numbered on if that is
    taken too, past ``MADE_SHORT`` under the whole id (``_marks``: the short id is the file's device
    to give, and n files of one name under one short id cost n^2/2 looks, at every unlock and on
    arrival: attack round 73d (1)); within ``MAX_BYTES``."""
    stem, dot, ext = name.rpartition(b".")
    if not dot or not stem or len(ext) > MAX_BYTES // 2:  # no extension, a dot file, or mostly "extension"
        stem, dot, ext = name, b"", b""
    for mark in _marks(fid):
        candidate = ending(stem, f" (also {mark})".encode() + dot + ext)
        if candidate not in taken:
            return candidate
    raise AssertionError("unreachable: _marks never ends")


# Numbered names ``NAME (ID n)`` tried under a file id's first 8 hex digits before its whole id.
MADE_SHORT = 16


def _marks(fid: str) -> Iterator[str]:
    """What tells a made name apart, in the order tried: the file id's first 8 hex digits, numbered on
    (``ID8``, ``ID8 2``, ... ``ID8 16``), then its whole id, numbered on.  The short id is its owner's
    to choose (a file id is a device's to give), so many nodes of one prefix made each name after it
    look at every one made before it; one node holds the whole id in a tree, so past ``MADE_SHORT``
    a name is found in a few looks (attack rounds 70c (3), 73d (1)).  Never ends."""
    short = fid[:8]
    for n in range(1, MADE_SHORT + 1):
        yield f"{short}{f' {n}' if n > 1 else ''}"
    for n in itertools.count(1):
        yield f"{fid[:64]}{f' {n}' if n > 1 else ''}"


def made(name: bytes, fid: str, taken: Container[bytes]) -> bytes:
    """A made name of node ``fid`` shown where ``name`` is taken already (a share in ``shared/<owner>/``
    or ``groups/<group>/``): ``NAME (ID)``, numbered on until one is free in ``taken`` (``_marks``:
    past ``MADE_SHORT`` the whole id); a made name in a view folder was another share's entry, written
    over (attack round 70c (3))."""
    for mark in _marks(fid):
        candidate = ending(name, f" ({mark})".encode())
        if candidate not in taken:
            return candidate
    raise AssertionError("unreachable: _marks never ends")


def say_beside(volume: object | None, fid: str, name: bytes, shown_as: bytes,
               owner: str | None = None) -> None:
    """A name clash settled: file ``fid`` shown as ``shown_as``.  ``owner``: the file is another user's,
    given the name of her file in her folder, which keeps it."""
    found = alarms_of(volume)
    if owner is not None:
        text = (f"file {fid} of {owner:.40} was named {name_to_str(name)!r} in your folder, where your file "
                f"holds that name: yours keeps it, {owner:.40}'s is shown as {name_to_str(shown_as)!r}")
    else:
        text = (f"two files of one folder are named {name_to_str(name)!r} (given on two devices apart?): "
                f"file {fid} is shown as {name_to_str(shown_as)!r}")
    if found is not None:
        found.warn("name-clash", fid, text)
    else:
        log.warning("%s", text)
