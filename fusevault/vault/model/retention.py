"""Retention policies and which versions they let go.

Keep every version for ``keep_all_minutes``; then the newest version of each
UTC minute until ``keep_all_days``, so a file saved a thousand times in a
minute keeps a few versions, not a thousand; then the newest of each UTC
calendar day for ``daily_days`` more; then the newest of each ISO week for
``weekly_weeks`` more (None: forever).  A deleted file stays in the trash for
``trash_days`` after its deletion.  Calendar periods (as borg prune uses)
rather than periods counted back from now keep the choice stable from one run
to the next: a version kept as the last of its day stays kept.

Each user has their own policy (``retention-<user id>``), which applies to
their own files only: nobody's policy reaches files they do not own.  A user
without one follows the vault's default (``retention``: the one policy of
earlier versions, kept where it was), which only whoever may write the vault
directory sets; without that either, the built-in defaults below apply.

Who decides what gc deletes (issue 22): the store is written by others, so

- ``retention-<uid>`` counts only if signed by that user (``Trust.verify``;
  an unsigned one only from a user who has signed nothing yet).  One that is
  not is refused with an alarm, and gc then drops nothing of theirs
  (``FORGED``: ``KEEP_ALL``): their real policy is unknown, and may keep more.
- The vault's default is written by the administrator without a key, so
  anyone who writes the store can forge it.  It never makes gc drop what the
  built-in policy keeps: every user who follows it gets, window by window,
  the longer of the default and the built-in policy (``at_least_built_in``),
  also one who chose to (``retention --follow-default`` writes a signed
  ``{"follow_default": true}`` in ``retention-<uid>``; attack round 10b).  A
  user who wants less sets their own (signed) policy.
- ``retention-<uid>`` carries, signed with it, ``made_at_us`` (stamped by
  ``Trust.sign``), and each device remembers the newest it saw
  (vault/model/freshness.py): an older signed policy put back (one that kept
  less, say) is refused with an alarm and gc drops nothing of that user's
  (``ROLLED_BACK``: ``KEEP_ALL``) until they set their policy again.  Which
  body is newer is told by the version vectors they carry (vault/model/lineage.py),
  not by clocks: two bodies signed on devices that had not seen each other's
  (one withheld by the server) are ``CONCURRENT``: ``KEEP_ALL``, with an alarm,
  until they set it again on a device that has seen both.  A
  document from before the stamp is read as before while this device has
  seen no stamped one.  One this device saw that is gone from the store
  (deleted or withheld: nothing in fusevault deletes one) is no "never set"
  either (``MISSING``: ``KEEP_ALL``, with an alarm).
- A signed body that is no valid policy (no command writes one) is ``FORGED``,
  never the user's mistake: gc and ``retention --keep-all ...`` still run.  A
  whole-valued float is the integer (the signed canonical form writes 7.0 as
  7: they are the same document).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime

from fusevault.errors import Forged, InvalidInput
from fusevault.store import Store
from fusevault.vault.model.history import NS, Version

POLICY_ID = "retention"
POLICY = "Retention"
DAY = 86400 * NS
MINUTE = 60 * NS


@dataclass(frozen=True)
class Policy:
    keep_all_days: int = 7
    daily_days: int = 30
    weekly_weeks: int | None = None
    trash_days: int = 30
    keep_all_minutes: int = 10

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise InvalidInput(f"{field.name.replace('_', ' ')} must be a whole number of 0 or more")

    def describe(self) -> str:
        weekly = "forever" if self.weekly_weeks is None else f"for {self.weekly_weeks} weeks"
        return (f"every version for {self.keep_all_minutes} minutes, then one per minute for "
                f"{self.keep_all_days} days, then one per day for "
                f"{self.daily_days} days, then one per week {weekly}; "
                f"deleted files stay in the trash for {self.trash_days} days")


OWN, DEFAULT, BUILT_IN = "yours", "the vault's default", "built in"
MERGED = "the vault's default, never shorter than the built-in one"
FORGED = "none that holds: your policy document is not signed by you, nothing is dropped"
ROLLED_BACK = ("none that holds: an older policy of yours was put back in place of a newer one this device "
               "saw, nothing is dropped until you set yours again")
MISSING = ("none that holds: your policy, which this device saw, is gone from the store, nothing is "
           "dropped until you set yours again")
CONCURRENT = ("none that holds: two policies of yours were set on devices that had not seen each other's, "
              "nothing is dropped until you set yours again (here)")
UNKNOWN = (FORGED, ROLLED_BACK, MISSING, CONCURRENT)  # her policy cannot be known: gc applies KEEP_ALL
# What gc applies when the user's own policy is forged or rolled back: no window ever ends.
KEEP_ALL = Policy(keep_all_days=10**6, daily_days=0, weekly_weeks=None, trash_days=10**6,
                  keep_all_minutes=10**9)


def at_least_built_in(default: Policy) -> Policy:
    """Each window the longer of ``default`` and the built-in one (None: forever, the longest)."""
    built_in = Policy()
    weekly = (None if default.weekly_weeks is None or built_in.weekly_weeks is None
              else max(default.weekly_weeks, built_in.weekly_weeks))
    return Policy(keep_all_days=max(default.keep_all_days, built_in.keep_all_days),
                  daily_days=max(default.daily_days, built_in.daily_days), weekly_weeks=weekly,
                  trash_days=max(default.trash_days, built_in.trash_days),
                  keep_all_minutes=max(default.keep_all_minutes, built_in.keep_all_minutes))


class RolledBack(Forged):
    """The user's own policy is an older signed body than one this device saw (a replay)."""


