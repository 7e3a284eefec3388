"""Relay connections with opaque keyset cursors and a page-size cap.

Cursors encode the sort key of the last row, so pages stay correct while rows are added.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any, Generic, Protocol, TypeVar
from uuid import UUID

import strawberry
from tortoise.backends.base.client import TransactionalDBClient
from tortoise.backends.sqlite.client import SqliteClient
from tortoise.exceptions import ValidationError
from tortoise.expressions import F, Q
from tortoise.fields import DateField, DatetimeField, Field, UUIDField
from tortoise.fields.data import CharEnumFieldInstance, IntEnumFieldInstance
from tortoise.models import Model
from tortoise.queryset import QuerySet

from api.errors import BadUserInput
from models.base import parameter_prefix
from models.sqlite_thread import Statements, select_rows, select_rows_then
from resolvers.cost import READS_DATABASE, ListSize

DEFAULT_PAGE = 20
MAX_PAGE = 100

# The @listSize of every connection field: its `edges` (and `nodes`) are as many as `first`
# or `last` asks for (the estimate takes the number asked, even past MAX_PAGE), DEFAULT_PAGE
# without either. Asking for both is refused by the resolver, not by the estimate.
PAGE = ListSize(
    assumed_size=DEFAULT_PAGE,
    slicing_arguments=["first", "last"],
    sized_fields=["edges", "nodes"],
    require_one_slicing_argument=False,
)

# The arguments of every connection field, described once.
First = Annotated[
    int | None,
    strawberry.argument(
        description=(
            f"Read forward: the first this many items (after `after`, if given). "
            f"{DEFAULT_PAGE} when neither `first` nor `last` is given; at most {MAX_PAGE} "
            f"(more answers {MAX_PAGE}); negative is BAD_USER_INPUT. Not with `last` or "
            "`before`."
        )
    ),
]
After = Annotated[
    str | None,
    strawberry.argument(
        description=(
            "The items strictly after this cursor (an edge's `cursor`, or "
            "`pageInfo.endCursor`). Not with `last` or `before`."
        )
    ),
]
Last = Annotated[
    int | None,
    strawberry.argument(
        description=(
            f"Read backward, from the end: the last this many items (before `before`, if "
            f"given), still answered in the list's order. {DEFAULT_PAGE} when only `before` "
            f"is given; at most {MAX_PAGE} (more answers {MAX_PAGE}); negative is "
            "BAD_USER_INPUT. Not with `first` or `after`."
        )
    ),
]
Before = Annotated[
    str | None,
    strawberry.argument(
        description=(
            "The items strictly before this cursor (an edge's `cursor`, or "
            "`pageInfo.startCursor`); the page is read backward, as with `last`. Not with "
            "`first` or `after`."
        )
    ),
]

NodeT = TypeVar("NodeT")
M = TypeVar("M", bound=Model)


@strawberry.type(description="Where a page stands in its list.")
class PageInfo:
    has_next_page: bool = strawberry.field(
        description=(
            "More items follow the page: exact when reading forward (`first`); when reading "
            "backward, true when `before` was given (the items from it on follow)."
        )
    )
    end_cursor: str | None = strawberry.field(
        description="The cursor of the page's last item (for `after`); null for an empty page."
    )
    has_previous_page: bool = strawberry.field(
        default=False,
        description=(
            "More items come before the page: exact when reading backward (`last`); when "
            "reading forward, true when `after` was given (the items up to it come before)."
        ),
    )
    start_cursor: str | None = strawberry.field(
        default=None,
        description=("The cursor of the page's first item (for `before`); null for an empty page."),
    )


class _EdgeCursor:
    """A `PageOf` cursor: the cursor of its edge at `at`, written when first read (most
    pages are read without them), then kept (a non-data descriptor, as `Column`)."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.attribute = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.attribute = name

    def __get__(self, info: PageOf | None, owner: type | None = None) -> Any:
        if info is None:
            return self
        edges = info._edges
        value = encode_cursor(edges[self.at].position) if edges else None
        info.__dict__[self.attribute] = value
        return value


