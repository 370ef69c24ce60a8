"""In-process wake-ups of the relay's long polls: a write rings the topic they wait on."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import trio


class Bells:
    """In-process wake-ups: a write rings the topic that long polls wait on."""

    def __init__(self) -> None:
        self._events: dict[str, list] = {}

    @contextlib.contextmanager
    def listen(self, topic: str) -> Iterator[trio.Event]:
        entry = self._events.get(topic)
        if entry is None:
            entry = self._events[topic] = [trio.Event(), 0]
        entry[1] += 1
        try:
            yield entry[0]
        finally:
            entry[1] -= 1
            if entry[1] == 0 and self._events.get(topic) is entry:
                del self._events[topic]

    def ring(self, *topics: str) -> None:
        for topic in topics:
            entry = self._events.pop(topic, None)
            if entry is not None:
                entry[0].set()
