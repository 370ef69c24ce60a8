"""Requests about history, the trash and retention, answered on a loaded Volume.

A running mount answers them on its control socket; when the vault is not
mounted the CLI loads the Volume itself and asks the same object, so both
ways behave alike.  Answers are JSON-ready dicts; a domain error becomes
``{"error": message, "code": exit code}``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable

import trio

from fusevault.encoding import name_to_str, str_to_name
from fusevault.errors import InvalidInput, VaultError
from fusevault.vault import gc, recovery, retention
from fusevault.vault.history import Version, parse_when
from fusevault.vault.users import USER
from fusevault.vault.volume import Volume

log = logging.getLogger(__name__)

Invalidate = Callable[[int], Awaitable[None]]


class Requests:
    def __init__(self, volume: Volume, busy: Callable[[], set[str]] = set,
                 invalidate: Invalidate | None = None) -> None:
        self.vol = volume
        self.busy = busy  # versions open right now (the .versions tree of a mount)
        self.invalidate = invalidate  # drop the kernel's cache of an inode (mounted only)
        self.names: dict[str, str] = {}

    async def handle(self, request: dict) -> dict:
        handler = getattr(self, f"do_{request.get('cmd')}", None)
        if handler is None:
            return {"error": "unknown command", "code": 1}
        try:
            return await handler(request)
        except VaultError as err:
            return {"error": str(err), "code": err.exit_code}
        except Exception:
            # A bug in one request must not end the mount that answers it.
            log.exception("request %s failed", request.get("cmd"))
            return {"error": "internal error: see the mount's log", "code": 1}

    async def _learn_authors(self, versions: list[Version]) -> None:
        for user_id in {v.author for v in versions} - self.names.keys():
            doc = await self.vol.store_call(self.vol.store.get, user_id)
            self.names[user_id] = doc.get("username", user_id) if doc and doc.get("type") == USER else user_id

    def _version(self, version: Version) -> dict:
        return {"id": version.vid, "time": version.time, "size": version.size,
                "author": self.names.get(version.author, version.author), "path": version.path}

    @staticmethod
    def _path(request: dict, key: str = "path") -> bytes:
        path = request.get(key)
        if not isinstance(path, str):
            raise InvalidInput(f"missing {key}")
        return str_to_name(path).strip(b"/")

    async def do_history(self, request: dict) -> dict:
        versions = await recovery.history(self.vol, self._path(request))
        await self._learn_authors(versions)
        return {"versions": [self._version(v) for v in versions]}

    async def do_restore(self, request: dict) -> dict:
        at = parse_when(request["at"]) if request.get("at") else None
        to = self._path(request, "to") if request.get("to") else None
        where, version, node = await recovery.restore(
            self.vol, self._path(request), at=at, vid=request.get("version"), to=to)
        await self._learn_authors([version])
        if self.invalidate is not None:
            await self.invalidate(node.ino)
        return {"restored": name_to_str(where), "version": self._version(version)}

    async def do_trash(self, request: dict) -> dict:
        entries = await self.vol.store_call(recovery.trash, self.vol)
        return {"trash": [t.as_dict() for t in entries]}

    async def do_gc(self, request: dict) -> dict:
        now = parse_when(request["as_of"]) if request.get("as_of") else time.time_ns()
        policy = await self.vol.store_call(retention.load_policy, self.vol.store)
        report = await gc.collect(self.vol, policy, now, self.busy(), bool(request.get("dry_run")))
        return {"policy": policy.describe(), **report.as_dict()}

    async def do_retention(self, request: dict) -> dict:
        policy = await self.vol.store_call(retention.load_policy, self.vol.store)
        changes = request.get("set") or {}
        if changes:
            try:
                policy = dataclasses.replace(policy, **changes)
            except TypeError:
                raise InvalidInput(f"unknown retention settings: {sorted(changes)}") from None
            await self.vol.store_call(retention.save_policy, self.vol.store, policy)
        return {"policy": dataclasses.asdict(policy), "text": policy.describe()}


async def collect_periodically(requests: Requests, first: float, every: float, *,
                               task_status=trio.TASK_STATUS_IGNORED) -> None:
    """The mount's background garbage collection (started with nursery.start)."""
    task_status.started()
    await trio.sleep(first)
    while True:
        answer = await requests.handle({"cmd": "gc"})
        if "error" in answer:
            log.error("background garbage collection: %s", answer["error"])
        else:
            log.info("garbage collection: %d versions and %d deleted files removed, %d bytes freed",
                     answer["versions_dropped"], answer["files_purged"], answer["bytes_freed"])
        await trio.sleep(every)