class PageOf(PageInfo):
    """The PageInfo of these edges: its cursors are their first's and last's."""

    start_cursor = _EdgeCursor(0)
    end_cursor = _EdgeCursor(-1)

    def __init__(
        self, edges: Sequence[Edge[Any]], *, has_next_page: bool, has_previous_page: bool
    ) -> None:
        self._edges = edges
        self.has_next_page = has_next_page
        self.has_previous_page = has_previous_page


def _edge_cursor(root: Edge[Any]) -> str:
    return encode_cursor(root.position)


@strawberry.type(description="One item of a page, with its cursor.")
class Edge(Generic[NodeT]):
    # Encoded when asked for: pages are mostly read without their edges' cursors.
    cursor: str = strawberry.field(
        resolver=_edge_cursor,
        description="Opaque: pass it as `after` or `before` to read on from this item.",
    )
    node: NodeT = strawberry.field(description="The item.")
    position: strawberry.Private[Sequence[Any]]  # the row's sort key (a list, or StoredKey)


@dataclass(frozen=True)
class LazyQuery(Generic[M]):
    """A list's queryset, built when first needed: building the ORM's query costs more than
    reading the first page, which its written-out statement (`Where`) reads without it."""

    model: type[M]
    build: Callable[[], QuerySet[M]]


def queryset(query: QuerySet[M] | LazyQuery[M]) -> QuerySet[M]:
    return query.build() if isinstance(query, LazyQuery) else query


@strawberry.type(
    description=(
        "A page of a list (a Relay connection); the field that returns it says the list's order."
    )
)
class Connection(Generic[NodeT]):
    edges: list[Edge[NodeT]] = strawberry.field(
        description="The page, in the list's order (a backward page too), each with its cursor."
    )
    page_info: PageInfo = strawberry.field(description="Where the page stands in its list.")
    count_query: strawberry.Private[QuerySet[Any] | LazyQuery[Any] | None]
    known_total: strawberry.Private[int | None] = None

    @strawberry.field(
        description="The page's items, those of `edges` in the same order, without cursors."
    )
    def nodes(self) -> list[NodeT]:
        return [edge.node for edge in self.edges]

    @strawberry.field(
        description="How many items the whole list holds, for this viewer.",
        directives=[READS_DATABASE],
    )
    async def total_count(self) -> int:
        if self.known_total is not None:
            return self.known_total
        if self.count_query is None:
            return 0
        return await queryset(self.count_query).count()


@dataclass(frozen=True)
class Order:
    """Sort columns, each (field, descending); the last must be unique (the id)."""

    columns: tuple[tuple[str, bool], ...]

    def order_by(self) -> list[str]:
        return [f"-{name}" if desc else name for name, desc in self.columns]

    def reversed(self) -> Order:
        """The same list from its end: a backward page is read in it, then turned round."""
        return Order(tuple((name, not desc) for name, desc in self.columns))


# Text json.dumps writes as it is between its quotes: printable ASCII but `"` and `\`.
_VERBATIM = re.compile(r"[ !#-\[\]-~]*")


def encode_cursor(values: Sequence[Any]) -> str:
    texts = [v.isoformat() if isinstance(v, date | datetime) else str(v) for v in values]
    if texts and all(_VERBATIM.fullmatch(text) for text in texts):  # ids, dates, moments
        raw = '["' + '", "'.join(texts) + '"]'  # what json.dumps writes, sooner
    else:
        raw = json.dumps(texts)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode(cursor: str, count: int, field: str) -> list[str]:
    try:
        raw = base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode())
        values = json.loads(raw)
    except (ValueError, binascii.Error) as exc:
        raise BadUserInput("Invalid cursor.", field=field) from exc
    if not isinstance(values, list) or len(values) != count:
        raise BadUserInput("Invalid cursor.", field=field)
    return [str(v) for v in values]


