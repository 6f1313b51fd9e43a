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

Settings come from FLOWORCH_* variables like every other process of the deployment (the same
data directory, database and KMS settings), ``--data-dir`` overrides FLOWORCH_DATA_DIR.
Exit codes: 0 done, 1 some secrets could not be re-wrapped (listed), 2 bad input, nothing changed.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from . import keys
from .settings import Settings

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad input: the message says what and how to fix it; exit code 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="floworch", description="FlowOrchestrator operator commands.")
    parser.add_argument("--data-dir", help="data directory of the deployment (FLOWORCH_DATA_DIR)")
    groups = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")

    key_cmds = groups.add_parser("keys", help="key-encryption keys of stored secrets").add_subparsers(dest="command", required=True, metavar="ACTION")
    key_cmds.add_parser("list", help="key-encryption keys and how many stored secrets each wraps").set_defaults(run=keys_list)
    rotate = key_cmds.add_parser("rotate", help="make a new key-encryption key current and re-wrap every stored data key")
    target = rotate.add_mutually_exclusive_group()
    target.add_argument("--kms-key-id", help="move to this AWS KMS key (key id, ARN or alias/...)")
    target.add_argument("--local", action="store_true", help="a new local key in the key file (also to leave KMS)")
    rotate.set_defaults(run=keys_rotate)
    retire = key_cmds.add_parser("retire", help="remove an old key-encryption key once no stored secret uses it")
    retire.add_argument("kek_id", metavar="KEK_ID", help="as shown by `floworch keys list`")
    retire.set_defaults(run=keys_retire)

    signing = groups.add_parser("signing-key", help="the key that signs access tokens").add_subparsers(dest="command", required=True, metavar="ACTION")
    signing.add_parser("rotate", help="make a new signing key current; the previous one verifies its tokens until they expire").set_defaults(run=signing_rotate)

    member_cmds = groups.add_parser("members", help="members of a tenant and their roles").add_subparsers(dest="command", required=True, metavar="ACTION")
    for name, run, helptext in [("list", members_list, "the tenant's members"), ("set", members_set, "add a member or change their role"), ("remove", members_remove, "remove a member")]:
        cmd = member_cmds.add_parser(name, help=helptext)
        if name != "list":
            cmd.add_argument("user")
        if name == "set":
            cmd.add_argument("role", help="admin, editor or viewer")
        cmd.add_argument("--tenant", help="the tenant (default: FLOWORCH_TENANT)")
        cmd.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)  # argparse exits with 2 on bad arguments
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
        kind = kek.kind if kek else ("legacy" if kek_id == keys.LEGACY_ID else "kms" if kek_id.startswith(keys.KMS_PREFIX) else "?")
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
    tail = " (the KMS key itself is untouched: disable or schedule its deletion in KMS)" if args.kek_id.startswith(keys.KMS_PREFIX) else ""
    out(f"retired {args.kek_id}: its key material is removed from the key file{tail}")
    return EXIT_OK


def signing_rotate(settings: Settings, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    from .auth import ACCESS_TOKEN_SECONDS, SigningKeys

    if not settings.data_path.is_dir():
        raise UsageError(f"data directory {settings.data_path} does not exist; pass --data-dir or set FLOWORCH_DATA_DIR")
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


if __name__ == "__main__":
    sys.exit(main())
