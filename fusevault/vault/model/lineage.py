"""Version vectors: which signed body of one document id came after which, without clocks.

A wall clock orders bodies made on two devices only if both clocks are right: on a device whose
clock is behind, a body she signs there after an older one from another device (withheld by the
server, never seen here) has the smaller time, and the older body, served later, looks newer
(attack round 10b, "clock skew").  So each stamped body also carries, signed with it, a version
vector ``{device: n}``: for each of the signer's devices, the newest counter of that device among
the bodies of this id the signing device had seen, its own raised by one.  A body whose vector is
above another's (no entry lower, one higher) was signed by a device that had seen the other one:
it is newer.  Two bodies neither of which is above the other were signed by devices that had not
seen each other's: concurrent, and nothing here can tell which she meant last.

The device ids only order bodies signed by one user (a body is signed by her key: only her devices
make them); they are never trusted for anything else.
"""

from __future__ import annotations

import enum

FIELD = "version_vector"
MAX_ENTRIES = 1024  # devices that ever signed one document: far above any user's
MAX_COUNT = 2**52  # a CouchDB server (JavaScript) holds integers exactly below 2**53
MAX_DEVICE = 64  # characters of a device id (fusevault writes 16 hex digits)
# Concurrent tips kept per id: past it the oldest are kept as their join, one tip (still "concurrent":
# the safe side), so a signer of many bodies made apart cannot grow a device's record without bound.
MAX_TIPS = 64

Vector = dict[str, int]
# The newest bodies of one id a device saw, as (vector, stamp): one, or several that are concurrent.
Tip = tuple[Vector, int]


class Order(enum.Enum):
    SAME = "same"
    NEWER = "newer"  # above: its signer had seen the other
    OLDER = "older"  # below: the other's signer had seen it
    CONCURRENT = "concurrent"  # neither had seen the other


class Malformed(ValueError):
    """A vector field that no fusevault wrote (only a store writer's rewrite of a signed body)."""


def of(doc: dict) -> Vector | None:
    """The body's vector; None if it has none (signed by code from before it).  Raises Malformed.

    A whole float is its integer: the signature's canonical form writes 7.0 as 7, so a store writer
    can turn one into the other without breaking it, and must not make the body vector-less."""
    if FIELD not in doc:
        return None
    value = doc[FIELD]
    if not isinstance(value, dict) or not 0 < len(value) <= MAX_ENTRIES:
        raise Malformed("not a version vector")
    vector: Vector = {}
    for device, n in value.items():
        if isinstance(n, float) and n.is_integer():
            n = int(n)
        if not isinstance(device, str) or not 0 < len(device) <= MAX_DEVICE or isinstance(n, bool) \
                or not isinstance(n, int) \
                or not 0 < n <= MAX_COUNT:
            raise Malformed("not a version vector")
        vector[device] = n
    return vector


def parsed(value: object) -> Vector:
    """A vector kept in a device's own record (raises Malformed, a ValueError, if it is none)."""
    vector = of({FIELD: value})
    if vector is None:
        raise Malformed("no vector")
    return vector


def compare(mine: Vector, other: Vector) -> Order:
    """How ``mine`` stands to ``other``."""
    above = any(n > other.get(d, 0) for d, n in mine.items())
    below = any(n > mine.get(d, 0) for d, n in other.items())
    if above and below:
        return Order.CONCURRENT
    if above:
        return Order.NEWER
    return Order.OLDER if below else Order.SAME


def join(vectors: list[Vector]) -> Vector:
    """The smallest vector at or above each of ``vectors``."""
    joined: Vector = {}
    for vector in vectors:
        for device, n in vector.items():
            joined[device] = max(joined.get(device, 0), n)
    return joined


def next_after(vectors: list[Vector], device: str) -> Vector:
    """The vector of a body ``device`` signs after having seen ``vectors``: above each of them."""
    joined = join(vectors)
    return {**joined, device: min(joined.get(device, 0) + 1, MAX_COUNT)}


def placed(vector: Vector, made: int, tip: Tip) -> Order:
    """How a body (its vector and stamp) stands to ``tip``; of two with one vector (code from before
    vectors re-signed a body, keeping its field), the later stamp is the newer."""
    order = compare(vector, tip[0])
    if order is Order.SAME and made != tip[1]:
        return Order.NEWER if made > tip[1] else Order.OLDER
    return order


def older(tips: list[Tip], vector: Vector, made: int) -> bool:
    """Whether the body is below one of ``tips``: its signer's body was seen after it (a replay)."""
    return any(placed(vector, made, tip) is Order.OLDER for tip in tips)


def newest(tips: list[Tip], vector: Vector, made: int) -> bool:
    """Whether the body is above every one of ``tips``."""
    return all(placed(vector, made, tip) is Order.NEWER for tip in tips)


def add(tips: list[Tip], vector: Vector, made: int) -> list[Tip]:
    """``tips`` once the body (not older than any) was seen: less those it is above, with it."""
    kept = [tip for tip in tips if placed(vector, made, tip) is not Order.NEWER]
    if not any(placed(vector, made, tip) is Order.SAME for tip in kept):
        kept.append((vector, made))
    if len(kept) > MAX_TIPS:  # the oldest kept as one tip, their join: bodies below it are refused
        merged = kept[:len(kept) - MAX_TIPS + 1]
        kept = [(join([v for v, _ in merged]), max(m for _, m in merged)), *kept[len(merged):]]
    return kept


def stamped_only(tips: list[Tip], made: int) -> list[Tip]:
    """``tips`` once a body without a vector, stamped ``made``, was taken as newer (by its stamp, the
    rule before vectors): those stamped before it are below it."""
    return [tip for tip in tips if tip[1] >= made]
