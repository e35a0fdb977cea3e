"""calls.bulk writes what save() writes: each value prepared as Field.get_db_prep_save() prepares it (the shortcuts
return the same), errors as Django's own classes, and plain values inserted with the defaults a new object has."""

from __future__ import annotations

import datetime as dt
import enum
import zoneinfo
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext
from django.utils.functional import lazy

from callcenter.activities.models import Activity, ActivityItem
from callcenter.calls import bulk
from callcenter.calls.models import Call, CallKind, CallLeg, ProcessedEvent

pytestmark = pytest.mark.django_db

ATHENS = zoneinfo.ZoneInfo("Europe/Athens")
WHEN = dt.datetime(2026, 12, 3, 10, 15, 30, 123456, tzinfo=dt.UTC)


class Flavour(enum.IntEnum):
    ONE = 1


VALUES = [
    None, "", "0030 210", "Ω μέγα", 0, 7, -3, 2**40, True, False, Flavour.ONE, CallKind.MISSED,
    lazy(lambda: "lazy text", str)(), WHEN, WHEN.replace(microsecond=0), WHEN.astimezone(ATHENS),
    dt.datetime(2026, 12, 3, 10, 15, tzinfo=dt.timezone(dt.timedelta(hours=-5))), Decimal("1.50"), 1.5, "12",
]


@pytest.mark.parametrize("model", [Call, CallLeg, ProcessedEvent, Activity, ActivityItem])
def test_every_prepared_value_is_what_get_db_prep_save_gives(model):
    compared = 0
    for field in model._meta.concrete_fields:
        prepare = bulk.preparer(field, connection)
        for value in VALUES:
            try:
                expected = field.get_db_prep_save(value, connection)
            except (TypeError, ValueError, ArithmeticError, AttributeError, ValidationError) as exc:
                with pytest.raises(type(exc)):
                    prepare(value)
                continue
            got = prepare(value)
            assert type(got) is type(expected), (field.name, value, got, expected)
            assert got == expected or repr(got) == repr(expected), (field.name, value, got, expected)  # Jsonb()
            compared += 1
    assert compared > 50


def test_an_inserted_row_reads_back_as_saved(alice):
    call = Call(resource=alice, kind=CallKind.INCOMING, direction="in", started_at=WHEN, extension="100",
                pbx_call_id="bulk.1", number="2101234567", answered_at=WHEN.astimezone(ATHENS))
    bulk.insert_returning_ids(Call, [call])
    stored = Call.objects.get(pk=call.pk)
    assert (stored.started_at, stored.answered_at, stored.resource_id) == (WHEN, WHEN, alice.pk)
    assert stored.kind == "incoming"
    assert stored.created_at is not None and stored.updated_at is not None


def test_plain_values_take_the_defaults_of_a_new_object():
    bulk.insert_values(ProcessedEvent, ("event_id", "bridge_id", "event_type", "occurred_at"),
                       [("bulk:1", None, "call.ringing", WHEN), ("bulk:2", None, "call.ended", WHEN)])
    first = ProcessedEvent.objects.get(event_id="bulk:1")
    assert (first.failed, first.error, first.payload, first.occurred_at) == (False, "", None, WHEN)
    assert first.received_at is not None
    with pytest.raises(ValueError, match="no field"):
        bulk.insert_values(ProcessedEvent, ("event_id", "colour"), [("bulk:3", "red")])


def test_a_broken_rule_raises_djangos_integrity_error():
    row = ("bulk:dup", None, "call.ringing", WHEN)
    with pytest.raises(IntegrityError), transaction.atomic():
        bulk.insert_values(ProcessedEvent, ("event_id", "bridge_id", "event_type", "occurred_at"), [row, row])
    assert not ProcessedEvent.objects.filter(event_id="bulk:dup").exists()


# ---- rows_in: a queryset's rows, read in one statement on PostgreSQL ----------------------------------------------


def _legs_and_calls(alice):
    """Three legs of two PBX calls, one with its call row, one without, and a leg of another call."""
    call = Call(resource=alice, kind=CallKind.INCOMING, direction="in", started_at=WHEN, extension="100",
                pbx_call_id="rows.1", number="2101234567", answered_at=WHEN.astimezone(ATHENS), duration=7,
                answer_group="rows.1")
    bulk.insert_returning_ids(Call, [call])
    legs = [CallLeg(pbx_call_id="rows.1", extension="100", call=call, rang_at=WHEN, cause=16, remote_name="Ω"),
            CallLeg(pbx_call_id="rows.1", extension="101", answered_elsewhere=True),
            CallLeg(pbx_call_id="rows.2", extension="100", ended_at=WHEN)]
    bulk.insert_returning_ids(CallLeg, legs)
    CallLeg.objects.create(pbx_call_id="rows.3", extension="100")
    return call, legs


def _same_row(got, expected):
    assert type(got) is type(expected) and got.pk == expected.pk
    assert (got._state.adding, got._state.db) == (expected._state.adding, expected._state.db) == (False, "default")
    for name, mine, theirs in zip(bulk.attnames(type(got)), bulk.values(got), bulk.values(expected), strict=True):
        assert (type(mine), mine) == (type(theirs), theirs), name
        if isinstance(theirs, dt.datetime):
            assert mine.tzinfo is theirs.tzinfo, name


