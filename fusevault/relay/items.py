"""The key-hash store of seed 001, in a CouchDB database (CouchDB-Python, synchronous).

Three document types, one per table of the seed, with its field names:

- ``user`` (an item, the thing a capability link points at): ``id``,
  ``username``, ``saltinfo``, ``read_key_hash``, ``write_key_hash`` (the
  append key's), ``root_key_hash`` (the delete key's), ``created_at``,
  ``accessed_at``, ``updated_at``; plus ``latest`` (the newest version's
  id) and ``expires_at``.
- ``version``: ``id``, ``user_id``, ``created_at``, ``updated_at``,
  ``public``, ``protected``, ``private_enc``, ``blocks`` (ids of the blocks
  it owns, each once), ``deleted``; plus ``size`` (the length of
  ``private_enc``, for its list; missing in a version stored before).
- ``block``: ``id``, ``user_id``, ``updated_at``, ``read_key_hash``, and the
  ciphertext as the attachment ``private_encrypted``; plus ``version`` (the id of
  the version that took it, set once by ``add_version``; missing in a block no
  version took yet, or one stored before round 74).

Keys never reach this module's storage: the caller hands in the key a
request presented, it is hashed here and compared with the stored hash in
constant time (``hmac.compare_digest``).  Who may do what is the matrix of
seed 001 and lives in one place, ``ALLOWED``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime

import couchdb

from fusevault.relay.limits import Refused
from fusevault.store.couch import split_url

READ, APPEND, DELETE = "read", "append", "delete"
ROLES = (READ, APPEND, DELETE)

# The seed's matrix names a key's hash by its role; the users table names
# the append key "write_key" and the delete key "root_key".
HASH_FIELD = {READ: "read_key_hash", APPEND: "write_key_hash", DELETE: "root_key_hash"}
MATRIX_FIELD = {"read_key_hash": READ, "append_key_hash": APPEND, "delete_key_hash": DELETE}

# Seed 001's permission matrix: (row, action) -> the keys that allow it;
# None stands for "without a key" (anyone who knows the id).
ALLOWED: dict[tuple[str, str], frozenset[str | None]] = {
    ("user", "create"): frozenset({None}),
    ("user", "delete"): frozenset({DELETE}),
    ("hashinfo", "read"): frozenset({None, READ, APPEND, DELETE}),
    ("hashinfo", "write"): frozenset({DELETE}),
    ("key_hashes", "write"): frozenset({DELETE}),
    ("timestamps", "read"): frozenset({READ}),
    ("version", "create"): frozenset({APPEND}),
    ("version", "delete"): frozenset({DELETE}),
    ("version", "read all"): frozenset({DELETE}),
    ("version", "read latest"): frozenset({READ, DELETE}),
    ("version.public", "read latest"): frozenset({None, READ, APPEND, DELETE}),
    # Blocks are not in the matrix: they are the bodies of versions, added
    # by whoever adds versions and read by whoever reads them.
    ("block", "create"): frozenset({APPEND}),
    ("block", "read"): frozenset({READ}),
}

MAX_BLOCK = 4 * 1024 * 1024

# How long an expired drop box keeps the drops made before its expiry for its owner's collection
# (her mount collects every minute; this is for a device away on holiday).  Then they go.
DROPS_KEPT = 30 * 86400

# The index of live versions by time (design document, name): see ``_newest_live``.
LIVE = ("fusevault-live", "by-live")

# Block ids looked up in one call to the store (73c (1)): each row, its block's document with it, is
# ~2.6 KB parsed, so a slice holds ~0.7 MB whatever the version names, and the next is asked only once
# this one passed.  One ``_all_docs`` call for all the ids a version named held ~98 times its body.
SLICE = 256

# Times a write of block documents is tried again on the ones a concurrent request changed first.
TRIES = 20


def now() -> str:
    """A seed "timestamp": UTC, ISO 8601 with microseconds, so text order is time order."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def key_hash(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()


def new_item_id() -> str:
    """A random item id (144 bits).  Never one beginning with "-": users type
    it as an argument (``link push PATH ID``), where it would read as an option."""
    while (item_id := secrets.token_urlsafe(18)).startswith("-"):
        pass
    return item_id


