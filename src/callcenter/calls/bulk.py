"""Writing many rows at once, with the values save() would write: what the batch path of the call rules uses.

Django's own bulk_create() and bulk_update() are correct but spend most of a bridge batch's time compiling
statements and preparing values; these helpers build the same statements once per chunk and prepare each value
the way save() does (Field.pre_save, then Field.get_db_prep_save), taking a shortcut only where that method would
return the value unchanged or, for datetimes on SQLite, the same text. tests/calls/test_batch_equivalence.py checks
that a batch written here and the same events saved one at a time leave the same rows, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import functools
import operator
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from django.conf import settings
from django.db import connections, models, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.base.operations import BaseDatabaseOperations
from django.db.models import Field, Model
from django.db.transaction import TransactionManagementError

_M = TypeVar("_M", bound=Model)

# Field classes whose get_db_prep_save() returns a value of this exact type unchanged: on every backend, and on
# SQLite also integers (PostgreSQL's backend wraps those of integer fields in a type of the column's size, below).
_UNCHANGED: dict[type[Field[Any, Any]], type] = {
    models.CharField: str, models.TextField: str, models.SlugField: str, models.BooleanField: bool,
}
_INTEGER_FIELDS = (models.IntegerField, models.PositiveIntegerField, models.PositiveSmallIntegerField,
                   models.SmallIntegerField, models.BigIntegerField, models.PositiveBigIntegerField)
_AUTO_FIELDS = (models.AutoField, models.BigAutoField, models.SmallAutoField)
_UNCHANGED_ON_SQLITE: dict[type[Field[Any, Any]], type] = {
    **_UNCHANGED, **dict.fromkeys(_INTEGER_FIELDS, int), **dict.fromkeys(_AUTO_FIELDS, int),
}
# On PostgreSQL an auto field's get_db_prep_value() is get_prep_value() (int() of an int) and
# validate_autopk_value(), which returns the value unless a backend overrides it.
_UNCHANGED_ON_POSTGRESQL: dict[type[Field[Any, Any]], type] = {**_UNCHANGED, **dict.fromkeys(_AUTO_FIELDS, int)}


def preparer(field: Field[Any, Any], connection: BaseDatabaseWrapper) -> Callable[[Any], Any]:
    """``field.get_db_prep_save(value, connection)`` as a one-argument function, with a shortcut for the values it
    would not change (or, for integers on PostgreSQL, would only wrap). Only for fields of the exact classes above (a
    subclass may prepare differently). Bound to ``connection``: make one per statement, not once for all threads."""

    def generic(value: Any) -> Any:
        return field.get_db_prep_save(value, connection)

    vendor = connection.vendor
    target: Field[Any, Any] = field
    if isinstance(field, models.ForeignKey) and type(field) in (models.ForeignKey, models.OneToOneField):
        target = field.target_field  # what ForeignKey.get_db_prep_save() defers to, for all but None and ""
    if vendor == "sqlite":
        kind = _UNCHANGED_ON_SQLITE.get(type(target))
    elif vendor == "postgresql" and _plain_autopk(connection):
        kind = _UNCHANGED_ON_POSTGRESQL.get(type(target))
    else:
        kind = _UNCHANGED.get(type(target))
    if kind is not None:
        def unchanged(value: Any) -> Any:
            return value if value is None or type(value) is kind else generic(value)

        return unchanged
    wrap = _integer_wrapper(target, connection)
    if wrap is not None:
        # IntegerField.get_db_prep_value(): int() of an int, then the backend's adapt_integerfield_value(), which on
        # PostgreSQL (psycopg 3) wraps it in the psycopg type of the column's size (Int2, Int4, Int8).
        def wrapped(value: Any) -> Any:
            return None if value is None else wrap(value) if type(value) is int else generic(value)

        return wrapped
    if type(field) is models.DateTimeField and settings.USE_TZ:
        if vendor == "sqlite" and connection.timezone is dt.UTC:
            # DateTimeField.get_prep_value() keeps an aware datetime; SQLite's adapt_datetimefield_value() makes it
            # naive in UTC and returns str(value). For a datetime already in UTC that is str() without the zone.
            def sqlite_datetime(value: Any) -> Any:
                if value is None:
                    return None
                if type(value) is dt.datetime and value.tzinfo is dt.UTC:
                    return value.isoformat(" ")[:-6]  # str() of the naive datetime: the same without "+00:00"
                return generic(value)

            return sqlite_datetime
        if vendor == "postgresql":
            # PostgreSQL's adapt_datetimefield_value() returns the value: the driver sends the aware datetime.
            def aware_datetime(value: Any) -> Any:
                return value if value is None or (type(value) is dt.datetime and value.tzinfo is not None) \
                    else generic(value)

            return aware_datetime
    return generic


def _plain_autopk(connection: BaseDatabaseWrapper) -> bool:
    return type(connection.ops).validate_autopk_value is BaseDatabaseOperations.validate_autopk_value


def _integer_wrapper(field: Field[Any, Any], connection: BaseDatabaseWrapper) -> Callable[[int], Any] | None:
    """What PostgreSQL's adapt_integerfield_value() wraps an int of ``field`` in, if that is all it does."""
    if connection.vendor != "postgresql" or type(field) not in _INTEGER_FIELDS:
        return None
    from django.db.backends.postgresql.operations import DatabaseOperations

    ops = connection.ops
    if type(ops).adapt_integerfield_value is not DatabaseOperations.adapt_integerfield_value:
        return None
    wrapper: Callable[[int], Any] | None = getattr(ops, "integerfield_type_map", {}).get(field.get_internal_type())
    return wrapper


