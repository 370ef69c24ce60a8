"""The output folder of ``fusevault receive``: what the sender names lands inside it, never outside.

Names come from the sender and are checked here: no absolute path, no ``..``,
no folder made through a symbolic link, and a symlink is kept only when it
stays inside its folder, as text and, with every link in place, resolved.
The first part of every name (the file or folder the sender offered) must be
new in the output folder (``check_new_tops``): a session only ever makes new
top-level entries, never writes into a folder that was there before (her
``~/.ssh`` when the output folder is her home).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path

from fusevault import mounts
from fusevault.encoding import shown
from fusevault.errors import AlreadyExists, CorruptData, InvalidInput, PermissionDenied, ReservedName
from fusevault.transfer.offer import link_stays_inside
from fusevault.vault.format.atomic import fsync_dir
from fusevault.vault.model import names

log = logging.getLogger("fusevault.transfer.receive")  # its warnings are the receive's


def safe_target(output: Path, name: str) -> Path:
    """Where ``name`` (from the sender) lands inside ``output``; never outside it."""
    parts = name.split("/") if isinstance(name, str) else [""]
    if not name or name.startswith("/") or "\0" in name or any(
            p in ("", ".", "..") or len(p.encode("utf-8", "surrogateescape")) > 255 for p in parts):
        raise CorruptData(f"the sender offered an unsafe file name: {name!r}")
    return output.joinpath(*parts)


def top_of(name: str) -> str:
    """The file or folder the sender offered that ``name`` (checked by ``safe_target``) is in."""
    return name.split("/", 1)[0]


def check_new_tops(output: Path, names: list[str], ours: set[str], hint: str) -> list[str]:
    """The top-level names of ``names`` that are not ``ours`` (made by an earlier run of the same
    session), each refused if anything is there already: a session writes only into what it made.
    ``hint`` ends the refusal: what she can do about it."""
    new = sorted({top_of(name) for name in names} - ours)
    for top in new:
        if os.path.lexists(output / top):
            raise AlreadyExists(f"{shown(str(output / top))} exists{hint}")
    return new


def away_from_views(output: Path, offered: list[str]) -> dict[str, str]:
    """The sender's names (checked by ``safe_target``) that must take another name: into the root of
    a fusevault mount, a top name the root keeps for a view (``.versions``, ``shared``, ``groups``)
    arrives as ``NAME (2)`` (vault/model/names.py ``away_from_reserved``), as drops and imports do.
    Received as it was, a stranger's ``shared/bob/contract.txt`` stood where bob's share shows, a
    real folder of hers (attack round 53t (5)).  One stable answer per name: a resumed run finds
    again the tops it claimed.  Refused (ReservedName) when the new name is one the sender offers
    too."""
    if os.path.realpath(output) not in mounts.fusevault_mounts():
        return {}
    renamed = {name: os.fsdecode(names.away_from_reserved(os.fsencode(name))) for name in offered}
    renamed = {name: new for name, new in renamed.items() if new != name}
    kept = {top_of(name) for name in offered if name not in renamed}
    clashes = {top_of(new) for new in renamed.values()} & kept
    if clashes:
        raise ReservedName(f"the sender offers both {shown(min(clashes))} and a name the root of "
                           "the drive keeps for a view, which would arrive under it: receive into a "
                           "folder of the drive (--output)")
    return renamed


def inside(output: Path, path: Path) -> bool:
    """Whether ``path``, symlinks resolved, is ``output`` or under it."""
    root = os.path.realpath(output)
    real = os.path.realpath(path)
    return real == root or real.startswith(root.rstrip("/") + "/")


def check_output(output: Path) -> None:
    """Refuse, before anything is asked or joined, a folder files could not be written to.
    One that does not exist yet is made later, as ``mkdir -p`` would."""
    existing = output
    while not os.path.lexists(existing) and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise InvalidInput(f"{existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        doing = "write into" if existing == output else "make"
        raise PermissionDenied(f"cannot {doing} {output}: {existing} is not writable for you")


def mkdir_inside(output: Path, folder: Path) -> list[Path]:
    """``mkdir -p`` of ``folder`` under ``output``, following no symbolic link
    on the way: a folder of the sender's list is a real folder or nothing.
    Returns the folders it made (only those may be given the sender's mode)."""
    try:
        parts = folder.relative_to(output).parts
    except ValueError:
        raise CorruptData(f"{shown(str(folder))} would land outside {shown(str(output))}") from None
    here, made = output, []
    for part in parts:
        here = here / part
        try:
            os.mkdir(here, 0o777)  # less the umask, as mkdir -p
            made.append(here)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(here).st_mode):  # a symlink or a file: never followed
                raise CorruptData("the sender's list has a file or link where a folder is: "
                                  f"{shown(str(here))}") from None
    return made


def resolves_inside(top: Path, path: Path) -> bool:
    """Whether ``path``, every link on the way followed, is an existing place under ``top``."""
    try:
        real = os.path.realpath(path, strict=True)
    except OSError:  # dangling, or a loop
        return False
    return inside(top, Path(real))


