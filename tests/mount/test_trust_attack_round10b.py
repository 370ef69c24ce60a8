"""Issue 22, attack round 10b: the code of round 9's fixes (pins merged between devices, the two canonical
forms of a signature, settings a signed document makes safer, stamped retention policies).

Each test asserts the SAFE behaviour; a hole is marked ``xfail(strict=True)`` until closed.

Found at commit 5f9522b (main): 8 holes in 9 xfail tests, 1 hold:
- pins: a re-pin she made after comparing fingerprints (`user trust`, laptop) loses to a LATER first-sight pin
  of the server's key on her new desktop (trust.py ``_merge``: ``pin.repinned and pin.pinned_at >
  mine.pinned_at``); `share` there seals to the server's key.  Fix: a re-pin replaces any first-sight pin of
  other keys; only between two re-pins does the later win.
- group pins: bob re-signs alice's OWN group in his name (carol added) and the server shows it to her new
  desktop with her Pins withheld; her laptop's pin (owner: alice) never replaces it (``_merge_groups``: no
  re-pin of a group) and `share --with @team` there seals to carol.  Fix: a group pin naming this user as
  owner wins (only her key makes her group); else refuse the group while the pins differ.
- FIXED (settings): her older signed user document (no watched folder / a shorter TTL), replayed ONCE, becomes
  this device's confirmed value (confirmed.py ``_remember_safer``); her current document, back, is only
  pending. Fix: stamp UserDetails (freshness.py, like Retention) and record a safer value only from a body
  newer than any this device admitted.
- FIXED (signing): 7 and 7.0 share one canonical form, so a store writer rewrites a signed retention field as
  7.0; it verifies, then retention.Policy refuses it as a user mistake: gc and even `retention --keep-all N`
  fail (exit 12).  Fix: ``_policy`` takes whole floats as ints (or ``_own_doc`` treats a bad body as FORGED).
- FIXED (retention): her stamped policy deleted from the store: gc falls back to the built-in policy and drops
  the versions hers keeps (retention.py ``_own_doc``: missing/``_deleted`` = never set).  Fix: when
  ``fresh.newest(own_id)`` is known, a missing or deleted body is KEEP_ALL with an alarm.
- FIXED (retention, was a documented trade-off): with `--follow-default` the unsigned vault default applies as
  it is; a store writer's default of zeros empties her history.  Fix: her follow_default body names the digest
  of the default she accepted; another default is MERGED (never below the built-in one).
- FIXED (peers): a planted Peers document of the same name listed first: `peer remove buddy` removes it and
  says "removed", the confirmed buddy is still contacted (peers.py ``find_peer``/``remove_peer``).  Fix:
  refuse an ambiguous name, or forget and tombstone every peer of that name.
- FIXED (retention, clock skew): on her desktop, whose clock is a day behind, she sets "keep a year" while
  the server withholds the laptop's earlier "keep nothing"; served later, the laptop's body has the larger
  made_at_us and is admitted: `retention` there shows "keep nothing" as hers (freshness.py
  ``admit``/``stamp``: wall clock only). Fixed: each body carries a signed version vector
  (vault/model/lineage.py); a body neither above nor below the newest seen is concurrent: KEEP_ALL with an
  alarm until she sets it again. The same skew with her settings (``settings_at_us``) is closed the same way
  (the test after it).
- held: a float ``made_at_us`` (same canonical form) is no way around the replay check.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import adversary
from attack_scenes import add_team, add_users, group_doc
from conftest import fusevault, mounted

from fusevault.crypto.identity import Identity
from fusevault.crypto.signing import sign_doc
from mount.test_trust_anchors import _opens
from mount.test_trust_grants import notes_shared_with_bob
from mount.test_trust_settings import Listener, status, wait_for
from mount.test_trust_writes import BOB, CAROL, _admin, _key, _node_fid, _user


def _config(vault: Path, state: Path | None = None) -> dict:
    env = {"FUSEVAULT_STATE_DIR": str(state)} if state else None
    result = fusevault("config", "show", "--json", "--vault", vault, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _set(vault: Path, key: str, value: object, state: Path | None = None) -> None:
    env = {"FUSEVAULT_STATE_DIR": str(state)} if state else None
    result = fusevault("config", "set", key, value, "--vault", vault, env=env)
    assert result.returncode == 0, result.stderr


def _user_doc(vault: Path, name: str = "alice") -> dict:
    return _user(vault, name)


# --- pins: a re-pin made after comparing fingerprints, against a later pin made at first sight


def test_a_verified_repin_is_not_outranked_by_a_later_first_sight_pin_of_the_servers_key(
        vault: Path, tmp_path: Path, monkeypatch) -> None:
    """On her laptop alice compares bob's fingerprint with him and runs `fusevault user trust bob
    --fingerprint F` (an explicit re-pin of his genuine keys).  The server then withholds her Pins
    document from her new desktop and shows it a bob with the server's own keys (self-signed: anyone
    can), which the desktop pins at first sight, a second or more later.  The server then stops
    withholding: her laptop's Pins document (genuinely hers, with the verified re-pin) reaches the
    desktop.  Safe: the desktop trusts what she verified, not what the server showed it first, and a
    share made there seals nothing to the server's key."""
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
    with mounted(vault, tmp_path / "mnt") as mnt:  # the laptop meets bob: genuine keys, first sight
        (mnt / "notes.txt").write_text("for bob only")
    alice, bob = _user(vault, "alice"), _user(vault, "bob")
    shown = fusevault("user", "show", "bob", "--json", "--vault", vault)
    assert shown.returncode == 0, shown.stderr
    genuine = json.loads(shown.stdout)["fingerprint"]
    trusted = fusevault("user", "trust", "bob", "--fingerprint", genuine, "--vault", vault)
    assert trusted.returncode == 0, trusted.stderr  # verified out of band: repinned
    laptop_pins = adversary.get(vault, f"pins-{alice['_id']}")
    assert laptop_pins is not None

    evil = Identity.new(bob["_id"])
    adversary.put(vault, sign_doc(bob["_id"], evil.sign, {**bob, **evil.public_fields()}))
    adversary.delete_row(vault, f"pins-{alice['_id']}")  # withheld from the desktop
    time.sleep(1.1)  # pins carry whole seconds: the desktop's first sight comes later, as it would
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "desktop-state"))
    with mounted(vault, tmp_path / "mnt") as mnt:  # the desktop: first sight of bob is the forgery
        assert (mnt / "notes.txt").read_text() == "for bob only"

    adversary.put(vault, laptop_pins)  # no longer withheld: her laptop's pins (with the re-pin) arrive
    with mounted(vault, tmp_path / "mnt") as mnt:
        fusevault("share", mnt / "notes.txt", "--with", "bob", "--perm", "READ")
    fid = _node_fid(vault, "alice", "notes.txt")
    assert not _opens(vault, alice, fid, bob["_id"], evil), \
        "the desktop sealed the file key to the server's key over the re-pin she verified"


def test_an_owner_pinned_first_on_a_new_device_for_her_own_group_yields_to_her_laptops_pin(
        vault: Path, tmp_path: Path, monkeypatch) -> None:
    """alice's group team (bob in it, READ) is pinned as hers on her laptop.  bob re-signs her Group
    document in his own name, with carol added, and the server serves that to her new desktop while
    withholding her Pins document: the desktop pins bob as team's owner at first sight.  Then her
    laptop's Pins document (team's owner: alice) reaches the desktop.  Safe: a share with @team made
    there afterwards seals nothing to carol, whom alice never put in her group."""
    add_users(vault, "bob", "carol")
    add_team(vault, "bob")
    with mounted(vault, tmp_path / "mnt") as mnt:  # the laptop pins team (owner alice), bob and carol
        (mnt / "plan.txt").write_text("for the team")
    alice, carol = _user(vault, "alice"), _key(vault, "carol", CAROL)
    laptop_pins = adversary.get(vault, f"pins-{alice['_id']}")
    assert laptop_pins is not None
    team, bob = group_doc(vault, "team"), _key(vault, "bob", BOB)
    body = {k: v for k, v in team.items() if k not in ("sig", "_rev")}
    bobs = {**body, "owner": bob.user_id, "users": {**team["users"], carol.user_id: "READ"}}
    adversary.put(vault, sign_doc(bob.user_id, bob.identity.sign, bobs))
    adversary.delete_row(vault, f"pins-{alice['_id']}")  # withheld from the desktop

    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "desktop-state"))
    with mounted(vault, tmp_path / "mnt") as mnt:  # the desktop: first sight of team is bob's
        assert (mnt / "plan.txt").read_text() == "for the team"
    adversary.put(vault, laptop_pins)  # no longer withheld: her laptop's pins reach the desktop
    with mounted(vault, tmp_path / "mnt") as mnt:
        done = fusevault("share", mnt / "plan.txt", "--with", "@team", "--perm", "READ")
        print(done.stdout, done.stderr)
    fid = _node_fid(vault, "alice", "plan.txt")
    carols = vault / "groups" / team["_id"] / "own" / fid / "keys" / f"{carol.user_id}.vfkey"
    assert not carols.exists(), "the desktop sealed her file to carol through bob's version of her own group"
    assert not _opens(vault, alice, fid, carol.user_id, carol.identity)


def test_a_group_whose_owner_her_devices_pinned_differently_is_refused_on_both(
        vault: Path, tmp_path: Path, monkeypatch) -> None:
    """bob's group crew is pinned as his on alice's laptop.  carol re-signs it in her own name and the
    server serves that to alice's new desktop with her Pins withheld: the desktop pins carol as its
    owner.  When the laptop's Pins document (owner: bob) arrives, neither device can tell which owner
    is right: `share --with @crew` is refused in one line naming the conflict, there and on the laptop
    (the dispute travels with her pins), and no key is written for the group."""
    add_users(vault, "bob", "carol")
    _admin(vault, "group", "add", "crew", "--owner", "bob", passphrase=BOB)
    with mounted(vault, tmp_path / "mnt") as mnt:  # the laptop pins crew (owner bob)
        (mnt / "plan.txt").write_text("for the crew")
    alice, carol = _user(vault, "alice"), _key(vault, "carol", CAROL)
    laptop_pins = adversary.get(vault, f"pins-{alice['_id']}")
    assert laptop_pins is not None
    crew = group_doc(vault, "crew")
    body = {k: v for k, v in crew.items() if k not in ("sig", "_rev")}
    adversary.put(vault, sign_doc(carol.user_id, carol.identity.sign, {**body, "owner": carol.user_id}))
    adversary.delete_row(vault, f"pins-{alice['_id']}")  # withheld from the desktop

    laptop_state = os.environ["FUSEVAULT_STATE_DIR"]
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "desktop-state"))
    with mounted(vault, tmp_path / "mnt") as mnt:  # the desktop: first sight of crew is carol's
        assert (mnt / "plan.txt").read_text() == "for the crew"
    adversary.put(vault, laptop_pins)  # her laptop's pins reach the desktop
    for state in (str(tmp_path / "desktop-state"), laptop_state):
        monkeypatch.setenv("FUSEVAULT_STATE_DIR", state)
        with mounted(vault, tmp_path / "mnt") as mnt:
            done = fusevault("share", mnt / "plan.txt", "--with", "@crew", "--perm", "READ")
        assert done.returncode != 0, done.stdout
        assert len(done.stderr.strip().splitlines()) == 1 and "different owners" in done.stderr, done.stderr
    assert not any((vault / "groups" / crew["_id"]).rglob("*.vfkey")), "a key was sealed to the group"


# --- confirmed settings: a replayed older document whose value is "safer"


def test_a_replayed_older_user_document_does_not_change_what_this_device_confirmed(
        vault: Path, tmp_path: Path) -> None:
    """alice's user document, signed by her, once had no watched folder.  She then chose one on this
    device (`config set`: confirmed here).  The server (or whoever writes the vault folder) puts the
    older signed document back for one look, then serves the current one again.  Safe: her watched
    folder is still what applies here, not a value waiting for `config confirm` (the server may withhold
    or delay her document, never change her settings)."""
    folder = tmp_path / "Documents"
    folder.mkdir()
    _set(vault, "settle_seconds", "3")  # any change: her document is signed, no folder watched
    older = _user_doc(vault)
    assert older.get("sig") and older.get("source_dir_to_watch") is None, older
    _set(vault, "source_dir_to_watch", folder)
    current = _user_doc(vault)
    assert _config(vault)["source_dir_to_watch"] == str(folder)

    adversary.put(vault, older)  # the replay, seen once
    _config(vault)
    adversary.put(vault, current)  # her current document again
    after = _config(vault)
    assert after["source_dir_to_watch"] == str(folder), after
    assert after["pending"] == {}, after


def test_a_replayed_older_shorter_ttl_does_not_stick(vault: Path, tmp_path: Path) -> None:
    """The same replay with the unlock's lifetime: she had 10 minutes, then chose 8 hours here.  An
    older signed document with 10 minutes shown once must not make 10 minutes this device's choice."""
    _set(vault, "passphrase_expiry_ttl", "10min")
    older = _user_doc(vault)
    _set(vault, "passphrase_expiry_ttl", "8hr")
    current = _user_doc(vault)
    chosen = _config(vault)["passphrase_expiry_ttl"]

    adversary.put(vault, older)
    _config(vault)
    adversary.put(vault, current)
    after = _config(vault)
    assert after["passphrase_expiry_ttl"] == chosen, after
    assert after["pending"] == {}, after


# --- signatures: 7 and 7.0 sign the same; do they mean the same?


def _retention_vault(vault: Path, *args: str) -> subprocess.CompletedProcess:
    return fusevault("retention", "--vault", vault, "--json", *args)


def test_a_whole_float_put_in_a_signed_retention_policy_does_not_lock_her_out_of_gc(vault: Path) -> None:
    """alice signed her policy (`keep all 7 days`).  Whoever writes the vault folder rewrites the number
    as ``7.0``: the canonical form writes a whole float as the integer, so her signature still holds.
    Safe: gc still runs (by her policy, or dropping nothing with an alarm), and she can still set her
    policy."""
    set_first = _retention_vault(vault, "--keep-all", "7", "--daily", "30")
    assert set_first.returncode == 0, set_first.stderr
    uid = _user(vault, "alice")["_id"]
    doc = adversary.get(vault, f"retention-{uid}")
    assert doc is not None and doc.get("sig") and doc["keep_all_days"] == 7, doc
    adversary.put(vault, {**doc, "keep_all_days": 7.0, "daily_days": 30.0})

    gc = fusevault("gc", "--vault", vault, "--json")
    assert gc.returncode == 0, gc.stderr
    again = _retention_vault(vault, "--keep-all", "8")
    assert again.returncode == 0, again.stderr


def test_a_whole_float_stamp_is_no_way_around_the_replay_check(vault: Path) -> None:
    """The stamp ``made_at_us`` of an older signed policy rewritten as a float (its signature still
    holds: one canonical form) is not taken for "no stamp" by a device that never saw one.  Here: the
    device saw the newer policy, so the older one, stamp as float, is refused like any replay."""
    first = _retention_vault(vault, "--keep-every", "0", "--keep-all", "0", "--daily", "0", "--weekly", "0")
    assert first.returncode == 0, first.stderr
    uid = _user(vault, "alice")["_id"]
    older = adversary.get(vault, f"retention-{uid}")
    assert isinstance(older.get("made_at_us"), int), older
    second = _retention_vault(vault, "--keep-every", "10", "--keep-all", "7", "--daily", "30")
    assert second.returncode == 0, second.stderr
    adversary.put(vault, {**older, "made_at_us": float(older["made_at_us"])})
    shown = _retention_vault(vault)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["policy"]["keep_all_minutes"] != 0, shown.stdout



# --- retention: her stamped policy, gone from the store


def _gc(vault: Path, *args: str) -> dict:
    result = fusevault("gc", "--vault", vault, "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_her_policy_deleted_from_the_store_makes_gc_drop_nothing_her_policy_keeps(
        vault: Path, tmp_path: Path) -> None:
    """alice keeps every version for a year (her signed, stamped policy; this device saw it).  Whoever
    writes the vault folder deletes the policy's document (nothing in fusevault deletes one: `retention
    --follow-default` writes a new body).  Safe: gc, run a month later, drops none of the versions her
    policy keeps (it cannot know her policy: it keeps everything, with an alarm)."""
    uid = _user(vault, "alice")["_id"]
    with mounted(vault, tmp_path / "mnt") as mnt:
        done = fusevault("retention", mnt, "--keep-every", str(365 * 24 * 60), "--keep-all", "365",
                         "--daily", "3650", passphrase=None)  # every version for a year
        assert done.returncode == 0, done.stderr
        for n in range(4):
            (mnt / "f.txt").write_bytes(b"version %d\n" % n)
    later = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert _gc(vault, "--dry-run", "--as-of", later)["versions_dropped"] == 0  # her policy keeps them
    adversary.delete_row(vault, f"retention-{uid}")
    assert _gc(vault, "--as-of", later)["versions_dropped"] == 0


def test_following_the_vaults_default_does_not_let_a_store_writer_empty_her_history(
        vault: Path, tmp_path: Path) -> None:
    """alice chose to follow the vault's default (the built-in one: none was set).  The vault's default
    is unsigned: whoever writes the vault folder (or the CouchDB server) writes one that keeps nothing.
    Safe: gc drops none of the versions the default she agreed to (here the built-in one) keeps."""
    with mounted(vault, tmp_path / "mnt") as mnt:
        done = fusevault("retention", mnt, "--follow-default", passphrase=None)
        assert done.returncode == 0, done.stderr
        for n in range(4):
            (mnt / "f.txt").write_bytes(b"version %d\n" % n)
    assert _gc(vault, "--dry-run")["versions_dropped"] == 0  # every version of the last 10 minutes stays
    adversary.put(vault, {"_id": "retention", "type": "Retention", "keep_all_days": 0, "daily_days": 0,
                          "weekly_weeks": 0, "trash_days": 0, "keep_all_minutes": 0})
    assert _gc(vault)["versions_dropped"] == 0


# --- peers: `peer remove` when the store holds two peers of that name


def test_peer_remove_stops_the_peer_she_confirmed_even_beside_a_planted_namesake(
        vault: Path, tmp_path: Path) -> None:
    """alice adds a peer buddy on this device.  Whoever writes the vault folder plants a second Peers
    document named buddy (pointing nowhere she confirmed), placed so the store lists it first.  She
    runs `peer remove buddy`; the store writer then puts her buddy's document back (over its tombstone,
    if it has one).  Safe: either the command refuses (two peers of that name) or the buddy she confirmed
    is never contacted again (it is pending here, as a planted one is)."""
    buddy = Listener()
    try:
        result = fusevault("peer", "add", "buddy", f"http://127.0.0.1:{buddy.port}/vault", "--offline",
                           "--vault", vault, passphrase=None)
        assert result.returncode == 0, result.stderr
        [real] = adversary.docs(vault, "Peers")
        planted = {**{k: v for k, v in real.items() if k != "_rev"}, "_id": "0" * 32, "port": 9}
        adversary.put(vault, planted)
        for doc in adversary.docs(vault, "Peers"):  # the real one again, after the planted one
            if doc["_id"] == real["_id"]:
                adversary.delete_row(vault, real["_id"])
                adversary.put(vault, {k: v for k, v in doc.items() if k != "_rev"})
        result = fusevault("peer", "remove", "buddy", "--vault", vault, passphrase=None)
        if result.returncode != 0:
            return  # refused: safe
        adversary.put(vault, {k: v for k, v in real.items() if k != "_rev"})  # hers, put back
        with mounted(vault, tmp_path / "mnt") as mnt:
            def decided() -> bool:
                return buddy.connections > 0 or any(
                    "buddy" in a["text"] for a in status(mnt).get("alarms", []))
            wait_for("the sync service to contact or refuse a peer named buddy", decided)
            assert buddy.connections == 0, "the peer she removed is still contacted"
    finally:
        buddy.close()


# --- retention: a device whose clock is behind


def _skewed(state: Path, shim: Path, skew_s: int) -> dict:
    """The environment of a device whose clock is ``skew_s`` seconds off (``sitecustomize`` in ``shim``
    shifts time.time and time.time_ns of the real ``fusevault`` command, and of the mount server it starts:
    that one is handed the PYTHONPATH at its start, other variables only after its imports, so the skew is
    written in the shim)."""
    shim.mkdir(exist_ok=True)
    (shim / "sitecustomize.py").write_text(
        "import time\n"
        f"_skew = {int(skew_s)}\n"
        "_ns, _t = time.time_ns, time.time\n"
        "time.time_ns = lambda: _ns() + _skew * 1_000_000_000\n"
        "time.time = lambda: _t() + _skew\n")
    return {"FUSEVAULT_STATE_DIR": str(state),
            "PYTHONPATH": os.pathsep.join(p for p in (str(shim), os.environ.get("PYTHONPATH")) if p)}


def test_a_device_whose_clock_is_behind_does_not_obey_her_older_policy_over_the_one_it_set(
        vault: Path, tmp_path: Path) -> None:
    """On her laptop alice once set a policy that keeps nothing.  The server withholds it from her desktop,
    whose clock is a day behind; there she sets her policy to keep a year.  The server then serves the
    laptop's older policy to the desktop.  Safe: the desktop does not apply the policy that keeps nothing
    (hers there is the year; or, unable to order the two, it keeps everything)."""
    uid = _user(vault, "alice")["_id"]
    first = _retention_vault(vault, "--keep-every", "0", "--keep-all", "0", "--daily", "0", "--weekly", "0")
    assert first.returncode == 0, first.stderr
    older = adversary.get(vault, f"retention-{uid}")
    adversary.delete_row(vault, f"retention-{uid}")  # withheld from the desktop
    desktop = _skewed(tmp_path / "desktop-state", tmp_path / "shim", -86400)
    later = fusevault("retention", "--vault", vault, "--json", "--keep-all", "365", env=desktop)
    assert later.returncode == 0, later.stderr
    assert adversary.get(vault, f"retention-{uid}")["made_at_us"] < older["made_at_us"]  # the clock is behind
    adversary.put(vault, older)  # the laptop's older policy, served to the desktop
    shown = fusevault("retention", "--vault", vault, "--json", env=desktop)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["policy"]["keep_all_days"] != 0, shown.stdout


def test_her_policy_set_in_turn_on_two_devices_whose_clocks_differ_is_hers_on_both_without_alarm(
        vault: Path, tmp_path: Path) -> None:
    """Legitimate use: she sets her policy on her laptop, her desktop (clock a day behind) shows it and she
    sets it again there, the laptop shows that one and she sets it again.  Each device applies the last
    one she set, as hers (never "none that holds": nothing here was withheld)."""
    desktop = _skewed(tmp_path / "desktop-state", tmp_path / "shim", -86400)
    for n, env in enumerate([None, desktop, None, desktop]):
        seen = fusevault("retention", "--vault", vault, "--json", env=env)
        assert seen.returncode == 0, seen.stderr
        assert json.loads(seen.stdout)["source"] in ("yours", "built in"), seen.stdout
        done = fusevault("retention", "--vault", vault, "--json", "--keep-all", str(n + 1), env=env)
        assert done.returncode == 0, done.stderr
        for each in (None, desktop):
            shown = json.loads(fusevault("retention", "--vault", vault, "--json", env=each).stdout)
            assert (shown["policy"]["keep_all_days"], shown["source"]) == (n + 1, "yours"), shown


def test_a_device_whose_clock_is_behind_does_not_confirm_her_older_shorter_ttl_over_the_one_it_set(
        vault: Path, tmp_path: Path) -> None:
    """The same skew with her settings (``settings_at_us``): on her laptop she sets a 10-minute unlock;
    the server keeps serving her desktop (clock a day behind) the body before it, and there she chooses 8
    hours.  The server then serves the laptop's body to the desktop once, then the desktop's again.  Safe:
    the desktop never took the laptop's body for her newest (the two were made apart): its 10 minutes
    are not recorded as confirmed there, and her 8 hours there, served again, still apply."""
    _set(vault, "settle_seconds", "3")  # signed: the body both devices start from
    before = _user_doc(vault)
    _set(vault, "passphrase_expiry_ttl", "10min")  # the laptop
    laptops = _user_doc(vault)
    adversary.put(vault, before)  # withheld from the desktop: it is served the body before
    desktop = _skewed(tmp_path / "desktop-state", tmp_path / "shim", -86400)
    result = fusevault("config", "set", "passphrase_expiry_ttl", "8hr", "--vault", vault, env=desktop)
    assert result.returncode == 0, result.stderr
    desktops = _user_doc(vault)
    assert desktops["settings_at_us"] < laptops["settings_at_us"]  # the clock is behind

    adversary.put(vault, laptops)  # the laptop's body, served once to the desktop
    fusevault("config", "show", "--json", "--vault", vault, env=desktop)
    adversary.put(vault, desktops)  # the desktop's own again
    shown = fusevault("config", "show", "--json", "--vault", vault, env=desktop)
    assert shown.returncode == 0, shown.stderr
    after = json.loads(shown.stdout)
    assert after["passphrase_expiry_ttl"] == {"ttl": "8", "unit": "hr"}, after
    assert after["pending"] == {}, after


def test_a_device_whose_clock_is_behind_does_not_take_her_older_write_share_over_the_read_one_it_made(
        vault: Path, tmp_path: Path, monkeypatch) -> None:
    """The same skew with a grant: on her laptop alice shares notes.txt with bob READ,WRITE; the server
    withholds that Share from her desktop (clock a day behind), where she shares the file with bob READ.
    The server then serves the laptop's READ,WRITE Share to the desktop.  Safe: the desktop does not grant
    bob WRITE (the two were made apart: it cannot tell which she meant last, so neither counts, with an
    alarm)."""
    mnt = tmp_path / "mnt"
    laptops = notes_shared_with_bob(vault, mnt, "READ,WRITE")
    adversary.delete_row(vault, laptops["_id"])  # withheld from the desktop
    for name, value in _skewed(tmp_path / "desktop-state", tmp_path / "shim", -86400).items():
        monkeypatch.setenv(name, value)
    with mounted(vault, mnt):
        assert fusevault("share", mnt / "notes.txt", "--with", "bob", "--perm", "READ").returncode == 0
    (desktops,) = adversary.docs(vault, "Share")
    assert desktops["made_at_us"] < laptops["made_at_us"]  # the clock is behind
    adversary.put(vault, laptops)  # the laptop's READ,WRITE, served to the desktop
    with mounted(vault, mnt):
        listed = fusevault("shares", "--mount", mnt, passphrase=None).stdout
        assert "READ,WRITE" not in listed, listed
        assert any("had not seen each other" in a["text"] for a in status(mnt).get("alarms", []))