def prepared(rows: Sequence[Model], fields: Sequence[Field[Any, Any]], connection: BaseDatabaseWrapper, *,
             add: bool) -> list[list[Any]]:
    """Each row's values of ``fields`` as save() sends them to the database: field.pre_save() (which sets auto_now
    fields) then field.get_db_prep_save(). A field that keeps Field.pre_save() is read directly, which is all that
    method does; this runs for every value a batch writes."""
    if not fields:
        return [[] for _row in rows]
    steps = [(preparer(field, connection), None if type(field).pre_save is Field.pre_save else field.pre_save)
             for field in fields]
    names = [field.attname for field in fields]
    read, read_attributes = _getters(*names)
    prepared_rows = []
    for row in rows:
        try:
            current = read(row.__dict__)
        except KeyError:  # a deferred field: the attribute reads it from the database
            current = read_attributes(row)
        prepared_rows.append([prepare(value if pre_save is None else pre_save(row, add))
                              for value, (prepare, pre_save) in zip(current, steps, strict=True)])
    return prepared_rows


@functools.cache
def _getters(*names: str) -> tuple[Callable[[dict[str, Any]], tuple[Any, ...]], Callable[[Model], tuple[Any, ...]]]:
    """Functions giving the values of the fields ``names`` (attnames) as a tuple: from a model instance's __dict__,
    where Django's field descriptors keep them (reading it directly skips the descriptor that each foreign key's id
    goes through), and through the attributes (for a row with deferred fields)."""
    if len(names) == 1:
        [name] = names
        return (lambda data: (data[name],)), (lambda row: (getattr(row, name),))
    return operator.itemgetter(*names), operator.attrgetter(*names)