def folder_tops(names: list[str]) -> set[str]:
    """The top-level names of ``names`` that are folders (something of the list is inside them)."""
    return {top_of(name) for name in names if "/" in name}


def _check_claimed_top(path: Path) -> bool:
    """Whether the claimed top ``path`` is there, refused unless it can be the folder an earlier
    run of hers made: a real folder (lstat: never through a link) of her own (st_uid), with no
    write bit for group or others her umask would have taken away.  Another local user may make a
    folder at a claimed name in a shared output folder while the session is paused (attack round
    25b, hole 3); her files must never land in his folder."""
    try:
        held = os.lstat(path)
    except FileNotFoundError:
        return False
    if (not stat.S_ISDIR(held.st_mode) or held.st_uid != os.geteuid()
            or held.st_mode & 0o022 & current_umask()):
        raise AlreadyExists(f"{shown(str(path))} is not the folder an earlier run of this receive made "
                            "(not a folder of yours, or writable by others): not used; move it away "
                            "or use --output")
    return True


def make_top_folders(output: Path, tops: set[str], claimed: set[str]) -> list[Path]:
    """Make every top folder of the session now, before any file arrives (so a run cut off leaves
    no claimed name absent for someone else to take); one an earlier run claimed is taken only if it
    is hers (``_check_claimed_top``).  ``mkdir`` never takes what is there: EEXIST is a refusal.
    Returns the folders made (removed, while empty, if the session is given up)."""
    made: list[Path] = []
    try:
        for top in sorted(tops):
            path = output / top
            if top in claimed and _check_claimed_top(path):
                continue
            try:
                os.mkdir(path, 0o777)  # less the umask, as mkdir -p
            except FileExistsError:
                raise AlreadyExists(f"{shown(str(path))} appeared while receiving: not used; "
                                    "move it away or use --output") from None
            made.append(path)
    except BaseException:
        remove_empty(made)
        raise
    if made:
        fsync_dir(output)
    return made


def remove_empty(folders: list[Path]) -> None:
    """Remove the folders of ``folders`` that are still empty (what a given-up run made)."""
    for folder in reversed(folders):
        try:
            os.rmdir(folder)
        except OSError:
            pass  # not empty (or gone): kept


_Link = tuple[str, Path, str]  # a link's name (the sender's), where it lands, its target


def _links_to_make(output: Path, links: list[dict]) -> tuple[list[_Link], list[tuple[str, Path]]]:
    """Every link of the list checked before any is made: the ones to make, and the ones an earlier
    run made (to check again).  Anything at a link's name -- a folder the session's files made, a
    file, another link -- is a refusal now, before a link exists (attack round 25b, hole 6)."""
    todo, earlier = [], []
    for link in links:
        name, target = link["name"], link["target"]
        path = safe_target(output, name)
        if not link_stays_inside(name, target):
            log.warning("did not make %s: a symlink to %s, outside its folder", shown(name), shown(target))
            continue
        if path.is_symlink() and os.readlink(path) == target:
            earlier.append((name, path))  # an earlier run made it: what it resolves to may have changed
        elif os.path.lexists(path):
            raise CorruptData(f"the sender's list has a symlink where a file or folder is: {shown(name)}")
        else:
            todo.append((name, path, target))
    return todo, earlier


def _make_all(output: Path, todo: list[_Link]) -> list[_Link]:
    """Make the links of ``todo``; if one is refused, remove those made before it: a half-made set
    is never left unchecked (one alone may lead out through another)."""
    made: list[_Link] = []
    try:
        for name, path, target in todo:
            mkdir_inside(output, path.parent)
            try:
                os.symlink(target, path)
            except FileExistsError:
                raise CorruptData("the sender's list has a symlink where a folder is: "
                                  f"{shown(name)}") from None
            made.append((name, path, target))
    except BaseException:
        for _, path, _ in made:
            path.unlink(missing_ok=True)
        raise
    return made


def _drop_leading_out(output: Path, kept: list[tuple[str, Path]]) -> set[Path]:
    """Remove every link of ``kept`` that, with every link in place, does not lead inside its
    folder; again after each removal, since a link may have led inside only through a removed one.
    Returns the links removed."""
    dropped: set[Path] = set()
    changed = True
    while changed:
        changed = False
        for name, path in kept:
            if path in dropped or resolves_inside(output / top_of(name), path):
                continue
            path.unlink(missing_ok=True)
            dropped.add(path)
            changed = True
            log.warning("did not keep %s: through other symlinks it leads outside its folder", shown(name))
    return dropped


def make_links(output: Path, links: list[dict], say: Callable[[str], None]) -> None:
    """The symlinks of the sender's list, each only if it stays inside its folder."""
    todo, earlier = _links_to_make(output, links)
    made = _make_all(output, todo)
    # Checked again with every link in place, the earlier run's too: a chain of them must not lead
    # out either, and a link must lead somewhere now: a dangling one could be given a meaning by
    # links a later session adds (d/.. climbs wherever d points).
    dropped = _drop_leading_out(output, earlier + [(name, path) for name, path, _ in made])
    for _, path, target in made:
        if path not in dropped:
            say(f"received {shown(str(path))} -> {shown(target)}")
    if made:
        fsync_dir(output)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

