"""Envelope encryption of stored secrets: each secret has its own AES-256-GCM data key, wrapped by
a key-encryption key (KEK) from the local key file or AWS KMS; `floworch keys rotate` re-wraps
every stored data key under a new KEK while everything keeps decrypting, and `floworch keys
retire` removes an old KEK only once nothing uses it.

KMS is the real boto3 client against moto's KMS server on 127.0.0.1 (tests named so). Rotation
runs the real `floworch` command in a subprocess, over the SQLite store and the real PostgreSQL."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from floworch_server import keys
from floworch_server.keys import KeyRing, SecretError
from floworch_server.secrets import SecretBox
from floworch_server.settings import Settings
from floworch_server.store import Store

ROOT = Path(__file__).resolve().parents[1]


def box_of(settings: Settings, **ring_options) -> SecretBox:
    """A box as a freshly started process would have it (nothing cached)."""
    return SecretBox.from_settings(settings, keyring=KeyRing(settings, **ring_options))


def floworch(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The `floworch` command, as an operator runs it."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWORCH_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "floworch_server.cli", *args], capture_output=True, text=True, env=full_env, timeout=120
    )


def blob(token: bytes) -> dict:
    return json.loads(token)


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=str(tmp_path / "data"))


# ------------------------------------------------------------------ the format
def test_a_secret_round_trips_and_every_secret_gets_its_own_data_key_and_nonce(settings):
    box = box_of(settings)
    value = {"access_token": "xoxb-" + uuid.uuid4().hex}
    first, second = box.encrypt(value), box.encrypt(value)
    assert box.decrypt(first, "secret of integration 'slack'") == value == box.decrypt(second)
    one, two = blob(first), blob(second)
    assert set(one) == {"v", "alg", "kek", "dek", "iv", "ct"} and (one["v"], one["alg"]) == (1, "A256GCM")
    assert one["kek"] == two["kek"] and one["kek"].startswith("local-")
    assert one["dek"] != two["dek"] and one["iv"] != two["iv"] and one["ct"] != two["ct"]
    assert len(base64.b64decode(one["iv"])) == 12
    # The ciphertext is the JSON value plus a 16-byte tag: the value itself is nowhere in the blob.
    assert len(base64.b64decode(one["ct"])) == len(json.dumps(value)) + 16
    assert value["access_token"].encode() not in first


def test_the_key_file_is_made_once_with_owner_only_permissions_even_by_racing_processes(settings):
    script = textwrap.dedent(
        f"""
        import sys
        from floworch_server.secrets import box_for
        from floworch_server.settings import Settings
        sys.stdout.write(box_for(Settings(data_dir={settings.data_dir!r})).encrypt({{"n": int(sys.argv[1])}}).decode())
        """
    )
    racers = [
        subprocess.Popen([sys.executable, "-c", script, str(n)], stdout=subprocess.PIPE, text=True) for n in range(4)
    ]
    tokens = [racer.communicate(timeout=60)[0].encode() for racer in racers]
    key_file = settings.data_path / "keys.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    [kek] = json.loads(key_file.read_text())["keys"]
    # Whoever won, every process wrapped with the one KEK that was kept, so all decrypt here.
    assert {blob(t)["kek"] for t in tokens} == {kek["id"]}
    assert [box_of(settings).decrypt(t) for t in tokens] == [{"n": n} for n in range(4)]
    assert sorted(p.name for p in settings.data_path.iterdir()) == ["keys.json"]  # no temporary file left behind


# ------------------------------------------------------------------ attacks and damage
def test_every_altered_byte_gives_a_clear_error_or_the_original_never_garbage(settings):
    box = box_of(settings)
    token = box.encrypt({"token": "s3cret"})
    outcomes = set()
    for i in range(len(token)):
        altered = token[:i] + bytes([token[i] ^ 0x01]) + token[i + 1 :]
        try:
            value = box.decrypt(altered, "secret of integration 'crm'")
        except SecretError as exc:
            assert "secret of integration 'crm'" in str(exc)
            outcomes.add("refused")
        else:
            # Only a base64 padding bit that decodes to the very same bytes can go unnoticed.
            assert value == {"token": "s3cret"}, (i, altered)
    assert outcomes == {"refused"}


def test_a_tampered_ciphertext_fails_authentication_naming_what_was_decrypted(settings):
    box = box_of(settings)
    fields = blob(box.encrypt({"token": "abc"}))
    ct = bytearray(base64.b64decode(fields["ct"]))
    ct[0] ^= 0xFF
    fields["ct"] = base64.b64encode(bytes(ct)).decode()
    with pytest.raises(
        SecretError, match=r"stored webhook secret: it was altered or damaged \(authentication failed\)"
    ):
        box.decrypt(json.dumps(fields).encode(), "webhook secret")


def test_a_data_key_moved_from_another_secret_does_not_decrypt_this_one(settings):
    box = box_of(settings)
    mine, theirs = blob(box.encrypt({"token": "mine"})), blob(box.encrypt({"token": "theirs"}))
    with pytest.raises(SecretError, match="secret of integration 'a': it was altered or damaged"):
        box.decrypt(json.dumps({**mine, "dek": theirs["dek"]}).encode(), "secret of integration 'a'")


@pytest.mark.parametrize("cut", [1, 20, 60, -40, -2])
def test_a_truncated_blob_is_reported_as_damaged(settings, cut):
    token = box_of(settings).encrypt({"token": "abc"})
    with pytest.raises(SecretError, match=r"cannot decrypt the stored secret of integration 'x': it is damaged"):
        box_of(settings).decrypt(token[:cut], "secret of integration 'x'")


def test_a_secret_of_another_deployment_names_the_unknown_kek_and_the_key_file(settings, tmp_path):
    other = Settings(data_dir=str(tmp_path / "elsewhere"))
    token = box_of(other).encrypt({"token": "abc"})
    box_of(settings).encrypt({"made": "the key file"})
    kek = blob(token)["kek"]
    with pytest.raises(
        SecretError, match=f"wrapped by key-encryption key '{kek}', which is not in {settings.data_path / 'keys.json'}"
    ):
        box_of(settings).decrypt(token, "secret of integration 'x'")


def test_a_wrong_kek_of_the_same_id_is_detected_not_used(settings):
    token = box_of(settings).encrypt({"token": "abc"})
    key_file = settings.data_path / "keys.json"
    data = json.loads(key_file.read_text())
    data["keys"][0]["key"] = base64.b64encode(os.urandom(32)).decode()  # a restored backup of another install
    key_file.write_text(json.dumps(data))
    with pytest.raises(
        SecretError, match=f"its data key does not unwrap with key-encryption key '{blob(token)['kek']}'"
    ):
        box_of(settings).decrypt(token, "secret of integration 'x'")


# ------------------------------------------------------------------ tokens of earlier versions
def test_a_fernet_token_of_an_existing_install_still_decrypts_from_its_key_file(settings):
    settings.data_path.mkdir(parents=True)
    key = Fernet.generate_key()
    (settings.data_path / "secret.key").write_bytes(key)
    legacy = Fernet(key).encrypt(json.dumps({"access_token": "old"}).encode())
    box = box_of(settings)
    assert box.decrypt(legacy, "secret of integration 'old'") == {"access_token": "old"}
    assert box.kek_of(legacy) == keys.LEGACY_ID
    # New secrets are envelopes, not Fernet tokens.
    assert blob(box.encrypt({"access_token": "new"}))["kek"].startswith("local-")


def test_a_fernet_token_decrypts_with_floworch_secret_key_and_fails_clearly_without_it(settings):
    key = Fernet.generate_key()
    legacy = Fernet(key).encrypt(json.dumps("whsec_1").encode())
    assert box_of(settings.replace(secret_key=key.decode())).decrypt(legacy, "webhook secret") == "whsec_1"
    with pytest.raises(SecretError, match=r"webhook secret: it is in the old Fernet format and its key is gone"):
        box_of(settings).decrypt(legacy, "webhook secret")
    with pytest.raises(
        SecretError, match=r"webhook secret: it is neither an encrypted secret of this version nor an old Fernet token"
    ):
        box_of(settings.replace(secret_key=Fernet.generate_key().decode())).decrypt(legacy, "webhook secret")


# ------------------------------------------------------------------ rotation
def put_integration(store: Store, tenant: str, name: str, token: bytes) -> None:
    store.for_tenant(tenant).put_integration(
        name=name, provider="slack", secret=token, settings=None, created_by="t", tenant=tenant
    )


def put_webhook(store: Store, tenant: str, token: bytes) -> str:
    scoped = store.for_tenant(tenant)
    doc = {"version": 1, "meta": {"id": str(uuid.uuid4()), "name": "hooked"}, "nodes": [], "edges": []}
    workflow = scoped.create_workflow(name="hooked", document=doc, created_by="t", tenant=tenant)
    scoped.replace_triggers(
        workflow["id"], [{"node_id": "hook", "kind": "webhook", "key": uuid.uuid4().hex, "version": 1, "secret": token}]
    )
    return workflow["id"]


def stored(store: Store) -> dict[tuple[str, str], bytes]:
    """(tenant, label) -> encrypted bytes of every stored secret, over every tenant."""
    return {(t, row["label"]): row["secret"] for t, _scoped, row in keys._rows(store)}


@pytest.fixture
def deployment(settings, store_url):
    """A deployment's data directory and store with secrets of two tenants: integrations, a
    webhook signing secret, and one Fernet token left by an earlier version."""
    legacy_key = Fernet.generate_key()
    settings = settings.replace(database_url=store_url, secret_key=legacy_key.decode())
    box = box_of(settings)
    store = Store(store_url)
    plain = {}
    for tenant in ("acme", "globex"):
        for name in ("slack", "crm"):
            plain[(tenant, f"secret of integration '{name}'")] = {"token": f"{tenant}-{name}"}
            put_integration(store, tenant, name, box.encrypt({"token": f"{tenant}-{name}"}))
        workflow = put_webhook(store, tenant, box.encrypt(f"whsec_{tenant}"))
        plain[(tenant, f"webhook secret of flow {workflow} node 'hook'")] = f"whsec_{tenant}"
    put_integration(store, "acme", "legacy", Fernet(legacy_key).encrypt(json.dumps({"token": "from-v1"}).encode()))
    plain[("acme", "secret of integration 'legacy'")] = {"token": "from-v1"}
    env = {
        "FLOWORCH_DATA_DIR": settings.data_dir,
        "FLOWORCH_DATABASE_URL": store_url,
        "FLOWORCH_SECRET_KEY": legacy_key.decode(),
    }
    yield settings, store, plain, env
    store.close()


def test_rotation_rewraps_every_data_key_of_every_tenant_and_everything_still_decrypts(deployment):
    settings, store, plain, env = deployment
    old = KeyRing(settings).current_id()
    before = stored(store)
    running = box_of(settings)  # a worker that was running all along
    assert running.decrypt(before[("acme", "secret of integration 'slack'")]) == {"token": "acme-slack"}

    done = floworch("keys", "rotate", env=env)

    assert done.returncode == 0, done.stderr
    new = KeyRing(settings).current_id()
    assert new != old and new.startswith("local-")
    assert f"current key-encryption key: {new}" in done.stdout
    assert f"re-wrapped secret of integration 'slack' (tenant globex): {old} -> {new}" in done.stdout
    assert "re-wrapped secret of integration 'legacy' (tenant acme): legacy-fernet -> " + new in done.stdout
    assert (
        "done: 6 data key(s) re-wrapped, 1 old Fernet secret(s) re-encrypted, 0 already current, 0 failed, over tenant(s) acme, globex"
        in done.stdout
    )
    after = stored(store)
    assert set(after) == set(plain)
    assert {blob(token)["kek"] for token in after.values()} == {new}
    for label, token in after.items():
        if label != ("acme", "secret of integration 'legacy'"):
            # Only the wrapping changed: the ciphertext is the same.
            assert (blob(token)["iv"], blob(token)["ct"]) == (blob(before[label])["iv"], blob(before[label])["ct"])
        assert running.decrypt(token, label[1]) == plain[label]  # learnt the new KEK from the key file
        assert box_of(settings).decrypt(token, label[1]) == plain[label]
    # Secrets stored after the rotation, by the process that was running, use the new KEK.
    assert blob(running.encrypt({"token": "later"}))["kek"] == new


def test_retire_refuses_while_any_secret_still_uses_the_old_kek_and_then_removes_it(deployment):
    settings, store, plain, env = deployment
    old = KeyRing(settings).current_id()
    refused = floworch("keys", "retire", old, env=env)
    assert refused.returncode == 2
    assert f"key-encryption key '{old}' is the current one; run `floworch keys rotate` first" in refused.stderr

    assert floworch("keys", "rotate", env=env).returncode == 0
    # A process that had not yet seen the new key file stores a secret with the old KEK.
    late = box_of(settings).rewrap(box_of(settings).encrypt({"token": "late"}), kek_id=old)
    put_integration(store, "globex", "late", late)
    refused = floworch("keys", "retire", old, env=env)
    assert refused.returncode == 2
    assert (
        f"key-encryption key '{old}' still wraps 1 stored secret(s): secret of integration 'late' (tenant globex)"
        in refused.stderr
    )
    assert json.loads((settings.data_path / "keys.json").read_text())["keys"][0].get("key")  # nothing changed

    again = floworch("keys", "rotate", env=env)  # yet another new KEK: every secret moves to it
    assert (
        "done: 8 data key(s) re-wrapped, 0 old Fernet secret(s) re-encrypted, 0 already current, 0 failed"
        in again.stdout
    )
    retired = floworch("keys", "retire", old, env=env)
    assert retired.returncode == 0, retired.stderr
    assert f"retired {old}" in retired.stdout
    entry = next(k for k in json.loads((settings.data_path / "keys.json").read_text())["keys"] if k["id"] == old)
    assert "key" not in entry and entry["retired"]
    box = box_of(settings)
    for label, token in stored(store).items():
        assert (
            box.decrypt(token, label[1])
            == {**plain, ("globex", "secret of integration 'late'"): {"token": "late"}}[label]
        )
    # A copy of a secret taken before the rotation no longer opens.
    with pytest.raises(
        SecretError, match=f"secret of integration 'late': its key-encryption key '{old}' was retired on"
    ):
        box.decrypt(late, "secret of integration 'late'")
    listing = floworch("keys", "list", env=env)
    assert listing.returncode == 0 and f"retired {entry['retired']}" in listing.stdout


def test_rotation_never_overwrites_a_secret_stored_again_while_it_runs(deployment):
    settings, store, _plain, _env = deployment
    box = box_of(settings)

    class StoredAgainMeanwhile:
        """The store, where someone replaces acme's slack secret just before rotation writes it."""

        def __init__(self, inner, armed):
            self.inner, self.armed = inner, armed

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def for_tenant(self, tenant):
            return StoredAgainMeanwhile(self.inner.for_tenant(tenant), self.armed)

        def replace_secret(self, table, id, old, new):
            if self.armed[0] and self.inner.tenant == "acme":
                self.armed[0] = False
                put_integration(store, "acme", "slack", box.encrypt({"token": "acme-slack-v2"}))
            return self.inner.replace_secret(table, id, old, new)

    report = keys.rotate(settings, StoredAgainMeanwhile(store, [True]))
    # The newer secret was stored with the KEK that had just become current: nothing to re-wrap.
    assert report.ok and (report.rewrapped, report.legacy_reencrypted, report.already_current) == (5, 1, 1)
    token = stored(store)[("acme", "secret of integration 'slack'")]
    assert (blob(token)["kek"], box.decrypt(token)) == (report.kek, {"token": "acme-slack-v2"})


