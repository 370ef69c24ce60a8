"""Capability links (seed 001): the link store on a real relay process over a real
CouchDB-protocol server (pouchdb-server), driven by the real ``fusevault`` command
and through real mounts."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import uuid
from pathlib import Path

import couchdb
import httpx
import pytest
from conftest import fusevault, mounted, running_relay

from fusevault.cli.links import parse_duration
from fusevault.errors import InvalidInput
from fusevault.links import capability, content
from fusevault.links.client import LinkClient
from fusevault.relay.items import ALLOWED

EXIT_CORRUPT, EXIT_INPUT, EXIT_REFUSED, EXIT_GONE = 5, 12, 18, 19


@pytest.fixture(scope="module")
def service(redis_url: str, couchdb_server: str):
    """(relay URL, its CouchDB database): one relay process for the module."""
    db_url = f"{couchdb_server}/links{uuid.uuid4().hex[:8]}"
    with running_relay(redis_url, "--couchdb", db_url) as (_, url):
        yield url, couchdb.Server(couchdb_server)[db_url.rsplit("/", 1)[1]]


@pytest.fixture
def relay(service) -> str:
    return service[0]


def b64url(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).rstrip(b"=").decode()


class Item:
    """A fresh item made through the API, with its three keys, one version and one block."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url)
        self.keys = {role: os.urandom(32) for role in ("read", "append", "delete")}
        body = {f"{role}_key_hash": hashlib.sha256(key).hexdigest() for role, key in self.keys.items()}
        answer = self.http.post("/items", json={**body, "hashinfo": {"hash": "sha256"}})
        assert answer.status_code == 201, answer.text
        self.id = answer.json()["id"]
        self.version = self.add_version("v1")

    def call(self, method: str, path: str, role: str | None, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Capability {role} {b64url(self.keys[role])}"} if role else {}
        return self.http.request(method, path, headers=headers, **kwargs)

    def add_version(self, private: str) -> str:
        # A block of its own: a block belongs to the one version that names it (round 74c (3)).
        block = self.call("POST", f"/items/{self.id}/blocks", "append", content=b"ciphertext")
        self.block = block.json()["id"]
        body = {"public": {"p": 1}, "protected": {"seq": 1}, "private_enc": private, "blocks": [self.block]}
        answer = self.call("POST", f"/items/{self.id}/versions", "append", json=body)
        assert answer.status_code == 201, answer.text
        return answer.json()["id"]


# Every cell of seed 001's matrix: (row, action, request, role) -> allowed?
# The roles are the columns: delete_key, append_key, read_key, without a key.
ROLES = ["delete", "append", "read", None]


def _do(item: Item, row: str, role: str | None) -> httpx.Response:
    i = item.id
    same_hashes = {f"{r}_key_hash": hashlib.sha256(k).hexdigest() for r, k in item.keys.items()}
    return {
        "user.delete": lambda: item.call("DELETE", f"/items/{i}", role),
        "hashinfo.read": lambda: item.call("GET", f"/items/{i}", role),
        "hashinfo.write": lambda: item.call("PATCH", f"/items/{i}", role, json={"hashinfo": {"x": 1}}),
        "delete_key_hash.write": lambda: item.call(
            "PATCH", f"/items/{i}", role, json={"delete_key_hash": same_hashes["delete_key_hash"]}),
        "append_key_hash.write": lambda: item.call(
            "PATCH", f"/items/{i}", role, json={"append_key_hash": same_hashes["append_key_hash"]}),
        "read_key_hash.write": lambda: item.call(
            "PATCH", f"/items/{i}", role, json={"read_key_hash": same_hashes["read_key_hash"]}),
        "version.delete": lambda: item.call("DELETE", f"/items/{i}/versions/{item.version}", role),
        "version.create": lambda: item.call("POST", f"/items/{i}/versions", role,
                                            json={"public": {}, "protected": {}, "private_enc": "x"}),
        "version.read_all": lambda: item.call("GET", f"/items/{i}/versions", role),
        "block.create": lambda: item.call("POST", f"/items/{i}/blocks", role, content=b"more"),
        "block.read": lambda: item.call("GET", f"/blocks/{item.block}", role),
    }[row]()


WRITES = {  # row -> the roles the seed allows
    "user.delete": {"delete"},
    "hashinfo.write": {"delete"},
    "delete_key_hash.write": {"delete"},
    "append_key_hash.write": {"delete"},
    "read_key_hash.write": {"delete"},
    "version.delete": {"delete"},
    "version.create": {"append"},
    "version.read_all": {"delete"},
    "hashinfo.read": {"delete", "append", "read", None},
    "block.create": {"append"},
    "block.read": {"read"},
}


@pytest.mark.parametrize("role", ROLES, ids=lambda r: f"{r}_key" if r else "no_key")
@pytest.mark.parametrize("row", sorted(WRITES))
def test_every_cell_of_the_matrix(relay: str, row: str, role: str | None) -> None:
    item = Item(relay)
    answer = _do(item, row, role)
    if role in WRITES[row]:
        assert answer.status_code < 300, answer.text
    else:
        assert answer.status_code == (401 if role is None else 403), answer.text
        # ...and nothing changed: the item and its version are as they were.
        full = item.call("GET", f"/items/{item.id}/versions", "delete").json()["versions"]
        assert [v["deleted"] for v in full] == [False] * len(full) and len(full) == 1
        assert item.call("GET", f"/items/{item.id}", None).json()["hashinfo"] == {"hash": "sha256"}


@pytest.mark.parametrize("role", ROLES, ids=lambda r: f"{r}_key" if r else "no_key")
def test_what_each_key_reads_of_the_item_and_its_versions(relay: str, role: str | None) -> None:
    item = Item(relay)
    item.add_version("v2")
    described = item.call("GET", f"/items/{item.id}", role).json()
    assert described["hashinfo"] == {"hash": "sha256"}  # hashinfo: anyone reads it
    stamps = {"created_at", "accessed_at", "updated_at"}
    assert (stamps <= described.keys()) == (role == "read")  # timestamps: the read key only
    latest = item.call("GET", f"/items/{item.id}/versions/latest", role).json()
    if role in ("read", "delete"):  # read latest (and "read all" includes the latest)
        assert latest["private_enc"] == "v2" and latest["protected"] == {"seq": 1}
        assert latest["public"] == {"p": 1} and "created_at" in latest
    else:  # without a key, and with only the append key: the public part of the latest
        assert latest == {"public": {"p": 1}}
    every = item.call("GET", f"/items/{item.id}/versions", role)
    if role == "delete":
        assert [v["private_enc"] for v in every.json()["versions"]] == ["v1", "v2"]
    else:
        assert every.status_code in (401, 403)


@pytest.mark.parametrize("expires_in", [10**400, 2**1023 * 3, 1e300, 3653 * 86400 + 1, 0, -5, True, "60"])
def test_a_link_lifetime_past_the_longest_or_not_a_number_is_refused(relay: str, expires_in: object) -> None:
    """The relay bounds ``expires_in`` as the owner's client does (at most 3653 days): a whole number
    past a float's range was an unanswered 500 (OverflowError), and a huge one an item that
    outlives every clock (round 49t (3))."""
    keys = {f"{role}_key_hash": hashlib.sha256(os.urandom(32)).hexdigest()
            for role in ("read", "append", "delete")}
    body = json.dumps({**keys, "hashinfo": {"hash": "sha256"}, "expires_in": 0}).replace(
        '"expires_in": 0', f'"expires_in": {json.dumps(expires_in)}')
    answer = httpx.post(f"{relay}/items", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert "expires_in" in answer.json()["error"]
    longest = httpx.post(f"{relay}/items",
                         json={**keys, "hashinfo": {"hash": "sha256"}, "expires_in": 3653 * 86400})
    assert longest.status_code == 201, longest.text


def test_item_ids_never_begin_like_an_option(monkeypatch) -> None:
    from fusevault.relay import items

    # One random id in 64 began with "-", and `link push PATH ID` took it for an option.
    made = iter(["-Looks_like_an_option", "a_fine-id"])
    monkeypatch.setattr(items.secrets, "token_urlsafe", lambda n: next(made))
    assert items.new_item_id() == "a_fine-id"


def test_the_matrix_in_the_code_is_the_seeds() -> None:
    assert ALLOWED[("user", "create")] == {None}
    assert ALLOWED[("user", "delete")] == ALLOWED[("key_hashes", "write")] == {"delete"}
    assert ALLOWED[("version", "create")] == {"append"}
    assert ALLOWED[("version", "read all")] == {"delete"}
    assert ALLOWED[("timestamps", "read")] == {"read"}


def test_timestamps_are_kept_as_the_seed_says(relay: str) -> None:
    item = Item(relay)
    first = item.call("GET", f"/items/{item.id}", "read").json()
    assert first["accessed_at"] is None  # nothing fetched yet
    assert first["updated_at"] >= first["created_at"]
    item.call("GET", f"/items/{item.id}/versions/latest", None)  # the public part is not private_enc
    assert item.call("GET", f"/items/{item.id}", "read").json()["accessed_at"] is None
    item.call("GET", f"/items/{item.id}/versions/latest", "read")
    fetched = item.call("GET", f"/items/{item.id}", "read").json()
    assert fetched["accessed_at"] is not None and fetched["updated_at"] == first["updated_at"]
    item.add_version("v2")
    updated = item.call("GET", f"/items/{item.id}", "read").json()
    assert updated["updated_at"] > first["updated_at"] and updated["created_at"] == first["created_at"]
    assert item.call("DELETE", f"/items/{item.id}/versions/{item.version}", "delete").status_code == 204
    versions = item.call("GET", f"/items/{item.id}/versions", "delete").json()["versions"]
    deleted = versions[0]
    # The seed keeps the deleted version's row, with when it was deleted, and nothing else.
    assert deleted["deleted"] and deleted["private_enc"] is None
    assert deleted["updated_at"] > deleted["created_at"]


def test_wrong_keys_are_refused_and_keys_are_never_stored(service) -> None:
    relay, db = service
    item = Item(relay)
    wrong = {"Authorization": f"Capability read {b64url(os.urandom(32))}"}
    assert item.http.get(f"/items/{item.id}/versions/latest", headers=wrong).status_code == 403
    assert item.http.get(f"/blocks/{item.block}", headers=wrong).status_code == 403
    # A key hash rotated by the delete key: the old read key stops opening the item and its blocks.
    fresh = os.urandom(32)
    rotated = {"read_key_hash": hashlib.sha256(fresh).hexdigest()}
    assert item.call("PATCH", f"/items/{item.id}", "delete", json=rotated).status_code == 204
    assert item.call("GET", f"/blocks/{item.block}", "read").status_code == 403
    assert item.call("GET", f"/items/{item.id}/versions/latest", "read").status_code == 403
    dump = json.dumps([dict(db[d]) for d in db if not d.startswith("_design")])
    for key in item.keys.values():
        assert b64url(key) not in dump and key.hex() not in dump
        assert base64.b64encode(key).decode() not in dump
    assert hashlib.sha256(item.keys["append"]).hexdigest() in dump  # stored as the seed says: hashed


def test_share_a_file_and_a_folder_and_fetch_them(relay: str, vault: Path, tmp_path: Path) -> None:
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "docs" / "sub").mkdir(parents=True)
        big = os.urandom(3 * 1024 * 1024 + 17)  # several blocks, the last one short
        (mnt / "docs" / "big.bin").write_bytes(big)
        (mnt / "docs" / "sub" / "note.txt").write_text("for your eyes\n")
        os.chmod(mnt / "docs" / "sub" / "note.txt", 0o640)
        os.symlink("sub/note.txt", mnt / "docs" / "latest")
        (mnt / "one.txt").write_text("just one file\n")
        folder = fusevault("link", "create", mnt / "docs", "--relay", relay)
        single = fusevault("link", "create", mnt / "one.txt", "--relay", relay)
        assert folder.returncode == 0 and single.returncode == 0, folder.stderr + single.stderr
    out = tmp_path / "out"
    out.mkdir()
    # Whoever has the link needs no vault and no passphrase; "-" reads it from stdin.
    got = fusevault("link", "get", "-", out, passphrase=None, input=folder.stdout)
    assert got.returncode == 0, got.stderr
    assert (out / "docs" / "big.bin").read_bytes() == big
    assert (out / "docs" / "sub" / "note.txt").read_text() == "for your eyes\n"
    assert (out / "docs" / "sub" / "note.txt").stat().st_mode & 0o777 == 0o640
    assert os.readlink(out / "docs" / "latest") == "sub/note.txt"
    got = fusevault("link", "get", single.stdout.strip(), out, passphrase=None)
    assert got.returncode == 0 and (out / "one.txt").read_text() == "just one file\n"
    again = fusevault("link", "get", single.stdout.strip(), out, passphrase=None)
    assert again.returncode == 11 and "exists" in again.stderr  # nothing overwritten unasked
    assert not [p for p in out.rglob(".*")]  # no temporary files left


def test_a_new_version_is_pushed_and_the_list_shows_links(relay: str, vault: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "plan.txt").write_text("draft\n")
        link = fusevault("link", "create", mnt / "plan.txt", "--relay", relay).stdout.strip()
        (mnt / "plan.txt").write_text("final\n")
        item = capability.parse(link).item
        pushed = fusevault("link", "push", mnt / "plan.txt", item)
        assert pushed.returncode == 0, pushed.stderr
        got = fusevault("link", "get", link, out, passphrase=None)
        assert got.returncode == 0 and "version 2" in got.stdout
        assert (out / "plan.txt").read_text() == "final\n"
        listed = json.loads(fusevault("link", "list", "--json", cwd=mnt).stdout)
        assert [(x["item"], x["state"], x["versions"], x["seq"]) for x in listed] == [(item, "live", 2, 2)]
        assert listed[0]["accessed_at"] is not None and listed[0]["link"] == link
        assert "plan.txt" in fusevault("link", "list", cwd=mnt).stdout


def test_a_drop_box_is_filled_by_someone_without_the_read_key(relay: str, vault: Path,
                                                               tmp_path: Path) -> None:
    outside = tmp_path / "outsider"
    (outside / "album").mkdir(parents=True)
    (outside / "scan.pdf").write_bytes(b"%PDF scanned")
    (outside / "album" / "a.jpg").write_bytes(os.urandom(2 * 1024 * 1024))
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "Inbox").mkdir()
        (mnt / "Inbox" / "private.txt").write_text("owner only\n")
        drop = fusevault("link", "create", mnt / "Inbox", "--append", "--relay", relay).stdout.strip()
        assert "#a1." in drop
        for path in (outside / "scan.pdf", outside / "scan.pdf", outside / "album"):
            pushed = fusevault("link", "push", path, drop, passphrase=None, cwd=outside)
            assert pushed.returncode == 0, pushed.stderr
        # The drop link cannot read what is there: not the vault folder, not other drops.
        refused = fusevault("link", "get", drop, outside, passphrase=None)
        assert refused.returncode == EXIT_INPUT and "cannot read" in refused.stderr
        link = capability.parse(drop)
        http = httpx.Client(base_url=relay)
        as_dropper = {"Authorization": f"Capability append {b64url(link.first)}"}
        assert http.get(f"/items/{link.item}/versions", headers=as_dropper).status_code == 403
        assert set(http.get(f"/items/{link.item}/versions/latest", headers=as_dropper).json()) == {"public"}
        collected = fusevault("link", "collect", cwd=mnt)
        assert collected.returncode == 0 and "3 dropped" in collected.stdout, collected.stderr
        assert (mnt / "Inbox" / "scan.pdf").read_bytes() == b"%PDF scanned"
        assert (mnt / "Inbox" / "scan (2).pdf").read_bytes() == b"%PDF scanned"  # nothing replaced
        assert (mnt / "Inbox" / "album" / "a.jpg").read_bytes() == (outside / "album" / "a.jpg").read_bytes()
        assert (mnt / "Inbox" / "private.txt").read_text() == "owner only\n"
        assert sorted(os.listdir(mnt / "Inbox")) == ["album", "private.txt", "scan (2).pdf", "scan.pdf"]
        # Taken in once: the server no longer holds them, a second collect takes nothing.
        assert "0 dropped" in fusevault("link", "collect", cwd=mnt).stdout
    with mounted(vault, tmp_path / "mnt") as mnt:  # and they are in the vault for good
        assert (mnt / "Inbox" / "scan (2).pdf").read_bytes() == b"%PDF scanned"


