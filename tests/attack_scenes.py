"""The scenes the trust attack rounds (tests/mount/test_trust_attack_round*.py) set up, built in one place.

Every attack on a share starts the same way: alice's vault has bob (and maybe carol, a group ``team``),
she writes a few files through a real mount and shares some of them; or, in-process
(tests/inprocess/conftest.py's ``shared``: alice's and bob's seats over one store, as fs/shared.py
composes them), she shares a folder and bob signs documents of her files with the key he holds.  Each
function says what it builds; the attack and the SAFE assertion stay in the test.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import adversary
import pyfuse3
from conftest import force_unmount, fusevault, mounted
from inprocess.conftest import ALICE_UID, BOB_UID, ROOT, Ctx
from inprocess.test_two_users import _walk, _write
from mount.test_trust_attack_round4 import _bobs_dek
from mount.test_trust_writes import BOB as BOB_SECRET
from mount.test_trust_writes import CAROL as CAROL_SECRET
from mount.test_trust_writes import _admin, _key, _user

from fusevault.crypto import aead
from fusevault.crypto.identity import open_file_key
from fusevault.crypto.signing import sign_doc
from fusevault.encoding import b64e
from fusevault.vault.model.nodes import open_node_attrs
from fusevault.vault.model.sharing import read_key
from fusevault.vault.services.absorbing import absorb_arrivals

ALICE = Ctx(ALICE_UID, ALICE_UID)
BOB = Ctx(BOB_UID, BOB_UID)

# The users an attack adds to alice's vault: their uid and passphrase.
PEOPLE = {"bob": ("2001", BOB_SECRET), "carol": ("2002", CAROL_SECRET)}


# --- the vault folder and a real mount


def add_users(vault: Path, *names: str, passphrase: str | None = None) -> None:
    """``fusevault user add`` each of ``names`` (bob, carol: ``PEOPLE``), with their own passphrase
    unless ``passphrase`` is given."""
    for name in names:
        uid, secret = PEOPLE[name]
        _admin(vault, "user", "add", name, "--uid", uid, passphrase=passphrase or secret)


def add_team(vault: Path, *members: str) -> None:
    """alice's group ``team``, each of ``members`` in it with READ."""
    _admin(vault, "group", "add", "team")
    for member in members:
        _admin(vault, "group", "member", "add", "team", member, "--perm", "READ")


def group_doc(vault: Path, name: str) -> dict:
    """The stored document of the group called ``name`` (there must be exactly one)."""
    (group,) = [g for g in adversary.docs(vault, "Group") if g.get("groupname") == name]
    return group


def share(mnt: Path, path: str, target: str, perm: str = "READ") -> str | None:
    """``fusevault share`` through the mount; what it printed, or None if it was refused."""
    done = fusevault("share", mnt / path, "--with", target, "--perm", perm)
    print(done.stdout[-2000:], done.stderr[-2000:])
    return None if done.returncode != 0 else done.stdout


def alices_files(vault: Path, mnt: Path, files: dict[str, str | None],
                 shares: Iterable[tuple[str, str, str]] = ()) -> None:
    """One mount of alice's vault at ``mnt``: ``files`` made in their order (a text is written, None
    makes a folder and its parents), then each of ``shares`` (path, target, perm), which must succeed."""
    with mounted(vault, mnt):
        for path, text in files.items():
            if text is None:
                (mnt / path).mkdir(parents=True)
            else:
                (mnt / path).write_text(text)
        for path, target, perm in shares:
            assert share(mnt, path, target, perm) is not None


def scene(vault: Path, tmp_path: Path, files: dict[str, str | None],
          shares: Iterable[tuple[str, str, str]] = (), *, users: Iterable[str] = ("bob",),
          team: Iterable[str] | None = None) -> Path:
    """The usual start of an attack on a share: ``users`` added, then (``team``: its members) the group
    ``team``, then alice's ``files`` and ``shares`` made through one mount (``alices_files``).  The mount
    point, ``tmp_path / "mnt"`` (unmounted again)."""
    add_users(vault, *users)
    if team is not None:
        add_team(vault, *team)
    mnt = tmp_path / "mnt"
    alices_files(vault, mnt, files, shares)
    return mnt


@contextmanager
def mounts_again(vault: Path, mnt: Path, *, then: Callable[[], None] | None = None) -> Iterator[None]:
    """alice's vault mounted by the real command (not ``mounted``: a mount that fails is what the
    attack is after): it must come up (``then`` runs first, to print more of what went wrong); unmounted
    at the end in any case."""
    mnt.mkdir(exist_ok=True)
    done = fusevault("mount", vault, mnt)
    try:
        print("mount:", done.returncode, done.stderr[-2000:])
        if then is not None:
            then()
        assert done.returncode == 0, f"alice's vault does not mount any more: {done.stderr[-500:]}"
        yield
    finally:
        force_unmount(mnt)


def read_back(vault: Path, mnt: Path, name: str) -> str:
    """What alice's ``name`` reads in a new mount of her vault, or the error reading it gives."""
    with mounted(vault, mnt):
        try:
            return (mnt / name).read_text()
        except OSError as err:
            return str(err)


def recipients_dek(vault: Path, name: str, passphrase: str, fid: str) -> bytes:
    """The DEK ``name`` opens from their ``.vfkey`` of alice's file ``fid`` shared with them."""
    alice, them = _user(vault, "alice"), _key(vault, name, passphrase)
    found = read_key(vault / "users" / them.user_id / "shared" / f"{alice['_id']}_{fid}.vfkey")
    assert found is not None
    return open_file_key(them.identity, alice["_id"], fid, found[0], found[1])


