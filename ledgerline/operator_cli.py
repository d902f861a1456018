"""``ledgerline users ...`` and ``ledgerline keys ...``: the operator's commands on users and
keys, each one ``Identity`` command (one append), recorded in the audit log as the CLI operator:
actor type ``system``, a request id of its own per run (``cli-<hex>``), the user agent naming the
command line and the operating-system account that ran it.

Exit codes: 0 done; 1 no such user or key; 2 usage (a bad argument or option, an erasure not
confirmed); 3 refused by a rule (the state does not allow it: already revoked, erased, ...).
Single users and keys come from the event store (always current); lists from the read tables,
with a note on standard error when they are behind the store (no projector running).
"""

from __future__ import annotations

import os
import pwd
import re
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, NoReturn
from uuid import UUID

import click
import msgspec

from api.key_schemas import RevokeApiKey
from api.presenters import api_key_from_row, api_key_out, user_from_aggregate, user_from_row
from domain.audit import AuditContext, acting_as
from domain.errors import ConflictError, NotFoundError
from eventstore.personal_data import Sealer
from ledgerline.bootstrap import Components, build
from ledgerline.settings import Settings
from projections.api_keys.queries import every_api_key, list_api_keys
from projections.read_side import positions
from projections.users.queries import UserFilters, list_users

NOT_FOUND, USAGE, REFUSED = 1, 2, 3
JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
LIST_LIMIT = 1000


def operator() -> AuditContext:
    """Who acts, as the audit log records it: the OS account of the process's effective uid (not
    $LOGNAME or $USER, which the caller sets at will), in the request id too, which is not sealed
    under the subject's data key: erasing a user keeps the record of who did it."""
    account = _account()
    request_id = f"cli-{account}-{uuid.uuid4().hex}"
    return AuditContext(
        actor_type="system",
        request_id=request_id,
        correlation_id=request_id,
        user_agent=f"ledgerline-cli (operator {account})",
    )


def _account() -> str:
    uid = os.geteuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:  # no name for this uid (a container's arbitrary uid)
        return f"uid{uid}"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:32] or f"uid{uid}"


@contextmanager
def store() -> Iterator[Components]:
    components = build(Settings.from_env(os.environ))
    try:
        with acting_as(operator()):
            yield components
    except NotFoundError as error:
        _fail(NOT_FOUND, f"{error.resource_type.replace('_', ' ')} not found")
    except ConflictError as error:
        _fail(REFUSED, str(error))
    finally:
        components.close()


def _fail(code: int, message: str) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def _user_id(components: Components, who: str) -> UUID:
    """A user by id, username or e-mail address."""
    try:
        return UUID(who)
    except ValueError:
        found = components.identity.find_user_id(who)
        if found is None:
            _fail(NOT_FOUND, "user not found")
        return found


def _key_id(key: str) -> UUID:
    try:
        return UUID(key)
    except ValueError:
        raise click.BadParameter(
            "an API key's id (a UUID, as `keys list` shows it)", param_hint="KEY_ID"
        ) from None


def _print(value: Any, as_json: bool, columns: tuple[str, ...] = ()) -> None:
    plain = msgspec.to_builtins(value)
    if as_json:
        click.echo(msgspec.json.encode(plain).decode())
    elif isinstance(plain, list):
        click.echo("\t".join(columns))
        for item in plain:
            click.echo("\t".join("" if item[c] is None else str(item[c]) for c in columns))
    else:
        for name, field in plain.items():
            click.echo(f"{name}: {'' if field is None else field}")


def _note_lag(components: Components) -> None:
    head = components.identity.head_position()
    behind = {
        name: head - position for name, position in positions(components.engine).items() if position < head
    }
    if behind:
        lag = ", ".join(f"{name} {events} events" for name, events in sorted(behind.items()))
        click.echo(f"note: the read tables are behind the store ({lag}); is a projector running?", err=True)


# ---- users ------------------------------------------------------------------------------------


@click.group()
def users() -> None:
    """Operate on users (as the CLI operator in the audit log)."""


USER_COLUMNS = (
    "id",
    "username",
    "email",
    "is_active",
    "is_superuser",
    "is_verified",
    "is_locked",
    "created_at",
)