def test_expiry_and_revocation(relay: str, vault: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "a.txt").write_text("short-lived\n")
        made = time.time()
        expiring = fusevault("link", "create", mnt / "a.txt", "--expires", "6s",
                             "--relay", relay).stdout.strip()
        kept = fusevault("link", "create", mnt / "a.txt", "--relay", relay).stdout.strip()
        first = fusevault("link", "get", expiring, out, passphrase=None)
        assert first.returncode == 0, first.stderr
        time.sleep(max(0.0, made + 6.5 - time.time()))
        late = fusevault("link", "get", expiring, out, "--overwrite", passphrase=None)
        assert late.returncode == EXIT_GONE and "expired" in late.stderr
        item = capability.parse(kept).item
        revoked = fusevault("link", "revoke", item, cwd=mnt)
        assert revoked.returncode == 0, revoked.stderr
        after = fusevault("link", "get", kept, out, "--overwrite", passphrase=None)
        assert after.returncode == EXIT_GONE
        assert item not in fusevault("link", "list", cwd=mnt).stdout
        assert fusevault("link", "revoke", item, cwd=mnt).returncode == 4  # no such link of yours


def _share(relay: str, vault: Path, tmp_path: Path, content: bytes) -> str:
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "secret-name.txt").write_bytes(content)
        link = fusevault("link", "create", mnt / "secret-name.txt", "--relay", relay).stdout.strip()
        (mnt / "secret-name.txt").write_bytes(b"second " + content)
        assert fusevault("link", "push", mnt / "secret-name.txt", link).returncode == 0
    return link


