"""The sender's list of a receiver's open requests (send.py ``Sender.requests``, round 64b (2)).

A request whose chunks were all queued is open at the relay until its receiver took them and
finished it: a receiver killed and run again (``replace``) must have it cancelled, or its queued
chunks hold the session's queue (relay/scripts.py ``PUSH``) against the new run.  The relay side of
the same hole (a refused receiver's requests dropped) is in tests/services/test_attack_64b.py.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from fusevault.transfer import send
from fusevault.transfer.offer import collect
from fusevault.transfer.send import LISTED, Sender

UID = "u" * 32


class FakeRelay:
    """The relay as the sender's client sees it: every push queued, requests open until finished."""

    def __init__(self) -> None:
        self.stopping, self.interrupt = threading.Event(), threading.Event()
        self.open: set[str] = set()
        self.cancelled: list[str] = []
        self.looked: list[str] = []
        self.answers: list[tuple[str, dict]] = []
        self.made = 0

    def clone(self) -> FakeRelay:
        return self

    def close(self) -> None:
        pass

    def interrupted(self) -> None:
        pass

    def events(self, sid: str, wait: float) -> dict:
        return {"handshakes": [], "requests": []}

    def acknowledge(self, sid: str, ack: dict) -> str:
        self.made += 1
        rid = f"r{self.made:04}"
        self.open.add(rid)
        return rid

    def push(self, rid: str, nr: int, iv: str, data: bytes, wait: float) -> bool:
        return True

    def request_open(self, rid: str) -> bool:
        self.looked.append(rid)
        return rid in self.open

    def cancel(self, rid: str) -> None:
        self.cancelled.append(rid)
        self.open.discard(rid)

    def answer(self, sid: str, uid: str, fields: dict) -> None:
        self.answers.append((uid, fields))


def _sender(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: int) -> tuple[Sender, FakeRelay]:
    folder = tmp_path / "out"
    folder.mkdir()
    for i in range(files):
        (folder / f"{i:03}.txt").write_bytes(b"x" * (100 + i))
    monkeypatch.setattr(send.crypto, "answer_request", lambda *args: (bytes(32), "pub", "mac"))
    relay = FakeRelay()
    sender = Sender(relay, "s" * 32, "ab" * 32, "code", collect([folder]), keep=False, verify=False,  # type: ignore[arg-type]
                    ask=None, say=lambda _: None)
    sender.peers[UID] = object()  # type: ignore[assignment]  # let in (its keys unused: answer_request faked)
    sender.token_of[UID] = "t"
    sender.bound.add("t")
    return sender, relay


def _asked(sender: Sender) -> list[dict]:
    return [{"user_id": UID, "filename": fid, "first": 0, "public_key": "k", "mac": "m"}
            for fid in sender.files]


def test_a_request_all_queued_is_cancelled_when_its_receiver_comes_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sender, relay = _sender(tmp_path, monkeypatch, files=1)
    try:
        sender.serve(_asked(sender))  # streamed: all its chunks queued, none taken yet
        [rid] = relay.open
        sender.replace(UID)  # the receiver's next run, with its resume token
        assert relay.cancelled == [rid], "the earlier run's request, its chunks queued, was not cancelled"
        assert (UID, {"refused": "replaced by the same receiver's next run"}) in relay.answers
    finally:
        sender.pool.shutdown(wait=True)


def test_requests_their_receiver_finished_are_unlisted_and_the_list_stays_bounded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Control: a folder of many files costs about one look a file, and the list keeps LISTED (plus
    those still open): the receiver finishes each file a little after it was queued."""
    files = 3 * LISTED
    sender, relay = _sender(tmp_path, monkeypatch, files=files)
    finished: list[str] = []

    def ack(sid: str, ack: dict) -> str:
        rid = FakeRelay.acknowledge(relay, sid, ack)
        if len(relay.open) > 2:  # the receiver finishes what is two files behind
            done = sorted(relay.open)[0]
            relay.open.discard(done)
            finished.append(done)
        return rid

    monkeypatch.setattr(relay, "acknowledge", ack)
    try:
        for request in _asked(sender):  # one file at a time, as events brings them
            sender.serve([request])
        listed = sender.requests[UID]
        assert len(listed) <= LISTED + 1
        assert relay.open <= listed  # every request still open stays listed
        assert len(relay.looked) <= files
        sender.replace(UID)
        assert set(relay.cancelled) == listed and not relay.open
        assert not set(relay.cancelled) & set(finished[:-LISTED])
    finally:
        sender.pool.shutdown(wait=True)
