"""Configuration: one TOML file, validated whole at start-up.

``load_config`` reports *every* problem at once (``sources[2].connector: unknown connector 'tilda2' (known:
site_form)``), the way ``hub check`` prints them. Secrets may be written as ``env:NAME`` and are read from the
environment; ``HUB_DATABASE_URL`` overrides ``[database] url``.
"""

from __future__ import annotations

import os
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hub.answer_config import AnswerConfig, check_answers
from hub.errors import ConfigError
from hub.mapping import TrackingNumbers, tracking_numbers
from hub.sales_config import (
    DEFAULT_REFUSE_REASONS,
    ManagerConfig,
    RefuseReason,
    RoutingConfig,
    TeamConfig,
    WarmthConfig,
)

ENV_PREFIX = "env:"
_UNSET = object()
SOURCE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class _Strict(BaseModel):
    """A config table: a key nobody reads is an error (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid")


class DatabaseConfig(_Strict):
    # None: an SQLite file "hub.db" next to the config file.
    url: str | None = None


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    # granian (the default; hub/web/rsgi.py says why) or waitress (pure Python: for a platform granian has
    # no wheel for). Both read a body whole before the app sees it and answer the same.
    engine: Literal["granian", "waitress"] = "granian"
    # Bodies above this are answered 413 unread (a chunked one once it passes the cap, its chunk framing
    # counted). Site forms and provider events are a few KB.
    max_body_bytes: int = Field(1_048_576, ge=1024)
    # Open connections per web process; past it, new ones wait in the listen queue. A request is read whole
    # before a thread sees it, so a sender trickling its body holds a socket, not a thread.
    max_connections: int = Field(1000, ge=1)
    # A connection that sends nothing and waits for no answer this long is closed.
    idle_timeout_seconds: int = Field(30, ge=1)


class WorkerConfig(_Strict):
    threads: int = Field(1, ge=1, le=64, description="worker threads inside `hub run`")
    poll_interval_seconds: float = Field(0.5, gt=0)
    # A claimed event whose worker died is claimable again after this long.
    lease_seconds: float = Field(60, gt=0)
    max_attempts: int = Field(8, ge=1)
    backoff_base_seconds: float = Field(2, ge=0)
    backoff_max_seconds: float = Field(3600, ge=0)


class IdentityConfig(_Strict):
    # When one delivery's keys point to different persons, the strongest key's owner gets the touch
    # (first in this list is strongest); the other person is flagged as a possible duplicate.
    key_priority: list[Literal["phone", "email", "telegram", "vk"]] = ["phone", "email", "telegram", "vk"]
    # A person whose latest lead is refused or converted writes again: reopen that lead, or start a new one.
    on_return: Literal["reopen", "new_lead"] = "reopen"
    # Treat i.van+ads@gmail.com as ivan@gmail.com. Off by default: two such addresses may be two people.
    gmail_canonical: bool = False


class SourceConfig(BaseModel):
    """A ``[[sources]]`` table. Keys other than these belong to the connector and are checked against its
    ``config_schema``."""

    model_config = ConfigDict(extra="allow")

    name: str
    connector: str
    mapping: str | None = None      # a mappings/<name>.toml; default: the connector's own
    region: str | None = None       # phone region for numbers written without a country code
    timezone: str = "UTC"           # of provider times written without an offset
    tags: list[str] = []
    enabled: bool = True
    # Deliveries accepted per minute per web process (a token bucket; bursts up to this many); beyond it the
    # hub answers 429 with Retry-After, and providers retry. None: no limit.
    rate_limit_per_minute: int | None = Field(None, ge=1)
    # A source may accept less than [server] max_body_bytes.
    max_body_bytes: int | None = Field(None, ge=256)
    # What the client hears back (see AnswerConfig); None: nothing.
    answer: AnswerConfig | None = None
    # Call tracking: the number a client called → that ad's UTM marks (keys become E.164 at load).
    numbers: TrackingNumbers = {}

    @field_validator("name")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not SOURCE_NAME.match(v):
            raise ValueError("must be 1-64 characters of a-z, 0-9, '_' or '-', starting with a letter or digit "
                             "(it becomes the webhook URL /hooks/<name>)")
        return v

    def connector_settings(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def _check_bots(config: Config, problems: list[str]) -> None:
    """The managers' bot is not a source's: a bot has one stream of updates, and two readers of it (the manager
    bot's poller, the source's getUpdates or webhook) would take each other's messages — clients' leads lost."""
    tg = config.notify.telegram
    for i, src in enumerate(config.sources):
        if tg is not None and src.connector_settings().get("bot_token") == tg.bot_token:
            problems.append(f"sources[{i}].bot_token: the same bot as [notify.telegram]; a bot has one stream of "
                            f"updates, and the managers' and the clients' conversations would take each other's: "
                            f"create a second bot with @BotFather for one of them")


class SinkConfig(BaseModel):
    """A ``[[sinks]]`` table: where routed leads are forwarded. Keys other than these belong to the sink
    type and are checked against its ``config_schema``."""

    model_config = ConfigDict(extra="allow")

    name: str
    type: str                            # bitrix24 | amocrm | webhook | a third-party sink
    enabled: bool = True
    sources: list[str] = []              # only leads from these sources; empty: every lead
    # The provider's limits are the defaults; lower them if the account shares its quota with others.
    rate_per_second: float | None = Field(None, gt=0)
    burst: int | None = Field(None, ge=1)
    max_attempts: int = Field(50, ge=1)  # with backoff capped at 10 minutes: about 7 hours of outage
    timeout_seconds: float = Field(10, gt=0)

    @field_validator("name")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not SOURCE_NAME.match(v):
            raise ValueError("must be 1-64 characters of a-z, 0-9, '_' or '-', starting with a letter or digit")
        return v

    def sink_settings(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class TelegramConfig(_Strict):
    bot_token: str = Field(min_length=10)
    api_url: str = "https://api.telegram.org"
    # How the manager bot hears button presses and /link: "polling" (one `hub run`/`hub worker` process long-polls
    # getUpdates; works behind NAT) or "webhook" (Telegram POSTs to <base_url>/telegram/manager-bot: needs a
    # public HTTPS address, and the secret below, which Telegram sends back in a header).
    updates: Literal["polling", "webhook"] = "polling"
    webhook_secret: str | None = Field(None, min_length=16, max_length=256, pattern=r"^[A-Za-z0-9_-]+$")

    @model_validator(mode="after")
    def _webhook_needs_secret(self) -> TelegramConfig:
        if self.updates == "webhook" and not self.webhook_secret:
            raise ValueError('updates = "webhook" needs webhook_secret (16+ characters of A-Z, a-z, 0-9, _ and -), '
                             "the secret_token given to setWebhook")
        return self


class EmailConfig(_Strict):
    host: str = "localhost"
    port: int = 25
    sender: str = Field(alias="from")
    username: str | None = None
    password: str | None = None
    starttls: bool = False


class NotifyConfig(_Strict):
    # Links in messages point here (the hub's public address).
    base_url: str = "http://127.0.0.1:8000"
    telegram: TelegramConfig | None = None
    email: EmailConfig | None = None
    max_attempts: int = Field(10, ge=1)
    timeout_seconds: float = Field(5, gt=0)
    # Daily digest to each team lead (the queue, their teams' overdue leads, yesterday per manager) at this
    # time of day in the team lead's own time zone when their [[managers]] entry sets one, else [ui] timezone.
    digest_at: str | None = Field(None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$")


class PrivacyConfig(_Strict):
    # Raw deliveries (bodies, payloads, headers) of finished events are erased after this many days; none:
    # kept. Leads, touches and counts stay.
    retention_days: int | None = Field(None, ge=1)


class UiConfig(_Strict):
    # For people whose user has no language of their own and whose browser asks for none we speak.
    default_language: Literal["en", "ru"] = "en"
    # Times are shown in the manager's own time zone; everyone else (admins, marketers) sees this one.
    timezone: str = "UTC"
    # A folder of notification templates (new_lead.txt, lead_back.txt, escalated.txt, digest.txt) that
    # replace the built-in ones; relative to the config file.
    notification_templates: str | None = None


class DeskConfig(_Strict):
    # Tags offered on the lead card and in the inbox's filter; people may add their own too.
    tags: list[str] = []


class WebConfig(_Strict):
    # Signs the session cookies. None: the hub makes one and keeps it in the database, shared by every
    # process. Set it (e.g. "env:HUB_SECRET_KEY", 32+ characters) to control rotation yourself.
    secret_key: str | None = Field(None, min_length=32)
    # Send the session cookie over HTTPS only: turn on behind TLS (the default suits http://127.0.0.1).
    secure_cookies: bool = False
    # A session ends this long after its sign-in however busy it is, on the server (its row says when).
    session_hours: int = Field(12, ge=1, le=24 * 30)
    # Failed sign-ins allowed from one address to one login within 15 minutes; the next try from there is
    # answered 429 until the 15 minutes are up. Counted in the database, so shared by every web process; the
    # right password from another address still signs in, so a guesser cannot lock the user out.
    max_failed_logins: int = Field(10, ge=1)
    # Failed sign-ins allowed from one address whatever the login, within 15 minutes: stops one password
    # tried across many logins. Users behind one NAT address share it: 50 is five of them mistyping ten times.
    max_failed_logins_per_address: int = Field(50, ge=1)
    # Currency of the spend entered per source (shown next to cost per lead).
    currency: str = "RUB"


class Config(_Strict):
    default_region: str = "RU"
    database: DatabaseConfig = DatabaseConfig()
    server: ServerConfig = ServerConfig()
    worker: WorkerConfig = WorkerConfig()
    identity: IdentityConfig = IdentityConfig()
    sources: list[SourceConfig] = []
    sinks: list[SinkConfig] = []
    teams: list[TeamConfig] = []
    managers: list[ManagerConfig] = []
    warmth: WarmthConfig = WarmthConfig()
    routing: RoutingConfig = RoutingConfig()
    refuse_reasons: list[RefuseReason] = DEFAULT_REFUSE_REASONS
    notify: NotifyConfig = NotifyConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    web: WebConfig = WebConfig()
    desk: DeskConfig = DeskConfig()
    ui: UiConfig = UiConfig()

    # Filled by load_config, not by the file.
    path: Path | None = None
    base_dir: Path = Path(".")
    database_url: str = ""

    def manager(self, name: str) -> ManagerConfig | None:
        return next((m for m in self.managers if m.name == name), None)

    def team(self, name: str) -> TeamConfig | None:
        return next((t for t in self.teams if t.name == name), None)

    def refuse_reason(self, code: str) -> RefuseReason | None:
        return next((r for r in self.refuse_reasons if r.code == code), None)


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _resolve_env(value: Any, loc: tuple[Any, ...], problems: list[str]) -> Any:
    """Replace every "env:NAME" string with the variable's value; note each one that is unset."""
    if isinstance(value, dict):
        resolved = {k: _resolve_env(v, loc + (k,), problems) for k, v in value.items()}
        # An unset variable is reported once, here, not again as "too short" or "required" by validation.
        return {k: v for k, v in resolved.items() if v is not _UNSET}
    if isinstance(value, list):
        return [_resolve_env(v, loc + (i,), problems) for i, v in enumerate(value)]
    if isinstance(value, str) and value.startswith(ENV_PREFIX):
        name = value[len(ENV_PREFIX):]
        if name not in os.environ:
            problems.append(f"{_format_loc(loc)}: environment variable {name} is not set")
            return _UNSET
        return os.environ[name]
    return value


