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
