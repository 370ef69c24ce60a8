"""imports/watcher.py ``walk``: the watched folder is walked as its user, never through a link and
never into another file system (attack round 53b (4), (5): a link to a big tree, or to the mount
itself, in his watched folder froze or deadlocked a shared mount whose inotify set-up followed them)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from fusevault.host_access import Direct
from fusevault.imports import watcher
from fusevault.imports.watcher import Pending, walk, walked


class _Mounted(Direct):
    """``mounted`` (a folder's name) shows another device, as a file system mounted there does."""

    def __init__(self, mounted: str) -> None:
        super().__init__()
        self.mounted = mounted
        self.scanned: list[str] = []

    def scan_page(self, dir_fd, position):
        self.scanned.append(os.readlink(f"/proc/self/fd/{dir_fd}"))
        entries, after = super().scan_page(dir_fd, position)
        return [(name, _other_device(st) if name == self.mounted else st) for name, st in entries], after


def _other_device(st: os.stat_result) -> os.stat_result:
    return os.stat_result((*st[:2], st.st_dev + 1, *st[3:10]),
                          {"st_atime_ns": st.st_atime_ns, "st_mtime_ns": st.st_mtime_ns,
                           "st_ctime_ns": st.st_ctime_ns})


def test_a_walk_follows_no_link_and_enters_no_other_file_system(tmp_path: Path) -> None:
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "a.txt").write_text("a")
    (tmp_path / "mnt").mkdir()
    (tmp_path / "mnt" / "theirs.txt").write_text("not walked")
    (tmp_path / "big").mkdir()
    (tmp_path / "big" / "b.txt").write_text("b")
    (tmp_path / "link").symlink_to(tmp_path / "big")
    root = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        host = _Mounted("mnt")
        found = walk(host, root)
    finally:
        os.close(root)
    assert sorted(map(str, found)) == ["big/b.txt", "kept/a.txt"]  # not mnt/..., nor link/...
    assert not any(p.endswith("mnt") or p.endswith("link") for p in host.scanned)


class _Failing(Direct):
    """A scan of ``failing`` fails with ``code`` (EIO: his helper gone and started again)."""

    def __init__(self, failing: str, code: int) -> None:
        super().__init__()
        self.failing, self.code = failing, code

    def scan_page(self, dir_fd, position):
        if os.readlink(f"/proc/self/fd/{dir_fd}").endswith(self.failing):
            raise OSError(self.code, os.strerror(self.code))
        return super().scan_page(dir_fd, position)


def _walked(tmp_path: Path, code: int):
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("b")
    root = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        known = walk(Direct(), root)
        return known, walked(_Failing("sub", code), root, known)
    finally:
        os.close(root)


def test_a_walk_cut_short_by_his_helper_concludes_nothing(tmp_path: Path) -> None:
    """Review of round 53b's fix: an EIO from his helper gave a partial walk, taken as everything
    under the folder gone (the files waiting forgotten, their settling started again)."""
    with pytest.raises(OSError):
        _walked(tmp_path, errno.EIO)


def test_a_folder_he_may_not_read_is_passed_over(tmp_path: Path) -> None:
    known, (found, gone, changed) = _walked(tmp_path, errno.EACCES)
    assert sorted(map(str, known)) == ["a.txt", "sub/b.txt"]
    assert sorted(map(str, found)) == ["a.txt"] and set(map(str, gone)) == {"sub/b.txt"} and changed == {}


# Bounds of a walk (attack round 55c, (2), (3), (5)): names, depth, descriptors held, helper calls.


def _walk(tmp_path: Path, host: Direct | None = None) -> watcher.Found:
    root = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return walk(host or Direct(), root)
    finally:
        os.close(root)


def test_past_the_names_a_walk_may_keep_the_rest_is_passed_over_and_said(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watcher, "MAX_NAMES", 20)
    for number in range(50):  # his hard links, say: each a name the mount would keep
        (tmp_path / f"{number:02}.pdf").write_text("x")
    found = _walk(tmp_path)
    assert len(found) <= 20 and found.passed_over is not None and "20 names" in found.passed_over
    for number in range(45):
        (tmp_path / f"{number:02}.pdf").unlink()
    found = _walk(tmp_path)  # back under the bound: everything walked, nothing said
    assert sorted(map(str, found)) == [f"{n}.pdf" for n in range(45, 50)] and found.passed_over is None


class _SamePage(Direct):
    """A helper (his, under his control: he may ptrace it) answering the same page for ever."""

    def call(self, op, *args, fd=None):
        if op == "scan_page":
            (entries, _), _ = super().call(op, 0, fd=fd)
            return [entries, 0], None
        return super().call(op, *args, fd=fd)