def _parse(model: type[Model], name: str, value: str, field: str = "after") -> Any:
    """The column's value from its text in a cursor; BAD_USER_INPUT for anything the column
    cannot hold (a cursor is client input: it may have been made up)."""
    column = model._meta.fields_map[name]
    kind = type(column).__name__
    try:
        parsed: Any = value
        if kind == "DatetimeField":
            # Cursors carry aware moments; in UTC, a far offset may leave the calendar.
            moment = datetime.fromisoformat(value)
            if moment.tzinfo is None:
                raise ValueError("a moment without an offset")
            parsed = moment.astimezone(UTC)
        elif kind == "DateField":
            parsed = date.fromisoformat(value)
        elif kind == "UUIDField" or name == "id":
            parsed = UUID(value)
        elif kind in ("IntField", "BigIntField"):
            parsed = int(value)
        elif "\x00" in value:
            raise ValueError("PostgreSQL text cannot hold NUL")
        column.validate(parsed)  # lengths and ranges: the ORM would raise on the query
    except (ValueError, OverflowError, ValidationError) as exc:
        raise BadUserInput("Invalid cursor.", field=field) from exc
    return parsed


def after_filter(model: type[Model], order: Order, cursor: str, *, field: str = "after") -> Q:
    """Rows strictly after the cursor in this order: (a > x) or (a = x and b > y) or ...
    (in the reversed order: the rows strictly before it). `field`: the argument it came in."""
    raw = _decode(cursor, len(order.columns), field)
    values = [
        _parse(model, name, v, field) for (name, _), v in zip(order.columns, raw, strict=True)
    ]
    clauses: list[Q] = []
    for i, (name, desc) in enumerate(order.columns):
        equal = {order.columns[j][0]: values[j] for j in range(i)}
        beyond = {f"{name}__{'lt' if desc else 'gt'}": values[i]}
        clauses.append(Q(**equal, **beyond))
    combined = clauses[0]
    for clause in clauses[1:]:
        combined |= clause
    return combined


def cursor_of(row: Model, order: Order) -> str:
    return encode_cursor([getattr(row, name) for name, _ in order.columns])


def page_size(first: int | None, field: str = "first") -> int:
    if first is None:
        return DEFAULT_PAGE
    if first < 0:
        raise BadUserInput(f"`{field}` cannot be negative.", field=field)
    return min(first, MAX_PAGE)


@dataclass(frozen=True)
class Window:
    """What a page asks for: how many items, from which cursor, in which direction."""

    limit: int
    cursor: str | None
    backward: bool


def window(first: int | None, after: str | None, last: int | None, before: str | None) -> Window:
    """A page reads one way: forward (`first`, `after`) or backward (`last`, `before`);
    mixing them is BAD_USER_INPUT (Relay's spec allows it but discourages it: its results
    surprise). An empty cursor counts as none, as it always has."""
    if first is not None and last is not None:
        raise BadUserInput(
            "Give `first` or `last`, not both: `first` (with `after`) reads forward, "
            "`last` (with `before`) backward.",
            field="last",
        )
    if after and before:
        raise BadUserInput(
            "Give `after` or `before`, not both: a page reads from one cursor.",
            field="before",
        )
    if first is not None and before:
        raise BadUserInput(
            "`before` reads backward: use it with `last`, not `first`.", field="before"
        )
    if last is not None and after:
        raise BadUserInput("`after` reads forward: use it with `first`, not `last`.", field="after")
    if last is not None or before:
        return Window(page_size(last, "last"), before or None, backward=True)
    return Window(page_size(first), after or None, backward=False)


ConnT = TypeVar("ConnT", bound=Connection[Any])

# values() parses dates and moments with the iso8601 package (~10 µs each, a good part of a
# page); the standard library's parsers take well under a microsecond. Those columns are
# read raw and handed over parsed to the field's own to_python_value, which then deals
# with time zones exactly as the ORM does.
_PARSERS: dict[type[Field[Any]], Callable[[str], Any]] = {
    DatetimeField: datetime.fromisoformat,
    DateField: date.fromisoformat,
}


async def fetch_values(query: QuerySet[M], fields: Sequence[str]) -> list[dict[str, Any]]:
    """`query.values(*fields)`, the same values, sooner."""
    fields_map = query.model._meta.fields_map
    raw = {name: fields_map[name] for name in fields if type(fields_map[name]) in _PARSERS}
    if raw:
        query = query.annotate(**{f"raw_{name}": F(name) for name in raw})
    rows = await query.values(*(f"raw_{name}" if name in raw else name for name in fields))
    for row in rows:
        for name, field in raw.items():
            row[name] = _to_python(field, row.pop(f"raw_{name}"))
    return rows