def _check_region(region: str | None, loc: str, problems: list[str]) -> None:
    if region is not None and region not in phonenumbers.SUPPORTED_REGIONS:
        problems.append(f"{loc}: unknown phone region {region!r} (use an ISO 3166 code such as RU, KZ, AM, MN)")


def _check_timezone(name: str, loc: str, problems: list[str]) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"{loc}: unknown time zone {name!r} (use an IANA name such as Europe/Moscow)")


def _check_routing(config: Config, problems: list[str]) -> None:
    """Names that must point at something: teams, managers, sources in rules."""
    teams = {t.name for t in config.teams}
    managers = {m.name: m for m in config.managers}
    sources = {s.name for s in config.sources}
    for kind, names in (("teams", [t.name for t in config.teams]), ("managers", list(managers)),
                        ("warmth.rules", [r.name for r in config.warmth.rules]),
                        ("routing.rules", [r.name for r in config.routing.rules])):
        for name in {n for n in names if names.count(n) > 1}:
            problems.append(f"{kind}: duplicate name {name!r}")
    for i, t in enumerate(config.teams):
        if t.lead is not None and t.lead not in managers:
            problems.append(f"teams[{i}].lead: no manager named {t.lead!r}")
    for i, m in enumerate(config.managers):
        if m.team not in teams:
            known = ", ".join(sorted(teams)) or "none"
            problems.append(f"managers[{i}].team: no team named {m.team!r} (known: {known})")
        _check_timezone(m.timezone, f"managers[{i}].timezone", problems)
    for i, r in enumerate(config.warmth.rules):
        for src in r.sources:
            if src not in sources:
                problems.append(f"warmth.rules[{i}].sources: no source named {src!r}")
    for i, rule in enumerate(config.routing.rules):
        loc = f"routing.rules[{i}]"
        if rule.team not in teams:
            problems.append(f"{loc}.team: no team named {rule.team!r} (known: {', '.join(sorted(teams)) or 'none'})")
        if rule.strategy == "fixed":
            if rule.manager is None:
                problems.append(f"{loc}.manager: strategy 'fixed' needs a manager")
            elif rule.manager not in managers:
                problems.append(f"{loc}.manager: no manager named {rule.manager!r}")
        for src in rule.sources:
            if src not in sources:
                problems.append(f"{loc}.sources: no source named {src!r}")
        for region in rule.regions:
            _check_region(region, f"{loc}.regions", problems)