def test_tampering_by_the_server_is_detected(service, vault: Path, tmp_path: Path) -> None:
    relay, db = service
    link = _share(relay, vault, tmp_path, b"the true contents " * 1000)
    item = db[f"user:{capability.parse(link).item}"]
    latest = db[f"version:{item['latest']}"]
    out = tmp_path / "out"
    out.mkdir()

    def fetch() -> object:
        return fusevault("link", "get", link, out, "--overwrite", passphrase=None)

    def tampered(change) -> None:
        doc = db[latest["_id"]]
        saved = dict(doc)
        change(doc)
        db.save(doc)
        result = fetch()
        assert result.returncode == EXIT_CORRUPT, result.stderr
        assert not list(out.iterdir())  # nothing written, not even a temporary file
        db.save({**saved, "_rev": db[latest["_id"]]["_rev"]})

    raw = base64.b64decode(latest["private_enc"])
    flipped = base64.b64encode(raw[:-1] + bytes([raw[-1] ^ 1])).decode()
    tampered(lambda d: d.update(private_enc=flipped))
    tampered(lambda d: d.update(protected={**d["protected"], "seq": 7}))
    tampered(lambda d: d.update(public={"format": "other"}))
    # A block replaced by another one of the same link (an older version's).
    blocks = [b for b in db if b.startswith("block:") and db[b]["user_id"] == item["id"]]
    mine, other = latest["blocks"][0], next(b for b in blocks if b != f"block:{latest['blocks'][0]}")
    data = db.get_attachment(other, "private_encrypted").read()
    original = db.get_attachment(f"block:{mine}", "private_encrypted").read()
    db.put_attachment(db[f"block:{mine}"], data, "private_encrypted", "application/octet-stream")
    result = fetch()
    assert result.returncode == EXIT_CORRUPT and not list(out.iterdir())
    db.put_attachment(db[f"block:{mine}"], original, "private_encrypted", "application/octet-stream")
    assert fetch().returncode == 0
    assert (out / "secret-name.txt").read_bytes().startswith(b"second ")
    # What a server can do: serve an older version.  It is still the owner's, whole.
    old = [v for v in db if v.startswith("version:") and db[v]["user_id"] == item["id"]
           and v != latest["_id"]]
    doc = db[item["_id"]]
    doc["latest"] = old[0].split(":", 1)[1]
    db.save(doc)
    older = fetch()
    assert older.returncode == 0 and "version 1" in older.stdout
    assert (out / "secret-name.txt").read_bytes() == b"the true contents " * 1000