def resigned(vault: Path, fid: str, change: dict, dek: bytes, name: str, passphrase: str,
             clear: dict | None = None) -> None:
    """alice's node document of ``fid`` with its sealed attributes changed (and its ``clear``
    fields), sealed under ``dek`` and signed by ``name`` (a recipient who can write the vault
    folder and holds that key), put there."""
    doc = adversary.get(vault, fid)
    attrs = {**open_node_attrs(doc, dek), **change}
    body = {k: v for k, v in doc.items() if k not in ("_rev", "sig")} | (clear or {})
    body["enc"] = b64e(aead.seal(dek, json.dumps(attrs).encode(), aead.ad("node", fid)))
    key = _key(vault, name, passphrase)
    adversary.put(vault, sign_doc(key.user_id, key.identity.sign, body))


def resigned_by_bob(vault: Path, fid: str, change: dict) -> None:
    """``resigned`` by bob (``BOB_SECRET``), under the DEK he opens from his key file."""
    resigned(vault, fid, change, _bobs_dek(vault, fid), "bob", BOB_SECRET)


# --- a real shared mount (tests/mount/test_shared_mount.py's ``People``: real Linux users)

# alice's notes.txt, READ to bob and carol, and her folder proj, WRITE to bob: bob may write somewhere,
# so his signature is one a judge of writers knows (``_bobs_forgery`` of test_shared_admission.py).
NOTES_AND_PROJ = ("echo genuine > $M/notes.txt && mkdir $M/proj && echo plan > $M/proj/plan.txt",
                  (("notes.txt", "bob", "READ"), ("notes.txt", "carol", "READ"), ("proj", "bob", "WRITE")))


def alice_shares_in(people, mountpoint: Path, script: str, shares: Iterable[tuple[str, str, str]]) -> None:
    """In the shared mount at ``mountpoint``: alice unlocks, runs ``script`` as herself (``$M``: the
    mount point), then shares each (path, who, perm) with ``fusevault share``, which must succeed."""
    people.unlock("alice")
    people.ok("alice", script)
    for path, who, perm in shares:
        done = people.fusevault("alice", "share", f"{mountpoint}/{path}", "--with", who, "--perm", perm)
        assert done.returncode == 0, done.stderr


# --- in-process: alice's and bob's seats of one shared mount (``shared``)


async def rewrite(drive, ino: int, data: bytes, ctx: Ctx) -> None:
    """Open ``ino`` truncated as ``ctx``, write ``data``, close (a commit)."""
    info = await drive.open(ino, os.O_WRONLY | os.O_TRUNC, ctx)
    await drive.write(info.fh, 0, data)
    await drive.release(info.fh)


async def ask(shared, cmd: str, path: str, perm: str = "READ") -> dict:
    """alice's control request ``cmd`` (share, unshare) of ``path`` with bob; it must succeed."""
    requests = shared.drive.seat_of(ALICE_UID).ops.session.requests
    answer = await requests.handle({"cmd": cmd, "path": path, "with": "bob", "perm": perm})
    assert "error" not in answer, answer
    return answer


def planted(shared, doc: dict) -> None:
    """Another process (the vault folder's writer) puts ``doc`` as the current revision of its id;
    the shared mount's store watcher hands it to every unlocked seat (fs/shared.py ``_watch_store``)."""
    store = shared.store
    current = store.get(doc["_id"])
    body = {k: v for k, v in doc.items() if k != "_rev"}
    if current is not None:
        body["_rev"] = current["_rev"]
    (rev,) = store.put_many([body])
    arrived = [{**body, "_rev": rev}]
    for volume in shared.volumes.values():
        absorb_arrivals(volume, arrived)


def bobs_node_doc(shared, fid: str, change: dict, dek: bytes | None = None) -> dict:
    """bob's own node document of ``fid`` with its sealed attributes changed, sealed under the DEK he
    holds (or ``dek``, one sealed to him that his tree does not hold yet) and signed by him (what a
    WRITE recipient who can write the vault folder can make)."""
    bob = shared.volumes["bob"]
    dek = dek or bob.find(fid).dek
    doc = shared.store.get(fid)
    attrs = {**open_node_attrs(doc, dek), **change}
    plain = json.dumps(attrs, separators=(",", ":")).encode()
    body = {k: v for k, v in doc.items() if k not in ("_rev", "sig")}
    body["enc"] = b64e(aead.seal(dek, plain, aead.ad("node", fid)))
    return sign_doc(bob.key.user_id, bob.key.identity.sign, body)


async def names_found(drive, parents: Iterable[int], name: bytes, ctx: Ctx) -> list[bool]:
    """Whether ``ctx`` looks ``name`` up in each folder (inode) of ``parents``."""
    found = []
    for parent in parents:
        try:
            await drive.lookup(parent, name, ctx)
            found.append(True)
        except pyfuse3.FUSEError:
            found.append(False)
    return found


async def team_with_plan(shared, perm: str = "WRITE", plan: bytes = b"alice's plan\n",
                         diary: bytes | None = b"alice's own\n", walk: bool = True):
    """alice's folder team holding plan.txt (``plan``), her own diary.txt at the root (unless None),
    team shared with bob (``perm``), and (``walk``) bob's walk to shared/alice/team/plan.txt.
    (team's entry, plan.txt's entry, as alice sees them)."""
    drive = shared.drive
    folder = await drive.mkdir(ROOT, b"team", stat.S_IFDIR | 0o755, ALICE)
    mine = await _write(drive, folder.st_ino, b"plan.txt", plan, ALICE)
    if diary is not None:
        await _write(drive, ROOT, b"diary.txt", diary, ALICE)
    await ask(shared, "share", "team", perm)
    if walk:
        await _walk(drive, b"shared/alice/team/plan.txt", BOB)
    return folder, mine