class Concurrent(Forged):
    """Two bodies of the user's own policy were signed on devices that had not seen each other's."""


class Missing(Forged):
    """The user's own policy, which this device saw, is gone from the store (deleted or withheld)."""


def own_id(user_id: str) -> str:
    return f"{POLICY_ID}-{user_id}"


def _whole(value: object) -> object:
    """A whole-valued float as the integer: a signature covers the canonical form, which writes 7.0 as 7,
    so both are the same signed document (a store writer may turn one into the other)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _policy(doc: dict | None) -> Policy | None:
    """The policy in a Retention document; InvalidInput if it holds none."""
    if doc is None:
        return None
    return Policy(**{f.name: _whole(doc[f.name]) for f in fields(Policy) if f.name in doc})


def load_default(store: Store) -> Policy | None:
    """The vault's default, if its administrator set one."""
    return _policy(store.get(POLICY_ID))


def _own_doc(store: Store, user_id: str, trust) -> dict | None:
    """The user's own retention document if it holds (signed by them); None if there is none.

    Raises Forged (after an alarm) if there is one that does not hold, RolledBack if it is older than one
    this device saw, Missing if this device saw one and the store has none."""
    doc = store.get(own_id(user_id))
    fresh = getattr(trust, "fresh", None)
    if doc is None or doc.get("_deleted"):
        if fresh is not None and fresh.knows(own_id(user_id)):
            # This device saw her policy: gone from the store is no "never set" (it may have kept more).
            trust.alarms.warn("missing-retention", own_id(user_id), f"the retention policy "
                              f"{own_id(user_id)} this device saw is gone from the store: gc drops nothing "
                              "of theirs until it is set again (`fusevault retention ...`)")
            raise Missing(f"the retention document {own_id(user_id)} is gone from the store")
        return None
    if doc.get("user") != user_id or trust.checked(doc, user_id, "retention policy") != user_id:
        trust.alarms.warn("forged-retention", own_id(user_id), f"the retention policy {own_id(user_id)} "
                          "is not signed by its user: ignored, gc drops nothing of theirs until it is "
                          "set again (`fusevault retention ...`)")
        raise Forged(f"the retention document {own_id(user_id)} is not signed by its user")
    if fresh is not None and not fresh.admit(doc, "retention policy", "gc drops nothing of theirs until "
                                             "it is set again (`fusevault retention ...`)"):
        if fresh.concurrent(own_id(user_id)):
            raise Concurrent(f"the retention document {own_id(user_id)} has two concurrent bodies")
        raise RolledBack(f"the retention document {own_id(user_id)} is older than one this device saw")
    return doc


def load_own(store: Store, user_id: str, trust) -> Policy | None:
    """The user's own policy, if they set one (and signed it)."""
    doc = _own_doc(store, user_id, trust)
    return None if doc is None or doc.get("follow_default") else _policy(doc)


def policy_for(store: Store, user_id: str, trust) -> tuple[Policy, str]:
    """The policy that applies to ``user_id``'s files, and where it comes from
    (OWN, DEFAULT, MERGED, BUILT_IN, or FORGED, ROLLED_BACK, MISSING: KEEP_ALL)."""
    try:
        own = _own_doc(store, user_id, trust)
        mine = None if own is None or own.get("follow_default") else _policy(own)
    except RolledBack:
        return KEEP_ALL, ROLLED_BACK
    except Concurrent:
        return KEEP_ALL, CONCURRENT
    except Missing:
        return KEEP_ALL, MISSING
    except Forged:
        return KEEP_ALL, FORGED
    except InvalidInput:  # signed by her but no policy (no command of hers writes one): never her mistake
        trust.alarms.warn("forged-retention", own_id(user_id), f"the retention policy {own_id(user_id)} "
                          "is not a valid policy: ignored, gc drops nothing of theirs until it is set again "
                          "(`fusevault retention ...`)")
        return KEEP_ALL, FORGED
    if mine is not None:
        return mine, OWN
    try:
        default = load_default(store)
    except InvalidInput:  # unsigned, anyone who writes the store can write it: never a user's mistake
        trust.alarms.warn("bad-default-retention", POLICY_ID, "the vault's default retention policy is "
                          "not a valid policy: ignored, the built-in one applies")
        default = None
    if default is not None:
        # Unsigned, so never below the built-in policy, even for a user who chose to follow it (attack
        # round 10b): a forged default can only make gc keep more.
        merged = at_least_built_in(default)
        return merged, (DEFAULT if own is not None and merged == default else MERGED)
    return Policy(), BUILT_IN


