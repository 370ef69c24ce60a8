"""The HTTP routes of the capability-link store (seed 001), served next to the relay's.

    POST   /items                          anyone: create an item from three key hashes
    GET    /items/{id}                     hashinfo; with the read key also its timestamps
    PATCH  /items/{id}                     delete key: new hashinfo or key hashes
    DELETE /items/{id}                     delete key: the item, its versions and blocks
    POST   /items/{id}/versions            append key: add a version
    GET    /items/{id}/versions/latest     read or delete key: the latest version; no key: its public part
    GET    /items/{id}/versions?summary=1  delete key: every version, without its body (ids, times,
                                           deleted, size); without ``summary`` (a client before round
                                           73), the oldest whole, 32 MiB of them at most (one always)
    GET    /items/{id}/versions/{vid}      delete key: one version, whole
    DELETE /items/{id}/versions/{vid}      delete key: one version
    POST   /items/{id}/blocks              append key: store an encrypted block
    GET    /blocks/{bid}                   read key: fetch one
    GET    /l/{id}                         a person who opened a link in a browser: the page that
                                           decrypts it there (fusevault/relay/link_page.py)

A key travels in ``Authorization: Capability <role> <key, base64url>`` and is
only ever hashed; links carry keys after ``#``, which browsers and HTTP
clients never send, so no key is in a URL the server sees or logs.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import couchdb
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fusevault.relay import guards, link_page
from fusevault.relay.items import MAX_BLOCK, ROLES, ItemStore, Presented
from fusevault.relay.limits import Refused

MAX_JSON = 64 * 1024 * 1024  # a link version's private_enc holds the manifest of a folder


def presented(request: Request) -> Presented:
    auth = request.headers.get("authorization", "")
    if not auth:
        return Presented()
    scheme, _, rest = auth.partition(" ")
    role, _, key = rest.partition(" ")
    if scheme != "Capability" or role not in ROLES:
        raise Refused(400, "Authorization must be: Capability read|append|delete KEY")
    try:
        return Presented(role, base64.urlsafe_b64decode(key + "=" * (-len(key) % 4)))
    except (binascii.Error, ValueError):
        raise Refused(400, "the key is not base64url") from None


# The longest a link may live, as the owner's client bounds it (fusevault/links: the relay imports no
# client code).  Unbounded, a whole number past a float's range made the create fail unanswered (an
# OverflowError, a 500), and one within it an item that outlives every clock (round 49t (3)).
LONGEST_EXPIRY = 3653 * 86400


def _a_lifetime(seconds: object) -> bool:
    return (isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
            and 0 < seconds <= LONGEST_EXPIRY)


# What a link's bodies hold, counted before they are parsed (guards.read_json, 71b (1)); 72b (1): one
# count for all, MAX_JSON // 16 values, let a 19 MiB body of small objects parse to ~470 MiB.
# ``create`` and ``change`` take a few fields and no list (three key hashes, hashinfo, username,
# expires_in, keeps_drops): FEW_VALUES, within FIELDS_JSON bytes, so a name in any script costs little.
FIELDS_JSON = 64 * 1024
# ``add_version`` takes a few fields and the ids of the version's blocks (1 MiB of content each, the
# owner's links/content.py BLOCK).  Each id (24 characters) is in the list, ``"id",`` 27 bytes, and in
# the sealed manifest, the same 27 bytes as base64, 36: a 64 MiB body names at most ~1 M blocks, about
# 1 TiB of content.  The most crowded body so bounded costs less than an honest version of MAX_JSON.
BLOCK_ID_WIRE = 27 + 36
VERSION_VALUES = guards.FEW_VALUES + MAX_JSON // BLOCK_ID_WIRE


async def read_fields(request: Request) -> dict:
    """``create``'s and ``change``'s body: a JSON object of a few fields, or a 400/413 answer."""
    return await guards.read_json(request, FIELDS_JSON, guards.FEW_VALUES)


async def read_version(request: Request) -> dict:
    """``add_version``'s body: a JSON object of base64, ids and numbers (ASCII: 72b (2)), capped and
    counted, or a 400/413 answer."""
    return await guards.read_json(request, MAX_JSON, VERSION_VALUES, ascii=True)


class ItemRoutes:
    def __init__(self, items: ItemStore | None, run) -> None:
        self.items = items
        self.run = run  # runs a blocking call in a worker thread

    async def call(self, method: str, *args: Any) -> Any:
        if self.items is None:
            raise Refused(503, "this relay does not keep links (it was started without --couchdb)")
        try:
            return await self.run(getattr(self.items, method), *args)
        except (OSError, couchdb.http.ServerError, couchdb.http.Unauthorized):
            raise Refused(503, "the link store is unavailable") from None

    async def create(self, request: Request) -> Response:
        body = await read_fields(request)
        expires_in = body.get("expires_in")
        if expires_in is not None and not _a_lifetime(expires_in):
            raise Refused(400, f"expires_in is a number of seconds above 0, at most {LONGEST_EXPIRY}")
        return JSONResponse(await self.call("create", body, expires_in), status_code=201)

    async def describe(self, request: Request) -> Response:
        return JSONResponse(await self.call("describe", request.path_params["id"], presented(request)))

    async def change(self, request: Request) -> Response:
        key = presented(request)
        await self.call("change", request.path_params["id"], key, await read_fields(request))
        return Response(status_code=204)

    async def delete(self, request: Request) -> Response:
        await self.call("delete", request.path_params["id"], presented(request))
        return Response(status_code=204)

    async def add_version(self, request: Request) -> Response:
        key = presented(request)
        found = await self.call("add_version", request.path_params["id"], key, await read_version(request))
        return JSONResponse(found, status_code=201)

    async def latest(self, request: Request) -> Response:
        return JSONResponse(await self.call("latest", request.path_params["id"], presented(request)))

    async def all_versions(self, request: Request) -> Response:
        whole = request.query_params.get("summary") is None  # a client before round 73 (73c (2))
        found = await self.call("all_versions", request.path_params["id"], presented(request), whole)
        return JSONResponse({"versions": found})

    async def version(self, request: Request) -> Response:
        found = await self.call("version", request.path_params["id"], presented(request),
                                request.path_params["vid"])
        return JSONResponse(found)

    async def delete_version(self, request: Request) -> Response:
        await self.call("delete_version", request.path_params["id"], presented(request),
                        request.path_params["vid"])
        return Response(status_code=204)

    async def add_block(self, request: Request) -> Response:
        key = presented(request)
        data = await guards.read_body(request, MAX_BLOCK)
        return JSONResponse(await self.call("add_block", request.path_params["id"], key, data),
                            status_code=201)

    async def block(self, request: Request) -> Response:
        data = await self.call("block", request.path_params["bid"], presented(request))
        return Response(data, media_type="application/octet-stream")

    def routes(self, guarded) -> list[Route]:
        return [
            Route("/items", guarded(self.create), methods=["POST"]),
            Route("/items/{id}", guarded(self.describe), methods=["GET"]),
            Route("/items/{id}", guarded(self.change), methods=["PATCH"]),
            Route("/items/{id}", guarded(self.delete), methods=["DELETE"]),
            Route("/items/{id}/versions", guarded(self.add_version), methods=["POST"]),
            Route("/items/{id}/versions", guarded(self.all_versions), methods=["GET"]),
            Route("/items/{id}/versions/latest", guarded(self.latest), methods=["GET"]),
            Route("/items/{id}/versions/{vid}", guarded(self.version), methods=["GET"]),  # not "latest"
            Route("/items/{id}/versions/{vid}", guarded(self.delete_version), methods=["DELETE"]),
            Route("/items/{id}/blocks", guarded(self.add_block), methods=["POST"]),
            Route("/blocks/{bid}", guarded(self.block), methods=["GET"]),
            *link_page.routes(guarded),
        ]
