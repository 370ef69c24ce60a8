"""Her share command gives a Share her unshare took back again in her records too
(vault/services/share_ops.py ``_recorded_again``, vault/model/sealed_for.py ``given_again``; attack round
75a (1)): each record of hers that names the Share in ``taken`` is written again at the key held, the Share
out of ``taken``, so a member added to the group later is sealed the key on every device; every other Share
her re-keys took back stays in ``taken`` (served again, still refused), and no record says the Share given
before the Share is stored.  A member added to a group whose Share her re-keys took back is no member
of a grant in force, whatever the Group body (``sealed_for.group_newer``), until she shares it again."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from mount.test_trust_attack_39a import _ask, three  # noqa: F401  (fixture)

from fusevault.errors import StoreUnavailable
from fusevault.vault.model import alarms, groups, sealed_for, sharing
from fusevault.vault.model.sharing import Grant
from fusevault.vault.services import accounts, rotation
from inprocess.conftest import ROOT
from inprocess.test_attack_53c import _in_scene
from inprocess.test_two_users import ALICE, _write


async def _both_taken_back_then_the_group_given_again(shared) -> dict:
    """docs/plan.txt shared READ with her group team (bob) and with carol; she unshares both (the
    records ``taken`` both Shares); she shares docs with @team again, once with the Share's put failing
    (the command fails), then for good; she adds carol to team and her seat runs ``rotation.resume``."""
    drive = shared.drive
    alice, bob, carol = (shared.volumes[n] for n in ("alice", "bob", "carol"))
    me = alice.store.get(alice.key.user_id)
    team = groups.create_group(alice.store, "team", me, alice.trust.sign)
    team = groups.set_member(alice.store, alice.store.get(team["_id"]), alice.store.get(bob.key.user_id),
                             "READ", sign=alice.trust.sign)
    gid = team["_id"]
    docs = await drive.mkdir(ROOT, b"docs", stat.S_IFDIR | 0o755, ALICE)
    await _write(drive, docs.st_ino, b"plan.txt", b"alice's plan\n", ALICE)
    for who in ("@team", "carol"):
        assert "error" not in await _ask(shared, "share", "docs", who, "READ")
    for who in ("@team", "carol"):
        assert "error" not in await _ask(shared, "unshare", "docs", who)
    fid, docs_fid = alice.resolve(b"docs/plan.txt").fid, alice.resolve(b"docs").fid
    team_share, carols_share = sharing.doc_id(docs_fid, gid), sharing.doc_id(docs_fid, carol.key.user_id)
    assert set(alice.find(fid).sealed_for["taken"]) == {team_share, carols_share}, "the scene: both taken"
    real = alice.store.put_many

    def failing(docs, *args, **kwargs):
        if any(str(d.get("_id")) == team_share for d in docs):
            raise StoreUnavailable("the store is down")
        return real(docs, *args, **kwargs)

    alice.store.put_many = failing
    try:
        assert "error" in await _ask(shared, "share", "docs", "@team", "READ"), "the scene: the put fails"
    finally:
        del alice.store.put_many
    failed = list(alice.find(fid).sealed_for["taken"])
    assert "error" not in await _ask(shared, "share", "docs", "@team", "READ")
    node = alice.find(fid)
    record = node.sealed_for
    team = accounts.group_base(alice.store.get(gid), alice.trust)
    groups.set_member(alice.store, team, alice.store.get(carol.key.user_id), "READ", sign=alice.trust.sign)
    await rotation.resume(alice)
    found = sharing.read_key(sharing.group_key_path(alice.layout, gid, fid, carol.key.user_id))
    # Carol's own Share, served again on a device that never saw it deleted: judged by this record.
    replayed = alice.sharing._outside(record, Grant(me["_id"], docs_fid, carol.key.user_id, False, "READ"),
                                      carol.key.user_id)
    return {"epoch": node.epoch, "carol": found[0] if found is not None else -1,
            "said": [each["kind"] for each in alarms.for_user(alice.key.user_id).as_list()],
            "failed": failed, "taken": record["taken"], "team": team_share, "carols": carols_share,
            "hers": sealed_for.hers(alice.key, fid, node.epoch, node.dek, record),
            "bob_in_to": any(bob.key.user_id in e for e in record["to"]), "replayed": replayed}


def test_sharing_again_records_the_share_given_and_keeps_every_other_taken(three: Path) -> None:  # noqa: F811
    seen = _in_scene(three, _both_taken_back_then_the_group_given_again)
    print("seen:", seen)
    assert seen["epoch"] == 2, f"the scene: two unshares, no re-key since: {seen}"
    assert seen["team"] in seen["failed"], f"a record says the Share given before it is stored: {seen}"
    assert seen["hers"] and seen["bob_in_to"] and seen["taken"] == [seen["carols"]], seen
    assert seen["carol"] == seen["epoch"] and "replayed-grant" not in seen["said"], seen
    assert seen["replayed"], f"a Share she did not give again is still taken back: {seen}"


async def _group_taken_back_on_the_laptop_then_a_member_added(shared, again: bool) -> dict:
    """docs/plan.txt shared READ with her group team (bob) on her desktop (her seat); her laptop unshares
    docs from @team; the server hands the desktop the laptop's states and keeps the Share's deletion from
    it; the desktop's unlock finds bob left out; docs and plan.txt are re-keyed there (any re-key: its
    record sees team's body, the Share served again there, and keeps it ``taken``); (``again``) she shares
    docs with @team again there; she adds carol to team, and the desktop reads her records again (``left``
    forgotten, ``rotation.resume``)."""
    from fusevault.store.watched import WatchedStore
    from fusevault.vault.services import share_ops
    from fusevault.vault.volume import Volume
    drive = shared.drive
    alice, bob, carol = (shared.volumes[n] for n in ("alice", "bob", "carol"))
    me = alice.store.get(alice.key.user_id)
    team = groups.create_group(alice.store, "team", me, alice.trust.sign)
    team = groups.set_member(alice.store, alice.store.get(team["_id"]), alice.store.get(bob.key.user_id),
                             "READ", sign=alice.trust.sign)
    gid = team["_id"]
    docs = await drive.mkdir(ROOT, b"docs", stat.S_IFDIR | 0o755, ALICE)
    await _write(drive, docs.st_ino, b"plan.txt", b"alice's plan\n", ALICE)
    assert "error" not in await _ask(shared, "share", "docs", "@team", "READ")
    docs_fid, fid = alice.resolve(b"docs").fid, alice.resolve(b"docs/plan.txt").fid
    share_id = sharing.doc_id(docs_fid, gid)
    body = alice.store.get(share_id)
    held: list[dict] = []
    laptop_store = WatchedStore(alice.store.inner, None, lambda writer, written: held.extend(written))
    laptop = Volume.load(alice.layout, laptop_store, alice.key, alice.tree.get(1).fid)
    await share_ops.unshare(laptop, b"docs", "@team")
    alice.store.inner.put_many([{k: v for k, v in body.items() if k != "_rev"}])
    alice.store._listener(None, [d for d in held if d.get("_id") != share_id
                                 and not str(d.get("_id")).startswith("rotate-")])
    await rotation.resume(alice)  # her desktop's unlock
    assert (share_id, bob.key.user_id) in alice.sharing.left, "the scene: bob found left out (71d (1))"
    for name in (b"docs/plan.txt", b"docs"):
        await alice.rekey(alice.resolve(name))
    record = alice.find(fid).sealed_for
    assert record["taken"] == [share_id] and gid in record["groups"], f"the scene: {record}"
    if again:
        assert "error" not in await _ask(shared, "share", "docs", "@team", "READ")
    team = accounts.group_base(alice.store.get(gid), alice.trust)
    groups.set_member(alice.store, team, alice.store.get(carol.key.user_id), "READ", sign=alice.trust.sign)
    alice.sharing.left.clear()
    await rotation.resume(alice)
    found = sharing.read_key(sharing.group_key_path(alice.layout, gid, fid, carol.key.user_id))
    return {"epoch": alice.find(fid).epoch, "carol": found[0] if found is not None else -1,
            "left": (share_id, carol.key.user_id) in alice.sharing.left}


@pytest.mark.parametrize("again", [pytest.param(False, id="taken_back"),
                                   pytest.param(True, id="shared_again_there")])
def test_a_member_added_to_a_group_she_unshared_is_sealed_nothing_until_she_shares_again(
        three: Path, again: bool) -> None:  # noqa: F811
    """Without the ``taken`` rule in ``group_newer``, carol (added after the laptop's unshare) was sealed
    plan.txt's key on the desktop: its re-key had recorded team's body, and hers was newer."""
    seen = _in_scene(three, lambda shared: _group_taken_back_on_the_laptop_then_a_member_added(shared, again))
    print("seen:", seen)
    assert seen["epoch"] == 2, f"the scene: {seen}"
    if again:
        assert seen["carol"] == seen["epoch"] and not seen["left"], seen
    else:
        assert seen["carol"] < seen["epoch"] and seen["left"], seen