def test_the_server_holds_no_name_and_no_content(service, vault: Path, tmp_path: Path) -> None:
    relay, db = service
    _share(relay, vault, tmp_path, b"plain words nobody else should read")
    everything = json.dumps([dict(db[d]) for d in db])
    attachments = b"".join(db.get_attachment(d, "private_encrypted").read()
                           for d in db if d.startswith("block:"))
    for text in ("secret-name", "plain words"):
        assert text not in everything and text.encode() not in attachments


def test_link_store_errors_are_one_line(redis_url: str, relay: str, tmp_path: Path) -> None:
    bad = fusevault("link", "get", "https://example.org/not-a-link", tmp_path, passphrase=None)
    assert bad.returncode == EXIT_INPUT and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    fake = capability.Link(relay, "no-such-item", capability.SHARE, os.urandom(32), os.urandom(32))
    gone = fusevault("link", "get", fake.text(), tmp_path, passphrase=None)
    assert gone.returncode == EXIT_GONE and "Traceback" not in gone.stderr
    with running_relay(redis_url) as (_, plain):  # a relay started without --couchdb
        fake = capability.Link(plain, "x", capability.SHARE, os.urandom(32), os.urandom(32))
        off = fusevault("link", "get", fake.text(), tmp_path, passphrase=None)
        assert off.returncode == EXIT_INPUT and "--couchdb" in off.stderr
    # A relay whose CouchDB is not there says so in one line and stops.
    down = fusevault("relay", "--listen", "127.0.0.1:0", "--redis", redis_url,
                     "--couchdb", "http://127.0.0.1:9/links", passphrase=None, timeout=60)
    assert down.returncode == 14 and "CouchDB" in down.stderr and "Traceback" not in down.stderr