def _parsed(kind: type[Field[Any]], value: Any) -> Any:
    """A stored date or moment parsed by the standard library when it can (see _PARSERS)."""
    if isinstance(value, str):  # SQLite keeps text; PostgreSQL answers native types
        try:
            return _PARSERS[kind](value)
        except ValueError:
            pass  # left to the field's parser, which knows more
    return value


def _to_python(field: Field[Any], value: Any) -> Any:
    """A stored date or moment as `values()` answers it."""
    return field.to_python_value(_parsed(type(field), value))


Converter = Callable[[Any], Any] | None  # None: the value as the driver answers it

_CONVERTERS: dict[tuple[type[Model], str], Converter] = {}


def converter(model: type[Model], name: str) -> Converter:
    """How `values()` turns a stored value of this field into Python: as is for the types
    the driver already answers (`db_native_fields`), dates and moments by _to_python, the
    field's `to_python_value` otherwise."""
    key = (model, name)
    if key not in _CONVERTERS:
        field = model._meta.fields_map[name]
        native = {model_field for _, model_field, _ in model._meta.db_native_fields}
        convert: Converter = None
        if type(field) in _PARSERS:
            convert = functools.partial(_to_python, field)
        elif name not in native:
            convert = field.to_python_value
        _CONVERTERS[key] = convert
    return _CONVERTERS[key]


_DATE_COLUMNS: dict[type[Model], list[tuple[str, Callable[[str], Any]]]] = {}


def _date_columns(model: type[Model]) -> list[tuple[str, Callable[[str], Any]]]:
    """The columns of `model` holding dates and moments, each with its parser (_PARSERS)."""
    found = _DATE_COLUMNS.get(model)
    if found is None:
        found = _DATE_COLUMNS[model] = [
            (column, _PARSERS[type(field)])
            for column, _, field in model._meta.db_complex_fields
            if type(field) in _PARSERS
        ]
    return found


def instances(model: type[M], rows: Sequence[Any]) -> list[M]:
    """Model instances of whole rows (`SELECT *`), as the ORM makes them, but with dates
    and moments stored as text parsed by the standard library first (see _PARSERS; the
    field's `to_python_value` then deals with time zones as usual)."""
    dates = _date_columns(model)
    out = []
    for record in rows:
        row = dict(record)
        for column, parse in dates:
            if isinstance(value := row[column], str):  # as _parsed
                try:
                    parsed = parse(value)
                except ValueError:
                    continue  # left to the field's parser, which knows more
                row[column] = parsed
        out.append(model._init_from_db(**row))
    return out


@dataclass(frozen=True)
class Where:
    """Conditions in SQL, one `{}` per parameter (numbered here, see `parameter_prefix`):
    the same as the ORM filter of the query they go with, for its first pages."""

    sql: str
    params: list[Any]

    def __and__(self, other: Where) -> Where:
        return Where(f"{self.sql} AND {other.sql}", [*self.params, *other.params])


class Primable(Protocol):
    """A loader of rows by primary key (`resolvers.loaders.ByIdLoader`) to prime."""

    @property
    def model(self) -> type[Model]: ...

    def prime_many(self, data: Mapping[Any, Any], force: bool = False) -> None: ...

    def holds(self, key: Any) -> bool: ...


def _columns(model: type[Model]) -> list[str]:
    """The columns `_init_from_db` reads: a whole row."""
    meta = model._meta
    fields = [*meta.db_native_fields, *meta.db_default_fields, *meta.db_complex_fields]
    return [column for column, _, _ in fields]


Joins = tuple[tuple[type[Model], tuple[str, ...], int], ...]  # model, columns, pk's index
# For each model to prime: the index of its key among the page's fields, and its rows'
# SELECT up to the list of keys (`WHERE "id" IN `).
Related = tuple[tuple[int, str], ...]


@dataclass(frozen=True)
class FirstPage:
    """A first page's statement, with `joins` the rows it primes joined to it; and, when
    the keys of those rows are among the page's fields, the page alone (`page`) with the
    SELECTs of those rows by key (`related`)."""

    sql: str
    joins: Joins
    page: str
    related: Related | None = None