def _check_sinks(config: Config, problems: list[str]) -> None:
    from hub.sink import available_sinks

    sinks = available_sinks()
    names: set[str] = set()
    known_sources = {s.name for s in config.sources} | {"import"}
    for i, sc in enumerate(config.sinks):
        loc = f"sinks[{i}]"
        if sc.name in names:
            problems.append(f"{loc}.name: duplicate sink name {sc.name!r}")
        names.add(sc.name)
        cls = sinks.get(sc.type)
        if cls is None:
            problems.append(f"{loc}.type: unknown sink type {sc.type!r} (known: {', '.join(sorted(sinks))})")
            continue
        try:
            cls.config_schema.model_validate(sc.sink_settings())
        except ValidationError as exc:
            for err in exc.errors():
                problems.append(f"{loc}.{_format_loc(err['loc'])}: {err['msg']}")
        for src in sc.sources:
            if src not in known_sources:
                problems.append(f"{loc}.sources: no source named {src!r}")


def resolve_database_url(url: str | None, base_dir: Path) -> str:
    url = os.environ.get("HUB_DATABASE_URL") or url or "sqlite:///hub.db"
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        # psycopg 3 is the driver we ship and test; SQLAlchemy would otherwise look for psycopg2.
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////") and url != "sqlite:///:memory:":
        relative = url[len("sqlite:///"):]
        url = "sqlite:///" + str((base_dir / relative).resolve())
    return url


