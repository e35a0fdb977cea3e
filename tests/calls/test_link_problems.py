"""What the manual promises the operator about the bridge's link (issue 11, item 8): S-2 addresses compared by what
they resolve to, S-4.5 a disagreement written to the CRM's error log once per change, S-3.1 another phone system
shown on the settings page and the screen."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation

from callcenter import hosts, wire
from callcenter.calls.actions import receive_events
from callcenter.calls.commands import address_mismatch, link_status
from callcenter.calls.models import Bridge
from callcenter.crm.models import ErrorLogEntry
from callcenter.resources.models import CallCenterSettings, PhoneSystem, Resource, check_address_ports

from .conftest import T0

pytestmark = pytest.mark.django_db


# ---- S-2: one comparison, by what the addresses resolve to -----------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [("localhost", "127.0.0.1"), ("127.0.0.1", "0.0.0.0"), ("::1", "[::1]"), ("localhost", "::1"),
     ("[::1]", "127.0.0.1"), ("0:0:0:0:0:0:0:1", "::1"), ("::ffff:127.0.0.1", "localhost"), ("LOCALHOST", "::"),
     ("PBX.example", "pbx.example"), ("192.168.1.5", "192.168.1.5")],
)
def test_the_same_place_written_differently_agrees(a: str, b: str) -> None:
    assert hosts.same_host(a, b) and hosts.same_host(b, a)


@pytest.mark.parametrize(("a", "b"), [("127.0.0.1", "192.168.1.5"), ("0.0.0.0", "192.168.1.5"),
                                      ("pbx.example", "crm.example"), ("10.0.0.1", "10.0.0.2")])
def test_different_places_disagree(a: str, b: str) -> None:
    assert not hosts.same_host(a, b)


def _report(bridge: Bridge, resource: Resource, **link: Any) -> None:
    bridge.pbx_connected = True
    bridge.extensions = [resource.extension]
    bridge.last_seen_at = timezone.now()
    bridge.link = {"service_address": resource.service_address, "service_port": resource.service_port,
                   "callback_address": resource.internal_address, "callback_port": resource.internal_port,
                   "heartbeat_seconds": 30, **link}
    bridge.save()


@pytest.mark.parametrize("reported", ["localhost", "::1", "[::1]", "127.0.0.1"])
def test_the_crm_does_not_call_localhost_and_127_0_0_1_a_disagreement(
    alice: Resource, bridge: Bridge, asterisk: CallCenterSettings, reported: str
) -> None:
    alice.service_address = "127.0.0.1"
    alice.save()
    _report(bridge, alice, service_address=reported, callback_address="localhost")
    assert address_mismatch(alice, bridge) == ""
    assert link_status(alice).logged_in


def test_a_real_disagreement_is_still_one(alice: Resource, bridge: Bridge, asterisk: CallCenterSettings) -> None:
    _report(bridge, alice, service_address="192.168.1.5")
    assert "Service address is 127.0.0.1 here but the bridge uses 192.168.1.5" in link_status(alice).reason


def test_the_options_form_refuses_the_same_port_on_localhost_and_127_0_0_1() -> None:
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        check_address_ports("localhost", 5050, "127.0.0.1", 5050)


# ---- S-4.5: the error log, once per change ------------------------------------------------------------------------


def _link(n: int, **fields: Any) -> wire.LinkState:
    values: dict[str, Any] = {"phone_system": wire.PhoneSystem.ASTERISK, "pbx_connected": True,
                              "extensions": ("100",), "service_address": "127.0.0.1", "service_port": 5050,
                              "callback_address": "127.0.0.1", "callback_port": 8000, "heartbeat_seconds": 30.0}
    values.update(fields)
    return wire.LinkState(event_id=f"link-{n}", occurred_at=T0 + n, **values)


def _entries(subject_start: str) -> list[ErrorLogEntry]:
    return list(ErrorLogEntry.objects.filter(subject__startswith=subject_start).order_by("at", "pk"))


def test_a_disagreement_writes_one_error_log_entry_per_change(
    alice: Resource, bridge: Bridge, asterisk: CallCenterSettings
) -> None:
    alice.service_address, alice.service_port, alice.internal_address, alice.internal_port = "127.0.0.1", 5050, \
        "127.0.0.1", 8000
    alice.save()
    receive_events(bridge, [_link(1, service_port=6060)])
    receive_events(bridge, [_link(2, service_port=6060)])  # a heartbeat: nothing new
    receive_events(bridge, [_link(3, service_port=6060)])
    entries = _entries("address:")
    assert [entry.code for entry in entries] == [ErrorLogEntry.ADDRESS_MISMATCH]
    assert "Service port is 5050 in its call center options but bridge Office PBX uses 6060" in entries[0].text()
    assert not link_status(alice).logged_in

    receive_events(bridge, [_link(4, service_port=7070)])  # another disagreement: a new entry
    receive_events(bridge, [_link(5, service_address="localhost")])  # agrees again (localhost is 127.0.0.1)
    receive_events(bridge, [_link(6)])
    assert [entry.code for entry in _entries("address:")] == [
        ErrorLogEntry.ADDRESS_MISMATCH, ErrorLogEntry.ADDRESS_MISMATCH, ErrorLogEntry.ADDRESS_AGREE,
    ]
    with translation.override("el"):
        assert "δεν έχει κάνει είσοδο" in _entries("address:")[0].text()


# ---- S-3.1: another phone system, on the settings page and the screen ---------------------------------------------


def test_another_phone_system_is_logged_once_and_shown_on_the_settings_page_and_the_screen(
    alice: Resource, carol: Resource, bridge: Bridge, cc_settings: CallCenterSettings, caplog: pytest.LogCaptureFixture
) -> None:
    cc_settings.phone_system = PhoneSystem.TSAPI
    cc_settings.save()
    for n in range(3):
        receive_events(bridge, [_link(n)])
    assert [entry.code for entry in _entries("phone_system:")] == [ErrorLogEntry.PHONE_SYSTEM_MISMATCH]
    assert caplog.text.count("reports phone system asterisk but the CRM is set to tsapi") == 1
    warning = "Bridge Office PBX reports the phone system Asterisk Manager (AMI), but CRM settings → Call center says"

    admin = Client()
    admin.force_login(carol.user)
    page = admin.get(reverse("call_center_settings")).content.decode()
    assert warning in page
    assert "Error log" in page and "Office PBX reports the phone system" in page  # the log, newest first

    agent = Client()
    agent.force_login(alice.user)
    screen = agent.get(reverse("calls:screen")).content.decode()
    assert warning in screen

    greek = Client(HTTP_ACCEPT_LANGUAGE="el")
    greek.force_login(alice.user)
    assert "αναφέρει τηλεφωνικό κέντρο" in greek.get(reverse("calls:screen")).content.decode()

    cc_settings.phone_system = PhoneSystem.ASTERISK
    cc_settings.save()
    receive_events(bridge, [_link(9)])
    assert warning not in agent.get(reverse("calls:screen")).content.decode()
    assert [entry.code for entry in _entries("phone_system:")] == [
        ErrorLogEntry.PHONE_SYSTEM_MISMATCH, ErrorLogEntry.PHONE_SYSTEM_AGREE,
    ]
