"""Attack round 70b (1), the receiver's end (the relay's end and the holes' steps:
tests/services/test_attack_70b.py): a receive of a session of max_files posts its requests in calls
any relay takes, the 1 MiB JSON cap of relays before the fix included."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from fusevault.relay.api import MAX_JSON
from fusevault.relay.limits import Limits
from fusevault.transfer import client as client_module
from fusevault.transfer import crypto
from fusevault.transfer.client import RelayClient
from fusevault.transfer.receive import Receiver
from fusevault.transfer.resume import ResumeState


class Asked(Exception):
    """The requests are posted: the test stops the receive at its first look for answers."""


def test_70b_1_a_receive_of_max_files_posts_its_requests_in_calls_under_the_cap(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = Limits().max_files
    posted: list[list[dict]] = []

    def relay(http: httpx.Client, method: str, path: str, cap: int, **kwargs: object) -> httpx.Response:
        if method == "POST" and path == "/sessions/s/requests":
            body = json.dumps(kwargs["json"]).encode()
            if len(body) > MAX_JSON:
                return httpx.Response(413, json={"error": f"the body is larger than {MAX_JSON} bytes"})
            posted.append(kwargs["json"]["requests"])  # type: ignore[index]
            return httpx.Response(202)
        raise Asked(path)

    monkeypatch.setattr(client_module, "capped_request", relay)
    receiver = Receiver(RelayClient("http://127.0.0.1:9", "token"), tmp_path / "out", None, False, False,
                        None, lambda _: None)
    receiver.sid = "s"
    (tmp_path / "out").mkdir()
    receiver.state = ResumeState(tmp_path / "out", "s")
    receiver.token = receiver.state.token_for_run()
    receiver.state.save()  # as the handshake does
    keys = SimpleNamespace(request_mac=lambda fid, first, public: "m" * 44)
    # The longest file ids a session may have (32 characters): the largest honest requests.
    manifest = {"files": [{"id": f"{i:032d}", "name": f"p{i}.jpg", "size": 0, "chunks": crypto.chunk_count(0)}
                          for i in range(files)]}
    try:
        with pytest.raises(Asked):
            receiver.fetch(keys, manifest)  # type: ignore[arg-type]
    finally:
        receiver.pool.shutdown()
    asked = [r["filename"] for call in posted for r in call]
    assert sorted(asked) == sorted(f["id"] for f in manifest["files"]), "every file asked, once"
    assert len(posted) > 1