def _valid_hash(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


class Presented:
    """The key a request carried (role and bytes), or none."""

    def __init__(self, role: str | None = None, key: bytes = b"") -> None:
        self.role = role
        self._hash = key_hash(key) if role else ""

    def opens(self, stored_hash: str | None) -> bool:
        return bool(self.role) and stored_hash is not None and hmac.compare_digest(self._hash, stored_hash)


class ItemStore:
    def __init__(self, url: str, credentials: tuple[str, str] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        server_url, name = split_url(url)
        server = couchdb.Server(server_url)
        if credentials:
            server.resource.credentials = credentials
        self.db = server[name] if name in server else server.create(name)
        self.clock = clock
        self.db.index()["fusevault-items", "by-item"] = ["type", "user_id"]
        # An item's live versions, newest first, from the index alone (round 55d (3)): its own design
        # document, so that adding it rebuilds no other index of a store already in use.
        self.db.index()[LIVE] = ["type", "user_id", "deleted", "created_at"]

    # --- access control

    def _item(self, item_id: str, collecting: bool = False) -> dict:
        """The item, live; or, past its expiry, a drop box's for its owner's collection only
        (``collecting``: listing, reading and deleting its versions, deleting it).  Anything else
        past the expiry is refused, appends first: the box is closed, what it holds is bounded."""
        doc = self.db.get(f"user:{item_id}")
        if doc is None:
            raise Refused(404, "no such link (it was revoked or never existed)")
        expires = doc.get("expires_at")
        if expires is not None and self.clock() >= expires:
            if not self._holds_drops(doc, expires):
                self._purge(doc)
                raise Refused(410, "this link has expired")
            if not collecting:
                raise Refused(410, "this link has expired (what was dropped before waits for its owner)")
        return doc

    def _holds_drops(self, item: dict, expires: float) -> bool:
        """Whether an expired item is a drop box still holding drops its owner has not collected,
        within DROPS_KEPT after its expiry.  Its expiry closed it to new drops; the ones made before
        were answered "dropped" and are deleted only once collected (round 53t (2): the expiry
        deleted them, unsaid, however recent)."""
        if item.get("keeps_drops") is not True or self.clock() >= expires + DROPS_KEPT:
            return False
        # One small read, whatever the box holds: this runs on every request to an expired box, a
        # keyless one too; reading its drops here made any request read all of them (round 55d (3)).
        return self._newest_live(item["id"]) is not None

    def _newest_live(self, item_id: str) -> str | None:
        """The id of the item's newest version not deleted (None: none), read from the index of live
        versions alone, one row of one field: never a version's body, whatever the item holds."""
        query = {"selector": {"type": "version", "user_id": item_id, "deleted": False,
                              "created_at": {"$gt": None}},
                 "sort": [{field: "desc"} for field in ("type", "user_id", "deleted", "created_at")],
                 "fields": ["id"], "limit": 1, "use_index": list(LIVE)}
        found = [doc["id"] for doc in self.db.find(query)]
        return found[0] if found else None

    @staticmethod
    def _role(item: dict, key: Presented) -> str | None:
        """The role the presented key has on this item (None: no key, or one that opens nothing)."""
        if key.role is None:
            return None
        if not key.opens(item.get(HASH_FIELD[key.role])):
            raise Refused(403, f"this {key.role} key does not open this link")
        return key.role

    def _check(self, item: dict, key: Presented, row: str, action: str) -> str | None:
        role = self._role(item, key)
        allowed = ALLOWED[(row, action)]
        if role in allowed:
            return role
        if role is None:
            raise Refused(401, f"a key is needed to {action} {row}")
        raise Refused(403, f"the {role} key cannot {action} {row}")

    def _touch(self, doc_id: str, **fields: object) -> None:
        """Set fields on a document, retrying when a concurrent request changed it first."""
        for _ in range(20):
            doc = self.db.get(doc_id)
            if doc is None:
                return
            doc.update(fields)
            try:
                self.db.save(doc)
                return
            except couchdb.http.ResourceConflict:
                continue
        raise Refused(503, "the link is too busy: try again")

    def _rewrite(self, docs: list[dict], **fields: object) -> None:
        """Set fields on documents (whole, attachment stubs included), reading again and retrying the
        ones a concurrent request changed first: since round 74 ``add_version`` writes the blocks it
        takes, so a new read key's copy must not be lost to a version taking a block meanwhile."""
        for _ in range(TRIES):
            results = self.db.update([{**doc, **fields} for doc in docs]) if docs else []
            again = [doc_id for ok, doc_id, _ in results if not ok]
            if not again:
                return
            docs = [doc for doc in (self.db.get(doc_id) for doc_id in again) if doc is not None]
        raise Refused(503, "the link is too busy: try again")

    # --- items ("users" in seed 001)

    def create(self, body: dict, expires_in: float | None = None) -> dict:
        fields = {}
        for name, role in MATRIX_FIELD.items():
            if not _valid_hash(body.get(name)):
                raise Refused(400, f"{name} must be a SHA-256 in hex")
            fields[HASH_FIELD[role]] = body[name]
        item_id = new_item_id()
        stamp = now()
        self.db.save({
            "_id": f"user:{item_id}", "type": "user", "id": item_id,
            "username": body.get("username") if isinstance(body.get("username"), str) else None,
            "saltinfo": body.get("hashinfo"), **fields,
            "created_at": stamp, "accessed_at": None, "updated_at": stamp, "latest": None,
            "expires_at": self.clock() + expires_in if expires_in else None,
            # A drop box (its client says so): past its expiry it keeps the drops made before.
            "keeps_drops": body.get("keeps_drops") is True,
        })
        return {"id": item_id, "created_at": stamp}

    def describe(self, item_id: str, key: Presented) -> dict:
        item = self._item(item_id)
        self._check(item, key, "hashinfo", "read")
        found = {"id": item_id, "hashinfo": item.get("saltinfo")}
        if self._role(item, key) in ALLOWED[("timestamps", "read")]:
            found.update(created_at=item["created_at"], accessed_at=item["accessed_at"],
                         updated_at=item["updated_at"], expires_at=item.get("expires_at"))
        return found

    def change(self, item_id: str, key: Presented, body: dict) -> None:
        item = self._item(item_id)
        changes: dict[str, object] = {}
        if "hashinfo" in body:
            self._check(item, key, "hashinfo", "write")
            changes["saltinfo"] = body["hashinfo"]
        for name, role in MATRIX_FIELD.items():
            if name in body:
                self._check(item, key, "key_hashes", "write")
                if not _valid_hash(body[name]):
                    raise Refused(400, f"{name} must be a SHA-256 in hex")
                changes[HASH_FIELD[role]] = body[name]
        if "keeps_drops" in body:  # a drop box made before round 53, marked by its owner's collect
            self._check(item, key, "key_hashes", "write")
            if body["keeps_drops"] is not True:
                raise Refused(400, "keeps_drops is only ever set, to true")
            changes["keeps_drops"] = True
        if not changes:
            raise Refused(400, "nothing to change")
        if "read_key_hash" in changes:
            # Blocks are fetched by read key: a new read key must be the only one that opens them.
            self._rewrite(self._of_item("block", item_id), read_key_hash=changes["read_key_hash"])
        self._touch(item["_id"], **changes, updated_at=now())

    def delete(self, item_id: str, key: Presented) -> None:
        item = self._item(item_id, collecting=True)
        self._check(item, key, "user", "delete")
        self._purge(item)

    def _purge(self, item: dict) -> None:
        """The item, then everything it owns; a crash between leaves orphans nobody can open."""
        try:
            self.db.delete(item)
        except (couchdb.http.ResourceConflict, couchdb.http.ResourceNotFound):
            pass  # a concurrent request purges it
        ids = ["_id", "_rev"]  # what a deletion names: no version's body read
        owned = self._of_item("version", item["id"], ids) + self._of_item("block", item["id"], ids)
        self.db.update([{"_id": d["_id"], "_rev": d["_rev"], "_deleted": True} for d in owned])

    def _of_item(self, doc_type: str, item_id: str, fields: list[str] | None = None) -> list[dict]:
        query: dict = {"selector": {"type": doc_type, "user_id": item_id}, "limit": 1_000_000}
        if fields is not None:
            query["fields"] = fields
        return [dict(doc) for doc in self.db.find(query)]

    # --- versions

    def add_version(self, item_id: str, key: Presented, body: dict) -> dict:
        item = self._item(item_id)
        self._check(item, key, "version", "create")
        if not isinstance(body.get("private_enc"), str):
            raise Refused(400, "a version needs private_enc (base64)")
        blocks = body.get("blocks", [])
        if not isinstance(blocks, list) or not all(isinstance(b, str) for b in blocks):
            raise Refused(400, "blocks must be a list of block ids")
        # 73c (1): a version names each block it owns once.  One id named a million times passed, each
        # naming a row (and its document) of the store's answer, and a GET at the version's deletion.
        if len(set(blocks)) != len(blocks):
            raise Refused(400, "a version names each of its blocks once")
        version_id, stamp = secrets.token_urlsafe(12), now()
        for at in range(0, len(blocks), SLICE):
            self._take(item_id, version_id, blocks[at:at + SLICE])
        self.db.save({
            "_id": f"version:{version_id}", "type": "version", "id": version_id, "user_id": item_id,
            "created_at": stamp, "updated_at": stamp, "deleted": False, "blocks": blocks,
            "public": body.get("public"), "protected": body.get("protected"),
            "private_enc": body["private_enc"], "size": len(body["private_enc"]),
        })
        self._touch(item["_id"], latest=version_id, updated_at=stamp)
        return {"id": version_id, "created_at": stamp}

    def _blocks_of(self, item_id: str, block_ids: list[str]) -> list[dict]:
        """The documents of those of ``block_ids`` (a slice: at most SLICE) that are blocks of the item
        (whole, attachment stubs included): one call to the store, whatever they are."""
        rows = self.db.view("_all_docs", keys=[f"block:{b}" for b in block_ids], include_docs=True)
        return [dict(row.doc) for row in rows if row.doc is not None and row.doc.get("user_id") == item_id]

    def _take(self, item_id: str, version_id: str, block_ids: list[str]) -> None:
        """Mark ``block_ids`` (a slice of distinct ids) as the blocks of ``version_id``, in the write of
        the slice's documents; refuse the version if one is not a block of the item or is another
        version's (74c (3)).  A block belongs to one version: its lookup here is paid by its own upload,
        once.  Without this, blocks uploaded once were looked up again (and walked again at each
        version's deletion) by every version naming them, a slice of 256 at a time, no upload paid.
        A concurrent write of a block (another version taking it, a new read key's copy) is read
        again, so of two versions naming it one takes it.  The slices taken before a refusal stay
        taken, by no stored version (only a stranger's version names blocks it cannot take): they go
        with the item."""
        wanted = block_ids
        for _ in range(TRIES):
            docs = self._blocks_of(item_id, wanted)
            if len(docs) != len(wanted):
                raise Refused(400, "a version can only own blocks added to this link")
            if any("version" in doc for doc in docs):
                raise Refused(409, "a block belongs to one version: another version took it already")
            results = self.db.update([{**doc, "version": version_id} for doc in docs])
            again = {doc_id for ok, doc_id, _ in results if not ok}
            if not again:
                return
            wanted = [b for b in wanted if f"block:{b}" in again]
        raise Refused(503, "the link is too busy: try again")

    def latest(self, item_id: str, key: Presented) -> dict:
        item = self._item(item_id)
        role = self._role(item, key)
        version = self.db.get(f"version:{item['latest']}") if item.get("latest") else None
        if version is None:
            raise Refused(404, "this link has no version yet")
        if role not in ALLOWED[("version", "read latest")]:
            self._check(item, key, "version.public", "read latest")
            return {"public": version["public"]}
        self._touch(item["_id"], accessed_at=now())
        return _full(version)

    def all_versions(self, item_id: str, key: Presented, whole: bool = False) -> list[dict]:
        """The item's versions, oldest first, each without its body (SUMMARY: ids, times, ``deleted``,
        ``size``, the length of its ``private_enc``, None for one stored before round 73): read one
        at a time (``version``).  73c (2): the list gave every body, so two drops of 33 MiB made it
        longer than any client takes, and a box's collection (and its revoke) failed for good.

        ``whole``: for a client before round 73, which reads the bodies in the list (and discards a
        version without one as garbage): the oldest live versions whole, as many as WHOLE_BUDGET
        holds (always one), the others left out of this list until those are collected."""
        item = self._item(item_id, collecting=True)
        self._check(item, key, "version", "read all")
        versions = sorted(self._of_item("version", item_id, list(SUMMARY)), key=lambda v: v["created_at"])
        if any(not v["deleted"] for v in versions):
            self._touch(item["_id"], accessed_at=now())
        summaries = [{field: v.get(field) for field in SUMMARY} for v in versions]
        return self._whole(item_id, summaries) if whole else summaries

    def _whole(self, item_id: str, summaries: list[dict]) -> list[dict]:
        """The list an earlier client reads: deleted versions as rows without content (as stored), the
        live ones whole, read one at a time, within WHOLE_BUDGET."""
        found, spent = [], 0
        for summary in summaries:
            if summary["deleted"]:
                found.append({**summary, "public": None, "protected": None, "private_enc": None,
                              "blocks": []})
                continue
            version = self.db.get(f"version:{summary['id']}")
            if version is None or version.get("user_id") != item_id:
                continue  # deleted since it was listed
            whole = _full(version)
            cost = _answered(whole)
            if spent and spent + cost > WHOLE_BUDGET:
                break
            spent += cost
            found.append(whole)
        return found

    def version(self, item_id: str, key: Presented, version_id: str) -> dict:
        """One version of the item, whole: what its list names, read by the delete key's holder."""
        item = self._item(item_id, collecting=True)
        self._check(item, key, "version", "read all")
        version = self.db.get(f"version:{version_id}")
        if version is None or version.get("type") != "version" or version.get("user_id") != item_id \
                or version.get("deleted") is not False:
            raise Refused(404, "no such version")
        return _full(version)

    def delete_version(self, item_id: str, key: Presented, version_id: str) -> None:
        item = self._item(item_id, collecting=True)
        self._check(item, key, "version", "delete")
        # Its row without its body (rewritten whole below), and the newest left from the index: a
        # collection reads each drop once, not every drop left at each deletion (round 55d (3)).
        query = {"selector": {"_id": f"version:{version_id}"}, "limit": 1,
                 "fields": ["_id", "_rev", "type", "id", "user_id", "created_at", "deleted", "blocks"]}
        version = next((dict(doc) for doc in self.db.find(query)), None)
        if version is None or version["user_id"] != item_id or version["deleted"]:
            raise Refused(404, "no such version")
        # The seed keeps a deleted version's row with the time it was deleted.
        stamp = now()
        # Its blocks in slices of distinct ids, one call each (73c (1): a GET per id named, duplicates
        # included, made a stored version of a million names of one block cost minutes); only this
        # item's, whatever a version stored by an earlier relay names, and of those only the ones this
        # version took (74c (3)) or that no version took (blocks stored before round 74, named by a
        # version stored then): never a block another version took.
        named = list(dict.fromkeys(b for b in version["blocks"] if isinstance(b, str)))
        for at in range(0, len(named), SLICE):
            owned = [b for b in self._blocks_of(item_id, named[at:at + SLICE])
                     if b.get("version", version_id) == version_id]
            self.db.update([{"_id": b["_id"], "_rev": b["_rev"], "_deleted": True} for b in owned])
        version.update(deleted=True, updated_at=stamp, public=None, protected=None, private_enc=None,
                       blocks=[])
        self.db.save(version)
        latest = self._newest_live(item_id)
        expires = item.get("expires_at")
        if latest is None and expires is not None and self.clock() >= expires:
            self._purge(item)  # an expired box, its last drop collected
            return
        self._touch(item["_id"], latest=latest, updated_at=stamp)

    # --- blocks

    def add_block(self, item_id: str, key: Presented, data: bytes) -> dict:
        item = self._item(item_id)
        self._check(item, key, "block", "create")
        if len(data) > MAX_BLOCK:
            raise Refused(413, f"a block is at most {MAX_BLOCK} bytes")
        block_id = secrets.token_urlsafe(18)
        self.db.save({
            "_id": f"block:{block_id}", "type": "block", "id": block_id, "user_id": item_id,
            "updated_at": now(), "read_key_hash": item[HASH_FIELD[READ]],
            "_attachments": {"private_encrypted": {"content_type": "application/octet-stream",
                                                   "data": base64.b64encode(data).decode("ascii")}},
        })
        return {"id": block_id}

    def block(self, block_id: str, key: Presented) -> bytes:
        doc = self.db.get(f"block:{block_id}")
        if doc is None:
            raise Refused(404, "no such block")
        # Expired with its item; an expired box's for its owner's collection (a box's read key is
        # its owner's alone: the drop link carries the append key).
        self._item(doc["user_id"], collecting=True)
        if key.role != READ:
            raise Refused(401 if key.role is None else 403, "blocks are read with the read key")
        if not key.opens(doc["read_key_hash"]):
            raise Refused(403, "this read key does not open this block")
        return self.db.get_attachment(doc, "private_encrypted").read()


# What the list of an item's versions gives of each (``all_versions``).
SUMMARY = ("id", "created_at", "updated_at", "deleted", "size")
# The bodies a list of whole versions (for a client before round 73) holds at most, unless its first
# live version is longer: within such a client's cap (65 MiB) whatever the box holds.
WHOLE_BUDGET = 32 * 1024 * 1024


def _answered(version: dict) -> int:
    """What a version weighs in a list, as it is answered: its JSON, every field of it (74c (4): its
    ``private_enc`` and block ids alone were counted, and the dropper fills ``public`` and
    ``protected`` as he likes).  Escaped to ASCII: at least the bytes of the route's UTF-8 answer."""
    return len(json.dumps(version, separators=(",", ":")))


def _full(version: dict) -> dict:
    return {k: version[k] for k in ("id", "created_at", "updated_at", "deleted", "public", "protected",
                                    "private_enc", "blocks")}
