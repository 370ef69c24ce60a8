"""What the background tasks of a mount are doing, for ``fusevault status`` and the log."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from fusevault.encoding import cut, one_line

ERROR_LIMIT = 4_000  # characters of the last error kept (a name from outside may be ~390 KB shown: 58c (5))


@dataclass
class TaskState:
    name: str
    state: str = "starting"  # starting, idle, working, off, waiting after an error
    summary: str = ""  # the last batch or run, as one line
    last_error: str | None = None
    last_error_at: float | None = None
    since: float = field(default_factory=time.time)
    counts: dict[str, int] = field(default_factory=dict)

    def set(self, state: str) -> None:
        if state != self.state:
            self.state, self.since = state, time.time()

    def failed(self, message: str) -> None:
        # One line (``fusevault status`` shows it as one): an error names what failed, often a
        # name from outside, whose line break would write a line of its own (attack round 24b (2)).
        # Cut (its ends kept, its length said), as a log line is.
        self.last_error, self.last_error_at = cut(one_line(message), ERROR_LIMIT), time.time()

    def add(self, counts: dict[str, int]) -> None:
        for key, n in counts.items():
            self.counts[key] = self.counts.get(key, 0) + n

    def as_dict(self) -> dict:
        return asdict(self)


class Tasks(dict[str, TaskState]):
    def get_state(self, name: str) -> TaskState:
        if name not in self:
            self[name] = TaskState(name)
        return self[name]

    def as_dict(self) -> dict:
        return {name: task.as_dict() for name, task in self.items()}
