"""The running hub: config, database engine and one configured connector per source."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import Engine

from hub.config import Config, SourceConfig
from hub.connector import Connector, available_connectors
from hub.errors import ConfigError
from hub.mapping import Mapping, load_mapping
from hub.store.db import make_engine, release

SomeConnector = TypeVar("SomeConnector", bound=Connector)


@dataclass(frozen=True)
class Source:
    config: SourceConfig
    connector: Connector
    mapping: Mapping
    region: str

    @property
    def name(self) -> str:
        return self.config.name

    def connector_as(self, kind: type[SomeConnector]) -> SomeConnector:
        """The connector as the kind the caller needs (a webhook, a poller, a file); TypeError if it is not."""
        if not isinstance(self.connector, kind):
            raise TypeError(f"source {self.name!r}: its connector {self.connector.name} is not a {kind.__name__}")
        return self.connector


class Hub:
    def __init__(self, config: Config, engine: Engine | None = None):
        self.config = config
        self.engine = engine or make_engine(config.database_url)
        self._processing_engine: Engine | None = None
        self.sources: dict[str, Source] = {}
        connectors = available_connectors()
        for sc in config.sources:
            cls = connectors[sc.connector]     # parse_config has checked every name
            settings = cls.config_schema.model_validate(sc.connector_settings())
            mapping_name = sc.mapping or cls.default_mapping
            if mapping_name is None:    # parse_config says so too; a Config built in code reaches here unchecked
                raise ConfigError([f"source {sc.name!r}: connector {sc.connector!r} has no default mapping; "
                                   "name one"])
            self.sources[sc.name] = Source(
                config=sc, connector=cls(sc.name, settings), mapping=load_mapping(mapping_name, config.base_dir),
                region=sc.region or config.default_region)
        # Set when intake stores an event, so an in-process worker starts at once instead of at its next poll.
        self.event_stored = threading.Event()
        # When (time.monotonic()) intake last stored a delivery in this process: an in-process worker yields
        # to the door while it is recent (hub/pipeline/worker.py).
        self.intake_stored_at = 0.0
        # Set when a notification is queued, so the notifier sends it at once.
        self.notification_queued = threading.Event()
        # Set when a lead is queued for a sink, so the forwarder sends it at once.
        self.forward_queued = threading.Event()
        # Calls this process has sent a PBX routing command for: (source, call id) -> when (hub/pipeline/calls.py).
        self.routed_calls: dict[tuple[str, str], float] = {}

    @property
    def processing_engine(self) -> Engine:
        """The workers' engine: same database, commits that do not wait for the disk (see make_engine)."""
        if self._processing_engine is None:
            self._processing_engine = make_engine(self.config.database_url, processing=True)
        return self._processing_engine

    def dispose(self) -> None:
        release(self.engine)
        if self._processing_engine is not None:
            release(self._processing_engine)

    @property
    def is_embedded(self) -> bool:
        return self.engine.dialect.name == "sqlite"
