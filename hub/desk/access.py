"""Who may do what: users and their roles, passwords, web sessions and the sign-in throttle, API tokens,
sessions' signing key.

What a role sees of the leads is one query clause, ``lead_scope``: a manager their own, a team lead their
teams' and the queue. Which role may call which web route is declared on the route (hub/web/common.py).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Engine, case, delete, or_, select, true, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import InstrumentedAttribute, Session
from werkzeug.security import check_password_hash, generate_password_hash

from hub.config import Config, WebConfig
from hub.errors import ConfigError, HubError
from hub.store.db import dialect_insert, insert_ignoring_conflicts, transaction
from hub.store.models import Lead, TelegramLink, utcnow
from hub.store.users import ApiToken, HubSecret, Role, SignInCounter, User, WebSession

MIN_PASSWORD_LENGTH = 10
TOKEN_PREFIX = "lh_"
# A hash to check a password against when the login is unknown, so that the answer takes as long as for a
# known login and does not tell which logins exist.
_DUMMY_HASH = generate_password_hash(secrets.token_hex(16))

class UserError(HubError):
    """A user or token operation was refused (unknown login, weak password, unknown role …)."""


@dataclass(frozen=True)
class Actor:
    """The signed-in user (or the user of an API token) as the request sees them."""

    id: int
    login: str
    role: str
    manager: str | None          # their [[managers]] name, for managers and team leads
    language: str | None = None  # their own choice; None: the browser's

    @property
    def name(self) -> str:
        """What the lead history records as the actor."""
        return self.manager or self.login

    def teams_led(self, config: Config) -> list[str]:
        return [t.name for t in config.teams if self.manager and t.lead == self.manager]

    def managers_visible(self, config: Config) -> list[str] | None:
        """Owners whose leads this actor sees; None: everyone's."""
        if self.role == Role.ADMIN:
            return None
        if self.role == Role.LEAD:
            teams = set(self.teams_led(config))
            names = {m.name for m in config.managers if m.team in teams}
            return sorted(names | ({self.manager} if self.manager else set()))
        if self.role == Role.MANAGER:
            return [self.manager] if self.manager else []
        return []


def actor_of(user: User) -> Actor:
    return Actor(id=user.id, login=user.login, role=user.role, manager=user.manager, language=user.language)


def timezone_of(actor: Actor | None, config: Config) -> str:
    """Managers see times in their own zone; everyone else in [ui] timezone."""
    manager = config.manager(actor.manager) if actor and actor.manager else None
    return manager.timezone if manager else config.ui.timezone


def lead_scope(actor: Actor, config: Config):
    """The WHERE clause of the leads this actor may see. Team leads also see the unassigned queue."""
    owners = actor.managers_visible(config)
    if owners is None:
        return true()
    if actor.role == Role.LEAD:
        return or_(Lead.owner.in_(owners), Lead.owner.is_(None))
    return Lead.owner.in_(owners)


# -- users ----------------------------------------------------------------------------------------------

def normalise_login(login: str) -> str:
    login = login.strip().casefold()
    if not login or len(login) > 320 or any(c.isspace() for c in login):
        raise UserError(f"login {login!r}: give an e-mail address or a name without spaces")
    return login


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"password too short: at least {MIN_PASSWORD_LENGTH} characters")


def _check_role(config: Config, role: str, manager: str | None) -> None:
    if role not in Role.ALL:
        raise UserError(f"unknown role {role!r} (known: {', '.join(Role.ALL)})")
    if role in (Role.MANAGER, Role.LEAD):
        known = ", ".join(m.name for m in config.managers) or "none configured"
        if not manager:
            raise UserError(f"a {role} must be linked to a [[managers]] name with --manager (known: {known})")
        if config.manager(manager) is None:
            raise UserError(f"no manager named {manager!r} in the config (known: {known})")
        if role == Role.LEAD and not any(t.lead == manager for t in config.teams):
            raise UserError(f"{manager!r} leads no team: set lead = {manager!r} in a [[teams]] entry")


