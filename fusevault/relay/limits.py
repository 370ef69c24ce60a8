"""What the relay allows (``Limits``), and how it says no: ``LimitReached`` (429) and ``Refused``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    session_ttl: int = 3600             # seconds of inactivity before a session's keys expire
    join_attempts: int = 5              # per session per address (a receiver let in resets it)
    # Per address, over all sessions (52t (5)): names it may try (404s included) and not be let in
    # at, in a window that starts at its first such name; a name whose sender lets it in stops
    # counting, so honest receivers behind one NAT spend only their typos.
    join_names: int = 16
    join_window: int = 600              # seconds
    calls_per_second: int = 400         # per address (a transfer makes about 2 per MiB each side)
    max_chunk: int = 1024 * 1024 + 1024  # bytes of ciphertext per chunk: 1 MiB of data and its seal
    max_queue: int = 8                  # chunks waiting per session, over all its requests (63b (1))
    max_files: int = 10_000             # per session
    max_receivers: int = 16             # receivers that may join one session
    # Receivers one session lets join over its whole life, refused and replaced ones counted (69a (1)):
    # a receiver's run back after an interruption is a new one, so a few times max_receivers.
    max_joins: int = 64
    max_field: int = 4096               # bytes of one key-exchange message
    # Bytes of one file request as held (a public key, a first chunk, a MAC: ~130 from send/receive), so
    # that a session's requests, max_receivers x max_files of them, hold ~80 MB at most, not 650 (69a (1)).
    max_request: int = 512
    max_manifest: int = 16 * 1024 * 1024  # bytes of the sealed list of files


class LimitReached(Exception):
    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Refused(Exception):
    """A request that is not allowed (unknown session, wrong token...): status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