def test_link_text_and_durations() -> None:
    keys = capability.OwnerKeys.new()
    share = keys.share_link("https://relay.example/base", "ITEM")
    assert capability.parse(share.text()) == share
    assert share.text().startswith("https://relay.example/base/l/ITEM#r1.")
    assert capability.parse(keys.drop_link("http://h:1", "I").text()).kind == capability.DROP
    assert share.read_key != share.content_key and capability.key_hash(share.read_key) == \
        keys.hashes()["read_key_hash"]
    for bad in ("https://h/l/ITEM", "https://h/x/ITEM#r1.AAAA", "ftp://h/l/I#r1." + "A" * 86,
                share.text()[:-2], share.text().replace("#r1.", "#z9.")):
        with pytest.raises(InvalidInput):
            capability.parse(bad)
    assert parse_duration("7 day") == 7 * 86400 and parse_duration("90s") == 90
    assert parse_duration("2w") == 14 * 86400 and parse_duration("1.5h") == 5400
    for bad in ("7", "day", "0s", "-1d", "3 fortnights"):
        with pytest.raises(InvalidInput):
            parse_duration(bad)


def test_a_link_cannot_write_outside_the_folder_it_is_fetched_into(relay: str, tmp_path: Path) -> None:
    """A signed but hostile share: a symlink out of the destination, then a file through it."""
    keys = capability.OwnerKeys.new()
    outside, out = tmp_path / "outside", tmp_path / "out"
    outside.mkdir()
    out.mkdir()
    with LinkClient(relay) as client:
        item = client.create(keys.hashes(), capability.HASHINFO, None)
        sources = [content.Source("top", "dir", 0o755, 0),
                   content.Source("top/evil", "symlink", 0o777, 0, str(outside)),
                   content.Source("top/evil/planted", "file", 0o644, 0, read=lambda: iter([b"gotcha"]))]
        manifest, blocks = content.upload(client, item, keys.append, sources)
        body = capability.seal_share(keys, item, 1, manifest)
        client.add_version(item, keys.append, {**body, "blocks": blocks})
    got = fusevault("link", "get", keys.share_link(relay, item).text(), out, passphrase=None)
    # Refused with the list itself since round 23b (2): nothing goes under a link's own symlink.
    assert got.returncode == EXIT_CORRUPT and "unsafe: nothing was written" in got.stderr, got.stderr
    assert not list(outside.iterdir())


