"""host_access/way.py: the folders on an export's way down, a bounded number of them open whatever
the tree, those let go opened again by name when the way comes back, at a few calls per folder
(attack round 58a (1): one of root's descriptors per folder made, EMFILE for every user); a move to
a ``Step`` costs the folders it passes, never a whole path split and compared (attack round 63c (2))."""

from __future__ import annotations

import errno
import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from fusevault.host_access.way import Step, Way, kept

FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def _descriptors(root: Path) -> int:
    """This process's descriptors of ``root`` and what is under it: the way's only.  Not every
    descriptor of the process: under xdist another test's thread left in the worker (a pipe, a socket
    closing late) moved that count while this test ran (14 against 17, seen twice under -n 2)."""
    held = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed since it was listed (the listing's own among them)
        held += target == str(root) or target.startswith(f"{root}/")
    return held


class _Walk:
    """A way from ``root`` with a counting ``enter`` (made where missing, never through a link)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.before = self.held()
        self.calls = self.most = 0
        self.way = Way(os.open(root, os.O_RDONLY | os.O_DIRECTORY), self.enter)
        self.steps: dict[str, Step] = {}  # one step per folder, as an export's tree makes them

    def enter(self, parent: int, name: str, where: Callable[[], str]) -> int:
        self.calls += 1
        try:
            os.mkdir(name, 0o700, dir_fd=parent)
        except FileExistsError:
            pass
        return os.open(name, FOLDER, dir_fd=parent)

    def held(self) -> int:
        return _descriptors(self.root)

    def step(self, rel: str) -> Step | None:
        missing = []
        while rel and rel not in self.steps:
            missing.append(rel)
            rel = rel.rpartition("/")[0]
        at = self.steps[rel] if rel else None
        for each in reversed(missing):
            at = self.steps[each] = Step(at, each.rpartition("/")[2])
        return at

    def to(self, rel: str) -> int:
        fd = self.way.to(self.step(rel)).thing
        self.most = max(self.most, self.held() - self.before)
        assert os.path.samestat(os.fstat(fd), os.stat(f"/proc/self/fd/{self.way.root}/{rel}"))
        return fd


def test_the_rule_keeps_one_folder_per_power_of_two_of_distance() -> None:
    for current in (1, 2, 7, 8, 1000, 1024, 4097):
        assert sum(kept(depth, current) for depth in range(current + 1)) <= current.bit_length() + 2
    assert kept(0, 9) and kept(9, 9) and kept(8, 9) and not kept(7, 10)


def test_a_deep_chain_down_and_back_up_holds_few_at_a_few_calls_a_folder(tmp_path: Path) -> None:
    depth = 1024
    chain = ["/".join(["d"] * level) for level in range(1, depth + 1)]
    walk = _Walk(tmp_path)
    for rel in chain + chain[::-1]:  # a file in each folder, after what is under it
        walk.to(rel)
    walk.way.close()
    for level in range(depth, 0, -1):  # deeper than shutil.rmtree (pytest's clean-up) recurses
        os.rmdir(tmp_path / chain[level - 1])
    assert walk.held() == walk.before
    assert walk.most <= depth.bit_length() + 2  # 13: the root, the current one, one per power of two
    assert walk.calls <= 8 * depth  # 5,121: down once, back up opening again from the nearest held


def test_a_folder_deep_down_with_many_folders_costs_a_few_calls_each(tmp_path: Path) -> None:
    deep = "/".join(["d"] * 127)  # every folder above it let go but a few (127: no power of two near)
    walk = _Walk(tmp_path)
    walk.to(deep)
    for n in range(300):  # back to it after each: never opened again from far above
        walk.to(f"{deep}/c{n}/x")
        walk.to(deep)
    walk.way.close()
    assert walk.calls <= 127 + 300 * 6
    assert walk.most <= 10


def test_a_folder_lent_stays_open_past_the_way_and_its_close(tmp_path: Path) -> None:
    walk = _Walk(tmp_path)
    lent = walk.way.to(walk.step("a/b")).lent()  # a file's clean-up, still to run
    walk.to("c")
    walk.way.close()
    assert walk.held() - walk.before == 1  # its own folder: nothing else of the way
    assert os.path.samestat(os.fstat(lent.thing), os.stat(tmp_path / "a/b"))
    lent.close()
    assert walk.held() == walk.before


def test_a_folder_let_go_is_opened_again_by_name_never_through_a_link(tmp_path: Path) -> None:
    elsewhere, dest = tmp_path / "elsewhere", tmp_path / "dest"
    elsewhere.mkdir()
    dest.mkdir()
    walk = _Walk(dest)
    deep = "/".join(["d"] * 7)
    walk.to(f"{deep}/x/y")  # depth 9: 0, 4, 6, 8 and 9 held; 7 let go
    os.rename(dest / deep, tmp_path / "moved")
    os.symlink(elsewhere, dest / deep)
    with pytest.raises(OSError) as refused:
        walk.to(deep)  # opened again from depth 6 (held), by name: the link is not followed
    assert refused.value.errno in (errno.ELOOP, errno.ENOTDIR)
    walk.way.close()
    assert os.listdir(elsewhere) == []
    assert walk.held() == walk.before



def test_a_deep_chain_walked_by_steps_costs_a_call_a_folder_and_joins_no_path(tmp_path: Path,
                                                                              monkeypatch) -> None:
    """An export's order: each folder, then a file in it (the way to its folder), then one beside
    it.  Handed whole paths, the way split each one and compared it from the root: work quadratic
    in the depth (attack round 63c (2)); by steps, a move costs the folders it passes."""
    def joined(self: Step) -> str:
        raise AssertionError(f"a whole path joined at depth {self.depth}")

    monkeypatch.setattr(Step, "path", joined)  # for a message only: none here
    depth = 1500
    walk = _Walk(tmp_path)
    chain: list[Step] = []
    for _ in range(depth):
        chain.append(Step(chain[-1] if chain else None, "d"))
        walk.way.to(chain[-1])  # the folder, made
        walk.way.to(chain[-1])  # a file in it
    assert walk.calls == depth  # one enter a folder: none entered again
    for step in reversed(chain):
        walk.way.to(step.up)  # a file beside it, after what is under it
    assert walk.way.depth == 0
    assert walk.calls <= 8 * depth  # back up: opened again from the nearest held (58a (1))
    walk.way.close()
    for level in range(depth, 0, -1):
        os.rmdir(tmp_path.joinpath(*["d"] * level))
    assert walk.held() == walk.before


def test_a_step_made_again_is_entered_again_never_taken_for_another(tmp_path: Path) -> None:
    """The way tells its folders by identity: a step of the same name under another folder, or made
    again for the same folder, lands where its own chain says, whatever the way held before."""
    rng = random.Random(63)
    walk = _Walk(tmp_path)
    for _ in range(400):
        rel = "/".join(rng.choice("ab") for _ in range(rng.randint(0, 9)))
        step = walk.step(rel) if rng.random() < 0.5 else (Step.of(rel) if rel else None)
        fd = walk.way.to(step).thing
        assert os.path.samestat(os.fstat(fd), os.stat(f"/proc/self/fd/{walk.way.root}/{rel}"))
        assert walk.held() - walk.before <= (9).bit_length() + 2
    walk.way.close()
    assert walk.held() == walk.before