def test_a_helper_answering_pages_for_ever_ends_the_walk_at_its_bound(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watcher, "MAX_NAMES", 1_000)
    (tmp_path / "a.txt").write_text("a")
    found = _walk(tmp_path, _SamePage())
    assert list(map(str, found)) == ["a.txt"] and found.passed_over is not None


def _chain(top: Path, depth: int, side: bool = False) -> list[str]:
    """``top/d/d/...`` (``depth`` folders; with ``side``, each with a folder ``s`` beside the next
    ``d``, holding a file); the files' locations."""
    made, location = [], ""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            if side:
                os.mkdir("s", dir_fd=fd)
                os.close(os.open("s/f.txt", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd))
                made.append(location + "s/f.txt")
            os.mkdir("d", dir_fd=fd)
            inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd, location = inner, location + "d/"
        os.close(os.open("deep.txt", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd))
        made.append(location + "deep.txt")
    finally:
        os.close(fd)
    return made


def test_folders_past_the_depth_bound_are_passed_over_and_said(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watcher, "MAX_DEPTH", 10)
    made = _chain(tmp_path, 30, side=True)
    found = _walk(tmp_path)
    assert sorted(map(str, found)) == sorted(loc for loc in made if loc.count("/") <= 10)
    assert found.passed_over is not None and "10 deep" in found.passed_over


class _Held(Direct):
    """The descriptors this process holds at each call of his helper, and the calls."""

    def __init__(self) -> None:
        super().__init__()
        self.base = len(os.listdir("/proc/self/fd"))
        self.most = self.calls = 0

    def call(self, op, *args, fd=None):
        self.calls += 1
        self.most = max(self.most, len(os.listdir("/proc/self/fd")) - self.base)
        return super().call(op, *args, fd=fd)


def test_a_deep_walk_holds_few_descriptors_and_still_costs_calls_in_proportion(tmp_path: Path) -> None:
    depth = 120  # folders beside each one: the walk comes back up to them, its descriptors let go
    made = _chain(tmp_path, depth, side=True)
    host = _Held()
    found = _walk(tmp_path, host)
    assert sorted(map(str, found)) == sorted(made) and found.passed_over is None
    assert host.most <= depth // watcher.SPAN + 4, f"{host.most} descriptors held at once"
    folders = 2 * depth
    assert host.calls <= (watcher.SPAN + 3) * (folders + 1), f"{host.calls} calls for {folders} folders"


def test_a_folder_swapped_for_a_link_on_the_way_back_up_leads_nowhere(tmp_path: Path) -> None:
    watched = tmp_path / "watched"
    watched.mkdir()
    made = _chain(watched, 20, side=True)
    (tmp_path / "elsewhere" / "s").mkdir(parents=True)
    (tmp_path / "elsewhere" / "s" / "secret.txt").write_text("not his to import from here")

    class _Swapping(Direct):
        swapped = False

        def call(self, op, *args, fd=None):
            answer = super().call(op, *args, fd=fd)
            if op == "scan_page" and not self.swapped and os.readlink(f"/proc/self/fd/{fd}").endswith(
                    "/d" * 19):  # deep down: a folder on the way back up is swapped for a link
                self.swapped = True
                os.rename(watched / "d" / "d" / "d", tmp_path / "moved")
                os.symlink(tmp_path / "elsewhere", watched / "d" / "d" / "d")
            return answer

    host = _Swapping()
    found = _walk(watched, host)
    assert host.swapped
    paths = set(map(str, found))
    assert not any("secret" in loc for loc in paths)
    assert {"s/f.txt", "d/s/f.txt", "d/d/s/f.txt"} <= paths <= set(made)
    assert "d/d/d/s/f.txt" not in paths  # its folder was let go, and is a link now: passed over


class _Looked(dict):
    looked = 0

    def items(self):
        for item in super().items():
            _Looked.looked += 1
            yield item

    def __iter__(self):
        for key in super().__iter__():
            _Looked.looked += 1
            yield key


def test_a_few_files_gone_cost_the_loop_what_is_gone_not_every_pending_file() -> None:
    pending = Pending(2.0)
    pending.items = _Looked()
    for number in range(50_000):
        pending.seen(f"{number:05}.pdf", watcher.UNSEEN, 0.0)
    _Looked.looked = 0
    pending.drop({"00001.pdf", "00002.pdf", "gone.pdf"})  # a walk's ``gone``, on the loop
    assert _Looked.looked <= 10 and "00001.pdf" not in pending.items and len(pending.items) == 49_998