def test_garbage_in_a_drop_box_does_not_block_what_comes_after(relay: str, vault: Path,
                                                               tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text("a real drop\n")
    with mounted(vault, tmp_path / "mnt") as mnt:
        drop = fusevault("link", "create", mnt / "Inbox", "--append", "--relay", relay).stdout.strip()
        link = capability.parse(drop)
        with LinkClient(relay) as client:  # what anyone holding the drop link can send
            client.add_version(link.item, link.first, {"public": {}, "protected": {}, "private_enc": "AAAA"})
            real = content.local_sources(tmp_path / "good.txt")
            manifest, blocks = content.upload(client, link.item, link.first, real)
            broken = {**manifest, "entries": [{**manifest["entries"][0], "sha256": "0" * 64}]}
            sealed = capability.seal_drop(link, broken)
            client.add_version(link.item, link.first, {**sealed, "blocks": blocks})
        assert fusevault("link", "push", tmp_path / "good.txt", drop, passphrase=None).returncode == 0
        collected = fusevault("link", "collect", cwd=mnt)
        assert collected.returncode == 1 and collected.stderr.count("discarded") == 2
        assert "1 dropped" in collected.stdout
        assert os.listdir(mnt / "Inbox") == ["good.txt"]  # no half-written hidden folder left
        assert (mnt / "Inbox" / "good.txt").read_text() == "a real drop\n"
        again = fusevault("link", "collect", cwd=mnt)
        assert again.returncode == 0 and "0 dropped" in again.stdout  # the garbage is gone for good


def test_a_dropped_item_with_no_entries_or_missing_blocks_does_not_block_what_comes_after(
        relay: str, vault: Path, tmp_path: Path) -> None:
    """Sealed to her box like any drop: an empty list of entries (an IndexError in the collector)
    and a file whose blocks the store never got (its 404: InvalidInput) each stopped the box at
    every run, the genuine drop behind them never arriving.  Both are discarded now."""
    (tmp_path / "good.txt").write_text("a real drop\n")
    with mounted(vault, tmp_path / "mnt") as mnt:
        drop = fusevault("link", "create", mnt / "Inbox", "--append", "--relay", relay).stdout.strip()
        link = capability.parse(drop)
        with LinkClient(relay) as client:  # what anyone holding the drop link can send
            real = content.local_sources(tmp_path / "good.txt")
            for hostile in (lambda m: {**m, "entries": []},
                            lambda m: {**m, "entries": [{**m["entries"][0], "blocks": ["nosuchblock"]}]}):
                manifest, blocks = content.upload(client, link.item, link.first, real)  # a drop's own
                sealed = capability.seal_drop(link, hostile(manifest))
                client.add_version(link.item, link.first, {**sealed, "blocks": blocks})
        assert fusevault("link", "push", tmp_path / "good.txt", drop, passphrase=None).returncode == 0
        collected = fusevault("link", "collect", cwd=mnt)
        assert collected.stderr.count("discarded") == 2, collected.stderr
        assert (mnt / "Inbox" / "good.txt").read_text() == "a real drop\n"
        assert os.listdir(mnt / "Inbox") == ["good.txt"]  # no half-written hidden folder left
        again = fusevault("link", "collect", cwd=mnt)
        assert again.returncode == 0 and "0 dropped" in again.stdout  # the garbage is gone for good


def test_a_dropped_folders_symlinks_are_kept_only_when_they_stay_inside_it(relay: str, vault: Path,
                                                                          tmp_path: Path) -> None:
    """As ``link get`` and ``receive``: a dropped symlink is made only when it stays inside the dropped
    folder by its text, and kept only when it resolves inside with every link in place (a chain
    ``d -> .``, ``l -> d/..`` climbs to her box folder); the others are said, the rest arrives
    (attack round 25b (7))."""
    photos = tmp_path / "stranger" / "photos"
    photos.mkdir(parents=True)
    (photos / "a.txt").write_text("a picture\n")
    for name, target in {"ok": "a.txt", "d": ".", "l": "d/..", "abs": "/etc/passwd",
                         "up": "../private.txt", "dangling": "nothere"}.items():
        (photos / name).symlink_to(target)
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "Inbox").mkdir()
        (mnt / "Inbox" / "private.txt").write_text("owner only\n")
        drop = capability.parse(
            fusevault("link", "create", mnt / "Inbox", "--append", "--relay", relay).stdout.strip())
        with LinkClient(drop.server) as client:  # what anyone holding the drop link can send
            manifest, blocks = content.upload(client, drop.item, drop.first, content.local_sources(photos))
            sealed = capability.seal_drop(drop, manifest)
            client.add_version(drop.item, drop.first, {**sealed, "blocks": blocks})
        collected = fusevault("link", "collect", cwd=mnt)
        assert "1 dropped" in collected.stdout, collected.stdout + collected.stderr
        for name in ("l", "abs", "up", "dangling"):
            assert f"did not keep the dropped symlink photos/{name} " in collected.stderr, collected.stderr
        assert sorted(os.listdir(mnt / "Inbox")) == ["photos", "private.txt"]  # no hidden folder left
        assert sorted(os.listdir(mnt / "Inbox" / "photos")) == ["a.txt", "d", "ok"]
        assert (mnt / "Inbox" / "photos" / "ok").read_text() == "a picture\n"
        assert os.readlink(mnt / "Inbox" / "photos" / "d") == "."
