"""Issue 22: a name several user or group documents claim (a store writer plants one, and chooses
the store's order) is refused by the commands with one line naming the ids (exit code 31); the id
names the one meant."""

from __future__ import annotations

from pathlib import Path

import adversary
from conftest import fusevault

from fusevault.crypto.signing import sign_doc
from fusevault.errors import NameClash
from mount.test_trust_grants import _mallory
from mount.test_trust_writes import BOB, _admin, _user


def test_a_user_name_two_documents_claim_is_refused_in_one_line_and_the_id_still_works(vault: Path) -> None:
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
    real = _user(vault, "bob")
    ident, impostor = _mallory(_user(vault, "alice")["root"])
    impostor.update(username="bob", uid=2002)
    adversary.delete_row(vault, real["_id"])  # the impostor first in the store's order
    adversary.put(vault, sign_doc(ident.user_id, ident.sign, impostor), real)
    env = {"FUSEVAULT_VAULT": str(vault)}
    shown = fusevault("user", "show", "bob", "--no-passphrase", "--json", env=env)
    assert shown.returncode == NameClash.exit_code, shown.stdout
    assert len(shown.stderr.strip().splitlines()) == 1 and "Traceback" not in shown.stderr
    assert real["_id"] in shown.stderr and ident.user_id in shown.stderr
    by_id = fusevault("user", "show", real["_id"], "--no-passphrase", "--json", env=env)
    assert by_id.returncode == 0 and real["_id"] in by_id.stdout, by_id.stderr
    _admin(vault, "user", "remove", ident.user_id)  # the way out: the impostor removed by its id
    assert fusevault("user", "show", "bob", "--no-passphrase", "--json", env=env).returncode == 0