def _run(connection: BaseDatabaseWrapper, sql: str, params: Sequence[Any], *, many: bool = False,
         returning: bool = False) -> list[Any]:
    """Run ``sql`` (``%s`` placeholders) with ``params``, or once per row of ``params`` when ``many``; the rows it
    returns when ``returning``. On SQLite the statement goes to sqlite3's own cursor with ``?`` placeholders: Django's
    cursor would rewrite each of a multi-row statement's thousands of ``%s`` with a regular expression (and copy an
    executemany's rows through itertools.tee) first. Django's error classes are kept; only where queries are logged
    (DEBUG, tests counting them) does the statement take Django's cursor, to be logged."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite" and not connection.queries_logged:
            raw = cursor.cursor
            with connection.wrap_database_errors:
                (sqlite3.Cursor.executemany if many else sqlite3.Cursor.execute)(raw, sql.replace("%s", "?"), params)
                return raw.fetchall() if returning else []
        if connection.vendor == "postgresql" and not connection.queries_logged:
            # Django's cursors bind on the client: psycopg writes every value, each array element included, into
            # the statement's text in Python. A plain psycopg cursor sends them apart, and in binary (%b): an array
            # in text would be quoted and escaped element by element in Python (8 times slower), and the server
            # would parse each element's text.
            import psycopg

            with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as server_bound:
                (server_bound.executemany if many else server_bound.execute)(sql.replace("%s", "%b"), params)
                return server_bound.fetchall() if returning else []
        (cursor.executemany if many else cursor.execute)(sql, params)
        return cursor.fetchall() if returning else []


def _connection(model: type[Model]) -> BaseDatabaseWrapper:
    return connections[router.db_for_write(model)]


def _inserted_fields(model: type[Model]) -> list[Field[Any, Any]]:
    return [field for field in model._meta.concrete_fields if not field.primary_key]


def insert_returning_ids(model: type[_M], rows: list[_M]) -> list[_M]:
    """bulk_create(), the values prepared field by field as save() prepares them. On SQLite one multi-row
    INSERT ... RETURNING id per chunk (Django spends about twice as long compiling the same statement); on PostgreSQL
    one INSERT ... SELECT FROM UNNEST(one array per column) RETURNING id, as bulk_create() does there, the arrays
    bound on the server; elsewhere bulk_create() itself."""
    if not rows:
        return rows
    meta = model._meta
    connection = _connection(model)
    if connection.vendor not in ("sqlite", "postgresql") or not connection.features.can_return_rows_from_bulk_insert:
        return model._default_manager.bulk_create(rows)
    fields = _inserted_fields(model)
    for row in rows:
        # What bulk_create() does first: take the ids of related rows inserted just before (a leg's or an
        # activity's new call).
        row._prepare_related_fields_for_save(operation_name="bulk_create")  # type: ignore[attr-defined]
    returning = f" RETURNING {connection.ops.quote_name(str(meta.pk.column))}"
    if connection.vendor == "postgresql":
        chunks = [(rows, _run(connection, _unnest_insert(model, fields, connection) + returning,
                              _by_column(prepared(rows, fields, connection, add=True), len(fields)), returning=True))]
    else:
        one_row = "(" + ", ".join(["%s"] * len(fields)) + ")"
        per_statement = max(1, connection.ops.bulk_batch_size(fields, rows))
        head = f"{_insert_head(model, fields, connection)} VALUES "
        chunks = []
        for start in range(0, len(rows), per_statement):
            chunk = rows[start:start + per_statement]
            params = [value for row_values in prepared(chunk, fields, connection, add=True) for value in row_values]
            chunks.append((chunk, _run(connection, head + ", ".join([one_row] * len(chunk)) + returning, params,
                                       returning=True)))
    for chunk, ids in chunks:
        for row, (pk,) in zip(chunk, ids, strict=True):
            row.pk = pk
            row._state.adding = False
            row._state.db = connection.alias
    return rows


def insert_values(model: type[Model], names: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """bulk_create() for rows given as values of the fields ``names`` (by attname), without building a model object
    for each: the other fields take what an unsaved object would (their default; the time now for auto_now and
    auto_now_add fields, once for all rows). On SQLite one INSERT run for all rows (executemany), on PostgreSQL one
    INSERT ... SELECT FROM UNNEST."""
    connection = _connection(model)
    fields = _inserted_fields(model)
    position = {name: index for index, name in enumerate(names)}
    if set(position) - {field.attname for field in fields}:
        raise ValueError(f"{model.__name__} has no field(s) {sorted(set(position) - {f.attname for f in fields})}")
    if connection.vendor not in ("sqlite", "postgresql"):
        model._default_manager.bulk_create([model(**dict(zip(names, row, strict=True))) for row in rows])
        return
    now = dt.datetime.now(dt.UTC) if settings.USE_TZ else dt.datetime.now()  # noqa: DTZ005 - as timezone.now()
    steps: list[tuple[int | None, Any, Callable[[Any], Any]]] = []
    for field in fields:
        prepare = preparer(field, connection)
        if field.attname in position:
            steps.append((position[field.attname], None, prepare))
        elif getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            steps.append((None, prepare(now), prepare))
        else:
            steps.append((None, prepare(field.get_default()), prepare))
    values = [[prepare(row[index]) if index is not None else fixed for index, fixed, prepare in steps]
              for row in rows]
    if not values:
        return
    if connection.vendor == "postgresql":
        _run(connection, _unnest_insert(model, fields, connection), _by_column(values, len(fields)))
        return
    placeholders = ", ".join(["%s"] * len(fields))
    _run(connection, f"{_insert_head(model, fields, connection)} VALUES ({placeholders})", values, many=True)


def _insert_head(model: type[Model], fields: Sequence[Field[Any, Any]], connection: BaseDatabaseWrapper) -> str:
    quote = connection.ops.quote_name
    return f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(quote(str(field.column)) for field in fields)})"


def _unnest_insert(model: type[Model], fields: Sequence[Field[Any, Any]], connection: BaseDatabaseWrapper) -> str:
    arrays = ", ".join(f"%s::{field.db_type(connection)}[]" for field in fields)
    return f"{_insert_head(model, fields, connection)} SELECT * FROM UNNEST({arrays})"  # noqa: S608 - model's names


def _by_column(values_by_row: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    return [[row_values[index] for row_values in values_by_row] for index in range(width)]


@functools.cache
def attnames(model: type[Model]) -> tuple[str, ...]:
    return tuple(field.attname for field in model._meta.concrete_fields)


def values(row: Model) -> tuple[object, ...]:
    """The row's field values, in attnames() order."""
    read, read_attributes = _getters(*attnames(type(row)))
    try:
        return read(row.__dict__)
    except KeyError:  # a deferred field
        return read_attributes(row)


