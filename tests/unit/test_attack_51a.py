"""Attack round 51a, unit: 50c (2)'s fix (cd96165, ``KeyMirror._current`` ranks the winner by
(genuine, epoch, binding)).

Hole (3), medium (a key lost on a device until re-key; the server's own doing, no key needed): the
  winner is judged only when it parses as a key record (``held = ... if current is not None else
  None``); a winning leaf the server makes malformed (here its ``key`` field dropped, or ``epoch`` a
  string: anything ``sharing.key_record`` refuses, so ``_key_of`` gives None) skips the restore, and
  the loop below still closes every other leaf, the genuine one with it.  Pre-50c (2) the same held
  for any winner; the fix covers a forged winner that parses, not one that does not.
  Seen: ``test_a_malformed_winning_branch_does_not_close_the_genuine_one`` (run, fails: no key file
    here after the mirror settles the document, and the genuine leaf is closed); control
    ``test_a_forged_winning_branch_does_not_close_the_genuine_one_control`` (50c (2)'s own scene, a
    forged winner that parses: passes).
  Cause: sync/key_mirror.py ``_current``: ``held is not None and keys and ...``: a None winner never
    ranks below a genuine leaf.
  Impact: as 50c (2): a hostile server (one revision it makes up, at a rev id above hers) takes a
    member's file key off a device that has no key file yet (a new device, or a key new to it) for good,
    unsaid beyond a "malformed" log line: his reads of the file fail until the owner re-keys.
  Fix (suggested): rank a None winner lowest (``held = (False, ...)``-like: any genuine leaf beats it),
    or never close the other leaves when the winner does not parse.

Hole (5), medium (a key lost on a device until re-key; the server's doing: one made-up leaf and an order):
  ``_current`` judges each leaf's genuineness once, when the document is settled, and closes every other
  leaf whatever came of it.  A genuine leaf not provable yet (its signer's user document, her ``her.id``,
  not here yet: the server orders what it sends) is not among ``keys``; the server's leaf wins by its
  rev, nothing is restored, the genuine leaf is closed, and when her user document comes the forged
  winner is still refused: no key file, for good.  With no forged leaf the same late user document is
  harmless (the key is written at the mirror's next walk, ``refresh``: control).
  Seen: ``test_a_forged_winner_over_a_genuine_leaf_whose_signer_came_late_does_not_close_it`` (run,
    fails: no key file after her user document came and a walk); control
    ``test_her_genuine_leaf_alone_whose_signer_came_late_is_written_control`` (passes).
  Cause: sync/key_mirror.py ``_current``: ``replica.close_leaf`` for every other leaf, genuine-unknown
    ones too; ``_genuine`` False for "cannot tell yet" as for "forged".
  Impact: as 50c (2) (which this fix meant to end): a new device, or one meeting a new key record,
    loses a member's key to a server that sends a forged sibling and her user document after it.
  Fix (suggested): close only leaves ranked below a winner judged genuine; while the winner is not
    genuine, keep the other leaves open (or re-settle the document when a user document it waits on
    arrives, as ``_signed_group``'s cache by the owner's revision does for groups).

Hole (6), low (exit 70, an "internal error" crash log, for a mistyped URL; 50d (4)'s fix, in part):
  ``urls._host_name_ok`` strips every trailing dot (``host.rstrip(".")``) before it checks the labels,
  so ``http://db..:5984/vault`` (two dots: an empty label, which IDNA refuses as 50d (4)'s ``a..b``)
  passes ``http_url`` and both parsers, and fails at the first connection with a UnicodeError ("label
  empty or too long"): ``CouchStore(url, create=True)`` raises it (neither InvalidInput nor
  StoreUnavailable), so ``vault init --couchdb http://db..:5984/vault`` ends in exit 70.
  Seen: ``test_a_host_with_two_trailing_dots_is_a_one_line_refusal`` (run, fails: UnicodeError),
    ``test_init_with_a_host_with_two_trailing_dots_is_a_one_line_refusal`` (run, fails: exit 70);
    control ``test_a_host_with_one_trailing_dot_is_taken_control``.
  Cause: ``rstrip(".")`` where one dot was meant (``removesuffix(".")``).
  Impact: a crash log and exit 70 for a typo (no data, no secret); also read-only: an ``xn--`` label
    that is no valid punycode (``xn--a.example``) passes ``_host_name_ok`` (``str.encode("idna")``
    takes it) and httpx raises ``idna.InvalidCodepoint`` (not ``httpx.InvalidURL``) at request time.
  Fix (suggested): strip one trailing dot; check with the ``idna`` package httpx uses
    (``idna.encode(host, uts46=...)``) or catch its errors where the client is built.

Hole (4), low (a password echoed on stderr, 50d (3)'s fix, in part): a CouchDB URL whose password starts
  with up to five digits and then ``/``, ``?`` or ``#`` (``http://admin:2024/Winter@couch.example:5984/vault``)
  parses (urllib and httpx alike) as host ``admin``, port 2024, with the rest as path/query/fragment;
  ``http_url`` takes it (no refusal, so ``_without_credentials`` never runs), and the later refusals
  print the URL as ``strip_credentials`` (store/couch.py, ``split_url``: urllib sees no username, so
  the URL is returned whole) or ``{url!r}`` (vault/model/peers.py ``parse_url``) leave it: the whole
  password on stderr ("not a CouchDB database URL: http://admin:2024/Winter@...").  With a one-part
  path (``.../Winter@couch.example:5984``) ``split_url`` even takes it (server ``http://admin:2024/``,
  database ``Winter@couch.example:5984``), and ``vault init --couchdb`` would store that URL, password
  and all, as the store's config (read-only: the connection to host ``admin`` fails first here).
  Seen: ``test_a_refused_couchdb_url_never_echoes_a_password_that_looks_like_a_port`` (run, fails: the
    refusals of ``split_url`` and ``peers.parse_url`` hold "2024/Winter").
  Cause: the credential cut is by urllib's reading (``strip_credentials``) or none (``parse_url``);
    50d (3)'s ``_without_credentials`` cuts at the last ``@`` but only inside ``http_url``'s refusals.
  Impact: a user's CouchDB password in a terminal, a script's log or a CI log; the echo was 50d (3)'s
    concern.  Narrow (a password of that form).
  Fix (suggested): show every refused URL through ``urls._without_credentials`` (cut at the last
    ``@``), in ``split_url``, ``strip_credentials``' callers and ``parse_url``; refuse in ``http_url`` a
    URL with an ``@`` after the authority (in path, query or fragment) as "credentials must be
    percent-encoded".

Tests: those named above.  Run (-n 0, this file): with --runxfail each xfail fails at its own assertion.
"""

