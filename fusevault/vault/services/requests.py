"""Requests about history, the trash, retention, settings, export and links, answered on a loaded Volume.

A running mount answers them on its control socket; when the vault is not
mounted the CLI loads the Volume itself and asks the same object, so both
ways behave alike.  Answers are JSON-ready dicts; a domain error becomes
``{"error": message, "code": exit code}``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import trio

from fusevault.encoding import name_to_str, str_to_name
from fusevault.errors import InvalidInput, PermissionDenied, VaultError
from fusevault.host_access import Direct, HostAccess
from fusevault.host_access.threads import HostThreads
from fusevault.links.owner import Links
from fusevault.tasks import TaskState
from fusevault.urls import http_url
from fusevault.vault.model import confirmed, retention
from fusevault.vault.model import settings as user_settings
from fusevault.vault.model.history import Version, parse_when
from fusevault.vault.model.users import USER
from fusevault.vault.services import exporting, gc, recovery, share_ops, upgrading
from fusevault.vault.services.placing import KernelCache, NoKernel, contents_changed
from fusevault.vault.volume import Volume

log = logging.getLogger(__name__)


class Requests:
    def __init__(self, volume: Volume, busy: Callable[[], set[str]] = set,
                 kernel: KernelCache | None = None,
                 settings_changed: Callable[[], None] = lambda: None,
                 host: HostAccess | None = None, host_threads: HostThreads | None = None) -> None:
        self.vol = volume
        self.host = host or Direct()  # the caller's rights on host paths (export, settings)
        self.busy = busy  # versions open right now (the .versions tree of a mount)
        self.mounted = kernel is not None
        self.kernel = kernel or NoKernel()  # what the kernel caches (mounted only)
        self.settings_changed = settings_changed  # the import service starts over
        self.names: dict[str, str] = {}
        self.links = Links(volume, self.kernel, self.host)
        # One request of this user at a time, in the order they came (trio's Lock is fair): however
        # many connections a user keeps asking, the loop and the workers serve them one by one.
        self.turn = trio.Lock()
        # His own threads for calls on host paths of his choosing (an export's destination): one that
        # never answers (a FUSE file system of his) stalls only his (host_access/threads.py, 51t).
        self.host_threads = host_threads or HostThreads()

    async def handle(self, request: dict) -> dict:
        handler = getattr(self, f"do_{request.get('cmd')}", None)
        if handler is None:
            return {"error": "unknown command", "code": 1}
        try:
            async with self.turn:
                await self.vol.flush_pending()  # what the kernel's requests changed, before it is read
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
        try:
            old_size = self.vol.resolve(to or self._path(request)).size  # what the kernel may hold
        except VaultError:
            old_size = 0  # out of the trash, or to a new name
        where, version, node = await recovery.restore(
            self.vol, self._path(request), at=at, vid=request.get("version"), to=to)
        await self._learn_authors([version] if version else [])
        await contents_changed(self.vol, self.kernel, node, old_size)
        # No version: a file deleted while still empty, back empty.
        return {"restored": name_to_str(where), "version": self._version(version) if version else None}

    async def do_trash(self, request: dict) -> dict:
        """Deleted files under "place" (default: everywhere); programs'
        temporary files only with "all" ("hidden" counts those left out)."""
        place = self._path(request, "place") if request.get("place") else b""
        entries = await self.vol.read_call(recovery.trash, self.vol)  # off the loop: a long scan
        entries = [t for t in entries if recovery.within(t.path, place)]
        shown = entries if request.get("all") else [t for t in entries if not recovery.temporary(t.path)]
        return {"trash": [t.as_dict() for t in shown], "hidden": len(entries) - len(shown)}

    async def do_gc(self, request: dict) -> dict:
        """Apply the user's own policy (or the vault's default) to their own files."""
        now = parse_when(request["as_of"]) if request.get("as_of") else time.time_ns()
        policy, source = await self.vol.store_call(retention.policy_for, self.vol.store, self.vol.key.user_id,
                                                   self.vol.trust)
        await self.vol.store_call(self.vol.trust.save)  # the newest policy seen (vault/model/freshness.py)
        report = await gc.collect(self.vol, policy, now, self.busy(), bool(request.get("dry_run")),
                                  rebuild_store=not self.mounted)
        return {"policy": policy.describe(), "policy_source": source, **report.as_dict()}

    async def do_upgrade(self, request: dict) -> dict:
        """Rewrite the user's files' manifests in the newest shape, and keep the hashes of old
        place rows (vault/services/upgrading.py)."""
        return await upgrading.upgrade(self.vol)

    async def do_retention(self, request: dict) -> dict:
        """The user's own policy ("set": change it; "follow_default": drop it),
        or with "default" the vault's default, which is shown, never set, here:
        only whoever may write the vault directory sets it (`retention --default
        --vault`), so no user of a mount decides how long others' versions stay."""
        store, me = self.vol.store, self.vol.key.user_id
        changes = request.get("set") or {}
        if request.get("default"):
            if changes or request.get("follow_default"):
                raise PermissionDenied("the vault's default retention is set by whoever may write the "
                                       "vault: `fusevault retention --default ... --vault VAULT`")
            policy = await self.vol.store_call(retention.load_default, store)
            source = retention.DEFAULT if policy is not None else retention.BUILT_IN
            return retention.answer(policy or retention.Policy(), source)
        if request.get("follow_default"):
            if changes:
                raise InvalidInput("either change your policy or follow the vault's default, not both")
            # Her current body admitted here first (as "set" does): the one dropping it
            # is then signed above it, never concurrent with it on her other devices.
            await self.vol.store_call(retention.policy_for, store, me, self.vol.trust)
            await self.vol.store_call(retention.drop_own, store, me, self.vol.trust.sign)
            await self.vol.in_thread(store.sync)
        policy, source = await self.vol.store_call(retention.policy_for, store, me, self.vol.trust)
        if changes:
            base = retention.Policy() if source in retention.UNKNOWN else policy
            policy, source = retention.changed(base, changes), retention.OWN
            await self.vol.store_call(retention.save_own, store, me, policy, self.vol.trust.sign)
            await self.vol.in_thread(store.sync)
        # At once, as `unshare` does: the policy it replaces is a replay from now (vault/model/freshness.py).
        await self.vol.store_call(self.vol.trust.save)
        return retention.answer(policy, source)

    async def do_config(self, request: dict) -> dict:
        """Show the user's settings (and what waits for confirmation on this device); with "set",
        change them (all checked, then saved together); with "confirm", apply the pending ones.
        Both confirm what they apply on this device (vault/model/confirmed.py)."""
        key, root, store = self.vol.key, str(self.vol.layout.root), self.vol.store
        doc = await self.vol.store_call(store.get, key.user_id)
        now = await trio.to_thread.run_sync(confirmed.effective, doc, key, root, self.vol.trust.alarms)
        changes = request.get("set") or {}
        if changes or request.get("confirm"):
            if not isinstance(changes, dict) or not all(isinstance(v, str) for v in changes.values()):
                raise InvalidInput("settings are given as KEY VALUE text")
            if changes:
                in_doc, wanted = confirmed.changed(now, doc, changes)
            else:
                if request.get("expect") is not None and request["expect"] != now.pending:
                    raise InvalidInput("the pending settings changed since they were shown: "
                                       "run `fusevault config confirm` again")
                wanted = confirmed.confirm(now)
                in_doc = wanted
            # Folders of his choosing: his own threads (a FUSE file system of his may never answer, 52b (1)).
            await self.host_threads.run(user_settings.check, wanted, root, self.host)
            vector = await trio.to_thread.run_sync(confirmed.next_vector, root, key)
            # Never over a body her key did not sign (round 22 (6)): `effective` said it; her kept one used.
            await self.vol.store_call(user_settings.save, store, key.user_id, in_doc, self.vol.trust.sign,
                                      vector, root, lambda body: confirmed.own_signature(body, key))
            await trio.to_thread.run_sync(confirmed.write, root, key, wanted)
            doc = await self.vol.store_call(store.get, key.user_id)
            now = await trio.to_thread.run_sync(confirmed.effective, doc, key, root, self.vol.trust.alarms)
            self.settings_changed()
        return {"settings": now.settings.as_dict(), "pending": now.pending, "signed": now.signed}

    async def do_export(self, request: dict) -> dict:
        dest = request.get("dest")
        if dest is None:
            settings = await self.vol.store_call(confirmed.load, self.vol.store, self.vol.key,
                                                 self.vol.layout.root)
            dest = settings.target_dir_to_dump
            if dest is None:
                raise InvalidInput("say where to export to, or set a default with "
                                   "`fusevault config set target_dir_to_dump FOLDER`")
        if not isinstance(dest, str) or not Path(dest).is_absolute():
            raise InvalidInput("the destination must be an absolute path")
        return await exporting.export(self.vol, self._path(request), Path(dest),
                                      overwrite=bool(request.get("overwrite")), host=self.host,
                                      threads=self.host_threads)

    # --- sharing with users and groups (fusevault/vault/services/share_ops.py)

    async def do_share(self, request: dict) -> dict:
        answer = await share_ops.share(self.vol, self._path(request), str(request.get("with", "")),
                                       str(request.get("perm", "")))
        return answer

    async def do_unshare(self, request: dict) -> dict:
        return await share_ops.unshare(self.vol, self._path(request), str(request.get("with", "")))

    async def do_shares(self, request: dict) -> dict:
        path = self._path(request) if request.get("path") else None
        return {"shares": share_ops.listing(self.vol, path)}

    # --- capability links (fusevault/links/owner.py)

    async def do_link_create(self, request: dict) -> dict:
        expires_in = request.get("expires_in")
        if expires_in is not None and not (isinstance(expires_in, (int, float)) and expires_in > 0):
            raise InvalidInput("expiry must be a positive duration")
        server = request.get("server")
        if not isinstance(server, str):
            raise InvalidInput("the link server is an http:// or https:// URL")
        http_url(server, "link server URL", "https://relay.example")
        return await self.links.create(self._path(request), server, bool(request.get("drop")), expires_in)

    async def do_link_push(self, request: dict) -> dict:
        path = self._path(request) if request.get("path") is not None else None
        return await self.links.push(str(request.get("link", "")), path)

    async def do_link_list(self, request: dict) -> dict:
        return {"links": await self.links.listing()}

    async def do_link_revoke(self, request: dict) -> dict:
        return await self.links.revoke(str(request.get("link", "")))

    async def do_link_collect(self, request: dict) -> dict:
        return await self.links.collect()


async def collect_periodically(requests: Requests, first: float, every: float,
                               task: TaskState | None = None, *,
                               task_status=trio.TASK_STATUS_IGNORED) -> None:
    """The mount's background garbage collection (started with nursery.start)."""
    task = task or TaskState("gc")
    task.set("waiting")
    task_status.started()
    await trio.sleep(first)
    while True:
        task.set("working")
        answer = await requests.handle({"cmd": "gc"})
        if "error" in answer:
            log.error("background garbage collection: %s", answer["error"])
            task.failed(answer["error"])
        else:
            task.summary = (f"{answer['versions_dropped']} old versions and {answer['files_purged']} "
                            f"deleted files removed, {answer['bytes_freed']} bytes freed")
            task.add({"runs": 1, "bytes freed": answer["bytes_freed"]})
            log.info("garbage collection: %s", task.summary)
        task.set("waiting")
        await trio.sleep(every)