# The statements of fetch_first_values, by everything their text depends on: the `Where`
# texts are constants of the code, so there are few of them.
_STATEMENTS: dict[tuple[Any, ...], FirstPage] = {}
_MAX_STATEMENTS = 256


def _first_page_statement(
    model: type[Model],
    where: str,
    n: int,
    order: Order,
    fields: tuple[str, ...],
    prime: tuple[tuple[str, type[Model]], ...],
    p: str,
) -> FirstPage:
    """fetch_first_values' statement (`where` with its `n` parameters, the limit after
    them) and, for each model it joins to prime a loader, its columns and its key's index
    among them: written once per shape."""
    key = (model, where, n, order, fields, prime, p)
    found = _STATEMENTS.get(key)
    if found is not None:
        return found
    meta = model._meta
    columns = [meta.fields_db_projection[name] for name in fields]
    condition = where.format(*(f"{p}{i}" for i in range(1, n + 1)))

    def sort(prefix: str) -> str:
        return ", ".join(
            f'{prefix}"{meta.fields_db_projection[name]}"{" DESC" if desc else ""}'
            for name, desc in order.columns
        )

    select = ", ".join(f'"{column}"' for column in columns)
    sql = (
        f'SELECT {select} FROM "{meta.db_table}" WHERE {condition}'  # noqa: S608
        f" ORDER BY {sort('')} LIMIT {p}{n + 1}"
    )
    statement = FirstPage(sql, (), sql)
    if prime:
        # The page as a subquery, each referenced row joined to it, in the page's order;
        # or the page, then the referenced rows by key.
        picked = [f'page."{column}"' for column in columns]
        joined = []
        joins: Joins = ()
        related: Related = ()
        for i, (name, related_model) in enumerate(prime):
            related_columns = _columns(related_model)
            related_meta = related_model._meta
            picked += [f'j{i}."{column}"' for column in related_columns]
            table, pk = related_meta.db_table, related_meta.db_pk_column
            key_column = meta.fields_db_projection[name]
            joined.append(f'LEFT JOIN "{table}" j{i} ON j{i}."{pk}" = page."{key_column}"')
            joins += ((related_model, tuple(related_columns), related_columns.index(pk)),)
            by_key = ", ".join(f'"{column}"' for column in related_columns)
            if name in fields:
                by_keys = f'SELECT {by_key} FROM "{table}" WHERE "{pk}" IN '  # noqa: S608
                related += ((fields.index(name), by_keys),)
        statement = FirstPage(
            f"SELECT {', '.join(picked)} FROM ({sql}) page {' '.join(joined)}"  # noqa: S608
            f" ORDER BY {sort('page.')}",
            joins,
            sql,
            related if len(related) == len(prime) else None,
        )
    if len(_STATEMENTS) < _MAX_STATEMENTS:
        _STATEMENTS[key] = statement
    return statement


def _by_keys(related: Related, rows: list[Any]) -> Statements:
    """The SELECTs of the rows a page refers to, by their distinct keys (SQLite's `?`s)."""
    statements = []
    for at, select in related:
        keys = list(dict.fromkeys(row[at] for row in rows if row[at] is not None))
        if keys:
            statements.append((f"{select}({', '.join('?' * len(keys))})", keys))
    return statements


def _joined(rows: Sequence[Any], width: int, joins: Joins) -> list[list[dict[str, Any]]]:
    """The rows joined to a page's (after its `width` columns), each once, by model."""
    out = []
    for _, related, pk_index in joins:
        at = width + pk_index
        found: dict[Any, dict[str, Any]] = {}
        for row in rows:
            if (key := row[at]) is not None and key not in found:
                found[key] = dict(
                    zip(related, tuple(row)[width : width + len(related)], strict=True)
                )
        width += len(related)
        out.append(list(found.values()))
    return out


