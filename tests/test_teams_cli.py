"""The operator's `floworch` commands for tenants: members (how a new tenant gets its first
admin) and the signing key of access tokens, run as the console script would be."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from floworch_server.auth import SigningKeys, Tokens, Unauthorized
from floworch_server.settings import Settings
from floworch_server.store import Store


def floworch(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWORCH_")}
    return subprocess.run(
        [sys.executable, "-m", "floworch_server.cli", "--data-dir", str(data_dir), *args],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


def test_an_operator_gives_a_new_tenant_its_first_admin_and_manages_its_members(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    made = floworch(data, "members", "set", "zed", "admin", "--tenant", "acme")
    assert made.returncode == 0, made.stderr
    assert "zed is admin of tenant acme" in made.stdout
    assert floworch(data, "members", "set", "yan", "viewer", "--tenant", "acme").returncode == 0

    listed = floworch(data, "members", "list", "--tenant", "acme")
    assert sorted(line.split()[:2] for line in listed.stdout.splitlines()[:-1]) == [["yan", "viewer"], ["zed", "admin"]]
    # The deployment's own tenant has none of them.
    assert floworch(data, "members", "list").stdout.strip().endswith("0 member(s) of tenant default")

    for args, words in [
        (("members", "remove", "zed", "--tenant", "acme"), "last admin of tenant 'acme'"),
        (("members", "set", "zed", "owner", "--tenant", "acme"), "role must be one of viewer, editor, admin"),
        (("members", "set", "zed", "admin", "--tenant", "Acme Corp"), "invalid tenant id 'Acme Corp'"),
        (("members", "remove", "nobody", "--tenant", "acme"), "no member with id 'nobody'"),
    ]:
        refused = floworch(data, *args)
        assert refused.returncode == 2 and words in refused.stderr, (args, refused.stderr)
    store = Store(f"sqlite:///{data / 'floworch.db'}").for_tenant("acme")
    assert {m["user"]: m["role"] for m in store.list_members()} == {"zed": "admin", "yan": "viewer"}
    assert [e["action"] for e in store.list_audit()] == ["member.add", "member.add"]
    assert store.list_audit()[0]["actor"].startswith("cli:")


def test_rotating_the_signing_key_keeps_tokens_already_out_valid(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    settings = Settings(data_dir=str(data))
    store = Store(settings.store_url)
    tokens = Tokens.from_settings(settings, store)
    before = tokens.access_token("zed", "acme")

    rotated = floworch(data, "signing-key", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    file = json.loads((data / "signing-keys.json").read_text())
    assert file["current"] in rotated.stdout and len(file["keys"]) == 2
    assert oct((data / "signing-keys.json").stat().st_mode & 0o777) == "0o600"

    # This process has not re-read the file, yet verifies both: an unknown key id makes it look again.
    fresh = Tokens(SigningKeys.for_settings(settings), store)
    assert tokens.verify(fresh.access_token("zed", "acme"))["sub"] == "zed"
    assert fresh.verify(before)["sub"] == "zed"
    assert floworch(tmp_path / "missing", "signing-key", "rotate").returncode == 2

    # Once the old key is past its grace (a token's lifetime), its tokens are refused, even by a
    # process that verified them before and remembers the answer.
    file = json.loads((data / "signing-keys.json").read_text())
    for key in file["keys"]:
        if key["retired_at"] is not None:
            key["retired_at"] -= 3600
    (data / "signing-keys.json").write_text(json.dumps(file))
    fresh.keys._load()
    with pytest.raises(Unauthorized, match="unknown or retired key"):
        fresh.verify(before)  # verified (and remembered) above