def test_a_tick_takes_a_bounded_number_of_due_files_and_leaves_the_rest_due() -> None:
    pending = Pending(1.0)
    for number in range(3 * watcher.MAX_DUE):
        pending.seen(f"{number:05}.pdf", watcher.UNSEEN, 0.0)
    first = pending.due(5.0)
    assert len(first) == watcher.MAX_DUE and pending.due(5.0) == first  # due until settled
    for location in first:
        assert pending.settled(location, watcher.UNSEEN, 5.0)
    assert len(pending.due(5.0)) == watcher.MAX_DUE and not set(pending.due(5.0)) & set(first)


def test_a_file_seen_changing_again_and_again_keeps_the_heap_in_proportion() -> None:
    pending = Pending(1.0)
    for now in range(100_000):  # he touches it at every walk, for a day
        pending.seen("busy.log", watcher.UNSEEN, float(now))
    assert len(pending.items) == 1 and len(pending._times) <= 2 + 1024
    assert pending.due(100_000.0) == ["busy.log"]


# Bounds in bytes (attack round 58c (1), (2), (3)): what a walk and a tick keep, and a tick's calls.


def test_past_the_bytes_of_names_a_walk_may_keep_the_rest_is_passed_over_and_said(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watcher, "MAX_NAME_BYTES", 20 * 300)  # 20 names of 250 bytes, and their objects
    for number in range(50):
        (tmp_path / f"{number:02}{'x' * 248}.pdf").write_text("x")
    found = _walk(tmp_path)
    assert 0 < len(found) <= 20 and found.passed_over is not None and "MiB of names" in found.passed_over
    for number in range(45):
        (tmp_path / f"{number:02}{'x' * 248}.pdf").unlink()
    found = _walk(tmp_path)  # back under the bound: everything walked, nothing said, nothing deleted
    assert len(found) == 5 and found.passed_over is None


def test_a_walk_takes_again_the_folders_of_the_walk_before(tmp_path: Path) -> None:
    made = _chain(tmp_path, 40, side=True)
    root = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        known = walk(Direct(), root)
        found, gone, changed = walked(Direct(), root, known)
    finally:
        os.close(root)
    assert sorted(map(str, found)) == sorted(made) and not gone and not changed
    before = {str(location): location.place for location in known}
    assert all(location.place is before[str(location)] for location in found)  # shared, not copied


def test_a_due_location_now_a_folder_is_no_file_and_the_next_walk_finds_its_files(tmp_path: Path) -> None:
    (tmp_path / "p0").mkdir()
    (tmp_path / "p0" / "inside.txt").write_text("his, to import")
    root = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert watcher.stamps(Direct(), root, ["p0"]) == {"p0": None}  # not walked here (58c (3))
        assert [str(location) for location in walk(Direct(), root)] == ["p0/inside.txt"]
    finally:
        os.close(root)


def test_the_stamps_of_files_in_many_deep_folders_cost_a_call_per_file_and_per_folder(tmp_path: Path) -> None:
    depth, folders = 40, 30
    _chain(tmp_path, depth)
    bottom = tmp_path.joinpath(*["d"] * depth)
    for number in range(folders):
        (bottom / f"f{number}").mkdir()
        for name in ("a.txt", "b.txt"):
            (bottom / f"f{number}" / name).write_text("x")
    (tmp_path / "top.txt").write_text("x")
    root = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        due = list(walk(Direct(), root))
        host = _Held()
        found = watcher.stamps(host, root, due)
    finally:
        os.close(root)
    assert len(found) == len(due) == 2 * folders + 2 and all(found.values())
    print(f"{host.calls} calls, {host.most} descriptors held, for {len(due)} files")
    # Seen before: 2,583 (each file looked at from the watched folder, a call a folder on its way).
    assert host.calls <= len(due) + depth + (watcher.SPAN + 1) * folders
    assert host.most <= depth // watcher.SPAN + 4


def test_control_a_location_that_leaves_the_watched_folder_leads_nowhere(tmp_path: Path) -> None:
    (tmp_path / "watched" / "sub").mkdir(parents=True)
    (tmp_path / "outside.txt").write_text("not his to import from here")
    root = os.open(tmp_path / "watched", os.O_RDONLY | os.O_DIRECTORY)
    try:
        found = watcher.stamps(Direct(), root, ["../outside.txt", "sub/../../outside.txt", "sub/..", "/x"])
    finally:
        os.close(root)
    assert set(found.values()) == {None}
