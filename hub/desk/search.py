"""Finding leads by what a person types: a phone in any spelling, a part of a name or an e-mail in any case
(Cyrillic included, on both stores), a tag. SQL constructs compiled per dialect, used by LeadFilter."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    String,
    bindparam,
    select,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator

from hub.pipeline.normalise import normalise_phone
from hub.store.models import (
    IdentityKey,
    KeyKind,
    Person,
)

# -- search: case-insensitive on both stores, Cyrillic included -----------------------------------------
# PostgreSQL's ILIKE folds case by the database's LC_CTYPE (a UTF-8 locale folds Cyrillic; the bare "C" locale
# folds ASCII only, like SQLite: create the database with a UTF-8 one). SQLite's LIKE and
# lower() fold ASCII only, so there the text is matched with GLOB and a character class of each letter's
# cases: "иван" → *[иИ][вВ][аА][нН]*. GLOB runs in SQLite's C code; a Python casefold() registered as an SQL
# function was measured at twice its cost (44 vs 20 ms for 100k names), and it is called for every row.
# (A letter whose fold is two letters, ß → ss, matches only as written; names here do not need it.)

GLOB_SPECIAL = "*?["


def _glob_class(ch: str) -> str:
    cases = sorted({c for c in (ch, ch.lower(), ch.upper(), ch.casefold()) if len(c) == 1})
    if len(cases) > 1:
        return "[" + "".join(cases) + "]"
    return f"[{ch}]" if ch in GLOB_SPECIAL else ch


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class FoldedPattern(TypeDecorator[str]):
    """The text a person typed, turned at execution into the database's pattern for it: a GLOB pattern on
    SQLite, an ILIKE pattern on PostgreSQL. ``part``: anywhere in the value; else the whole value."""

    impl = String
    cache_ok = True

    def __init__(self, part: bool):
        super().__init__()
        self.part = part

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            body = "".join(_glob_class(ch) for ch in value)
            return f"*{body}*" if self.part else body
        body = _like_escaped(value)
        return f"%{body}%" if self.part else body


class _matches_folded(FunctionElement[bool]):
    """``column`` matches a FoldedPattern, whatever the case of either."""

    type = Boolean()
    _is_implicitly_boolean = True     # a condition as it is: no "= 1" after it on SQLite (that hides an index)
    inherit_cache = True
    name = "matches_folded"


@compiles(_matches_folded, "sqlite")
def _matches_folded_sqlite(element: _matches_folded, compiler: Any, **kw: Any) -> str:
    column, pattern = element.clauses
    return f"({compiler.process(column, **kw)} GLOB {compiler.process(pattern, **kw)})"


@compiles(_matches_folded, "postgresql")
def _matches_folded_postgresql(element: _matches_folded, compiler: Any, **kw: Any) -> str:
    column, pattern = element.clauses
    return f"({compiler.process(column, **kw)} ILIKE {compiler.process(pattern, **kw)} ESCAPE '\\')"


def folded_match(column: Any, text: str, part: bool) -> ColumnElement[bool]:
    return _matches_folded(column, bindparam(None, text, type_=FoldedPattern(part)))


class has_tag(FunctionElement[bool]):
    """The lead's JSON list of tags holds this tag (a FoldedPattern of the whole value)."""

    type = Boolean()
    _is_implicitly_boolean = True     # a condition as it is: no "= 1" after it on SQLite (that hides an index)
    inherit_cache = True
    name = "has_tag"


@compiles(has_tag, "sqlite")
def _has_tag_sqlite(element: has_tag, compiler: Any, **kw: Any) -> str:
    tags, pattern = (compiler.process(c, **kw) for c in element.clauses)
    # A lead without tags is passed over by its text, unparsed.
    # Compiled SQL fragments (a column, a bind parameter's placeholder) are put together, no value: not injectable.
    return f"({tags} != '[]' AND EXISTS (SELECT 1 FROM json_each({tags}) WHERE json_each.value GLOB {pattern}))"  # nosec B608


@compiles(has_tag, "postgresql")
def _has_tag_postgresql(element: has_tag, compiler: Any, **kw: Any) -> str:
    tags, pattern = (compiler.process(c, **kw) for c in element.clauses)
    # A lead without tags is passed over by its text, unparsed; a JSON null (not a list) would make
    # json_array_elements_text fail for the whole query.
    # Compiled SQL fragments (a column, a bind parameter's placeholder) are put together, no value: not injectable.
    return (f"(CAST({tags} AS TEXT) <> '[]' AND EXISTS (SELECT 1 FROM json_array_elements_text(CASE WHEN "  # nosec B608
            f"json_typeof({tags}) = 'array' THEN {tags} END) AS tag WHERE tag ILIKE {pattern} ESCAPE '\\'))")


class IdList(TypeDecorator[list[int]]):
    """A list of ids as one parameter: a PostgreSQL array, JSON text on SQLite. (An IN list of thousands of
    parameters costs PostgreSQL a linear search per row: 70 ms for 5,000 persons against 14 ms as an array.)"""

    impl = String
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        return dialect.type_descriptor(ARRAY(BigInteger) if dialect.name == "postgresql" else String())

    def process_bind_param(self, value: list[int] | None, dialect: Any) -> Any:
        return json.dumps(value) if dialect.name == "sqlite" else value


class in_ids(FunctionElement[bool]):
    """``column`` is one of an IdList's ids."""

    type = Boolean()
    _is_implicitly_boolean = True     # a condition as it is: no "= 1" after it on SQLite (that hides an index)
    inherit_cache = True
    name = "in_ids"


@compiles(in_ids, "sqlite")
def _in_ids_sqlite(element: in_ids, compiler: Any, **kw: Any) -> str:
    column, ids = (compiler.process(c, **kw) for c in element.clauses)
    # Compiled SQL fragments (a column, a bind parameter's placeholder) are put together, no value: not injectable.
    return f"({column} IN (SELECT value FROM json_each({ids})))"  # nosec B608


@compiles(in_ids, "postgresql")
def _in_ids_postgresql(element: in_ids, compiler: Any, **kw: Any) -> str:
    column, ids = (compiler.process(c, **kw) for c in element.clauses)
    return f"({column} = ANY({ids}))"


def search_persons(q: str, region: str):
    """The persons ``q`` names (a select of their ids, duplicates possible): a phone in any spelling
    (normalised, then its key exactly), else a part of their name or of one of their e-mails, in any case."""
    q = q.strip()
    phone = normalise_phone(q, region).value if "@" not in q and any(ch.isdigit() for ch in q) else None
    if phone:
        return select(IdentityKey.person_id).where(IdentityKey.kind == KeyKind.PHONE, IdentityKey.value == phone)
    by_name = select(Person.id).where(folded_match(Person.name, q, part=True))
    # E-mail keys are stored casefolded (normalise_email).
    by_email = select(IdentityKey.person_id).where(IdentityKey.kind == KeyKind.EMAIL,
                                                   IdentityKey.value.contains(q.casefold(), autoescape=True))
    return union_all(by_name, by_email)