def default_manager(config: Config, login: str) -> str | None:
    """The [[managers]] entry whose e-mail is this login, if any."""
    return next((m.name for m in config.managers if m.email and m.email.casefold() == login), None)


def add_user(session: Session, config: Config, login: str, password: str, role: str,
             manager: str | None = None, language: str | None = None) -> User:
    login = normalise_login(login)
    manager = manager or (default_manager(config, login) if role in (Role.MANAGER, Role.LEAD) else None)
    _check_role(config, role, manager)
    _check_password(password)
    from hub.i18n import LANGUAGES
    if language is not None and language not in LANGUAGES:
        raise UserError(f"language {language!r}: one of {', '.join(LANGUAGES)}")
    new_id = insert_ignoring_conflicts(session, User.__table__, ["login"], dict(
        login=login, password_hash=generate_password_hash(password), role=role, manager=manager, language=language,
        disabled=False, created_at=utcnow()))
    if new_id is None:
        raise UserError(f"user {login!r} exists already (change it with `hub users passwd|role`)")
    return session.get_one(User, new_id)


def get_user(session: Session, login: str) -> User:
    user = session.execute(select(User).where(User.login == normalise_login(login))).scalar_one_or_none()
    if user is None:
        raise UserError(f"no user {login!r} (see `hub users list`)")
    return user


def set_password(session: Session, login: str, password: str) -> User:
    _check_password(password)
    user = get_user(session, login)
    user.password_hash = generate_password_hash(password)
    _end_sessions_of(session, user)          # every session of the old password
    return user


def set_role(session: Session, config: Config, login: str, role: str, manager: str | None = None) -> User:
    user = get_user(session, login)
    manager = manager or (user.manager if role in (Role.MANAGER, Role.LEAD) else None) \
        or (default_manager(config, user.login) if role in (Role.MANAGER, Role.LEAD) else None)
    _check_role(config, role, manager)
    user.role, user.manager = role, manager
    _end_sessions_of(session, user)
    return user


def set_language(session: Session, login: str, language: str | None) -> User:
    from hub.i18n import LANGUAGES
    if language is not None and language not in LANGUAGES:
        raise UserError(f"language {language!r}: one of {', '.join(LANGUAGES)}, or none for the browser's")
    user = get_user(session, login)
    user.language = language
    return user