def save_own(store: Store, user_id: str, policy: Policy, sign) -> None:
    """The user's own policy, signed (``sign``: ``Trust.sign``, last, over the final fields)."""
    _replace(store, {"_id": own_id(user_id), "type": POLICY, "user": user_id, **asdict(policy)}, sign)


def drop_own(store: Store, user_id: str, sign) -> None:
    """Forget the user's own policy: they follow the vault's default again, by their signed choice."""
    _replace(store, {"_id": own_id(user_id), "type": POLICY, "user": user_id, "follow_default": True}, sign)


def _replace(store: Store, doc: dict, sign) -> None:
    """Sign ``doc`` over the current body.  Its stamp (freshness.stamp) is above the newest this device
    admitted, never taken from the current body: that one may be forged, with a stamp a JavaScript
    server cannot hold exactly."""
    current = store.get(doc["_id"])
    if current is not None:
        doc["_rev"] = current["_rev"]
    store.put_many([sign(doc)])


def save_default(store: Store, policy: Policy) -> None:
    """The vault's default (its administrator's; never from a user's request)."""
    doc = store.get(POLICY_ID) or {"_id": POLICY_ID}
    store.put_many([{**doc, "type": POLICY, **asdict(policy)}])
    store.sync()


def answer(policy: Policy, source: str) -> dict:
    """What `fusevault retention` shows (JSON-ready)."""
    return {"policy": asdict(policy), "text": policy.describe(), "source": source}


# The most a person may set for each window (``retention --keep-all`` ...): far beyond any use, and
# within what a signed document holds exactly (a number above 2**53 failed at the signature, a
# traceback: attack round 49t (2)).  Policies signed before are read as they are.
LONGEST = {"keep_all_minutes": 10**9, "keep_all_days": 10**6, "daily_days": 10**6, "weekly_weeks": 10**6,
           "trash_days": 10**6}


def changed(policy: Policy, changes: object) -> Policy:
    """``policy`` with ``changes`` (field -> value) applied, checked."""
    if not isinstance(changes, dict):
        raise InvalidInput("retention settings are given as field: value")
    for name, value in changes.items():
        most = LONGEST.get(name)
        if most is not None and isinstance(value, int) and value > most:
            raise InvalidInput(f"{name.replace('_', ' ')} is {most} at most")
    try:
        return replace(policy, **changes)
    except TypeError:
        raise InvalidInput(f"unknown retention settings: {sorted(changes)}") from None


def _period(time_ns: int, weekly: bool) -> tuple[int, int, int]:
    day = datetime.fromtimestamp(time_ns // NS, UTC).date()
    if weekly:
        year, week, _ = day.isocalendar()
        return (year, week, 0)
    return (day.year, day.month, day.day)


def to_drop(versions: list[Version], now_ns: int, policy: Policy,
            keep: set[str] = frozenset()) -> list[Version]:
    """The versions the policy lets go, among ``versions`` of one file (oldest first).

    Versions in ``keep`` (the current one, those open right now) always stay.
    """
    every_until = now_ns - policy.keep_all_minutes * MINUTE
    all_until = now_ns - policy.keep_all_days * DAY
    daily_until = all_until - policy.daily_days * DAY
    weekly_until = (None if policy.weekly_weeks is None
                    else daily_until - policy.weekly_weeks * 7 * DAY)
    seen: set[tuple] = set()
    drops = []
    for version in reversed(versions):  # newest first: the first seen of a period is kept
        if version.time > every_until:
            continue
        if version.time > all_until:
            period: tuple | None = ("minute", version.time // MINUTE)
        elif version.time > daily_until:
            period = ("day", *_period(version.time, weekly=False))
        elif weekly_until is None or version.time > weekly_until:
            period = ("week", *_period(version.time, weekly=True))
        else:
            period = None
        if period is not None and period not in seen:
            seen.add(period)
            continue
        if version.vid not in keep:
            drops.append(version)
    return drops
