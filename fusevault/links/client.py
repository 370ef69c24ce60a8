"""The link store's HTTP API (fusevault/relay/item_routes.py) from the client side."""

from __future__ import annotations

import re
from typing import Any

import httpx

from fusevault.encoding import NETWORK_SPREAD, Spread, loads_untrusted
from fusevault.errors import CorruptData, InvalidInput, LinkGone, LinkRefused, VaultError
from fusevault.http_answers import MIB
from fusevault.links.capability import APPEND, DELETE, READ, b64url
from fusevault.transfer.client import AnswerTooLong, RelayClient, _error, _failure

__all__ = ["APPEND", "DELETE", "READ", "LinkClient"]

# The largest answer the link store gives, per route (more: RelayUnavailable, attack round 52t (3)).
# JSON: a version holds its folder's manifest (the store takes 64 MiB of JSON, relay/item_routes.py
# MAX_JSON); the list of versions of a drop box holds one short entry per drop not yet collected, no
# body (73c (2): with their bodies, two drops of 33 MiB made it longer than this, for good); a block
# is at most MAX_BLOCK (relay/items.py), its seal within.
JSON_CAP = 64 * MIB + 1 * MIB
BLOCK_CAP = 4 * MIB
# The list of versions: each an object of eight fields (ids, times, base64, a list of block ids), at
# least ~190 bytes with ten values even deleted: a list of 22 million ``{}`` within JSON_CAP parsed to
# 1.5 GB (attack round 53d (3)); held to this, at most ~6 times its size.
VERSIONS_SPREAD = Spread(per_value=12, per_container=64)


class LinkClient(RelayClient):
    SERVER = "the link store"

    def _send(self, method: str, path: str, key: tuple[str, bytes] | None = None, *, cap: int = JSON_CAP,
              **kwargs) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if key is not None:
            headers["Authorization"] = f"Capability {key[0]} {b64url(key[1])}"
        response = self.call(method, path, headers=headers, cap=cap, **kwargs)
        if response.status_code == 404:
            raise LinkGone(_error(response) or "no such link")
        return response

    def create(self, hashes: dict, hashinfo: dict, expires_in: float | None, *,
               drop_box: bool = False) -> str:
        # keeps_drops: past its expiry the store keeps a box's drops for its owner (a store before
        # round 53 ignores it, and deletes them at the expiry).
        body = {**hashes, "hashinfo": hashinfo, "expires_in": expires_in, "keeps_drops": drop_box}
        return _parsed(self._send("POST", "/items", json=body))["id"]

    def describe(self, item: str, key: tuple[str, bytes] | None = None) -> dict:
        return _parsed(self._send("GET", f"/items/{item}", key))

    def change(self, item: str, delete_key: bytes, fields: dict) -> None:
        self._send("PATCH", f"/items/{item}", (DELETE, delete_key), json=fields)

    def delete(self, item: str, delete_key: bytes) -> None:
        self._send("DELETE", f"/items/{item}", (DELETE, delete_key))

    def add_block(self, item: str, append_key: bytes, blob: bytes) -> str:
        sent = self._send("POST", f"/items/{item}/blocks", (APPEND, append_key), content=blob)
        return _parsed(sent)["id"]

    def block(self, block_id: str, read_key: bytes) -> bytes:
        return self._send("GET", f"/blocks/{block_id}", (READ, read_key), cap=BLOCK_CAP).content

    def add_version(self, item: str, append_key: bytes, body: dict) -> dict:
        sent = self._send("POST", f"/items/{item}/versions", (APPEND, append_key), json=body)
        return _parsed(sent)

    def latest(self, item: str, key: tuple[str, bytes] | None) -> dict:
        return _parsed(self._send("GET", f"/items/{item}/versions/latest", key))

    def versions(self, item: str, delete_key: bytes) -> list[dict]:
        """The item's versions, each ``{id: str, deleted: bool, ...}``: anything else is the link
        store's garbage, said as such (CorruptData), never a KeyError in the caller.  Each without
        its body (``whole`` reads it), or with it from a link store before round 73."""
        listed = self._send("GET", f"/items/{item}/versions", (DELETE, delete_key), params={"summary": 1})
        try:
            found = _parsed(listed, VERSIONS_SPREAD)["versions"]
            if not isinstance(found, list) or not all(_a_version(v) for v in found):
                raise TypeError
        except (KeyError, TypeError, ValueError):
            raise CorruptData("the link store's list of versions is malformed") from None
        return found

    def whole(self, item: str, delete_key: bytes, listed: dict) -> dict:
        """The version ``listed`` (an entry of ``versions``) with its body, read alone.  One longer than
        this client takes, said so by its listed ``size`` or by the answer, is CorruptData: that one
        drop is garbage to discard, not the link store away (73c (2))."""
        if "private_enc" in listed:
            return listed  # a link store before round 73 lists versions whole
        size = listed.get("size")
        if isinstance(size, int) and not isinstance(size, bool) and size > JSON_CAP:
            raise CorruptData(f"a version of {size} bytes, more than the {JSON_CAP} this client takes")
        try:
            found = _parsed(self._send("GET", f"/items/{item}/versions/{listed['id']}", (DELETE, delete_key)))
        except AnswerTooLong:
            raise CorruptData(f"a version longer than the {JSON_CAP} bytes this client takes") from None
        if not isinstance(found, dict) or found.get("id") != listed["id"]:
            raise CorruptData("the link store answered another version than the one asked for")
        return found

    def delete_version(self, item: str, delete_key: bytes, version_id: str) -> None:
        self._send("DELETE", f"/items/{item}/versions/{version_id}", (DELETE, delete_key))

    @staticmethod
    def failure(response: httpx.Response) -> VaultError:
        message = _error(response) or f"the link store answered {response.status_code}"
        if response.status_code in (401, 403):
            return LinkRefused(message)
        if response.status_code == 410:
            return LinkGone(message)
        if response.status_code == 503 and "links" in message:
            return InvalidInput(message)
        return _failure(response)


def _parsed(response: httpx.Response, spread: Spread = NETWORK_SPREAD) -> Any:
    """The link store's JSON answer, parsed as hostile (its values held to ``spread``)."""
    return loads_untrusted(response.content, spread=spread)


# A version id as the link store makes it (relay/items.py: ``secrets.token_urlsafe``).  It becomes
# part of a hidden file name in her drop box and of a URL path: "/" or ".." in it wrote the dropped
# file into a hidden folder of its own (attack round 26b2 (3)).
_VERSION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _a_version(value: object) -> bool:
    return (isinstance(value, dict) and isinstance(value.get("id"), str)
            and _VERSION_ID.fullmatch(value["id"]) is not None
            and isinstance(value.get("deleted"), bool))