def set_disabled(session: Session, login: str, disabled: bool) -> User:
    user = get_user(session, login)
    user.disabled = disabled
    _end_sessions_of(session, user)
    if disabled:
        session.execute(update(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
                        .values(revoked_at=utcnow()))
        # Their Telegram goes too (someone who left keeps their phone): no more leads there, no more buttons —
        # unless another enabled user works as the same manager.
        if user.manager and not session.scalar(select(User.id).where(
                User.manager == user.manager, User.id != user.id, User.disabled.is_(False)).limit(1)):
            session.execute(delete(TelegramLink).where(TelegramLink.manager == user.manager))
    return user


def authenticate(session: Session, login: str, password: str) -> User | None:
    """The user these credentials belong to, or None. Takes as long for an unknown login as for a known one.
    Writes nothing: the password hash is checked outside any write transaction (SQLite's one write lock is
    not held for the tens of milliseconds scrypt takes)."""
    try:
        login = normalise_login(login)
    except UserError:
        login = ""
    user = session.execute(select(User).where(User.login == login)).scalar_one_or_none() if login else None
    ok = check_password_hash(user.password_hash if user else _DUMMY_HASH, password)
    if user is None or not ok or user.disabled:
        return None
    return user


# -- web sessions ---------------------------------------------------------------------------------------

# A session's last_seen_at is written at most this often: were every page view a write, each reader would
# queue for the writers' lock (SQLite has one), for a time no one needs to the second.
SESSION_SEEN_INTERVAL = timedelta(minutes=5)
# A token's last_used_at likewise: a busy script must not turn every read into a write.
TOKEN_USED_INTERVAL = timedelta(minutes=5)


def start_session(session: Session, user: User, hours: int) -> str | None:
    """Sign in the user authenticate() let in: a session row lasting ``hours``, and the plain token for the
    cookie (only its hash is stored). None if the user's password, role or state changed since the check:
    that change ends their sessions, and this one must not outlive it. Purges expired sessions."""
    now = utcnow()
    still_as_checked = session.execute(
        update(User).where(User.id == user.id, User.password_hash == user.password_hash, User.role == user.role,
                           User.disabled.is_(False))
        .values(last_login_at=now).returning(User.id)).scalar_one_or_none()
    if still_as_checked is None:
        return None
    _delete_unheld(session, WebSession.id, WebSession.expires_at <= now)
    token = secrets.token_urlsafe(32)
    session.add(WebSession(id=_sha256(token), user_id=user.id, created_at=now, last_seen_at=now,
                           expires_at=now + timedelta(hours=hours)))
    return token


def end_session(session: Session, token: str) -> None:
    """Sign out: the cookie's token opens nothing any more, wherever it was copied to."""
    session.execute(delete(WebSession).where(WebSession.id == _sha256(token)))


def _end_sessions_of(session: Session, user: User) -> None:
    session.execute(delete(WebSession).where(WebSession.user_id == user.id))


def user_for_session(engine: Engine, token: str) -> User | None:
    """The user a session cookie's token signs in, or None (signed out, ended by a change to the user,
    expired, or the user disabled)."""
    found = _holder_of(engine, WebSession, WebSession.id, token)
    if found is None:
        return None
    web_session, user = found
    now = utcnow()
    if web_session.expires_at <= now:
        return None
    _mark_used(engine, WebSession, WebSession.id, web_session.id, "last_seen_at", web_session.last_seen_at, now,
               SESSION_SEEN_INTERVAL)
    return user


def _holder_of(engine: Engine, model: Any, digest_column: Any, plain: str) -> tuple[Any, User] | None:
    """The row a secret (a session token, an API token) is kept by, as its SHA-256, with its user; None
    when there is none or its user is disabled."""
    digest = _sha256(plain)
    with transaction(engine, read_only=True) as session:
        row = session.execute(select(model, User).join(User, User.id == model.user_id)
                              .where(digest_column == digest)).first()
    # The lookup is by hash; compare again in constant time so no branch depends on the secret's bytes.
    if row is None or not hmac.compare_digest(getattr(row[0], digest_column.key), digest) or row[1].disabled:
        return None
    return row[0], row[1]


def _mark_used(engine: Engine, model: Any, key_column: Any, key: Any, column: str, last: datetime | None,
               now: datetime, every: timedelta) -> None:
    """Write when a secret was last used, at most ``every``: a busy user must not turn every read into a write."""
    if last is None or now - last > every:
        with transaction(engine) as session:
            session.execute(update(model).where(key_column == key).values({column: now}))


# -- the sign-in throttle -------------------------------------------------------------------------------

# Attempts are counted in a window that starts with the first and lasts this long; the page says "wait 15
# minutes". A guesser gets [web] max_failed_logins tries per login and max_failed_logins_per_address tries
# in all per address in that time.
SIGN_IN_WINDOW = timedelta(minutes=15)


def count_sign_in_attempt(session: Session, web: WebConfig, address: str, login: str) -> bool:
    """Count this attempt, before its password is checked, per (address, login) and per address; False when
    either count is over its limit: answer 429 without checking the password. Counting first is what keeps
    the limit exact under parallel tries: the database hands out the counts 1, 2, … one at a time and only
    the first ``limit`` tries reach the password check. Commit before checking the password, so that the
    other processes see the count. A successful sign-in gives its attempt back (sign_in_succeeded)."""
    now = utcnow()
    per_login = _count(session, _counter_key(address, login), now)
    per_address = _count(session, _counter_key(address), now)
    _delete_unheld(session, SignInCounter.key, SignInCounter.window_start <= now - SIGN_IN_WINDOW)
    return per_login <= web.max_failed_logins and per_address <= web.max_failed_logins_per_address


def sign_in_succeeded(session: Session, address: str, login: str) -> None:
    """The right password: the count of this login from this address starts again, and the address gets this
    attempt back (not its earlier failures: one known password must not let a guesser go on with others)."""
    session.execute(delete(SignInCounter).where(SignInCounter.key == _counter_key(address, login)))
    session.execute(update(SignInCounter).where(SignInCounter.key == _counter_key(address),
                                                SignInCounter.count > 0)
                    .values(count=SignInCounter.count - 1))


def _counter_key(*parts: str) -> str:
    """Hashed: a password typed into the login field is not kept in the database."""
    return _sha256("\n".join(parts))


def _count(session: Session, key: str, now: datetime) -> int:
    """One atomic ``INSERT … ON CONFLICT DO UPDATE SET count = count + 1 … RETURNING count``: a window over
    starts again at 1. The database orders concurrent attempts, never a read-then-write in Python."""
    table = SignInCounter.__table__
    insert = dialect_insert(session)(table).values(key=key, window_start=now, count=1)
    window_over = table.c.window_start <= now - SIGN_IN_WINDOW
    stmt = insert.on_conflict_do_update(index_elements=[table.c.key], set_={
        "count": case((window_over, 1), else_=table.c.count + 1),
        "window_start": case((window_over, insert.excluded.window_start), else_=table.c.window_start),
    }).returning(table.c.count)
    count: int = session.execute(stmt).scalar_one()
    return count


def _delete_unheld(session: Session, key: InstrumentedAttribute[Any], stale: ColumnElement[bool]) -> None:
    """Delete the stale rows of key's table that no other transaction holds. PostgreSQL skips the held ones
    (a later purge gets them), so a purge never waits on a sign-in and cannot deadlock with one; SQLite
    writes one transaction at a time, and SQLAlchemy leaves FOR UPDATE out there."""
    unheld = select(key).where(stale).with_for_update(skip_locked=True)
    session.execute(delete(key.class_).where(key.in_(unheld)))


# -- API tokens -----------------------------------------------------------------------------------------

def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_token(session: Session, login: str, name: str) -> tuple[ApiToken, str]:
    """A new token for this user; the plain token is returned once and never stored."""
    user = get_user(session, login)
    if user.disabled:
        raise UserError(f"user {user.login!r} is disabled")
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user_id=user.id, name=name, token_sha256=_sha256(plain), prefix=plain[:10],
                     created_at=utcnow())
    session.add(token)
    session.flush()
    return token, plain


