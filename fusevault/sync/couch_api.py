"""The few calls of CouchDB's HTTP API that replication uses, over httpx.

Every failure (the server away, refusing, answering nonsense) becomes one
``PeerUnavailable`` with a line a person can read; the replicator backs off
and tries again.  Bytes sent and received are counted, for ``sync status``.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from typing import Any
from urllib.parse import quote

import httpx
import trio

from fusevault.encoding import JSON_LIMIT, RefusedJson, loads_untrusted
from fusevault.errors import PeerUnavailable
from fusevault.http_answers import AnswerTooLarge, answer_seconds, capped_request
from fusevault.shortening import shortened
from fusevault.sync.waited import WAITED

# A longpoll waits at most this long; pouchdb-server ignores the server-side
# timeout, so the client's read timeout ends a quiet wait.
LONGPOLL_SECONDS = 20


def _longpoll_seconds() -> int:
    """``LONGPOLL_SECONDS``, or shorter (1 s at least) where FUSEVAULT_LONGPOLL_SECONDS says so: the
    tests whose scenes wait for what a pull does once caught up (an alarm said at the first quiet
    longpoll past a while) shorten it, as FUSEVAULT_GROUP_WINDOW widens the group commit.  Anything
    else (longer, not a number) is the default."""
    return shortened("FUSEVAULT_LONGPOLL_SECONDS", LONGPOLL_SECONDS)


LONGPOLL_WAIT = _longpoll_seconds()

# Requests in flight per database: the pull's longpoll and the push.
THREADS = 2

log = logging.getLogger(__name__)


class RefusedAnswer(PeerUnavailable):
    """An answer in JSON this process refuses to parse (nested too deep, NaN, too long)."""


class CouchDatabase:
    """One peer database.  Requests run in worker threads (at most
    ``THREADS`` at a time per database): building and parsing JSON and the
    HTTP exchange stay off the mount's trio thread, which serves requests."""

    def __init__(self, url: str, auth: tuple[str, str] | None = None, *, label: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.label = label or self.url
        self._client = httpx.Client(auth=auth, timeout=30)  # thread-safe; its pool is shared
        self._limiter = trio.CapacityLimiter(THREADS)
        self.sent = 0
        self.received = 0

    async def aclose(self) -> None:
        # A request abandoned by a cancel may still run: it fails once closed.
        self._client.close()

    async def _call(self, method: str, path: str, body: object = None, *, params: dict | None = None,
                    ok_missing: bool = False, wait: float | None = None) -> Any:
        """The JSON answer (a dict; a list for _bulk_docs), or None: missing, or a longpoll that saw
        nothing."""
        call = functools.partial(self._request, method, path, body, params, ok_missing, wait)
        began = time.monotonic()
        try:
            # A cancel (unmount, `peer remove`) does not wait for a longpoll to end.
            return await trio.to_thread.run_sync(call, limiter=self._limiter, abandon_on_cancel=True)
        finally:
            if (waited := WAITED.get()) is not None:
                waited[0] += time.monotonic() - began

    def _request(self, method: str, path: str, body: object, params: dict | None, ok_missing: bool,
                 wait: float | None) -> Any:
        """``_call`` in a worker thread."""
        content = None if body is None else json.dumps(body).encode()
        self.sent += len(content or b"")
        try:
            # At most what loads_untrusted parses: a longer answer was read whole first (52t (3)).
            response = capped_request(
                self._client, method, f"{self.url}{path}", JSON_LIMIT, content=content, params=params,
                seconds=answer_seconds(JSON_LIMIT) + (wait or 0),  # a longpoll's wait, then its answer
                headers={"content-type": "application/json", "accept": "application/json"},
                timeout=httpx.Timeout(30, read=wait) if wait else httpx.USE_CLIENT_DEFAULT)
        except AnswerTooLarge as err:  # bulk_get halves its ask, as for JSON refused
            raise RefusedAnswer(f"{self.label} answered JSON that is refused: {err}") from None
        except httpx.TimeoutException:
            if wait:
                return None  # a longpoll that saw nothing happen
            raise PeerUnavailable(f"{self.label} did not answer in time") from None
        except (httpx.HTTPError, RuntimeError) as err:  # RuntimeError: closed meanwhile
            raise PeerUnavailable(f"cannot reach {self.label}: {_reason(err)}") from None
        self.received += len(response.content)
        if response.status_code == 404 and ok_missing:
            return None
        if response.status_code in (401, 403):
            raise PeerUnavailable(f"{self.label} refused the credentials (HTTP {response.status_code})")
        if response.status_code >= 400:
            raise PeerUnavailable(f"{self.label} answered HTTP {response.status_code} to {method} "
                                  f"{path.split('?')[0] or '/'}")
        try:
            return loads_untrusted(response.content)
        except RefusedJson as err:
            raise RefusedAnswer(f"{self.label} answered JSON that is refused: {err}") from None
        except ValueError:
            raise PeerUnavailable(f"{self.label} answered something that is not JSON") from None

    async def info(self) -> dict | None:
        """The database's info; None if there is no such database."""
        return await self._call("GET", "", ok_missing=True)

    async def ensure(self) -> dict:
        """The database's info, creating the database if it is not there yet."""
        info = await self._call("GET", "", ok_missing=True)
        if info is None:
            await self._call("PUT", "")
            info = await self._call("GET", "")
        return info

    async def get(self, doc_id: str) -> dict | None:
        return await self._call("GET", f"/{quote(doc_id, safe='')}", ok_missing=True)

    async def put(self, doc: dict) -> None:
        await self._call("PUT", f"/{quote(doc['_id'], safe='/')}", doc)

    async def changes(self, since: object, limit: int, *, wait: bool = False) -> tuple[list[dict], object]:
        params = {"since": json.dumps(since) if not isinstance(since, str) else since,
                  "style": "all_docs", "limit": str(limit)}
        if wait:
            params.update(feed="longpoll", timeout=str(LONGPOLL_WAIT * 1000))
            answer = await self._call("GET", "/_changes", params=params, wait=LONGPOLL_WAIT)
            if answer is None:
                return [], since
        else:
            answer = await self._call("GET", "/_changes", params=params)
        return answer["results"], answer["last_seq"]

    async def revs_diff(self, revs: dict[str, list[str]]) -> dict[str, list[str]]:
        if not revs:
            return {}
        answer = await self._call("POST", "/_revs_diff", revs)
        return {doc_id: entry["missing"] for doc_id, entry in answer.items() if entry.get("missing")}

    async def bulk_docs(self, docs: list[dict]) -> None:
        """Store revisions as they are (replication: ``new_edits: false``)."""
        if not docs:
            return
        answer = await self._call("POST", "/_bulk_docs", {"docs": docs, "new_edits": False})
        failed = [r for r in answer or [] if isinstance(r, dict) and r.get("error")]
        if failed:
            raise PeerUnavailable(f"{self.label} did not store {len(failed)} document(s): "
                                  f"{failed[0].get('reason') or failed[0]['error']}")

    async def bulk_get(self, wanted: list[tuple[str, str]], *, missing_ok: bool = False) -> list[dict]:
        """The given revisions, each with its history (``_revisions``).  ``missing_ok``: one the
        peer does not send (an ancestor's body compacted away) is left out, not an error."""
        if not wanted:
            return []
        body = {"docs": [{"id": i, "rev": r} for i, r in wanted]}
        try:
            answer = await self._call("POST", "/_bulk_get", body, params={"revs": "true"})
        except RefusedAnswer as err:
            # One hostile document must not stop the others: halves, down to the one, left out.
            if len(wanted) == 1:
                log.warning("%s: document %s revision %s refused, left out (%s)", self.label, *wanted[0], err)
                return []
            half = len(wanted) // 2
            return (await self.bulk_get(wanted[:half], missing_ok=missing_ok)
                    + await self.bulk_get(wanted[half:], missing_ok=missing_ok))
        docs = []
        for result in answer["results"]:
            for entry in result["docs"]:
                doc = entry.get("ok") if isinstance(entry, dict) else entry
                if isinstance(doc, dict):
                    docs.append(doc)
                    continue
                if doc is not None:
                    # An answer that is no document (``{"ok": 5}``) is none sent: every caller reads
                    # dicts, and one raising outside the punched records' ask's try failed every pull
                    # from this server (attack round 45b).
                    log.warning("%s: answered something that is no document for %s: left out", self.label,
                                str(result.get("id"))[:80])
                if not missing_ok:
                    raise PeerUnavailable(f"{self.label} could not send {result['id']}")
        return docs

    async def find(self, selector: dict, limit: int = 100) -> list[dict]:
        """Documents matching a Mango selector (current revisions only)."""
        answer = await self._call("POST", "/_find", {"selector": selector, "limit": limit})
        return list(answer.get("docs") or [])

    async def get_local(self, name: str) -> dict:
        return await self._call("GET", f"/_local/{name}", ok_missing=True) or {}

    async def put_local(self, name: str, body: dict) -> None:
        current = await self.get_local(name)
        doc = {**body, **({"_rev": current["_rev"]} if "_rev" in current else {})}
        await self._call("PUT", f"/_local/{name}", doc)


def _reason(err: Exception) -> str:
    text = str(err) or type(err).__name__
    if "Connection refused" in text or "connect" in type(err).__name__.lower():
        return "connection refused"
    return text.splitlines()[0][:120]