def update_rows(model: type[_M], rows: Sequence[_M], names: Sequence[str]) -> None:
    """save(update_fields=...) for each of ``rows`` with the fields named (by attname; auto_now fields set), as one
    statement for all rows: on PostgreSQL an UPDATE ... FROM UNNEST(one array per column), elsewhere one UPDATE run
    for each row (executemany). QuerySet.bulk_update() would build a CASE expression per field and row, slower than
    saving one by one."""
    if not rows:
        return
    meta = model._meta
    connection = _connection(model)
    by_attname = {field.attname: field for field in meta.concrete_fields if not field.primary_key}
    fields = [by_attname[name] for name in names]
    quote = connection.ops.quote_name
    table, pk = quote(meta.db_table), quote(str(meta.pk.column))
    columns: list[str] = [quote(str(field.column)) for field in fields]
    values_by_row = prepared(rows, fields, connection, add=False)
    if connection.vendor == "postgresql":
        types = [str(field.db_type(connection)) for field in fields]
        arrays = ", ".join([f"%s::{meta.pk.rel_db_type(connection)}[]"] + [f"%s::{kind}[]" for kind in types])
        assignments = ", ".join(f"{column} = new.{column}" for column in columns)
        names_list = ", ".join([pk, *columns])
        # "AND pk = ANY(ids)" as well: on its own, the join makes the planner read the whole table once the batch
        # has a few hundred rows (a hash join; its guess of a random read's cost is for disks), and the time per
        # batch grows with the table; a primary key's ANY it estimates right, statistics or not: an index scan.
        sql = (f"UPDATE {table} SET {assignments} FROM UNNEST({arrays}) AS new ({names_list}) "  # noqa: S608
               f"WHERE {table}.{pk} = new.{pk} AND {table}.{pk} = ANY(%s::{meta.pk.rel_db_type(connection)}[])")
        ids = [row.pk for row in rows]
        _run(connection, sql, [ids, *_by_column(values_by_row, len(fields)), ids])
        return
    assignments = ", ".join(f"{column} = %s" for column in columns)
    sql = f"UPDATE {table} SET {assignments} WHERE {pk} = %s"  # noqa: S608 - names from the model
    for index, row in enumerate(rows):
        values_by_row[index].append(row.pk)
    _run(connection, sql, values_by_row, many=True)


# Field classes whose values a binary result gives as Django's own (text) loading does.
_BINARY_SAFE: tuple[type[Field[Any, Any]], ...] = (
    models.CharField, models.TextField, models.SlugField, models.BooleanField, models.DateTimeField,
    models.ForeignKey, models.OneToOneField, *_INTEGER_FIELDS, *_AUTO_FIELDS,
)