from __future__ import annotations

import pytest

from fusevault.encoding import b64e
from fusevault.errors import InvalidInput, StoreUnavailable
from fusevault.store import replica
from fusevault.store.couch import CouchStore, split_url
from fusevault.sync.key_mirror import place
from fusevault.vault.model import peers
from unit.test_attack_43b_keys import _gwens_group
from unit.test_attack_50d import _init
from unit.test_key_mirror import clock, pair, put  # noqa: F401 (fixtures)


def _branches(replicas, malformed: bool):
    """50c (2)'s scene: the genuine record and the server's leaf of the same epoch at a higher rev
    (malformed: its ``key`` dropped; else another key), on a device that has no key file yet."""
    here, there = replicas
    her, gwen, group, doc_id, _ = _gwens_group(there, gwen_first=True, bound="gwen")
    bound = dict(there.store.get(doc_id))
    for each in (her.id, bound["fid"], gwen.id, group):
        put(here, {k: v for k, v in there.store.get(each).items() if k != "_rev"})
    high, low = "1-" + "f" * 32, "1-" + "0" * 32
    forged = {**bound, "_rev": high, "key": b64e(b"the server's bytes")}
    if malformed:
        del forged["key"]
    replica.store_revisions(here.store, [{**bound, "_rev": low}, forged])
    here.keys.arrived([doc_id])
    here.keys.caught_up()
    return here, doc_id


def test_a_malformed_winning_branch_does_not_close_the_genuine_one(pair, clock) -> None:  # noqa: F811
    here, doc_id = _branches(pair, malformed=True)
    leaves = replica.other_leaves(here.store, doc_id)
    assert place(here.layout, doc_id).exists(), (
        f"the genuine branch closed: no key file here; other leaves left: {len(leaves)}; "
        f"current has key: {'key' in (here.store.get(doc_id) or {})}")


