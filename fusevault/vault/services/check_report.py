"""What ``fusevault check`` found: one state per file and version, the report, its text.

Shared by the check itself (vault/services/check.py) and the repair that
works from it (vault/services/repairing.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fusevault.encoding import shown
from fusevault.vault.model.history import Version, iso_time


@dataclass
class VersionState:
    vid: str
    time: int | None = None
    size: int | None = None
    problem: str | None = None  # None: intact
    version: Version | None = field(default=None, repr=False)
    digests: dict | None = field(default=None, repr=False)  # what it signed of its own records
    epoch: int = field(default=0, repr=False)  # of the key it is sealed under (its signed document's)

    def as_dict(self) -> dict:
        return {"id": self.vid, "time": self.time, "size": self.size, "intact": self.problem is None,
                "problem": self.problem}


@dataclass
class FileState:
    fid: str
    path: str
    kind: str  # file, dir, symlink, other
    where: str  # tree, trash, shared (another owner's), lost (its document does not open)
    owner: str
    problems: list[str] = field(default_factory=list)
    versions: list[VersionState] = field(default_factory=list)
    head: str | None = None
    head_intact: bool = True
    unreferenced: int = 0  # bytes of the .vf no version uses
    unreferenced_on_disk: int = 0  # of them, what the file system stores (not punched out)
    repair: str | None = None
    sidecar_damaged: bool = False
    rev: str | None = field(default=None, repr=False)  # of the node document
    children: list[str] = field(default_factory=list, repr=False)  # of a folder whose document is lost
    # For a repair: the current manifest and DEK as the node document says.
    manifest: tuple[int, int] | None = field(default=None, repr=False)
    dek: bytes = field(default=b"", repr=False)
    epoch: int = 0
    # A lost node whose stored document says it was deleted: rebuilt, it goes to the trash.
    deleted: bool = False

    @property
    def damaged(self) -> bool:
        return bool(self.problems) or not self.head_intact or any(v.problem for v in self.versions)

    def newest_intact(self) -> VersionState | None:
        """The newest intact version readable with the node's current key."""
        for state in reversed(self.versions):
            if state.problem is None and state.version is not None and state.version.dek == self.dek:
                return state
        return None

    def as_dict(self) -> dict:
        newest = self.newest_intact()
        return {"path": self.path, "fid": self.fid, "kind": self.kind, "where": self.where,
                "damaged": self.damaged, "problems": self.problems, "head": self.head,
                "head_intact": self.head_intact,
                "versions": [v.as_dict() for v in self.versions],
                "intact_versions": [v.vid for v in self.versions if v.problem is None],
                "newest_intact": newest.vid if newest else None,
                "unreferenced_bytes": self.unreferenced, "unreferenced_on_disk": self.unreferenced_on_disk,
                "repair": self.repair}


@dataclass
class Report:
    user: str
    files: list[FileState] = field(default_factory=list)
    orphans: list[dict] = field(default_factory=list)  # .vf files no node document names
    alarms: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counts: dict = field(default_factory=lambda: {"nodes": 0, "versions": 0, "manifests": 0, "blocks": 0,
                                                  "bytes": 0})

    @property
    def damaged(self) -> list[FileState]:
        return [f for f in self.files if f.damaged]

    @property
    def clean(self) -> bool:
        return not self.damaged and not self.alarms

    def as_dict(self) -> dict:
        return {"user": self.user, "clean": self.clean, "damaged": len(self.damaged),
                "checked": self.counts,
                "unreferenced_bytes": sum(f.unreferenced for f in self.files)
                + sum(o["bytes"] for o in self.orphans),
                "unreferenced_on_disk": sum(f.unreferenced_on_disk for f in self.files)
                + sum(o["on_disk"] for o in self.orphans),
                "files": [f.as_dict() for f in self.files], "orphans": self.orphans,
                "alarms": self.alarms, "notes": self.notes}


def describe(state: FileState) -> list[str]:
    """The text lines of one damaged file."""
    # The path may hold a name from outside (a sender's, a dropper's): shown, one line of its own.
    lines = [f"{shown(state.path)}{'  (in the trash)' if state.where == 'trash' else ''}"
             f"{'  (shared with you)' if state.where == 'shared' else ''}"]
    lines += [f"  {p}" for p in state.problems]
    for v in state.versions:
        when = iso_time(v.time) if v.time is not None else "time unknown"
        lines.append(f"  version {v.vid[:12]} {when}: {'intact' if v.problem is None else v.problem}")
    if state.repair:
        lines.append(f"  repair: {state.repair}")
    return lines