def rows_in(model: type[_M], attname: str, values: Sequence[Any], *, related: str | None = None,
            lock: bool = False, chunk: int = 500) -> list[_M]:
    """``model.objects.filter(<attname>__in=values)``, with ``.select_related(related)`` (a forward foreign key or
    one-to-one, cached on each row, and for a one-to-one each row on its related row) and, when ``lock``,
    ``.select_for_update(of=("self",))``, as a list in no particular order.

    On PostgreSQL one statement, ``= ANY(array)``, the array sent and the rows read in binary: Django's queryset
    would compile an ``IN`` of one placeholder per value, write each value into the statement's text in Python, and
    parse every timestamp of the rows from text in Python; the instances are built as the queryset builds them
    (Model.from_db). Elsewhere, or where a value might load differently in binary, the queryset, ``chunk`` values
    at a time."""
    connection = _connection(model)
    meta = model._meta
    field = meta.get_field(attname)
    if not isinstance(field, Field):
        raise ValueError(f"{model.__name__}.{attname} is not a field of its own")  # a reverse relation
    join = meta.get_field(related) if related is not None else None
    if join is not None and not isinstance(join, models.ForeignKey):
        raise ValueError(f"{model.__name__}.{related} is not a forward foreign key or one-to-one")
    other: type[Model] | None = join.related_model if join is not None else None
    if not (connection.vendor == "postgresql" and not connection.queries_logged and _binary_safe(model, other)
            and _utc_session(connection)):
        rows: list[_M] = []
        for start in range(0, len(values), chunk):
            queryset = model._default_manager.filter(**{f"{attname}__in": values[start:start + chunk]})
            if related is not None:
                queryset = queryset.select_related(related)
            if lock:
                queryset = queryset.select_for_update(of=("self",))
            rows += queryset
        return rows
    if lock and connection.get_autocommit():
        raise TransactionManagementError("select_for_update cannot be used outside of a transaction.")  # as Django
    if not values:
        return []
    import psycopg

    quote = connection.ops.quote_name
    own = list(meta.concrete_fields)
    own_columns = ", ".join(f"t.{quote(str(f.column))}" for f in own)
    # Each value looked up on its own (a nested loop over the array, an index probe per value): the planner, left to
    # choose, reads the whole table once it guesses that many rows match (as it does for ANY(array) of a column
    # without statistics, the state of a table growing fast before it is analysed), and the time per batch then
    # grows with the table.
    lookup = (f"UNNEST(%b::{field.db_type(connection)}[]) AS k (v) CROSS JOIN LATERAL (SELECT {own_columns}"  # noqa: S608
              f" FROM {quote(meta.db_table)} t WHERE t.{quote(str(field.column))} = k.v"
              f" OFFSET 0{' FOR UPDATE' if lock else ''}) t")
    selected, joined = own_columns, ""
    theirs: list[Field[Any, Any]] = []
    if join is not None and other is not None:
        theirs = list(other._meta.concrete_fields)
        their_columns = ", ".join(f"r.{quote(str(f.column))}" for f in theirs)
        selected += f", {their_columns}"
        joined = (f" LEFT JOIN LATERAL (SELECT {their_columns} FROM {quote(other._meta.db_table)} r"  # noqa: S608
                  f" WHERE r.{quote(str(join.target_field.column))} = t.{quote(str(join.column))} OFFSET 0) r ON TRUE")
    sql = f"SELECT {selected} FROM {lookup}{joined}"  # noqa: S608 - the model's names
    values = list(dict.fromkeys(values))  # each row once
    prepare = preparer(field, connection)
    with connection.cursor(), connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, [[prepare(value) for value in values]], binary=True)
        fetched = cursor.fetchall()
    alias = connection.alias
    width = len(own)
    names = [f.attname for f in own]
    found: list[_M] = []
    if join is None or other is None:
        for values_row in fetched:
            found.append(model.from_db(alias, names, values_row))
        return found
    other_names = [f.attname for f in theirs]
    other_pk = next(index for index, f in enumerate(theirs) if f.primary_key)
    set_local = join.set_cached_value
    set_remote = join.remote_field.set_cached_value if join.unique else None
    for values_row in fetched:
        row = model.from_db(alias, names, values_row[:width])
        if values_row[width + other_pk] is None:
            set_local(row, None)
        else:
            related_row = other.from_db(alias, other_names, values_row[width:])
            set_local(row, related_row)
            if set_remote is not None:
                set_remote(related_row, row)
        found.append(row)
    return found


