"""CSV files of historical leads from an old CRM (Excel exports included: BOM, ';' delimiters, cp1251).

A polling connector: ``poll(state)`` returns the next batch of rows after ``state["row"]``, each an event
whose external id is a hash of the row, so importing the same file twice imports nothing twice.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hub.connector import FileConnector, PollResult, RawEvent
from hub.errors import PayloadError


class CsvImportSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    encoding: str = "utf-8-sig"
    delimiter: str | None = Field(None, min_length=1, max_length=1, description="default: detected")
    batch_rows: int = Field(500, ge=1)


def row_external_id(row: dict[str, Any]) -> str:
    canonical = json.dumps(row, sort_keys=True, ensure_ascii=False).encode()
    return "csv:" + hashlib.sha256(canonical).hexdigest()[:40]


class CsvImportConnector(FileConnector[CsvImportSettings]):
    name = "csv_import"
    config_schema = CsvImportSettings
    default_mapping = "csv_import"

    def _open(self):
        try:
            return Path(self.settings.path).open(newline="", encoding=self.settings.encoding)
        except LookupError:
            raise PayloadError(f"unknown encoding {self.settings.encoding!r}") from None

    def _dialect(self, handle) -> dict[str, Any]:
        if self.settings.delimiter:
            return {"delimiter": self.settings.delimiter}
        sample = handle.read(64 * 1024)
        handle.seek(0)
        try:
            return {"dialect": csv.Sniffer().sniff(sample, delimiters=",;\t|")}
        except csv.Error:
            return {"delimiter": ","}

    def header(self) -> list[str]:
        with self._open() as f:
            try:
                return next(csv.reader(f, **self._dialect(f)))
            except StopIteration:
                raise PayloadError("the file is empty: no header row") from None
            except UnicodeDecodeError:
                raise PayloadError(f"the file is not {self.settings.encoding}: pass --encoding (cp1251 for "
                                   "old Russian Excel exports)") from None

    def count_rows(self) -> int:
        with self._open() as f:
            return sum(1 for _ in csv.reader(f, **self._dialect(f))) - 1

    def events(self, start: int = 0) -> Iterator[RawEvent]:
        """Every row from data row ``start`` on, read once, as an event."""
        with self._open() as f:
            reader = csv.DictReader(f, **self._dialect(f))
            try:
                for index, row in enumerate(reader):
                    if index < start:
                        continue
                    # Cells beyond the header land under None: keep them, named, rather than lose them.
                    fields = {k if k is not None else "_extra": v for k, v in row.items()}
                    yield RawEvent(external_id=row_external_id(fields), payload={**fields, "_row": index + 2})
            except UnicodeDecodeError:
                raise PayloadError(f"the file is not {self.settings.encoding}: pass --encoding "
                                   "(cp1251 for old Russian Excel exports)") from None

    def poll(self, state: dict[str, Any]) -> PollResult:
        start = int(state.get("row", 0))
        events = list(islice(self.events(start), self.settings.batch_rows))
        return PollResult(events=events, state={"row": start + len(events)})