@pytest.mark.parametrize("logged", [False, True], ids=["direct", "queries-logged"])
def test_rows_in_reads_what_the_queryset_reads_with_the_related_row_cached(alice, django_assert_num_queries, logged):
    call, _legs = _legs_and_calls(alice)
    ids = ["rows.1", "rows.2", "rows.9"]
    expected = sorted(CallLeg.objects.select_related("call").filter(pbx_call_id__in=ids), key=lambda leg: leg.pk)
    with transaction.atomic():
        if logged:  # Django's cursor, where queries are logged (DEBUG, tests counting them): the queryset itself
            with CaptureQueriesContext(connection) as queries:
                got = bulk.rows_in(CallLeg, "pbx_call_id", ids, related="call", lock=True, chunk=2)
            assert len(queries) == 2
        else:
            got = bulk.rows_in(CallLeg, "pbx_call_id", ids, related="call", lock=True)
    got.sort(key=lambda leg: leg.pk)
    assert len(got) == len(expected) == 3
    for mine, theirs in zip(got, expected, strict=True):
        _same_row(mine, theirs)
    with django_assert_num_queries(0):  # the call is cached on its leg, and the leg on its call (one-to-one)
        assert [leg.call is not None for leg in got] == [True, False, False]
        _same_row(got[0].call, expected[0].call)
        assert got[0].call.leg is got[0]
    assert bulk.rows_in(CallLeg, "pbx_call_id", []) == []
    assert sorted(leg.pk for leg in bulk.rows_in(CallLeg, "pbx_call_id", ["rows.3"])) == \
        sorted(CallLeg.objects.filter(pbx_call_id="rows.3").values_list("pk", flat=True))


def test_rows_in_refuses_a_related_name_that_is_no_forward_key(alice):
    _legs_and_calls(alice)
    with pytest.raises(ValueError, match="not a forward foreign key"):
        bulk.rows_in(CallLeg, "pbx_call_id", ["rows.1"], related="extension")


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks are PostgreSQL's (SQLite locks the file)")
def test_rows_in_locks_the_rows_it_reads_until_the_transaction_ends_and_only_in_one(alice):
    import psycopg

    _legs_and_calls(alice)
    other = psycopg.connect(**{key: value for key, value in connection.get_connection_params().items()
                               if key not in ("context", "cursor_factory", "prepare_threshold")}, autocommit=True)
    try:
        def try_lock(pbx_call_id: str) -> bool:
            try:
                other.execute("SELECT id FROM calls_callleg WHERE pbx_call_id = %s FOR UPDATE NOWAIT",
                              [pbx_call_id]).fetchall()
            except psycopg.errors.LockNotAvailable:
                return False
            return True

        with pytest.raises(TransactionManagementError):  # as the queryset: a lock only lasts a transaction
            bulk.rows_in(CallLeg, "pbx_call_id", ["rows.1"], lock=True)
        with transaction.atomic():
            bulk.rows_in(CallLeg, "pbx_call_id", ["rows.1"], related="call", lock=True)
            assert not try_lock("rows.1")  # our legs, locked
            assert try_lock("rows.2")  # not read: free
        assert try_lock("rows.1")
    finally:
        other.close()


def test_values_and_prepared_values_of_a_row_with_deferred_fields_are_those_of_the_whole_row(alice):
    call, _legs = _legs_and_calls(alice)
    whole = Call.objects.get(pk=call.pk)
    deferred = Call.objects.only("id", "number").get(pk=call.pk)
    assert bulk.values(deferred) == bulk.values(whole)
    fields = [field for field in Call._meta.concrete_fields if field.name not in ("created_at", "updated_at")]
    assert bulk.prepared([Call.objects.only("id").get(pk=call.pk)], fields, connection, add=False) == \
        bulk.prepared([whole], fields, connection, add=False)
    assert bulk.prepared([whole], [], connection, add=False) == [[]]


@pytest.mark.parametrize("logged", [False, True], ids=["direct", "queries-logged"])
def test_present_says_which_values_some_row_has_as_the_queryset_does(logged):
    bulk.insert_values(ProcessedEvent, ("event_id", "bridge_id", "event_type", "occurred_at"),
                       [(f"present:{n}", None, "call.ringing", WHEN) for n in range(3)])
    asked = ["present:2", "present:9", "present:0", "present:2", "Ω"]
    expected = set(ProcessedEvent.objects.filter(event_id__in=asked).values_list("event_id", flat=True))
    if logged:  # Django's cursor, where queries are logged: the queryset itself
        with CaptureQueriesContext(connection) as queries:
            got = bulk.present(ProcessedEvent, "event_id", asked)
        assert len(queries) == 1
    else:
        got = bulk.present(ProcessedEvent, "event_id", asked)
    assert got == expected == {"present:0", "present:2"}
    assert bulk.present(ProcessedEvent, "event_id", []) == set()
    assert bulk.present(CallLeg, "call_id", [-1]) == set()


@pytest.mark.parametrize("logged", [False, True], ids=["direct", "queries-logged"])
def test_values_in_gives_the_values_list_of_the_queryset(alice, logged):
    call, legs = _legs_and_calls(alice)
    asked = [call.pk, -5, call.pk]
    expected = sorted(CallLeg.objects.filter(call_id__in=asked).values_list("call_id", "id", "rang_at", "remote_name"))
    if logged:  # Django's cursor, where queries are logged: the queryset itself
        with CaptureQueriesContext(connection) as queries:
            got = bulk.values_in(CallLeg, "call_id", asked, ("call_id", "id", "rang_at", "remote_name"))
        assert len(queries) == 1
    else:
        got = bulk.values_in(CallLeg, "call_id", asked, ("call_id", "id", "rang_at", "remote_name"))
    assert sorted(got) == expected == [(call.pk, legs[0].pk, WHEN, "Ω")]
    assert [type(value) for value in got[0]] == [type(value) for value in expected[0]]
    assert got[0][2].tzinfo is expected[0][2].tzinfo
    assert bulk.values_in(CallLeg, "call_id", [], ("id",)) == []
    with pytest.raises(ValueError, match="fields of its own"):
        bulk.values_in(Call, "id", [call.pk], ("leg",))