async def fetch_first_rows(
    model: type[Model],
    where: Where,
    order: Order,
    limit: int,
    fields: Sequence[str],
    prime: Mapping[str, Primable] | None = None,
) -> Sequence[Any]:
    """The first `limit` rows of `model` matching `where`, in this order, as the driver
    answers them (`fields` first, in this order), from a written-out statement: building
    the ORM's costs more than running it. `prime`: for some of those fields (foreign keys),
    loaders to prime with the rows they point to, read with the page; a row the loader
    already holds is left as priming would leave it, without its instance."""
    db = model._meta.db  # the transaction's connection inside one
    loaders = list((prime or {}).values())
    statement = _first_page_statement(
        model,
        where.sql,
        len(where.params),
        order,
        tuple(fields),
        tuple((name, loader.model) for name, loader in (prime or {}).items()),
        parameter_prefix(db),
    )
    values = [*where.params, limit]
    if not loaders:
        return await select_rows(db, statement.sql, values)
    referred: list[list[Any]]
    rows: Sequence[Any]
    if (
        statement.related is not None
        and isinstance(db, SqliteClient)
        and not isinstance(db, TransactionalDBClient)
    ):
        # On SQLite's thread, the page then the rows it refers to by key, in one hand-off:
        # each of those rows read once, not once per row of the page as a join repeats it.
        rows, found = await select_rows_then(
            db, statement.page, values, functools.partial(_by_keys, statement.related)
        )
        answers = iter(found)
        referred = [
            next(answers) if any(row[at] is not None for row in rows) else []
            for at, _ in statement.related
        ]
    else:
        rows = await select_rows(db, statement.sql, values)
        referred = _joined(rows, len(fields), statement.joins)
    for loader, (related_model, _, _), records in zip(
        loaders, statement.joins, referred, strict=True
    ):
        to_key = related_model._meta.pk.to_python_value
        pk = related_model._meta.db_pk_column
        fresh = [record for record in records if not loader.holds(to_key(record[pk]))]
        loader.prime_many({row.pk: row for row in instances(related_model, fresh)})
    return rows


async def fetch_first_values(
    model: type[Model],
    where: Where,
    order: Order,
    limit: int,
    fields: Sequence[str],
    prime: Mapping[str, Primable] | None = None,
) -> list[dict[str, Any]]:
    """`fetch_first_rows` as `fetch_values` would answer them."""
    rows = await fetch_first_rows(model, where, order, limit, fields, prime)
    return converted(model, fields, rows)


# Fields whose stored values repeat down a page (references, enums) and whose conversion
# is a pure function of a hashable stored value to an immutable one: converted once per
# distinct value of a statement's rows.
_REPEATING: tuple[type[Field[Any]], ...] = (UUIDField, CharEnumFieldInstance, IntEnumFieldInstance)

Conversion = tuple[Converter, bool]  # how a field's stored value is converted; repeating?


_CONVERSIONS: dict[tuple[type[Model], tuple[str, ...]], tuple[Conversion, ...]] = {}


def _conversions(model: type[Model], fields: Sequence[str]) -> tuple[Conversion, ...]:
    """For each field, how its stored value is converted (`converter`) and whether once per
    distinct value of a statement's rows (_REPEATING, the primary key aside)."""
    key = (model, tuple(fields))
    found = _CONVERSIONS.get(key)
    if found is None:
        meta = model._meta
        found = _CONVERSIONS[key] = tuple(
            (
                convert := converter(model, name),
                convert is not None
                and name != meta.pk_attr
                and isinstance(meta.fields_map[name], _REPEATING),
            )
            for name in fields
        )
    return found


def converted(
    model: type[Model], fields: Sequence[str], rows: Sequence[Any]
) -> list[dict[str, Any]]:
    """Rows of these fields of `model` (in this order) as `fetch_values` answers them."""
    conversions = _conversions(model, fields)
    converters = [(name, convert) for name, (convert, _) in zip(fields, conversions, strict=True)]
    memos: list[dict[Any, Any] | None] = [{} if repeating else None for _, repeating in conversions]
    out = []
    for row in rows:
        values: dict[str, Any] = {}
        for (name, convert), memo, value in zip(converters, memos, row, strict=False):
            if convert is None:
                values[name] = value
            elif memo is None:
                values[name] = convert(value)
            else:
                try:
                    values[name] = memo[value]
                except KeyError:
                    values[name] = memo[value] = convert(value)
        out.append(values)
    return out


