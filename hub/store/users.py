"""Who signs in: users and their roles, API tokens, server-side web sessions, sign-in counters, and the
hub's own secrets. (What a role may see and do: hub/desk/access.py.)"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from hub.store.base import Base, BigId, UTCDateTime, utcnow


class Role:
    ADMIN = "admin"          # everything
    MARKETER = "marketer"    # sources, mappings, reports, events; no lead contact details
    MANAGER = "manager"      # own leads only
    LEAD = "lead"            # a team lead: the leads of their teams, the managers' switches
    TELEPHONY = "telephony"  # a PBX or softphone: caller lookup only
    ALL = (ADMIN, MARKETER, MANAGER, LEAD, TELEPHONY)


class User(Base):
    """A person who signs in to the web app (or whose API token calls /api/v1)."""

    __tablename__ = "hub_user"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    login: Mapped[str] = mapped_column(String(320), unique=True)      # casefolded
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    # For managers and team leads: their [[managers]] name in the config (their leads are owned by it).
    manager: Mapped[str | None] = mapped_column(String(128))
    language: Mapped[str | None] = mapped_column(String(8))          # en | ru; None: the browser's
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ApiToken(Base):
    """A bearer token for /api/v1, acting as its user with the user's role. Only its SHA-256 is stored."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("hub_user.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))                   # shown in listings, to tell tokens apart
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WebSession(Base):
    """A signed-in browser. Its cookie carries a random token and only the token's SHA-256 is kept, so the
    database alone lets no one in. Signing out deletes the row; a password change, a role change or disabling
    the user deletes all of the user's rows; a row past expires_at is refused, and purged at a later sign-in."""

    __tablename__ = "web_session"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)         # SHA-256 (hex) of the cookie's token
    user_id: Mapped[int] = mapped_column(ForeignKey("hub_user.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class SignInCounter(Base):
    """Sign-in attempts in a window that starts with the first of them, per (address, login) and per
    address: shared by every web process, each attempt counted by one atomic upsert. The key is a SHA-256,
    so a password typed into the login field is not kept."""

    __tablename__ = "sign_in_counter"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    count: Mapped[int] = mapped_column(Integer)


class HubSecret(Base):
    """Secrets the hub makes for itself when the config gives none (the session-signing key), shared by
    every process on the database. Written once with insert-or-ignore, so two first starts agree."""

    __tablename__ = "hub_secret"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))
