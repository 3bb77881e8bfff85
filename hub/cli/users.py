"""`hub users`: the people who sign in to the web app, their roles, and their API tokens."""

from __future__ import annotations

import os
from collections.abc import Callable

import click
from sqlalchemy.orm import Session

from hub.cli.common import config_option, fail, json_option, listing, open_hub, print_json
from hub.config import Config
from hub.store.db import transaction
from hub.store.users import User

ROLE_CHOICE = click.Choice(["admin", "marketer", "manager", "lead", "telephony"])
password_env_option = click.option("--password-env", metavar="VAR",
                                   help="Read the password from this environment variable (for scripts).")


@click.group()
def users() -> None:
    """People who sign in to the web app, their roles, and their API tokens."""


def _password(given: str | None) -> str:
    """From --password-env's variable, else asked twice on the terminal (never on the command line)."""
    if given is not None:
        value = os.environ.get(given)
        if not value:
            fail(f"${given} is empty or unset", code=2)
        return value
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


def _user_command(config_path: str, action: Callable[[Session, Config], User], as_json: bool = False) -> None:
    from hub.desk.access import UserError

    hub = open_hub(config_path)
    try:
        with transaction(hub.engine) as session:
            user = action(session, hub.config)
            data = {"login": user.login, "role": user.role, "manager": user.manager, "disabled": user.disabled}
    except UserError as exc:
        fail(str(exc))
    if as_json:
        print_json(data)
    else:
        click.echo(f"{data['login']}: {data['role']}" + (f" ({data['manager']})" if data["manager"] else "")
                   + (", disabled" if data["disabled"] else ""))


@users.command("add")
@config_option
@json_option
@click.argument("login")
@click.option("--role", type=ROLE_CHOICE, required=True,
              help="admin: everything; marketer: sources, mappings, reports; manager: own leads; lead: a team "
                   "lead, their teams' leads; telephony: a PBX's caller lookup (give it a token).")
@click.option("--manager", help="For managers and team leads: their [[managers]] name (default: the manager "
                                "whose email is LOGIN).")
@click.option("--language", type=click.Choice(["en", "ru"]),
              help="Pages and notifications in this language (default: the browser's; users can change it).")
@password_env_option
def users_add(config_path: str, as_json: bool, login: str, role: str, manager: str | None, language: str | None,
              password_env: str | None) -> None:
    """Add a user who signs in with LOGIN (an e-mail or a name) and a password."""
    from hub.desk.access import add_user

    password = _password(password_env)
    _user_command(config_path, lambda s, c: add_user(s, c, login, password, role, manager, language), as_json)


@users.command("passwd")
@config_option
@click.argument("login")
@password_env_option
def users_passwd(config_path: str, login: str, password_env: str | None) -> None:
    """Set a user's password (signs out their open sessions)."""
    from hub.desk.access import set_password

    password = _password(password_env)
    _user_command(config_path, lambda s, c: set_password(s, login, password))


@users.command("role")
@config_option
@click.argument("login")
@click.argument("role", type=ROLE_CHOICE)
@click.option("--manager", help="For managers and team leads: their [[managers]] name.")
def users_role(config_path: str, login: str, role: str, manager: str | None) -> None:
    """Change a user's role (signs out their open sessions)."""
    from hub.desk.access import set_role

    _user_command(config_path, lambda s, c: set_role(s, c, login, role, manager))


@users.command("disable")
@config_option
@click.argument("login")
@click.option("--enable", is_flag=True, help="Enable again instead.")
def users_disable(config_path: str, login: str, enable: bool) -> None:
    """Stop a user signing in; their sessions end and their API tokens are revoked. Nothing is deleted."""
    from hub.desk.access import set_disabled

    _user_command(config_path, lambda s, c: set_disabled(s, login, not enable))


@users.command("list")
@config_option
@json_option
def users_list(config_path: str, as_json: bool) -> None:
    """Every user with role, manager link and last sign-in."""
    from hub.desk.listings import users_overview

    listing(config_path, as_json, lambda s, _: users_overview(s),
            [("LOGIN", lambda r: r["login"]), ("ROLE", lambda r: r["role"]), ("MANAGER", lambda r: r["manager"]),
             ("DISABLED", lambda r: "yes" if r["disabled"] else ""),
             ("LAST SIGN-IN", lambda r: (r["last_login_at"] or "never")[:19])])


@users.group("token")
def users_token() -> None:
    """API tokens for /api/v1: each acts as its user, with the user's role."""


@users_token.command("add")
@config_option
@json_option
@click.argument("login")
@click.option("--name", default="api", show_default=True, help="What the token is for (shown in listings).")
def token_add(config_path: str, as_json: bool, login: str, name: str) -> None:
    """Make a token; it is printed once and only its hash is kept."""
    from hub.desk.access import UserError, add_token

    hub = open_hub(config_path)
    try:
        with transaction(hub.engine) as session:
            token, plain = add_token(session, login, name[:128])
            token_id = token.id
    except UserError as exc:
        fail(str(exc))
    if as_json:
        print_json({"id": token_id, "token": plain})
    else:
        click.echo(f"token {token_id} for {login} (shown once; keep it secret):\n{plain}")


@users_token.command("list")
@config_option
@json_option
def token_list(config_path: str, as_json: bool) -> None:
    """Every token: its user, name, prefix, last use, and whether it is revoked."""
    from hub.desk.listings import api_tokens_overview

    listing(config_path, as_json, lambda s, _: api_tokens_overview(s),
            [("ID", lambda r: r["id"]), ("LOGIN", lambda r: r["login"]), ("NAME", lambda r: r["name"]),
             ("PREFIX", lambda r: r["prefix"] + "…"), ("LAST USED", lambda r: (r["last_used_at"] or "never")[:19]),
             ("REVOKED", lambda r: "yes" if r["revoked"] else "")])


@users_token.command("revoke")
@config_option
@click.argument("token_id", type=int)
def token_revoke(config_path: str, token_id: int) -> None:
    """Revoke a token at once."""
    from hub.desk.access import UserError, revoke_token

    hub = open_hub(config_path)
    try:
        with transaction(hub.engine) as session:
            revoke_token(session, token_id)
    except UserError as exc:
        fail(str(exc))
    click.echo(f"token {token_id} revoked")