def test_bad_input_to_the_keys_command_is_a_clear_error_with_exit_code_2_and_changes_nothing(deployment, tmp_path):
    settings, _store, _plain, env = deployment
    key_file = settings.data_path / "keys.json"
    before = key_file.read_bytes()
    unknown = floworch("keys", "retire", "local-000000000000", env=env)
    assert unknown.returncode == 2
    assert "key-encryption key 'local-000000000000' is unknown; keys that can be retired: local-" in unknown.stderr
    missing = floworch(
        "--data-dir",
        str(tmp_path / "typo"),
        "keys",
        "rotate",
        env={k: v for k, v in env.items() if k != "FLOWORCH_DATABASE_URL"},
    )
    assert missing.returncode == 2
    assert (
        f"data directory {tmp_path / 'typo'} does not exist; pass --data-dir or set FLOWORCH_DATA_DIR" in missing.stderr
    )
    assert not (tmp_path / "typo").exists()
    both = floworch("keys", "rotate", "--local", "--kms-key-id", "alias/x", env=env)
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    assert key_file.read_bytes() == before


# ------------------------------------------------------------------ AWS KMS (moto's server)
@pytest.fixture(scope="module")
def aws_env():
    saved = {
        k: os.environ.get(k)
        for k in (
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_DEFAULT_REGION",
            "AWS_SHARED_CREDENTIALS_FILE",
            "AWS_CONFIG_FILE",
        )
    }
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="eu-west-1",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        AWS_CONFIG_FILE="/dev/null",
    )
    yield {k: os.environ[k] for k in saved}
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def start_moto():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