class StoredPage:
    """The rows of one statement (`fetch_first_rows`) of these fields of `model`, each value
    converted as `fetch_values` converts it when first asked for: a page's nodes are mostly
    read for a few of their fields. A repeating value (a reference, an enum) is converted
    once per distinct stored value, as `converted` does."""

    __slots__ = ("conversions", "memos")

    def __init__(self, model: type[Model], fields: Sequence[str]) -> None:
        self.conversions = _conversions(model, fields)
        self.memos: list[dict[Any, Any]] = [{} for _ in fields]

    def value(self, row: Sequence[Any], index: int) -> Any:
        """The value of the field at `index` in this row, as `fetch_values` answers it."""
        stored = row[index]
        convert, repeating = self.conversions[index]
        if convert is None:
            return stored
        if not repeating:
            return convert(stored)
        memo = self.memos[index]
        try:
            return memo[stored]
        except KeyError:
            found = memo[stored] = convert(stored)
            return found


class StoredNode:
    """A node read off a stored row of its page (the base of `stored_type`'s classes): its
    attributes are `Column`s, converted when first read."""

    _row: Sequence[Any]
    _page: StoredPage

    def __init__(self, row: Sequence[Any], page: StoredPage) -> None:
        self._row = row
        self._page = page


class Column:
    """An attribute of a `StoredNode`: a field of its row as `fetch_values` answers it,
    then `then` applied if given; converted on first read, then kept on the node (a
    non-data descriptor: the node's own attribute hides it from then on)."""

    def __init__(self, field: str, then: Callable[[Any], Any] | None = None) -> None:
        self.field = field
        self.then = then
        self.attribute = field
        self.index = -1  # the field's among the row's, set by `stored_type`

    def __set_name__(self, owner: type, name: str) -> None:
        self.attribute = name

    def __get__(self, node: StoredNode | None, owner: type | None = None) -> Any:
        if node is None:
            return self
        value = node._page.value(node._row, self.index)
        if self.then is not None:
            value = self.then(value)
        node.__dict__[self.attribute] = value
        return value


T = TypeVar("T")


def stored_type(cls: type[T], fields: Sequence[str], columns: Mapping[str, Column]) -> type[T]:
    """A subclass of the strawberry type `cls` whose instances are made of a stored row of
    these fields and its page (`StoredNode`), their attributes `columns` (every field of
    `cls` the node's readers may read: its dataclass `__init__` is skipped). It is still a
    `cls` to GraphQL (its definition, `isinstance`)."""
    for column in columns.values():
        column.index = list(fields).index(column.field)
    return type(f"Stored{cls.__name__}", (StoredNode, cls), dict(columns))


class StoredKey(Sequence[Any]):
    """An edge's `position` (its row's sort key) read off a stored row when asked for: most
    edges' cursors are never written."""

    __slots__ = ("_indexes", "_page", "_row")

    def __init__(self, row: Sequence[Any], page: StoredPage, indexes: Sequence[int]) -> None:
        self._row = row
        self._page = page
        self._indexes = indexes  # of the order's fields among the row's

    def __len__(self) -> int:
        return len(self._indexes)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self._page.value(self._row, i) for i in self._indexes[index]]
        return self._page.value(self._row, self._indexes[index])


