"""The settings pages through Django's test client: who may see and change what (S-2, S-3), the validation messages,
bad input (never a 500, never unescaped), CSRF, log-out, the Greek labels (S-7) and the Django admin."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.test import Client, RequestFactory
from django.urls import reverse

from callcenter.activities.models import Activity, ActivityItem, ActivityKind, ActivityType
from callcenter.calls.models import Call
from callcenter.campaigns.models import Campaign, CampaignItem, CampaignType
from callcenter.contacts.models import Contact, ContactPhone
from callcenter.resources.models import CallCenterSettings, Resource
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

SCRIPT = "<script>alert(1)</script>"
ESCAPED_SCRIPT = "&lt;script&gt;alert(1)&lt;/script&gt;"
SQL = "'; DROP TABLE x; --"
BAD_VALUES = ["", "abc", "x" * 300, "9" * 300, "Ψηφία", SCRIPT, SQL]

OPTIONS_FORM = {
    "extension": "100",
    "cc_active": "on",
    "service_address": "127.0.0.1",
    "service_port": "5050",
    "internal_address": "127.0.0.1",
    "internal_port": "8000",
    "notify_new_call": "on",
    "notification_seconds": "10",
}
SETTINGS_FORM = {
    "phone_system": "asterisk",
    "digits_to_scan": "10",
    "outgoing_activity_type": "",
    "incoming_activity_type": "",
    "default_activity_type": "",
    "call_prefix": "",
    "internal_digits": "3",
    "campaign_type": "",
    "phone_region": "GR",
}


def _client(resource: Resource, **kwargs: Any) -> Client:
    client = Client(**kwargs)
    client.force_login(resource.user)
    return client


def _options_url(resource: Resource) -> str:
    return reverse("resources:options", args=[resource.pk])


def _content(response: Any) -> str:
    return response.content.decode()


def _assert_nothing_unescaped(response: Any, *, page_has_scripts: bool = False) -> None:
    assert SCRIPT not in _content(response)
    if not page_has_scripts:  # our own pages have none; the admin's have its own
        assert "<script" not in _content(response).lower()


def _options_of(resource: Resource) -> dict[str, Any]:
    stored = Resource.objects.get(pk=resource.pk)
    return {name: getattr(stored, name) for name in OPTIONS_FORM}


# --- who may see what --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["home", "resources:own_options", "resources:list", "call_center_settings"])
def test_every_page_asks_an_anonymous_visitor_to_log_in(name: str) -> None:
    url = reverse(name)
    response = Client().get(url)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"


def test_an_anonymous_post_changes_nothing(alice: Resource) -> None:
    response = Client().post(_options_url(alice), {**OPTIONS_FORM, "service_port": "6000"})
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    response = Client().post(reverse("call_center_settings"), {**SETTINGS_FORM, "digits_to_scan": "7"})
    assert response.status_code == 302
    assert Resource.objects.get(pk=alice.pk).service_port == 5050
    assert CallCenterSettings.load().digits_to_scan == 10


def test_logging_in_leads_to_the_page_asked_for(alice: Resource) -> None:
    client = Client()
    url = reverse("resources:own_options")
    response = client.post(reverse("login"), {"username": "alice", "password": PASSWORD, "next": url})
    assert response.status_code == 302 and response["Location"] == url
    assert client.get(url).status_code == 200


def test_a_wrong_password_is_refused_with_a_message(alice: Resource) -> None:
    response = Client().post(reverse("login"), {"username": "alice", "password": "wrong"})
    assert response.status_code == 200
    assert "Your username and password didn't match." in _content(response)


@pytest.mark.parametrize("value", ["", "x" * 300, "Ψηφία", SCRIPT, SQL])
def test_the_login_form_answers_bad_input_without_echoing_it_unescaped(alice: Resource, value: str) -> None:
    response = Client().post(reverse("login"), {"username": value, "password": value})
    assert response.status_code == 200
    assert "_auth_user_id" not in response.client.session
    _assert_nothing_unescaped(response)


def test_an_agent_sees_its_own_options_with_the_pbx_fields_read_only(alice: Resource) -> None:
    response = _client(alice).get(reverse("resources:own_options"))
    assert response.status_code == 200
    form = response.context["form"]
    assert {name for name, field in form.fields.items() if not field.disabled} == {
        "notify_new_call", "notification_seconds"
    }
    assert 'name="service_port"' in _content(response) and "disabled" in _content(response)


def test_an_agent_changes_its_own_notification_options_and_nothing_else(alice: Resource) -> None:
    client = _client(alice)
    response = client.post(
        reverse("resources:own_options"),
        {
            "extension": "555",
            "cc_active": "",
            "service_address": "evil.example",
            "service_port": "1",
            "internal_address": "evil.example",
            "internal_port": "2",
            "notification_seconds": "42",
            # notify_new_call left out: an unchecked box
        },
    )
    assert response.status_code == 302
    assert _options_of(alice) == {
        "extension": "100",
        "cc_active": True,
        "service_address": "127.0.0.1",
        "service_port": 5050,
        "internal_address": "127.0.0.1",
        "internal_port": 8000,
        "notify_new_call": False,
        "notification_seconds": 42,
    }
    assert "Call center options saved." in _content(client.get(response["Location"]))


def test_an_agent_cannot_make_itself_administrator(alice: Resource) -> None:
    _client(alice).post(reverse("resources:own_options"), {**OPTIONS_FORM, "is_administrator": "on"})
    assert Resource.objects.get(pk=alice.pk).is_administrator is False


def test_an_agent_is_refused_another_resources_options(alice: Resource, bob: Resource) -> None:
    client = _client(alice)
    assert client.get(_options_url(bob)).status_code == 403
    assert client.post(_options_url(bob), {**OPTIONS_FORM, "extension": "101", "notification_seconds": "99"}
                       ).status_code == 403
    assert client.get(_options_url(alice)).status_code == 403
    assert Resource.objects.get(pk=bob.pk).notification_seconds == 10


def test_an_agent_is_refused_the_resource_list(alice: Resource) -> None:
    assert _client(alice).get(reverse("resources:list")).status_code == 403


def test_an_agent_is_refused_the_crm_call_center_settings(alice: Resource) -> None:
    client = _client(alice)
    assert client.get(reverse("call_center_settings")).status_code == 403
    assert client.post(reverse("call_center_settings"), {**SETTINGS_FORM, "digits_to_scan": "7"}).status_code == 403
    assert CallCenterSettings.load().digits_to_scan == 10


def test_an_agent_is_not_shown_the_administrators_links(alice: Resource) -> None:
    page = _content(_client(alice).get(reverse("home")))
    assert f'href="{reverse("call_center_settings")}"' not in page
    assert f'href="{reverse("resources:list")}"' not in page
    assert f'href="{reverse("resources:own_options")}"' in page


def test_a_user_who_is_not_a_resource_is_told_so() -> None:
    client = Client()
    client.force_login(User.objects.create_user("dora", password=PASSWORD))
    assert client.get(reverse("resources:own_options")).status_code == 404
    assert "not a resource" in _content(client.get(reverse("home")))
    assert client.get(reverse("call_center_settings")).status_code == 403


def test_the_administrator_lists_every_resource(alice: Resource, bob: Resource, carol: Resource) -> None:
    response = _client(carol).get(reverse("resources:list"))
    assert response.status_code == 200
    for resource in (alice, bob, carol):
        assert _options_url(resource) in _content(response)


def test_the_administrator_edits_every_option_of_a_resource(alice: Resource, carol: Resource) -> None:
    response = _client(carol).post(
        _options_url(alice),
        {
            "extension": "120",
            "service_address": "bridge.example",
            "service_port": "6001",
            "internal_address": "crm.example",
            "internal_port": "6001",
            "notification_seconds": "30",
        },
    )
    assert response.status_code == 302 and response["Location"] == _options_url(alice)
    assert _options_of(alice) == {
        "extension": "120",
        "cc_active": False,
        "service_address": "bridge.example",
        "service_port": 6001,
        "internal_address": "crm.example",
        "internal_port": 6001,
        "notify_new_call": False,
        "notification_seconds": 30,
    }


def test_the_administrator_may_clear_an_extension(alice: Resource, carol: Resource) -> None:
    assert _client(carol).post(_options_url(alice), {**OPTIONS_FORM, "extension": " "}).status_code == 302
    assert Resource.objects.get(pk=alice.pk).extension is None


def test_the_administrator_cannot_give_two_resources_one_extension(alice: Resource, bob: Resource,
                                                                   carol: Resource) -> None:
    response = _client(carol).post(_options_url(alice), {**OPTIONS_FORM, "extension": "101"})
    assert response.status_code == 400
    assert "Resource with this Extension already exists." in response.context["form"].errors["extension"]
    assert Resource.objects.get(pk=alice.pk).extension == "100"


def test_the_administrator_edits_every_crm_call_center_setting(carol: Resource) -> None:
    outgoing = ActivityType.objects.create(name="Outgoing call")
    incoming = ActivityType.objects.create(name="Incoming call")
    default = ActivityType.objects.create(name="Sale opportunity", kind=ActivityKind.SALE_OPPORTUNITY)
    campaign_type = CampaignType.objects.create(name="Call center")
    response = _client(carol).post(
        reverse("call_center_settings"),
        {
            "phone_system": "tsapi",
            "digits_to_scan": "9",
            "outgoing_activity_type": str(outgoing.pk),
            "incoming_activity_type": str(incoming.pk),
            "auto_show_screen": "on",
            "default_activity_type": str(default.pk),
            "create_call_when_answered": "on",
            "call_prefix": " 0 ",
            "internal_digits": "4",
            "auto_open_activity": "on",
            "update_from_internal_calls": "on",
            "campaign_type": str(campaign_type.pk),
            "insert_campaign_items": "on",
            "phone_region": "cy",
        },
    )
    assert response.status_code == 302
    stored = CallCenterSettings.load()
    assert (stored.phone_system, stored.digits_to_scan, stored.call_prefix, stored.internal_digits) == (
        "tsapi", 9, "0", 4
    )
    assert (stored.outgoing_activity_type, stored.incoming_activity_type, stored.default_activity_type) == (
        outgoing, incoming, default
    )
    assert stored.campaign_type == campaign_type
    assert stored.auto_show_screen and stored.create_call_when_answered and stored.auto_open_activity
    assert stored.update_from_internal_calls and stored.insert_campaign_items
    assert stored.phone_region == "CY"
    assert CallCenterSettings.objects.count() == 1


def test_inactive_activity_types_are_not_offered(carol: Resource) -> None:
    retired = ActivityType.objects.create(name="Retired", active=False)
    response = _client(carol).post(reverse("call_center_settings"),
                                   {**SETTINGS_FORM, "default_activity_type": str(retired.pk)})
    assert response.status_code == 400
    assert "default_activity_type" in response.context["form"].errors
    assert CallCenterSettings.load().default_activity_type is None


# --- validation messages -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("service_port", "0", "Ensure this value is greater than or equal to 1."),
        ("service_port", "65536", "Ensure this value is less than or equal to 65535."),
        ("internal_port", "-1", "Ensure this value is greater than or equal to 1."),
        ("notification_seconds", "601", "Ensure this value is less than or equal to 600."),
        ("internal_port", "70000", "Ensure this value is less than or equal to 65535."),
        ("notification_seconds", "0", "Ensure this value is greater than or equal to 1."),
        ("extension", "12a", "An extension is 1 to 8 digits, nothing else."),
        ("service_address", "bad host", "Enter a host name or an IP address, such as 127.0.0.1 or crm.example.com."),
    ],
)
def test_the_options_page_explains_what_is_wrong(
    alice: Resource, carol: Resource, field: str, value: str, message: str
) -> None:
    response = _client(carol).post(_options_url(alice), {**OPTIONS_FORM, field: value})
    assert response.status_code == 400
    assert message in response.context["form"].errors[field]
    assert _options_of(alice)[field] == getattr(alice, field)


def test_it_refuses_equal_ports_on_the_same_address(alice: Resource, carol: Resource) -> None:
    response = _client(carol).post(
        _options_url(alice),
        {**OPTIONS_FORM, "service_address": "10.0.0.7", "internal_address": " 10.0.0.7 ", "service_port": "5050",
         "internal_port": "5050"},
    )
    assert response.status_code == 400
    message = (
        "Service port 5050 equals the internal communication port on the same address 10.0.0.7; "
        "choose different ports."
    )
    assert response.context["form"].errors["internal_port"] == [message]
    assert _content(response).count("choose different ports") == 1
    assert Resource.objects.get(pk=alice.pk).internal_port == 8000


def test_equal_ports_on_different_addresses_are_saved(alice: Resource, carol: Resource) -> None:
    response = _client(carol).post(
        _options_url(alice),
        {**OPTIONS_FORM, "service_address": "10.0.0.7", "internal_address": "10.0.0.8", "internal_port": "5050"},
    )
    assert response.status_code == 302
    assert Resource.objects.get(pk=alice.pk).internal_port == 5050


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("digits_to_scan", "3", "Ensure this value is greater than or equal to 4."),
        ("digits_to_scan", "-1", "Ensure this value is greater than or equal to 4."),
        ("digits_to_scan", "16", "Ensure this value is less than or equal to 15."),
        ("internal_digits", "0", "Ensure this value is greater than or equal to 1."),
        ("internal_digits", "9", "Ensure this value is less than or equal to 8."),
        ("call_prefix", "0a", "The call prefix may hold digits only, such as 0."),
        ("call_prefix", "+9", "The call prefix may hold digits only, such as 0."),
        ("call_prefix", "٠", "The call prefix may hold digits only, such as 0."),
        ("phone_region", "XX", "XX is not a known country code; use two letters such as GR."),
        ("phone_system", "avaya", "Select a valid choice. avaya is not one of the available choices."),
    ],
)
def test_the_settings_page_explains_what_is_wrong(carol: Resource, field: str, value: str, message: str) -> None:
    before = CallCenterSettings.load()
    response = _client(carol).post(reverse("call_center_settings"), {**SETTINGS_FORM, field: value})
    assert response.status_code == 400
    assert message in response.context["form"].errors[field]
    assert getattr(CallCenterSettings.load(), field) == getattr(before, field)


# --- bad input on every field: a clear message (400) or a safe value, never a 500, never unescaped ---------------

OPTION_FIELDS_ACCEPTING = {
    "extension": {"": None},
    "service_address": {"abc": "abc"},
    "internal_address": {"abc": "abc"},
    # Any Unicode digits are read as the number they write.
    "service_port": {"١٠٠": 100},
    "internal_port": {"١٠٠": 100},
    "notification_seconds": {"١٠٠": 100},
    "cc_active": {"": False},
    "notify_new_call": {"": False},
}
SETTINGS_FIELDS_ACCEPTING = {
    "outgoing_activity_type": {"": None},
    "incoming_activity_type": {"": None},
    "default_activity_type": {"": None},
    "campaign_type": {"": None},
    "call_prefix": {"": ""},
    "auto_show_screen": {"": False},
    "create_call_when_answered": {"": False},
    "auto_open_activity": {"": False},
    "update_from_internal_calls": {"": False},
    "insert_campaign_items": {"": False},
}
BOOLEAN_FIELDS = {"cc_active", "notify_new_call", "auto_show_screen", "create_call_when_answered",
                  "auto_open_activity", "update_from_internal_calls", "insert_campaign_items"}
# What a select, unlike a text box, does not echo back.
NOT_ECHOED = {"outgoing_activity_type", "incoming_activity_type", "default_activity_type", "campaign_type"}


def _check_bad_input(response: Any, field: str, value: str, accepted: dict[str, Any], stored: Any) -> None:
    assert response.status_code in (302, 400), response.status_code
    _assert_nothing_unescaped(response)
    if field in BOOLEAN_FIELDS:
        # A checkbox is on when anything is posted: the value is never stored, only a boolean.
        assert response.status_code == 302
        assert stored is bool(value)
    elif value in accepted:
        assert response.status_code == 302
        assert stored == accepted[value]
    else:
        assert response.status_code == 400
        errors = response.context["form"].errors
        assert errors[field] and all(message.strip() for message in errors[field])
        if value == SCRIPT and field not in NOT_ECHOED:
            assert ESCAPED_SCRIPT in _content(response)


@pytest.mark.parametrize("value", [*BAD_VALUES, "١٠٠"])
@pytest.mark.parametrize("field", list(OPTIONS_FORM))
def test_every_option_answers_bad_input_clearly(alice: Resource, carol: Resource, field: str, value: str) -> None:
    before = _options_of(alice)
    response = _client(carol).post(_options_url(alice), {**OPTIONS_FORM, field: value})
    after = _options_of(alice)
    _check_bad_input(response, field, value, OPTION_FIELDS_ACCEPTING.get(field, {}), after[field])
    if response.status_code == 400:
        assert after == before


@pytest.mark.parametrize("value", BAD_VALUES)
@pytest.mark.parametrize("field", ["notification_seconds", "notify_new_call", "service_port", "extension"])
def test_an_agents_own_options_answer_bad_input_clearly(alice: Resource, field: str, value: str) -> None:
    before = _options_of(alice)
    response = _client(alice).post(reverse("resources:own_options"), {**OPTIONS_FORM, field: value})
    after = _options_of(alice)
    if field in ("service_port", "extension"):
        # Read-only for an agent: whatever is posted is ignored.
        assert response.status_code == 302
        assert after == before
    else:
        _check_bad_input(response, field, value, OPTION_FIELDS_ACCEPTING.get(field, {}), after[field])
    _assert_nothing_unescaped(response)


SETTINGS_FIELDS = [*SETTINGS_FORM, "auto_show_screen", "create_call_when_answered", "auto_open_activity",
                   "update_from_internal_calls", "insert_campaign_items"]


@pytest.mark.parametrize("value", [*BAD_VALUES, "١٢"])
@pytest.mark.parametrize("field", SETTINGS_FIELDS)
def test_every_setting_answers_bad_input_clearly(carol: Resource, field: str, value: str) -> None:
    before = CallCenterSettings.load()
    response = _client(carol).post(reverse("call_center_settings"), {**SETTINGS_FORM, field: value})
    after = CallCenterSettings.load()
    accepted = SETTINGS_FIELDS_ACCEPTING.get(field, {})
    if field in ("digits_to_scan",):
        accepted = {"١٢": 12}
    _check_bad_input(response, field, value, accepted, getattr(after, field))
    if response.status_code == 400:
        assert getattr(after, field) == getattr(before, field)


def test_unicode_digits_in_a_port_are_read_as_that_port(alice: Resource, carol: Resource) -> None:
    response = _client(carol).post(_options_url(alice), {**OPTIONS_FORM, "service_port": "٥٠٥١"})
    assert response.status_code == 302
    assert Resource.objects.get(pk=alice.pk).service_port == 5051


def test_unicode_digits_are_not_an_extension(alice: Resource, carol: Resource) -> None:
    response = _client(carol).post(_options_url(alice), {**OPTIONS_FORM, "extension": "١٠٠"})
    assert response.status_code == 400
    assert "An extension is 1 to 8 digits, nothing else." in response.context["form"].errors["extension"]


def test_an_unknown_resource_is_not_found(carol: Resource) -> None:
    assert _client(carol).get(reverse("resources:options", args=[999999])).status_code == 404


# --- CSRF, log-out, language -------------------------------------------------------------------------------------


def test_a_post_without_a_csrf_token_is_refused(alice: Resource, carol: Resource) -> None:
    client = _client(carol, enforce_csrf_checks=True)
    assert client.post(reverse("call_center_settings"), {**SETTINGS_FORM, "digits_to_scan": "7"}).status_code == 403
    assert client.post(_options_url(alice), {**OPTIONS_FORM, "service_port": "6000"}).status_code == 403
    assert CallCenterSettings.load().digits_to_scan == 10
    assert Resource.objects.get(pk=alice.pk).service_port == 5050


def test_a_post_with_the_pages_csrf_token_is_accepted(carol: Resource) -> None:
    client = _client(carol, enforce_csrf_checks=True)
    page = client.get(reverse("call_center_settings"))
    token = page.context["csrf_token"]
    response = client.post(reverse("call_center_settings"),
                           {**SETTINGS_FORM, "digits_to_scan": "7", "csrfmiddlewaretoken": str(token)})
    assert response.status_code == 302
    assert CallCenterSettings.load().digits_to_scan == 7


def test_logging_out_takes_a_post_and_ends_the_session(alice: Resource) -> None:
    client = _client(alice)
    assert client.get(reverse("logout")).status_code == 405
    assert client.get(reverse("home")).status_code == 200
    response = client.post(reverse("logout"))
    assert response.status_code == 302 and response["Location"] == reverse("login")
    assert client.get(reverse("home")).status_code == 302


def test_logging_out_without_a_csrf_token_is_refused(alice: Resource) -> None:
    client = _client(alice, enforce_csrf_checks=True)
    assert client.post(reverse("logout")).status_code == 403
    assert client.get(reverse("home")).status_code == 200


def _in_greek(client: Client, url: str) -> str:
    response = client.post(reverse("set_language"), {"language": "el", "next": url})
    assert response.status_code == 302 and response["Location"] == url
    page = client.get(url)
    assert page.status_code == 200
    return _content(page)


def test_the_settings_page_speaks_greek_after_the_language_switch(carol: Resource) -> None:
    page = _in_greek(_client(carol), reverse("call_center_settings"))
    assert '<html lang="el">' in page
    for label in ("Ψηφία για σάρωση", "Τηλεφωνικό κέντρο", "Αυτόματη εμφάνιση φόρμας τηλ. κέντρου",
                  "Αυτόματο άνοιγμα δραστ. από εισερχόμενη κλήση",
                  "Ενημέρωση τηλεφωνικού κέντρου από εσωτερικές κλήσεις"):
        assert label in page
    assert "Digits to scan" not in page


def test_the_options_page_speaks_greek_after_the_language_switch(carol: Resource) -> None:
    page = _in_greek(_client(carol), reverse("resources:own_options"))
    for label in ("Θύρα υπηρεσίας", "Διεύθυνση υπηρεσίας", "Διεύθυνση εσωτερικής υπηρεσίας",
                  "Θύρα εσωτερικής επικοινωνίας", "Ειδοποίηση σε νέα κλήση", "Διάρκεια ειδοποίησης", "Ενεργό"):
        assert label in page
    assert "Service port" not in page


def test_validation_messages_speak_greek_too(alice: Resource, carol: Resource) -> None:
    client = _client(carol)
    _in_greek(client, reverse("call_center_settings"))
    response = client.post(_options_url(alice), {**OPTIONS_FORM, "internal_port": "5050"})
    assert response.status_code == 400
    message = response.context["form"].errors["internal_port"][0]
    assert "5050" in message and "επιλέξτε διαφορετικές θύρες" in message
    assert "choose different ports" not in _content(response)


def test_switching_back_to_english(carol: Resource) -> None:
    client = _client(carol)
    _in_greek(client, reverse("call_center_settings"))
    client.post(reverse("set_language"), {"language": "en", "next": "/"})
    assert "Digits to scan" in _content(client.get(reverse("call_center_settings")))


# --- Django admin ------------------------------------------------------------------------------------------------

OUR_MODELS = [
    Resource, CallCenterSettings, Contact, ActivityType, Activity, CampaignType, Campaign, Call,
]
# Every model of the product the admin shows, including those later issues add.
ADMIN_MODELS = sorted(
    (model for model in admin.site._registry if model.__module__.startswith("callcenter.")),
    key=lambda model: model._meta.label,
)


def test_every_model_of_ours_is_in_the_admin_directly_or_inline() -> None:
    assert set(OUR_MODELS) <= set(ADMIN_MODELS)
    inline_models = {
        inline.model for model in ADMIN_MODELS for inline in admin.site._registry[model].inlines
    }
    assert {ContactPhone, ActivityItem, CampaignItem} <= inline_models


def _admin_url(model: type, view: str) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}")


@pytest.mark.parametrize("model", ADMIN_MODELS, ids=lambda m: m._meta.label)
def test_the_administrator_opens_every_admin_list_and_add_page(carol: Resource, model: type) -> None:
    client = _client(carol)
    assert client.get(_admin_url(model, "changelist")).status_code == 200
    request = RequestFactory().get("/")
    request.user = carol.user
    may_add = admin.site._registry[model].has_add_permission(request)
    assert may_add or model not in OUR_MODELS or model is CallCenterSettings
    assert client.get(_admin_url(model, "add")).status_code == (200 if may_add else 403)


def test_the_administrator_opens_every_admin_change_page(alice: Resource, carol: Resource) -> None:
    activity_type = ActivityType.objects.create(name="Phone call")
    contact = Contact.objects.create(last_name="Demo")
    ContactPhone.objects.create(contact=contact, slot=1, number="2101234567", digits="2101234567",
                                key="2101234567")
    campaign = Campaign.objects.create(campaign_type=CampaignType.objects.create(name="Call center"), name="Spring")
    CampaignItem.objects.create(campaign=campaign, description="Router")
    call = Call.objects.create(resource=alice, kind="incoming", direction="in", started_at="2026-03-02T09:30Z",
                               extension="100", pbx_call_id="1.1", number=SCRIPT)
    activity = Activity.objects.create(activity_type=activity_type, subject=SCRIPT, starts_at="2026-03-02T09:30Z",
                                       call=call, contact=contact)
    ActivityItem.objects.create(activity=activity, description="Router")
    client = _client(carol)
    for obj in (alice, CallCenterSettings.load(), contact, activity_type, activity, campaign.campaign_type,
                campaign, call):
        response = client.get(reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change",
                                      args=[obj.pk]))
        assert response.status_code == 200, obj
        _assert_nothing_unescaped(response, page_has_scripts=True)
        assert ESCAPED_SCRIPT in _content(response) or obj not in (call, activity)


def test_only_one_settings_row_can_be_added_in_the_admin(carol: Resource) -> None:
    CallCenterSettings.load()
    assert _client(carol).get(_admin_url(CallCenterSettings, "add")).status_code == 403


@pytest.mark.parametrize("model", ADMIN_MODELS, ids=lambda m: m._meta.label)
def test_an_agent_is_refused_the_admin(alice: Resource, model: type) -> None:
    client = _client(alice)
    for view in ("changelist", "add"):
        response = client.get(_admin_url(model, view))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


def _contact_admin_form(number: str, slot: str = "1") -> dict[str, str]:
    return {
        "first_name": "Γιώργος",
        "last_name": "Demo",
        "company": "",
        "email": "",
        "notes": "",
        "phones-TOTAL_FORMS": "1",
        "phones-INITIAL_FORMS": "0",
        "phones-MIN_NUM_FORMS": "0",
        "phones-MAX_NUM_FORMS": "4",
        "phones-0-slot": slot,
        "phones-0-number": number,
    }


def test_a_contact_added_in_the_admin_gets_its_search_text_and_match_keys(carol: Resource) -> None:
    response = _client(carol).post(_admin_url(Contact, "add"), _contact_admin_form("+30 210 123 4567", "2"))
    assert response.status_code == 302
    contact = Contact.objects.get()
    assert contact.search_text == "γιωργοσ demo"
    phone = contact.phones.get()
    assert (phone.slot, phone.number, phone.digits, phone.key) == (2, "+30 210 123 4567", "302101234567",
                                                                   "2101234567")


@pytest.mark.parametrize("number", ["abc", SCRIPT.replace("1", "x"), SQL, "Ψηφία", "1" * 300])
def test_the_contact_admin_refuses_a_number_without_digits_with_a_message(carol: Resource, number: str) -> None:
    response = _client(carol).post(_admin_url(Contact, "add"), _contact_admin_form(number))
    assert response.status_code == 200
    assert Contact.objects.count() == 0 and ContactPhone.objects.count() == 0
    _assert_nothing_unescaped(response, page_has_scripts=True)
    assert "holds no digits" in _content(response) or "at most 80 characters" in _content(response)


@pytest.mark.parametrize("slot", ["0", "5"])
def test_the_contact_admin_refuses_a_slot_outside_1_to_4(carol: Resource, slot: str) -> None:
    response = _client(carol).post(_admin_url(Contact, "add"), _contact_admin_form("2101234567", slot))
    assert response.status_code == 200
    assert ContactPhone.objects.count() == 0


def test_the_resource_admin_refuses_equal_ports_on_the_same_address(carol: Resource) -> None:
    dora = User.objects.create_user("dora")
    response = _client(carol).post(
        _admin_url(Resource, "add"),
        {"user": str(dora.pk), "extension": "102", "service_address": "127.0.0.1", "service_port": "5050",
         "internal_address": "127.0.0.1", "internal_port": "5050", "notification_seconds": "10"},
    )
    assert response.status_code == 200
    assert "choose different ports" in _content(response)
    assert not Resource.objects.filter(user=dora).exists()