@pytest.fixture(scope="module")
def moto_kms(aws_env):
    server, url = start_moto()
    yield url
    server.stop()


def new_kms_key(url: str, alias: str) -> str:
    import boto3

    kms = boto3.client("kms", endpoint_url=url, region_name="eu-west-1")
    arn = kms.create_key(Description="floworch test KEK")["KeyMetadata"]["Arn"]
    kms.create_alias(AliasName=alias, TargetKeyId=arn)
    return arn


def test_secrets_wrapped_by_kms_decrypt_in_another_process_with_no_key_file_against_moto_kms_server(
    settings, moto_kms, aws_env
):
    alias = f"alias/floworch-{uuid.uuid4().hex[:8]}"
    arn = new_kms_key(moto_kms, alias)
    kms_settings = settings.replace(kms_key_id=alias, kms_endpoint_url=moto_kms)
    token = box_of(kms_settings).encrypt({"access_token": "via-kms"})
    assert blob(token)["kek"] == f"kms:{arn}"  # the ARN, whatever name the setting used
    assert not (settings.data_path / "keys.json").exists()  # KMS holds the key: nothing local to lose
    script = "import sys; from floworch_server.secrets import box_for; from floworch_server.settings import Settings; print(box_for(Settings.from_env()).decrypt(sys.stdin.buffer.read()))"
    env = {**os.environ, **kms_settings.as_env(), **aws_env}
    other = subprocess.run([sys.executable, "-c", script], input=token, capture_output=True, env=env, timeout=60)
    assert other.returncode == 0, other.stderr
    assert other.stdout.decode().strip() == "{'access_token': 'via-kms'}"