def revoke_token(session: Session, token_id: int) -> ApiToken:
    token = session.get(ApiToken, token_id)
    if token is None:
        raise UserError(f"no token {token_id} (see `hub users tokens`)")
    token.revoked_at = token.revoked_at or utcnow()
    return token


def user_for_token(engine: Engine, plain: str) -> User | None:
    """The user a bearer token acts for, or None (unknown, revoked, or its user disabled)."""
    found = _holder_of(engine, ApiToken, ApiToken.token_sha256, plain)
    if found is None or found[0].revoked_at is not None:
        return None
    token, user = found
    _mark_used(engine, ApiToken, ApiToken.id, token.id, "last_used_at", token.last_used_at, utcnow(),
               TOKEN_USED_INTERVAL)
    return user


# -- the hub's own secrets ------------------------------------------------------------------------------

def session_secret(engine: Engine, config: Config) -> str:
    """The key that signs session cookies: the configured one, else one made once and kept in the
    database so that every web process (and every restart) signs alike."""
    if config.web.secret_key:
        return config.web.secret_key
    try:
        with transaction(engine) as session:
            insert_ignoring_conflicts(session, HubSecret.__table__, ["name"],
                                      {"name": "session_key", "value": secrets.token_hex(32)})
            return session.execute(select(HubSecret.value).where(HubSecret.name == "session_key")).scalar_one()
    except DBAPIError as exc:
        # The web app is often started by gunicorn, before anyone ran the migrations: say what to do.
        raise ConfigError([f"database: cannot read the hub's tables ({type(exc.orig).__name__}): run "
                           "`hub db upgrade --config …` first"]) from None