def test_a_forged_winning_branch_does_not_close_the_genuine_one_control(pair, clock) -> None:  # noqa: F811
    here, doc_id = _branches(pair, malformed=False)
    assert place(here.layout, doc_id).exists()


# --- (4): a password that looks like a port, echoed by the refusal


def _refusals(url: str) -> list[str]:
    said = []
    for check in (split_url, peers.parse_url):
        try:
            check(url)
        except InvalidInput as err:
            said.append(str(err))
    return said


def test_a_refused_couchdb_url_never_echoes_a_password_that_looks_like_a_port() -> None:
    for url in ("http://admin:2024/Winter@couch.example:5984/vault", "http://admin:1234#Winter@couch.example/vault",
                "http://admin:2024/Winter@couch"):  # one path part: taken, and kept in the store's config
        said = _refusals(url)
        assert len(said) == 2, f"the scene: both refuse {url}"
        assert not [text for text in said if "Winter" in text], f"the password shown: {said}"


def test_a_refused_couchdb_url_hides_an_ordinary_password_control() -> None:
    said = _refusals("http://admin:Winter@couch.example:5984/a/b")
    assert said and not [text for text in said if "Winter" in text], said


# --- (5): a genuine leaf whose signer's user document comes after it


def _her_user_late(replicas, forged_leaf: bool) -> bool:
    here, there = replicas
    her, gwen, group, doc_id, _ = _gwens_group(there, gwen_first=True, bound="gwen")
    bound = dict(there.store.get(doc_id))
    for each in (bound["fid"], gwen.id, group):
        put(here, {k: v for k, v in there.store.get(each).items() if k != "_rev"})
    high, low = "1-" + "f" * 32, "1-" + "0" * 32
    forged = {**bound, "_rev": high, "key": b64e(b"the server's bytes")}
    replica.store_revisions(here.store, [{**bound, "_rev": low}] + ([forged] if forged_leaf else []))
    here.keys.arrived([doc_id])
    here.keys.caught_up()
    assert not place(here.layout, doc_id).exists(), "the scene: nothing written before her user document"
    put(here, {k: v for k, v in there.store.get(her.id).items() if k != "_rev"})
    here.keys.caught_up()
    here.refresh()  # the mirror's walk of what is stored (as at the next start)
    here.keys.caught_up()
    return place(here.layout, doc_id).exists()


def test_a_forged_winner_over_a_genuine_leaf_whose_signer_came_late_does_not_close_it(pair, clock) -> None:  # noqa: F811,E501
    assert _her_user_late(pair, forged_leaf=True), "her genuine key closed for good: no key file here"


def test_her_genuine_leaf_alone_whose_signer_came_late_is_written_control(pair, clock) -> None:  # noqa: F811
    assert _her_user_late(pair, forged_leaf=False)


# --- (6): a host name ending in two dots


def _opened(url: str) -> BaseException | None:
    try:
        CouchStore(url, create=True)
    except BaseException as err:  # noqa: BLE001 - what the command's guard would see
        return err
    return None


def test_a_host_with_two_trailing_dots_is_a_one_line_refusal() -> None:
    raised = _opened("http://db..:5984/vault")
    assert isinstance(raised, (InvalidInput, StoreUnavailable)), f"{type(raised).__name__}: {raised}"


def test_a_host_with_one_trailing_dot_is_taken_control() -> None:
    raised = _opened("http://db.invalid.:5984/vault")
    assert isinstance(raised, StoreUnavailable), f"{type(raised).__name__}: {raised}"


def test_init_with_a_host_with_two_trailing_dots_is_a_one_line_refusal(tmp_path) -> None:
    run = _init(tmp_path, "http://db..:5984/vault")
    assert run.returncode == 12 and "internal error" not in run.stderr, (run.returncode, run.stderr[-300:])


def test_a_host_label_that_is_no_punycode_is_a_one_line_refusal() -> None:
    """51a's read-only lead, run: ``xn--a`` passed both parsers and idna's decoding failed at every
    request (httpx's ``URL.host``), the replicator retrying for good."""
    with pytest.raises(InvalidInput):
        split_url("http://xn--a.example:5984/vault")
    assert split_url("http://xn--bcher-kva.example:5984/vault")[1] == "vault"  # a genuine one is taken