def parse_config(data: dict[str, Any], base_dir: Path) -> Config:
    """Validate a config dict; raise ConfigError with every problem found."""
    from hub.connector import available_connectors
    from hub.mapping import load_mapping

    problems: list[str] = []
    data = _resolve_env(data, (), problems)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            problems.append(f"{_format_loc(err['loc'])}: {err['msg']}")
        raise ConfigError(problems) from None

    _check_region(config.default_region, "default_region", problems)
    connectors = available_connectors()
    seen: set[str] = set()
    for i, src in enumerate(config.sources):
        loc = f"sources[{i}]"
        if src.name in seen:
            problems.append(f"{loc}.name: duplicate source name {src.name!r}")
        seen.add(src.name)
        _check_region(src.region, f"{loc}.region", problems)
        _check_timezone(src.timezone, f"{loc}.timezone", problems)
        src.numbers, bad_numbers = tracking_numbers(src.numbers, src.region or config.default_region)
        problems.extend(f"{loc}.numbers: {problem}" for problem in bad_numbers)
        cls = connectors.get(src.connector)
        if cls is None:
            known = ", ".join(sorted(connectors)) or "none installed: run `pip install -e .`"
            problems.append(f"{loc}.connector: unknown connector {src.connector!r} (known: {known})")
            continue
        try:
            cls.config_schema.model_validate(src.connector_settings())
        except ValidationError as exc:
            for err in exc.errors():
                problems.append(f"{loc}.{_format_loc(err['loc'])}: {err['msg']}")
        mapping_name = src.mapping or cls.default_mapping
        if mapping_name is None:
            problems.append(f"{loc}.mapping: connector {src.connector!r} has no default mapping; name one")
        else:
            try:
                load_mapping(mapping_name, base_dir)
            except ConfigError as exc:
                problems.extend(f"{loc}.mapping: {p}" for p in exc.problems)
    _check_routing(config, problems)
    _check_sinks(config, problems)
    check_answers(config.sources, config.notify.email is not None, problems)
    _check_bots(config, problems)
    _check_timezone(config.ui.timezone, "ui.timezone", problems)
    if config.ui.notification_templates and not (base_dir / config.ui.notification_templates).is_dir():
        problems.append(f"ui.notification_templates: no folder {config.ui.notification_templates!r} "
                        f"next to the config")
    if problems:
        raise ConfigError(problems)
    config.base_dir = base_dir
    config.database_url = resolve_database_url(config.database.url, base_dir)
    return config


def load_config(path: str | os.PathLike[str] | None) -> Config:
    """Load and validate the config file at ``path`` (default: $HUB_CONFIG, then ./config.toml)."""
    path = Path(path or os.environ.get("HUB_CONFIG") or "config.toml")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such config file (pass --config PATH or set HUB_CONFIG; "
                           "config.example.toml is a working start)"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read: {exc}"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
    config = parse_config(data, path.resolve().parent)
    config.path = path.resolve()
    return config


def config_flag(config: Config) -> str | None:
    """The `--config PATH` another `hub` command needs to reach this config; None when it is ./config.toml,
    where commands look when given neither --config nor $HUB_CONFIG."""
    if config.path is None or config.path == Path("config.toml").resolve():
        return None
    return f"--config {shlex.quote(str(config.path))}"