async def paginate(
    query: QuerySet[M] | LazyQuery[M],
    order: Order,
    *,
    first: int | None,
    after: str | None,
    wrap: Callable[[Any], Any],
    connection: type[ConnT],
    last: int | None = None,
    before: str | None = None,
    fields: Sequence[str] = (),
    where: Where | None = None,
    prime: Mapping[str, Primable] | None = None,
    stored: Callable[[Sequence[Any], StoredPage], Any] | None = None,
) -> ConnT:
    """One query for the page (one extra row tells whether more follow); count on demand.

    A backward page (`last`, `before`) is read in the reversed order, then turned round: its
    edges come in the list's order, as Relay's spec wants. `wrap` makes a node of a model
    instance or, given `fields` (the order's among them), of a dict of those fields: no
    model instances, which is cheaper. Given also `where`, the query's conditions in SQL,
    the first page (or the last) is read with a written-out statement, which also primes
    the loaders of `prime` (see `fetch_first_rows`; other pages do not), and a LazyQuery
    is built only for the other pages and `totalCount`; `stored` (a `stored_type`) then
    makes its nodes of the stored rows, each value converted when read, the edges' sort
    keys too (`StoredKey`): no dict, nothing converted that the answer does not need.
    """
    page = window(first, after, last, before)
    limit = page.limit
    model = query.model
    read = order.reversed() if page.backward else order
    beyond = None
    if page.cursor:  # decoded even for an empty page: a malformed cursor is refused
        field = "before" if page.backward else "after"
        beyond = after_filter(model, read, page.cursor, field=field)
    names = [name for name, _ in order.columns]
    rows: list[Any] = []
    edges: list[Edge[Any]]
    if limit and fields and where is not None and beyond is None:
        rows = list(await fetch_first_rows(model, where, read, limit + 1, fields, prime))
        more, rows = _cut(rows, limit, page.backward)
        if stored is not None:
            values = StoredPage(model, fields)
            key = [list(fields).index(name) for name in names]
            edges = [
                Edge(node=stored(row, values), position=StoredKey(row, values, key)) for row in rows
            ]
        else:
            edges = _edges(converted(model, fields, rows), wrap, names)
    else:
        if limit:
            page_query = queryset(query)
            if beyond is not None:
                page_query = page_query.filter(beyond)
            page_query = page_query.order_by(*read.order_by()).limit(limit + 1)
            rows = await (fetch_values(page_query, fields) if fields else page_query)
        more, rows = _cut(rows, limit, page.backward)
        if fields:
            edges = _edges(rows, wrap, names)
        else:
            edges = [
                Edge(node=wrap(row), position=[getattr(row, n) for n in names]) for row in rows
            ]
    return connection(
        edges=edges,
        page_info=PageOf(
            edges,
            has_next_page=bool(page.cursor) if page.backward else more,
            has_previous_page=more if page.backward else bool(page.cursor),
        ),
        count_query=query,
    )


def _cut(rows: list[Any], limit: int, backward: bool) -> tuple[bool, list[Any]]:
    """Whether more rows follow the page's `limit` (one more was read), and the page in
    the list's order."""
    more = len(rows) > limit
    rows = rows[:limit]
    if backward:
        rows.reverse()
    return more, rows


def _edges(rows: list[dict[str, Any]], wrap: Callable[[Any], Any], names: list[str]) -> list[Any]:
    return [Edge(node=wrap(row), position=[row[name] for name in names]) for row in rows]


async def fetch_last_of_each(
    model: type[M], key: str, keys: Sequence[Any], order: Order
) -> dict[Any, M]:
    """For each of `keys`, the last row of `model` whose `key` column holds it, in this
    order (the row a `last: 1` page of that list answers), in one statement: the rows
    numbered from the end of each list (ROW_NUMBER, SQLite and PostgreSQL alike)."""
    if not keys:
        return {}
    meta = model._meta
    db = meta.db  # the transaction's connection inside one
    p = parameter_prefix(db)
    column = meta.fields_db_projection[key]
    to_db = meta.fields_map[key]
    values = [to_db.to_db_value(value, model) for value in keys]
    marks = ", ".join(f"{p}{n + 1}" for n in range(len(values)))
    select = ", ".join(f'"{name}"' for name in _columns(model))
    sort = ", ".join(
        f'"{meta.fields_db_projection[name]}"{" DESC" if desc else ""}'
        for name, desc in order.reversed().columns
    )
    sql = (
        f"SELECT {select} FROM (SELECT {select}, ROW_NUMBER() OVER"  # noqa: S608
        f' (PARTITION BY "{column}" ORDER BY {sort}) AS "row_from_end"'
        f' FROM "{meta.db_table}" WHERE "{column}" IN ({marks})) ranked'
        ' WHERE "row_from_end" = 1'
    )
    _, rows = await db.execute_query(sql, values)
    return {getattr(row, key): row for row in instances(model, rows)}


def empty_connection(connection: type[ConnT]) -> ConnT:
    return connection(
        edges=[], page_info=PageInfo(has_next_page=False, end_cursor=None), count_query=None
    )
