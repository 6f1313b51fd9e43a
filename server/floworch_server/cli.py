"""``floworch``: operator commands of a deployment.

    floworch keys list                      key-encryption keys, which is current, what each wraps
    floworch keys rotate [--kms-key-id ID]  a new current KEK; re-wraps every stored data key
    floworch keys rotate --local            ... back to (or a new) local key from a KMS one
    floworch keys retire KEK_ID             removes an old KEK once nothing uses it
    floworch signing-key rotate             a new key for access tokens; tokens already out stay valid
    floworch members list --tenant T        a tenant's members and roles
    floworch members set USER ROLE --tenant T   add a member or change their role (how a new
                                            tenant gets its first admin)
    floworch members remove USER --tenant T
    floworch worker [--task-queue Q ...] [--concurrency N] [--build-id B]
                                            a worker process (see worker.py); runs until SIGTERM
    floworch worker-deployment describe     versions of the worker deployment: which is current,
                                            which still run pinned runs (draining) or are drained
    floworch worker-deployment set-current BUILD_ID   new runs start on that version's workers
    floworch temporal setup                 registers FlowOrchestrator's search attributes in the
                                            namespace (the embedded supervisor does it by itself)

Settings come from FLOWORCH_* variables like every other process of the deployment (the same
data directory, database and KMS settings), ``--data-dir`` overrides FLOWORCH_DATA_DIR.
Exit codes: 0 done, 1 some secrets could not be re-wrapped (listed), 2 bad input, nothing changed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from . import keys
from .settings import Settings

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad input: the message says what and how to fix it; exit code 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="floworch", description="FlowOrchestrator operator commands.")
    parser.add_argument("--data-dir", help="data directory of the deployment (FLOWORCH_DATA_DIR)")
    groups = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")

    key_cmds = groups.add_parser("keys", help="key-encryption keys of stored secrets").add_subparsers(
        dest="command", required=True, metavar="ACTION"
    )
    key_cmds.add_parser("list", help="key-encryption keys and how many stored secrets each wraps").set_defaults(
        run=keys_list
    )
    rotate = key_cmds.add_parser(
        "rotate", help="make a new key-encryption key current and re-wrap every stored data key"
    )
    target = rotate.add_mutually_exclusive_group()
    target.add_argument("--kms-key-id", help="move to this AWS KMS key (key id, ARN or alias/...)")
    target.add_argument("--local", action="store_true", help="a new local key in the key file (also to leave KMS)")
    rotate.set_defaults(run=keys_rotate)
    retire = key_cmds.add_parser("retire", help="remove an old key-encryption key once no stored secret uses it")
    retire.add_argument("kek_id", metavar="KEK_ID", help="as shown by `floworch keys list`")
    retire.set_defaults(run=keys_retire)

    signing = groups.add_parser("signing-key", help="the key that signs access tokens").add_subparsers(
        dest="command", required=True, metavar="ACTION"
    )
    signing.add_parser(
        "rotate", help="make a new signing key current; the previous one verifies its tokens until they expire"
    ).set_defaults(run=signing_rotate)

    member_cmds = groups.add_parser("members", help="members of a tenant and their roles").add_subparsers(
        dest="command", required=True, metavar="ACTION"
    )
    for name, run, helptext in [
        ("list", members_list, "the tenant's members"),
        ("set", members_set, "add a member or change their role"),
        ("remove", members_remove, "remove a member"),
    ]:
        cmd = member_cmds.add_parser(name, help=helptext)
        if name != "list":
            cmd.add_argument("user")
        if name == "set":
            cmd.add_argument("role", help="admin, editor or viewer")
        cmd.add_argument("--tenant", help="the tenant (default: FLOWORCH_TENANT)")
        cmd.set_defaults(run=run)

    # The worker's own parser (worker.py) reads its options: importing the engine here would
    # slow every other command down.
    groups.add_parser(
        "worker",
        add_help=False,
        help="run a worker process: polls task queues, runs flows and node activities (--help for its options)",
    )
    fleet = groups.add_parser(
        "worker-deployment", help="versions of the worker fleet (blue/green by build id)"
    ).add_subparsers(dest="command", required=True, metavar="ACTION")
    describe = fleet.add_parser("describe", help="every version: current, draining (pinned runs still open) or drained")
    describe.set_defaults(run=deployment_describe)
    current = fleet.add_parser("set-current", help="new runs start on this version; running ones stay on theirs")
    current.add_argument("build_id", metavar="BUILD_ID", help="as given to `floworch worker --build-id`")
    current.set_defaults(run=deployment_set_current)
    for cmd in (describe, current):
        cmd.add_argument("--deployment", help="the worker deployment (default: FLOWORCH_WORKER_DEPLOYMENT, floworch)")
        cmd.set_defaults(temporal_client=True)
    cluster = groups.add_parser("temporal", help="the Temporal namespace runs go to").add_subparsers(
        dest="command", required=True, metavar="ACTION"
    )
    cluster.add_parser(
        "setup", help="register FlowOrchestrator's search attributes in FLOWORCH_TEMPORAL_NAMESPACE (safe to repeat)"
    ).set_defaults(run=temporal_setup, temporal_client=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, rest = parser.parse_known_args(argv)  # argparse exits with 2 on bad arguments
    if args.group == "worker":
        return worker_run(rest, args.data_dir)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    code = _run(args)
    if getattr(args, "temporal_client", False):
        # The SDK's runtime threads can abort interpreter finalization (temporalio/sdk-python#300).
        from .worker import exit_process

        exit_process(code)
    return code


def _run(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env(data_dir=args.data_dir)
        return args.run(settings, args, print)
    except (UsageError, keys.KeyUsageError, ValueError) as exc:
        print(f"floworch: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except keys.SecretError as exc:
        print(f"floworch: {exc}", file=sys.stderr)
        return EXIT_PARTIAL


def _open_store(settings: Settings):
    """The deployment's store; refuses a data directory that does not exist (a typo would
    otherwise create an empty store and key file, and rotate nothing)."""
    from .store import store_for

    if not settings.data_path.is_dir() and not (settings.database_url and (settings.key_file or settings.kms_key_id)):
        raise UsageError(
            f"data directory {settings.data_path} does not exist; pass --data-dir or set FLOWORCH_DATA_DIR "
            "to the directory of the deployment (where floworch.db and keys.json are)"
        )
    return store_for(settings, settings.tenant)


def keys_list(settings: Settings, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    from .secrets import SecretBox

    store = _open_store(settings)
    try:
        ring = keys.KeyRing(settings)
        used = keys.usage(SecretBox.from_settings(settings, keyring=ring), store)
    finally:
        store.close()
    current = ring.current_id() if (settings.kms_key_id or ring.file.exists()) else None
    out(f"key file: {ring.file.path}" + ("" if ring.file.exists() else " (not made yet)"))
    known = ring.keks()
    for kek_id in sorted(set(known) | set(used), key=lambda k: (known[k].created if k in known else "", k)):
        kek = known.get(kek_id)
        state = "current" if kek_id == current else (f"retired {kek.retired}" if kek and kek.retired else "")
        kind = (
            kek.kind
            if kek
            else ("legacy" if kek_id == keys.LEGACY_ID else "kms" if kek_id.startswith(keys.KMS_PREFIX) else "?")
        )
        created = kek.created if kek else ""
        out(f"  {kek_id:<60} {kind:<6} {created:<26} {len(used.get(kek_id, [])):>5} secret(s) {state}".rstrip())
    if current and current not in known and current not in used:
        out(f"  {current:<60} kms    (FLOWORCH_KMS_KEY_ID)          0 secret(s) current")
    return EXIT_OK


def keys_rotate(settings: Settings, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    store = _open_store(settings)
    try:
        report = keys.rotate(settings, store, kms_key_id=args.kms_key_id, local=args.local, progress=out)
    finally:
        store.close()
    out(
        f"done: {report.rewrapped} data key(s) re-wrapped, {report.legacy_reencrypted} old Fernet secret(s) re-encrypted, "
        f"{report.already_current} already current, {len(report.failed)} failed, over tenant(s) {', '.join(report.tenants) or 'none'}"
    )
    for problem in report.failed:
        out(f"  failed: {problem}")
    if report.previous:
        out(f"previous key(s) {', '.join(report.previous)} still unwrap until `floworch keys retire <id>`")
    return EXIT_OK if report.ok else EXIT_PARTIAL


def keys_retire(settings: Settings, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    store = _open_store(settings)
    try:
        keys.retire(settings, store, args.kek_id)
    finally:
        store.close()
    tail = (
        " (the KMS key itself is untouched: disable or schedule its deletion in KMS)"
        if args.kek_id.startswith(keys.KMS_PREFIX)
        else ""
    )
    out(f"retired {args.kek_id}: its key material is removed from the key file{tail}")
    return EXIT_OK


def signing_rotate(settings: Settings, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    from .auth import ACCESS_TOKEN_SECONDS, SigningKeys

    if not settings.data_path.is_dir():
        raise UsageError(
            f"data directory {settings.data_path} does not exist; pass --data-dir or set FLOWORCH_DATA_DIR"
        )
    kid = SigningKeys.for_settings(settings).rotate()
    out(f"signing key {kid} is current; tokens signed before stay valid for up to {ACCESS_TOKEN_SECONDS // 60} minutes")
    return EXIT_OK


def _tenant_store(settings: Settings, args: argparse.Namespace):
    return _open_store(settings).for_tenant(args.tenant or settings.tenant)


def members_list(settings: Settings, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    store = _tenant_store(settings, args)
    try:
        rows = store.list_members()
        for m in rows:
            out(f"{m['user']:<40} {m['role']:<8} added by {m['added_by']} at {m['added_at']:%Y-%m-%d %H:%M}")
        out(f"{len(rows)} member(s) of tenant {store.tenant}")
    finally:
        store.close()
    return EXIT_OK


def members_set(settings: Settings, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    from . import members

    def change(store, by: str) -> str:
        record = members.set_member(store, args.user, args.role, by=by)
        return f"{record['user']} is {record['role']} of tenant {store.tenant}"

    return _change_members(settings, args, out, change)


def members_remove(settings: Settings, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    from . import members

    def change(store, by: str) -> str:
        members.remove_member(store, args.user, by=by)
        return f"{args.user} is no longer a member of tenant {store.tenant}"

    return _change_members(settings, args, out, change)


def _change_members(settings: Settings, args: argparse.Namespace, out: Callable[[str], None], change: Callable) -> int:
    from .errors import FloworchError

    store = _tenant_store(settings, args)
    try:
        out(change(store, f"cli:{settings.user_name()}"))
    except FloworchError as exc:  # the last admin, an unknown member: the operator's input
        raise UsageError(str(exc)) from None
    finally:
        store.close()
    return EXIT_OK


def worker_run(argv: list[str], data_dir: str | None) -> int:
    from . import worker

    settings, queues = worker.parse_command_line(
        argv, prog="floworch worker", data_dir=data_dir
    )  # exits 2 on bad input
    worker.exit_process(worker.serve(settings, queues))
    return EXIT_OK  # not reached: the worker process ends in exit_process


def _deployment_settings(settings: Settings, args: argparse.Namespace) -> Settings:
    """``settings`` for the worker deployment named by ``--deployment`` (default: FLOWORCH_WORKER_DEPLOYMENT)."""
    return settings.replace(worker_deployment=args.deployment) if args.deployment else settings


def _temporal_call(settings: Settings, call: Callable):
    import asyncio

    from . import temporal

    async def go():
        address = settings.temporal_address or "the embedded dev server"
        try:
            client = await temporal.connect(settings, traced=False)
        except RuntimeError as exc:  # no Temporal configured or running, or it does not answer
            if "connect" in str(exc):
                raise UsageError(f"cannot reach Temporal at {address} (FLOWORCH_TEMPORAL_ADDRESS): {exc}") from None
            raise UsageError(str(exc)) from None
        return await call(client, settings)

    return asyncio.run(go())


def deployment_describe(settings: Settings, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    from .worker import describe_deployment

    settings = _deployment_settings(settings, args)
    current, versions = _temporal_call(settings, describe_deployment)
    name = settings.worker_deployment
    out(f"worker deployment {name}: current version {current or 'none (new runs go to unversioned workers)'}")
    out(f"  {'build id':<24} {'status':<10} {'running runs':>12}  current since")
    for v in versions:
        since = f"{v.current_since:%Y-%m-%d %H:%M:%S} UTC" if v.current_since else ""
        out(f"  {v.build_id:<24} {v.status:<10} {v.running:>12}  {since}".rstrip())
    return EXIT_OK


def deployment_set_current(settings: Settings, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    from .worker import set_current_version

    settings = _deployment_settings(settings, args)
    previous = _temporal_call(settings, lambda client, s: set_current_version(client, s, args.build_id))
    name = settings.worker_deployment
    out(f"{args.build_id} is the current version of worker deployment {name}: new runs start on it")
    if previous and previous != args.build_id:
        out(
            f"runs already on {previous} finish there; stop its workers once `floworch worker-deployment describe` shows it drained"
        )
    return EXIT_OK


def temporal_setup(settings: Settings, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    from . import temporal

    added = _temporal_call(settings, lambda client, s: temporal.ensure_search_attributes(client, s.temporal_namespace))
    out(f"namespace {settings.temporal_namespace}: search attributes added: {', '.join(added) or 'none, all there'}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