@users.command("list")
@click.option("--search", default=None, help="Part of a username, e-mail address or full name.")
@click.option("--include-deleted", is_flag=True)
@JSON
def users_list(search: str | None, include_deleted: bool, as_json: bool) -> None:
    """Users, oldest first (at most 1,000), from the read tables."""
    with store() as components, components.engine.connect() as conn:
        _note_lag(components)
        rows, _ = list_users(
            conn, UserFilters(search=search, include_deleted=include_deleted), per_page=LIST_LIMIT
        )
        sealer = Sealer(components.identity.data_keys)
        _print([user_from_row(row, sealer) for row in rows], as_json, USER_COLUMNS)


@users.command("show")
@click.argument("user")
@JSON
def users_show(user: str, as_json: bool) -> None:
    """One user (USER: id, username or e-mail address), as stored now."""
    with store() as components:
        _print(user_from_aggregate(components.identity.get_user(_user_id(components, user))), as_json)


def _user_command(name: str, doc: str, run: Callable[[Components, UUID], Any]) -> None:
    @users.command(name, help=doc)
    @click.argument("user")
    @JSON
    def command(user: str, as_json: bool) -> None:
        with store() as components:
            result = run(components, _user_id(components, user))
            _print(user_from_aggregate(result.aggregate), as_json)


_user_command("unlock", "End a lockout after failed logins.", lambda c, u: c.identity.unlock_user(u))
_user_command(
    "deactivate",
    "Stop the user logging in; their keys stop working.",
    lambda c, u: c.identity.deactivate_user(u),
)
_user_command("activate", "Let a deactivated user log in again.", lambda c, u: c.identity.activate_user(u))


@users.command("erase")
@click.argument("user")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@JSON
def users_erase(user: str, yes: bool, as_json: bool) -> None:
    """Erase a user (GDPR): their personal data is destroyed for good, their keys revoked."""
    with store() as components:
        user_id = _user_id(components, user)
        username = components.identity.get_user(user_id).username
        if not yes and not click.confirm(f"Erase {username} ({user_id}) for good?", default=False, err=True):
            _fail(USAGE, "not confirmed: nothing erased (pass --yes to skip the question)")
        _print(user_from_aggregate(components.identity.erase_user(user_id).aggregate), as_json)


# ---- keys -------------------------------------------------------------------------------------


@click.group()
def keys() -> None:
    """Operate on API keys (as the CLI operator in the audit log)."""


KEY_COLUMNS = ("id", "user_id", "name", "key_prefix", "is_active", "expires_at", "revoked_at", "last_used_at")


@keys.command("list")
@click.option("--user", default=None, help="Only this user's keys (id, username or e-mail address).")
@click.option("--include-revoked", is_flag=True)
@JSON
def keys_list(user: str | None, include_revoked: bool, as_json: bool) -> None:
    """Keys, oldest first (at most 1,000), from the read tables; never their secrets."""
    with store() as components, components.engine.connect() as conn:
        _note_lag(components)
        if user is None:
            rows = every_api_key(conn, include_revoked=include_revoked, limit=LIST_LIMIT)
        else:
            owner = _user_id(components, user)
            rows, _ = list_api_keys(
                conn, owner, now=datetime.now(UTC), include_revoked=include_revoked, include_expired=True,
                per_page=LIST_LIMIT,
            )  # fmt: skip
        sealer = Sealer(components.identity.data_keys)
        _print([api_key_from_row(row, sealer) for row in rows], as_json, KEY_COLUMNS)


@keys.command("revoke")
@click.argument("key_id")
@click.option("--reason", default=None, help="Why (kept in the audit log): one line, at most 200 characters.")
@JSON
def keys_revoke(key_id: str, reason: str | None, as_json: bool) -> None:
    """Revoke a key now: every API process refuses it from its next request."""
    try:
        checked = msgspec.convert({"reason": reason}, RevokeApiKey)
    except msgspec.ValidationError as error:
        raise click.BadParameter(str(error), param_hint="--reason") from None
    key = _key_id(key_id)
    with store() as components:
        result = components.identity.revoke_api_key(key, reason=checked.reason or "revoked by the operator")
        _print(api_key_out(result.aggregate), as_json)