def test_a_wrapped_key_kms_does_not_recognise_is_a_clear_error_against_moto_kms_server(settings, moto_kms):
    kms_settings = settings.replace(
        kms_key_id=new_kms_key(moto_kms, f"alias/fo-{uuid.uuid4().hex[:8]}"), kms_endpoint_url=moto_kms
    )
    fields = blob(box_of(kms_settings).encrypt({"token": "x"}))
    fields["dek"] = base64.b64encode(os.urandom(len(base64.b64decode(fields["dek"])))).decode()
    with pytest.raises(
        SecretError,
        match=r"AWS KMS refused to unwrap the data key of the stored secret of integration 'crm' with key '.*': InvalidCiphertextException",
    ):
        box_of(kms_settings).decrypt(json.dumps(fields).encode(), "secret of integration 'crm'")


def test_rotate_moves_every_secret_to_a_kms_key_and_back_against_moto_kms_server(deployment, moto_kms, aws_env):
    settings, store, plain, env = deployment
    env = {**env, **aws_env, "FLOWORCH_KMS_ENDPOINT_URL": moto_kms}
    settings = settings.replace(kms_endpoint_url=moto_kms)
    old = KeyRing(settings).current_id()
    key_file = settings.data_path / "keys.json"
    before = key_file.read_bytes()
    unknown = floworch("keys", "rotate", "--kms-key-id", "alias/does-not-exist", env=env)
    assert unknown.returncode == 2
    assert "KMS key 'alias/does-not-exist' cannot be used: NotFoundException" in unknown.stderr
    assert key_file.read_bytes() == before and {
        blob(t)["kek"] for (_, label), t in stored(store).items() if "legacy" not in label
    } == {old}

    alias = f"alias/floworch-{uuid.uuid4().hex[:8]}"
    arn = new_kms_key(moto_kms, alias)
    moved = floworch("keys", "rotate", "--kms-key-id", alias, env=env)
    assert moved.returncode == 0, moved.stderr
    assert f"current key-encryption key: kms:{arn}" in moved.stdout
    assert {blob(t)["kek"] for t in stored(store).values()} == {f"kms:{arn}"}
    box = box_of(settings)
    assert {label: box.decrypt(t, label[1]) for label, t in stored(store).items()} == plain
    # Processes of this data directory now wrap new secrets with the KMS key.
    kms_copy = box.encrypt({"token": "new"})
    assert blob(kms_copy)["kek"] == f"kms:{arn}"
    assert floworch("keys", "retire", old, env=env).returncode == 0

    back = floworch("keys", "rotate", "--local", env=env)
    assert back.returncode == 0, back.stderr
    local = KeyRing(settings).current_id()
    assert local.startswith("local-") and {blob(t)["kek"] for t in stored(store).values()} == {local}
    assert {label: box_of(settings).decrypt(t, label[1]) for label, t in stored(store).items()} == plain
    retired = floworch("keys", "retire", f"kms:{arn}", env=env)
    assert retired.returncode == 0 and "the KMS key itself is untouched" in retired.stdout
    with pytest.raises(SecretError, match=f"key-encryption key 'kms:{arn}' was retired on"):
        box_of(settings).decrypt(kms_copy)


def test_unwrapped_kms_data_keys_are_cached_for_a_while_so_a_kms_outage_is_ridden_out_against_moto_kms_server(
    settings, aws_env
):
    server, url = start_moto()
    try:
        kms_settings = settings.replace(kms_key_id=new_kms_key(url, "alias/outage"), kms_endpoint_url=url)
        now = [1000.0]
        worker = box_of(kms_settings, clock=lambda: now[0])
        token = box_of(kms_settings).encrypt({"token": "cached"})
        assert worker.decrypt(token) == {"token": "cached"}
    finally:
        server.stop()
    # KMS is down: the running worker still reads the secret it read before...
    assert worker.decrypt(token) == {"token": "cached"}
    # ...a process that never unwrapped it cannot, and says why...
    with pytest.raises(
        SecretError,
        match=f"cannot unwrap the data key of the stored secret of integration 'crm' with key '.*': {url} did not answer",
    ):
        box_of(kms_settings).decrypt(token, "secret of integration 'crm'")
    # ...and once the cached key expires, neither can the worker (a disabled key takes effect).
    now[0] += keys.DEK_CACHE_SECONDS + 1
    with pytest.raises(SecretError, match="did not answer"):
        worker.decrypt(token)