def _binary_safe(*models_: type[Model] | None) -> bool:
    return all(type(f) in _BINARY_SAFE for m in models_ if m is not None for f in m._meta.concrete_fields)


def _utc_session(connection: BaseDatabaseWrapper) -> bool:
    """Whether a timestamp read in binary comes with the tzinfo Django's loader gives it: the session's time zone is
    UTC (psycopg then gives datetime.UTC) and Django's connection time zone is datetime.UTC."""
    connection.ensure_connection()
    return (settings.USE_TZ and connection.timezone is dt.UTC
            and connection.connection.info.parameter_status("TimeZone") == "UTC")


def present(model: type[Model], attname: str, values: Sequence[Any]) -> set[Any]:
    """Which of ``values`` some row of ``model`` has in the field ``attname``:
    ``set(model.objects.filter(<attname>__in=values).values_list(attname, flat=True))``. On PostgreSQL one statement
    probing the field's index once per value (UNNEST, CROSS JOIN LATERAL ... LIMIT 1), the array sent in binary;
    elsewhere, or where queries are logged, the queryset."""
    connection = _connection(model)
    field = model._meta.get_field(attname)
    if not isinstance(field, Field):
        raise ValueError(f"{model.__name__}.{attname} is not a field of its own")
    if connection.vendor != "postgresql" or connection.queries_logged or type(field) not in _BINARY_SAFE:
        return set(model._default_manager.filter(**{f"{attname}__in": list(values)})
                   .values_list(attname, flat=True))
    if not values:
        return set()
    quote = connection.ops.quote_name
    column = quote(str(field.column))
    sql = (f"SELECT t.v FROM UNNEST(%s::{field.db_type(connection)}[]) AS k (v) CROSS JOIN LATERAL "  # noqa: S608
           f"(SELECT {column} AS v FROM {quote(model._meta.db_table)} WHERE {column} = k.v LIMIT 1) t")
    prepare = preparer(field, connection)
    return {value for (value,) in _run(connection, sql, [[prepare(value) for value in dict.fromkeys(values)]],
                                       returning=True)}


def values_in(model: type[Model], attname: str, values: Sequence[Any], names: Sequence[str]) -> list[tuple[Any, ...]]:
    """``model.objects.filter(<attname>__in=values).values_list(*names)`` as a list, in no particular order. On
    PostgreSQL one statement probing the field's index once per value (UNNEST, CROSS JOIN LATERAL ... OFFSET 0), the
    array sent in binary: the planner, given ``IN`` of a few thousand values, reads the whole table once it guesses
    a scan cheaper than that many probes (a guess made for disks, and from statistics the table may not have yet).
    Elsewhere, where queries are logged, or for fields whose values Django converts after reading, the queryset."""
    connection = _connection(model)
    meta = model._meta
    field = meta.get_field(attname)
    chosen = [meta.get_field(name) for name in names]
    if not isinstance(field, Field) or not all(isinstance(f, Field) and f.concrete for f in chosen):
        raise ValueError(f"{model.__name__}: {attname} and {', '.join(names)} must be fields of its own")
    if connection.vendor != "postgresql" or connection.queries_logged or type(field) not in _BINARY_SAFE \
            or not all(type(f) in _BINARY_SAFE for f in chosen):
        return list(model._default_manager.filter(**{f"{attname}__in": list(values)}).values_list(*names))
    if not values:
        return []
    quote = connection.ops.quote_name
    columns = ", ".join(f"t.{quote(str(f.column))}" for f in chosen if isinstance(f, Field))
    sql = (f"SELECT {columns} FROM UNNEST(%s::{field.db_type(connection)}[]) AS k (v) CROSS JOIN LATERAL "  # noqa: S608
           f"(SELECT * FROM {quote(meta.db_table)} t WHERE t.{quote(str(field.column))} = k.v OFFSET 0) t")
    prepare = preparer(field, connection)
    return [tuple(row) for row in _run(connection, sql, [[prepare(value) for value in dict.fromkeys(values)]],
                                       returning=True)]
