"""The Call Center screen (S-4) through Django's test client: calls are made by the real path (wire events through
receive_events, as the bridge endpoint applies them), then the screen is read and used as a browser with htmx does."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from callcenter import wire
from callcenter.activities.models import Activity
from callcenter.calls.actions import receive_events
from callcenter.calls.models import Call
from callcenter.campaigns.models import Campaign, CampaignType
from callcenter.contacts.actions import create_contact
from callcenter.contacts.models import Contact

from .screen_support import HTMX, NowEvents, call_ended, client_for, log_in

pytestmark = pytest.mark.django_db

XSS = "<img src=x onerror=alert(1)>"
SCREEN = reverse("calls:screen")


def _page(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def _rows(html: str) -> list[str]:
    return re.findall(r'<tr id="call-(\d+)"', html)


def _only_call() -> Call:
    return Call.objects.get()


def _flash(response) -> str:
    match = re.search(r'<div id="cc-flash"[^>]*>(.*?)</div>', response.content.decode(), re.S)
    assert match, response.content.decode()[:500]
    return re.sub(r"<[^>]+>", "", match.group(1)).replace("×", "").strip()


# ---- who sees what ------------------------------------------------------------------------------------------------


def _urls_for(call_id: int) -> list[tuple[str, str]]:
    """Every URL of the screen that names a call, with its method."""
    return [
        ("get", reverse("calls:details", args=[call_id])),
        ("get", reverse("calls:row", args=[call_id])),
        ("get", reverse("calls:link", args=[call_id])),
        ("post", reverse("calls:link", args=[call_id])),
        ("post", reverse("calls:link_new", args=[call_id])),
        ("get", reverse("calls:activity", args=[call_id])),
        ("post", reverse("calls:activity", args=[call_id])),
        ("post", reverse("calls:set_contact", args=[call_id])),
        ("post", reverse("calls:open", args=[call_id])),
        ("get", reverse("calls:contact_search") + f"?q=a&purpose=link&call={call_id}"),
    ]


def test_anonymous_users_are_sent_to_the_login_page_from_every_url(alice, asterisk):
    call_ended()
    call_id = _only_call().pk
    client = Client()
    plain = [("get", SCREEN), ("get", reverse("calls:rows")), ("get", reverse("calls:status")),
             ("post", reverse("calls:campaign")), ("post", reverse("calls:clear_selected")),
             ("post", reverse("calls:clear_all")), ("post", reverse("calls:dial")), ("post", reverse("calls:redial")),
             ("post", reverse("calls:answer")), ("post", reverse("calls:hangup")), ("post", reverse("calls:transfer")),
             ("post", reverse("calls:busy")), ("get", reverse("activities:detail", args=[1]))]
    for method, url in plain + _urls_for(call_id):
        response = getattr(client, method)(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login")), (method, url)


def test_the_screen_is_the_home_page_of_resources(alice):
    page = _page(client_for(alice).get("/"))
    assert 'id="cc-rows"' in page and f'href="{SCREEN}"' in page


def test_an_agent_sees_only_own_calls_and_an_administrator_all_with_their_resource(alice, bob, carol, asterisk):
    call_ended("100", number="2101111111")
    call_ended("101", number="2102222222")
    call_ended("555", number="2103333333")  # an extension nobody owns
    alices = _rows(_page(client_for(alice).get(SCREEN)))
    assert [Call.objects.get(pk=pk).extension for pk in alices] == ["100"]
    carols = _page(client_for(carol).get(SCREEN))
    assert sorted(Call.objects.get(pk=pk).extension for pk in _rows(carols)) == ["100", "101", "555"]
    assert "Bob Agent" in carols and "Alice Agent" in carols


def test_another_agents_call_id_is_not_found_in_every_url(alice, bob, asterisk):
    call_ended("101")
    bobs = _only_call().pk
    client = client_for(alice)
    for method, url in _urls_for(bobs):
        assert getattr(client, method)(url, **HTMX).status_code == 404, (method, url)
    for url in (reverse("calls:answer"), reverse("calls:hangup"), reverse("calls:redial"), reverse("calls:transfer")):
        assert client.post(url, {"call": bobs, "number": "101"}, **HTMX).status_code == 404, url
    page = _page(client.get(SCREEN + f"?call={bobs}"))
    assert f'data-call="{bobs}"' not in page and "2101234567" not in page
    assert client_for(bob).get(reverse("calls:details", args=[bobs])).status_code == 200


def test_a_user_who_is_neither_resource_nor_administrator_gets_no_screen(db):
    from django.contrib.auth.models import User

    client = Client()
    client.force_login(User.objects.create_user("dora", password="x" * 12))
    assert client.get(SCREEN).status_code == 404
    assert "not a resource" in client.get("/").content.decode()


def test_every_post_needs_the_csrf_token(alice, asterisk):
    call_ended()
    call_id = _only_call().pk
    client = client_for(alice, enforce_csrf_checks=True)
    posts = [url for method, url in _urls_for(call_id) if method == "post"] + [
        reverse(name) for name in ("calls:campaign", "calls:clear_selected", "calls:clear_all", "calls:dial",
                                   "calls:redial", "calls:answer", "calls:hangup", "calls:transfer", "calls:busy")]
    for url in posts:
        assert client.post(url, {"ids": [call_id]}, **HTMX).status_code == 403, url
    assert Call.objects.filter(pk=call_id).exists()
    token = client.get(SCREEN).context["csrf_token"]
    response = client.post(reverse("calls:clear_selected"), {"ids": [call_id]}, HTTP_X_CSRFTOKEN=str(token), **HTMX)
    assert response.status_code == 200
    assert not Call.objects.filter(pk=call_id).exists()


# ---- the list (S-4.1, S-4.3, S-4.4) -------------------------------------------------------------------------------


def test_the_list_shows_type_time_number_contact_duration_and_activity(alice, asterisk, phone_call_type):
    asterisk.incoming_activity_type = phone_call_type
    asterisk.save()
    create_contact(first_name="Γιώργος", last_name="Παπαδόπουλος", phones=["210 123 4567"])
    call_ended(number="00302101234567", talk=3725)
    call_ended(number="6971234567", talk=0)
    call_ended(number="2107654321", direction=wire.Direction.OUTBOUND, talk=0)
    page = _page(client_for(alice).get(SCREEN))
    rows = {c.pk: c for c in Call.objects.all()}
    answered = next(c for c in rows.values() if c.number == "00302101234567")
    row = re.search(rf'<tr id="call-{answered.pk}".*?</tr>', page, re.S).group(0)
    assert "Incoming" in row and "+30 21 0123 4567" in row and "Γιώργος Παπαδόπουλος" in row
    assert "1:02:05" in row
    assert timezone.localtime(answered.started_at).strftime("%d/%m/%Y %H:%M:%S") in row
    assert f'href="{reverse("activities:detail", args=[answered.activity.pk])}"' in row
    missed = next(c for c in rows.values() if c.number == "6971234567")
    assert "Missed" in re.search(rf'<tr id="call-{missed.pk}".*?</tr>', page, re.S).group(0)
    outgoing = next(c for c in rows.values() if c.number == "2107654321")
    out_row = re.search(rf'<tr id="call-{outgoing.pk}".*?</tr>', page, re.S).group(0)
    assert "Outgoing" in out_row and "0:00:00" in out_row


def test_a_call_in_progress_counts_its_duration_live_and_cannot_be_ticked_for_clearing(alice, asterisk):
    e = NowEvents()
    receive_events(None, [e.ringing("100", 0), e.answered("100", 60)])
    call = _only_call()
    row = re.search(r'<tr id="call-\d+".*?</tr>', _page(client_for(alice).get(SCREEN)), re.S).group(0)
    assert f'data-answered="{int(call.answered_at.timestamp())}"' in row
    assert re.search(r'name="ids" value="\d+"[^>]*disabled', row)
    assert re.search(r"0:01:\d\d", row)  # answered a minute ago


def test_from_date_defaults_to_today_and_is_inclusive(alice, asterisk):
    today = timezone.localdate()
    midnight = timezone.make_aware(dt.datetime.combine(today, dt.time.min))
    yesterday_late = call_ended(start=(midnight - dt.timedelta(seconds=90)).timestamp())
    call_ended(start=(midnight + dt.timedelta(seconds=1)).timestamp()) if timezone.now() > midnight + dt.timedelta(
        minutes=2) else None
    client = client_for(alice)
    page = _page(client.get(SCREEN))
    assert f'value="{today:%Y-%m-%d}"' in page
    old = Call.objects.get(pbx_call_id=yesterday_late.call_id)
    assert str(old.pk) not in _rows(page)
    earlier = _page(client.get(reverse("calls:rows"), {"from_date": f"{today - dt.timedelta(days=1):%Y-%m-%d}"},
                                **HTMX))
    assert str(old.pk) in _rows(earlier)


@pytest.mark.parametrize("query", ["ΠΑΠΑΔΟΠΟΥΛΟΣ", "παπαδοπουλος", "Παπαδόπουλο", "γιωργος παπ", "2101234567",
                                   "+30 210 123 4567", "0030 210 1234567", "Acme Ορυκτέλαια", "99999"])
def test_search_finds_the_contact_by_name_or_phone_ignoring_case_and_accents(alice, asterisk, query):
    """A whole number finds the calls of every contact that has it in any slot (by match key); part of a number
    finds the calls whose own number holds it."""
    create_contact(first_name="Γιώργος", last_name="Παπαδόπουλος", company="ACME ορυκτελαια",
                   phones=["2109999999", "210 123 4567"])
    call_ended(number="2109999999")
    call_ended(number="6970000000")
    wanted = Call.objects.get(number="2109999999").pk
    page = _page(client_for(alice).get(reverse("calls:rows"), {"q": query}, **HTMX))
    assert _rows(page) == [str(wanted)], query


def test_search_finds_part_of_the_calls_own_number_but_not_digits_inside_words(alice, asterisk):
    call_ended(number="00306977123456")
    call_ended(number="2101112223")
    client = client_for(alice)
    first = Call.objects.get(number="00306977123456").pk
    assert _rows(_page(client.get(reverse("calls:rows"), {"q": "7123"}, **HTMX))) == [str(first)]
    assert _rows(_page(client.get(reverse("calls:rows"), {"q": "697-712"}, **HTMX))) == [str(first)]
    assert _rows(_page(client.get(reverse("calls:rows"), {"q": "flat 7123"}, **HTMX))) == []


@pytest.mark.parametrize("query", ["", "   ", "x" * 100, "Ωωω ñ 日本 🙂", "<script>alert(1)</script>",
                                   "' OR 1=1; --", "%", "_", "\\", "1'; DROP TABLE calls_call; --"])
def test_odd_searches_match_safely_and_come_back_escaped(alice, asterisk, query):
    call_ended(number="2101112223")
    page = _page(client_for(alice).get(reverse("calls:rows"), {"q": query}, **HTMX))
    assert "<script>" not in page
    if query.strip():
        assert _rows(page) == []
    assert Call.objects.count() == 1


@pytest.mark.parametrize("query", ["y" * 300, "a\x00b"])
def test_a_search_that_is_too_long_or_has_a_nul_gets_a_message(alice, asterisk, query):
    call_ended()
    response = client_for(alice).get(reverse("calls:rows"), {"q": query}, **HTMX)
    assert response.status_code == 200
    assert _flash(response)
    page = _page(client_for(alice).get(SCREEN, {"q": query}))
    assert "error" in page


def test_a_bad_from_date_gets_a_message_not_an_error(alice, asterisk):
    for bad in ("yesterday", "2024-13-45", "<b>", "9" * 300):
        response = client_for(alice).get(reverse("calls:rows"), {"from_date": bad}, **HTMX)
        assert response.status_code == 200 and "from date" in _flash(response).lower()


def test_the_list_pages_by_cursor_newest_first(alice, asterisk):
    start = timezone.now().timestamp() - 3000
    for i in range(55):
        call_ended(number=f"21000000{i:02d}", start=start + i * 10, talk=1)
    client = client_for(alice)
    # The calls began 50 minutes ago, which after midnight is yesterday: list from their day, not from "today".
    day = f"{timezone.localdate(dt.datetime.fromtimestamp(start, tz=dt.UTC)):%Y-%m-%d}"
    first = _page(client.get(SCREEN, {"from_date": day}))
    ids = _rows(first)
    assert len(ids) == 50
    expected = list(Call.objects.order_by("-started_at", "-id").values_list("pk", flat=True))
    assert [int(pk) for pk in ids] == expected[:50]
    cursor = re.search(r"cursor=([^\"&]+)", first).group(1)
    more = _page(client.get(reverse("calls:rows") + f"?from_date={day}&cursor={cursor}",
                            **HTMX))
    assert [int(pk) for pk in _rows(more)] == expected[50:]
    assert "cursor=" not in more
    garbage = _page(client.get(reverse("calls:rows"), {"from_date": day, "cursor": "not-a-cursor"}, **HTMX))
    assert len(_rows(garbage)) == 50


def test_names_from_the_pbx_and_contacts_are_escaped_everywhere(alice, carol, asterisk):
    create_contact(first_name=XSS, phones=["2101234567"])
    call_ended(number="2101234567", name=XSS)
    call_ended(number="6900000000", name=XSS)
    client = client_for(alice)
    pages = [client.get(SCREEN), client_for(carol).get(SCREEN)]
    for call in Call.objects.all():
        pages += [client.get(reverse("calls:details", args=[call.pk]), **HTMX),
                  client.get(reverse("calls:row", args=[call.pk]), **HTMX),
                  client.get(reverse("calls:link", args=[call.pk]), **HTMX)]
    pages.append(client.get(reverse("calls:contact_search"), {"q": "img"}, **HTMX))
    pages.append(client.get(reverse("calls:contact_search"), {"q": XSS, "purpose": "link"}, **HTMX))
    for response in pages:
        html = _page(response)
        assert XSS not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in _page(client.get(SCREEN))


# ---- S-4.2 campaign -----------------------------------------------------------------------------------------------


def test_the_campaign_selector_shows_only_with_a_campaign_type(alice, asterisk):
    assert 'name="campaign"' not in _page(client_for(alice).get(SCREEN))


def test_the_only_available_campaign_is_chosen_by_itself(alice, asterisk):
    ctype = CampaignType.objects.create(name="Call center")
    asterisk.campaign_type = ctype
    asterisk.save()
    only = Campaign.objects.create(campaign_type=ctype, name="Χειμερινή προσφορά")
    page = _page(client_for(alice).get(SCREEN))
    assert f'<option value="{only.pk}" selected>Χειμερινή προσφορά</option>' in page
    alice.refresh_from_db()
    assert alice.working_campaign == only


def test_refresh_is_refused_with_a_warning_until_a_campaign_is_chosen(alice, asterisk):
    ctype = CampaignType.objects.create(name="Call center")
    asterisk.campaign_type = ctype
    asterisk.save()
    winter = Campaign.objects.create(campaign_type=ctype, name="Winter")
    Campaign.objects.create(campaign_type=ctype, name="Spring")
    call_ended()
    client = client_for(alice)
    refused = client.get(reverse("calls:rows"), **HTMX)
    assert "Choose a campaign first" in _flash(refused)
    assert refused["HX-Reswap"] == "none" and not _rows(refused.content.decode())
    chosen = client.post(reverse("calls:campaign"), {"campaign": winter.pk}, **HTMX)
    assert "Working campaign: Winter" in _flash(chosen)
    assert len(_rows(_page(client.get(reverse("calls:rows"), **HTMX)))) == 1
    call_ended()
    assert Call.objects.order_by("-id").first().campaign == winter  # what new calls (and activities) are linked to


def test_an_expired_or_foreign_campaign_is_refused_with_a_message(alice, asterisk):
    ctype = CampaignType.objects.create(name="Call center")
    asterisk.campaign_type = ctype
    asterisk.save()
    expired = Campaign.objects.create(campaign_type=ctype, name="Summer", available_to=dt.date(2020, 8, 31))
    foreign = Campaign.objects.create(campaign_type=CampaignType.objects.create(name="Mail"), name="Letters")
    client = client_for(alice)
    assert "not available today" in _flash(client.post(reverse("calls:campaign"), {"campaign": expired.pk}, **HTMX))
    assert "not a campaign of the call-center type" in _flash(
        client.post(reverse("calls:campaign"), {"campaign": foreign.pk}, **HTMX))
    assert "does not exist" in _flash(client.post(reverse("calls:campaign"), {"campaign": "999999"}, **HTMX))
    assert "does not exist" in _flash(client.post(reverse("calls:campaign"), {"campaign": "<x>"}, **HTMX))
    alice.refresh_from_db()
    assert alice.working_campaign is None


# ---- S-4.5 / S-4.6 status -----------------------------------------------------------------------------------------


def test_logged_in_is_unchecked_with_the_reason_until_the_bridge_reports(alice, bridge, asterisk, bridge_listener):
    client = client_for(alice)
    off = _page(client.get(reverse("calls:status"), **HTMX))
    assert 'id="cc-logged-in" disabled>' in off and 'data-logged-in="0"' in off
    assert "No bridge has reported for extension 100" in off
    log_in(alice, bridge, bridge_listener)
    on = _page(client.get(reverse("calls:status"), **HTMX))
    assert 'id="cc-logged-in" disabled checked>' in on and 'data-logged-in="1"' in on


def test_the_busy_switch_shows_what_the_pbx_reports_and_sends_the_opposite(alice, bridge, asterisk, bridge_listener):
    log_in(alice, bridge, bridge_listener)
    client = client_for(alice)
    assert 'aria-checked="false"' in _page(client.get(reverse("calls:status"), **HTMX))
    response = client.post(reverse("calls:busy"), {"busy": "on"}, **HTMX)
    assert "Busy sent to the PBX" in _flash(response)
    assert bridge_listener.received[-1].busy is True
    receive_events(None, [wire.AgentState(event_id="dnd", occurred_at=timezone.now().timestamp(), extension="100",
                                          dnd=True)])
    status = _page(client.get(reverse("calls:status"), **HTMX))
    assert 'aria-checked="true"' in status and 'name="busy" value="off"' in status
    assert "not valid" not in _flash(client.post(reverse("calls:busy"), {"busy": "maybe"}, **HTMX))


def test_the_status_tells_what_the_phone_is_doing(alice, bridge, asterisk, bridge_listener):
    log_in(alice, bridge, bridge_listener)
    create_contact(first_name="Maria", phones=["2101234567"])
    client = client_for(alice)
    e = NowEvents()
    receive_events(None, [e.ringing("100", 100, number="2101234567")])
    ringing = _page(client.get(reverse("calls:status"), **HTMX))
    assert 'data-ringing="1"' in ringing and 'data-in-call="0"' in ringing and "Maria" in ringing
    receive_events(None, [e.answered("100", 101)])
    up = _page(client.get(reverse("calls:status"), **HTMX))
    assert 'data-ringing="0"' in up and 'data-in-call="1"' in up and 'data-call-answered="1"' in up
    receive_events(None, [e.ended("100", 110)])
    idle = _page(client.get(reverse("calls:status"), **HTMX))
    assert 'data-ringing="0"' in idle and 'data-in-call="0"' in idle


# ---- S-4.7 / S-4.8 details and Update -----------------------------------------------------------------------------


def test_the_details_show_the_call_and_offer_the_matching_contacts(alice, asterisk):
    create_contact(first_name="Eleni", last_name="A", phones=["2101234567"])
    create_contact(first_name="Eleni", last_name="B", phones=["+30 210 1234567"])
    call_ended(number="00302101234567", name="SWITCHBOARD", talk=75)
    call = _only_call()
    page = _page(client_for(alice).get(reverse("calls:details", args=[call.pk]), **HTMX))
    assert "+30 21 0123 4567" in page and "00302101234567" in page and "SWITCHBOARD" in page and "0:01:15" in page
    assert "Eleni A" in page and "Eleni B" in page and "2 contacts have this number" in page


def test_update_sets_the_chosen_contact(alice, asterisk):
    eleni = create_contact(first_name="Eleni")
    call_ended()
    call = _only_call()
    response = client_for(alice).post(reverse("calls:set_contact", args=[call.pk]), {"contact": eleni.pk}, **HTMX)
    assert "is now Eleni" in _flash(response)
    assert '"cc-call-changed"' in response["HX-Trigger"]
    assert _only_call().contact == eleni


def test_update_with_a_deleted_or_missing_contact_says_so(alice, asterisk):
    gone = create_contact(first_name="Gone")
    gone_pk = gone.pk
    gone.delete()
    call_ended()
    url = reverse("calls:set_contact", args=[_only_call().pk])
    client = client_for(alice)
    assert "no longer exists" in _flash(client.post(url, {"contact": gone_pk}, **HTMX))
    assert "Choose a contact first" in _flash(client.post(url, {}, **HTMX))
    assert "no longer exists" in _flash(client.post(url, {"contact": "'; DROP TABLE x; --"}, **HTMX))


def test_without_htmx_a_post_comes_back_to_the_screen_with_its_message(alice, asterisk):
    eleni = create_contact(first_name="Eleni")
    call_ended()
    call = _only_call()
    client = client_for(alice)
    response = client.post(reverse("calls:set_contact", args=[call.pk]), {"contact": eleni.pk})
    assert response.status_code == 302 and response["Location"] == f"{SCREEN}?call={call.pk}"
    assert "is now Eleni" in _page(client.get(response["Location"]))


def test_the_caller_search_offers_contacts_by_name_or_number(alice, asterisk):
    create_contact(first_name="Ιωάννα", last_name="Δημητρίου", phones=["6944111222"])
    client = client_for(alice)
    url = reverse("calls:contact_search")
    assert "Ιωάννα Δημητρίου" in _page(client.get(url, {"q": "ΙΩΑΝΝΑ"}, **HTMX))
    assert "Ιωάννα Δημητρίου" in _page(client.get(url, {"q": "+30 694 411 1222"}, **HTMX))
    assert "Ιωάννα Δημητρίου" in _page(client.get(url, {"q": "4111"}, **HTMX))
    assert "No contact matches" in _page(client.get(url, {"q": "zzz"}, **HTMX))
    assert "at most 100 characters" in _page(client.get(url, {"q": "z" * 300}, **HTMX))


# ---- S-4.17 Link to contact ---------------------------------------------------------------------------------------


def test_linking_through_the_screen_stores_the_number_and_closes_the_dialog(alice, asterisk):
    nikos = create_contact(first_name="Nikos")
    call_ended(number="6971112223")
    call = _only_call()
    response = client_for(alice).post(reverse("calls:link", args=[call.pk]), {"contact": nikos.pk}, **HTMX)
    assert "saved in phone slot 1" in _flash(response)
    assert "cc-dialog-close" in response["HX-Trigger"]
    assert list(nikos.phones.values_list("number", flat=True)) == ["6971112223"]


def test_with_all_slots_full_the_screen_asks_which_to_replace_or_to_link_without_storing(alice, asterisk):
    full = create_contact(first_name="Full", phones=["2100000001", "2100000002", "2100000003", "2100000004"])
    call_ended(number="6970000009")
    call = _only_call()
    client = client_for(alice)
    url = reverse("calls:link", args=[call.pk])
    prompt = _page(client.post(url, {"contact": full.pk}, **HTMX))
    assert "All phone slots are full" in prompt
    for number in ("2100000001", "2100000002", "2100000003", "2100000004"):
        assert number in prompt
    assert 'name="store_number" value="no"' in prompt
    assert _only_call().contact is None
    done = client.post(url, {"contact": full.pk, "replace_slot": "2"}, **HTMX)
    assert "saved in phone slot 2" in _flash(done)
    assert full.phones.get(slot=2).number == "6970000009"


def test_link_without_storing_and_bad_slot_choices(alice, asterisk):
    full = create_contact(first_name="Full", phones=["2100000001", "2100000002", "2100000003", "2100000004"])
    call_ended(number="6970000009")
    url = reverse("calls:link", args=[_only_call().pk])
    client = client_for(alice)
    assert "phone slots 1 to 4" in _flash(client.post(url, {"contact": full.pk, "replace_slot": "9"}, **HTMX))
    assert "phone slots 1 to 4" in _flash(client.post(url, {"contact": full.pk, "replace_slot": "<b>"}, **HTMX))
    done = client.post(url, {"contact": full.pk, "store_number": "no"}, **HTMX)
    assert _flash(done) == "Linked to Full."
    assert _only_call().contact == full


def test_linking_a_call_another_agent_just_linked_says_who_has_it(alice, carol, asterisk):
    first = create_contact(first_name="First")
    second = create_contact(first_name="Second")
    call_ended()
    call = _only_call()
    client_for(carol).post(reverse("calls:link", args=[call.pk]), {"contact": first.pk}, **HTMX)
    response = client_for(alice).post(reverse("calls:link", args=[call.pk]), {"contact": second.pk}, **HTMX)
    assert "already linked to First" in _flash(response)
    assert 'already linked to First' in _page(client_for(alice).get(reverse("calls:link", args=[call.pk]), **HTMX))


def test_linking_to_a_new_contact_through_the_screen(alice, asterisk):
    call_ended(number="6971112223")
    call = _only_call()
    client = client_for(alice)
    url = reverse("calls:link_new", args=[call.pk])
    assert "first name, a last name or a company" in _flash(client.post(url, {"first_name": "  "}, **HTMX))
    assert "valid email" in _flash(client.post(url, {"first_name": "A", "email": "not-mail"}, **HTMX))
    assert "at most 100" in _flash(client.post(url, {"first_name": "A" * 300}, **HTMX))
    done = client.post(url, {"first_name": XSS, "company": "Ωμέγα"}, **HTMX)
    assert "&lt;img" in done.content.decode() and XSS not in done.content.decode()
    contact = Contact.objects.get(company="Ωμέγα")
    assert _only_call().contact == contact and contact.phones.get().number == "6971112223"


# ---- S-4.18 Create activity and double-click -----------------------------------------------------------------------


def test_create_activity_through_the_chooser(alice, asterisk, phone_call_type, sale_type):
    call_ended()
    call = _only_call()
    client = client_for(alice)
    chooser = _page(client.get(reverse("calls:activity", args=[call.pk]), **HTMX))
    assert "Phone call" in chooser and "Sale opportunity" in chooser
    response = client.post(reverse("calls:activity", args=[call.pk]), {"activity_type": sale_type.pk}, **HTMX)
    assert "created" in _flash(response)
    assert Activity.objects.get().activity_type == sale_type
    again = client.post(reverse("calls:activity", args=[call.pk]), {"activity_type": phone_call_type.pk}, **HTMX)
    assert "has an activity already" in _flash(again)
    assert "Choose an activity type" in _flash(client.post(reverse("calls:activity", args=[call.pk]), {}, **HTMX))


def test_double_click_opens_the_activity_or_creates_one_of_the_default_type_or_asks(alice, asterisk,
                                                                                    phone_call_type):
    client = client_for(alice)
    call_ended()
    call = _only_call()
    url = reverse("calls:open", args=[call.pk])
    chooser = client.post(url, **HTMX)
    assert "Activity type" in _page(chooser) and "cc-dialog-open" in chooser["HX-Trigger"]
    assert Activity.objects.count() == 0
    asterisk.default_activity_type = phone_call_type
    asterisk.save()
    created = client.post(url, **HTMX)
    assert "created" in _flash(created)
    activity = Activity.objects.get()
    assert (activity.activity_type, activity.call) == (phone_call_type, call)
    opened = client.post(url, **HTMX)
    assert reverse("activities:detail", args=[activity.pk]) in opened["HX-Trigger"]
    assert Activity.objects.count() == 1


# ---- S-4.14 - S-4.16 Refresh and Clear ----------------------------------------------------------------------------


def test_clear_selected_and_clear_all_through_the_screen(alice, carol, asterisk):
    call_ended("100")
    call_ended("100")
    call_ended("199")
    alices = list(Call.objects.filter(extension="100").values_list("pk", flat=True))
    client = client_for(alice)
    warned = client.post(reverse("calls:clear_selected"), {"ids": ["abc", "-1", "<x>"]}, **HTMX)
    assert "Select the calls to clear first" in _flash(warned)
    done = client.post(reverse("calls:clear_selected"), {"ids": [alices[0]]}, **HTMX)
    assert _flash(done) == "1 call cleared." and "cc-refresh-list" in done["HX-Trigger"]
    carols = client_for(carol).post(reverse("calls:clear_all"), **HTMX)
    assert _flash(carols) == "1 call cleared."
    assert list(Call.objects.values_list("pk", flat=True)) == [alices[1]]


def test_clearing_leaves_a_call_in_progress_and_says_so(alice, asterisk):
    e = NowEvents()
    receive_events(None, [e.ringing("100", 0), e.answered("100", 1)])
    response = client_for(alice).post(reverse("calls:clear_all"), **HTMX)
    assert _flash(response) == "0 calls cleared. 1 call in progress was left alone."
    assert Call.objects.count() == 1


# ---- call control through the screen (S-4.9 - S-4.13) --------------------------------------------------------------


def test_call_and_the_bridges_answer_are_shown(alice, bridge, asterisk, bridge_listener):
    client = client_for(alice)
    refused = client.post(reverse("calls:dial"), {"number": "2101234567"}, **HTMX)
    assert "Not logged in" in _flash(refused)
    log_in(alice, bridge, bridge_listener)
    done = client.post(reverse("calls:dial"), {"number": "2101234567"}, **HTMX)
    assert _flash(done) == "Calling 2101234567…"
    assert bridge_listener.received[-1].number == "2101234567"
    bridge_listener.reply = (200, wire.encode(wire.CommandResult(command_id="x", ok=False, error_id="pbx_refused",
                                                          message=f"PBX says no to {XSS}")))
    failed = client.post(reverse("calls:dial"), {"number": "2101234567"}, **HTMX)
    assert "The phone system refused it (PBX says no to &lt;img" in failed.content.decode()
    assert XSS not in failed.content.decode()


@pytest.mark.parametrize(("error_id", "command", "expected"), [
    ("not_supported", "answer", "This phone cannot be answered from the CRM; pick up the handset."),
    ("not_supported", "hangup", "Your phone system cannot do this from the CRM; use the phone itself."),
    ("no_such_call", "hangup", "Your phone has no such call any more; it may have just ended."),
    ("pbx_unavailable", "dial",
     "The bridge is not connected to the phone system right now; try again once it is back."),
    ("timeout", "dial", "The phone system did not answer in time; try again."),
])
def test_the_bridges_refusals_are_said_in_the_agents_words_not_the_pbxs(alice, bridge, asterisk, bridge_listener,
                                                                         error_id, command, expected):
    log_in(alice, bridge, bridge_listener)
    bridge_listener.reply = (200, wire.encode(wire.CommandResult(
        command_id="x", ok=False, error_id=error_id, message="the PBX cannot answer Local/100@phones-0000000a;1")))
    e = NowEvents()
    receive_events(None, [e.ringing("100", 0)] + ([e.answered("100", 1)] if command == "hangup" else []))
    url, data = {"answer": ("calls:answer", {}), "hangup": ("calls:hangup", {}),
                 "dial": ("calls:dial", {"number": "2101234567"})}[command]
    response = client_for(alice).post(reverse(url), data, **HTMX)
    assert _flash(response) == expected
    assert "Local/100" not in response.content.decode()


def test_a_command_the_bridge_carried_out_is_said_in_the_agents_words(alice, bridge, asterisk, bridge_listener):
    log_in(alice, bridge, bridge_listener)
    bridge_listener.reply = (200, wire.encode(wire.CommandResult(command_id="x", ok=True,
                                                                 message="asked PJSIP/100 to answer")))
    e = NowEvents()
    receive_events(None, [e.ringing("100", 0)])
    response = client_for(alice).post(reverse("calls:answer"), {}, **HTMX)
    assert _flash(response) == "Answering…"


@pytest.mark.parametrize("number", ["", "<script>alert(1)</script>", "' OR 1=1 --", "Ωμέγα", "1" * 81])
def test_bad_numbers_get_a_message(alice, bridge, asterisk, bridge_listener, number):
    log_in(alice, bridge, bridge_listener)
    response = client_for(alice).post(reverse("calls:dial"), {"number": number}, **HTMX)
    assert response.status_code == 200
    message = _flash(response)
    assert "number" in message.lower() and "<script>" not in response.content.decode()
    assert bridge_listener.received == []


def test_answer_hangup_transfer_and_redial_through_the_screen(alice, bridge, asterisk, bridge_listener):
    log_in(alice, bridge, bridge_listener)
    client = client_for(alice)
    assert _flash(client.post(reverse("calls:answer"), **HTMX)) == "No call is ringing."
    e = NowEvents()
    receive_events(None, [e.ringing("100", 100, number="2109876543")])
    call = _only_call()
    assert _flash(client.post(reverse("calls:answer"), {"call": call.pk}, **HTMX)) == "Answering…"
    receive_events(None, [e.answered("100", 101)])
    assert "internal number" in _flash(client.post(reverse("calls:transfer"), {"number": "2101234567"}, **HTMX))
    assert _flash(client.post(reverse("calls:transfer"), {"number": "101", "call": call.pk}, **HTMX)) == (
        "Transferring to 101…")
    assert _flash(client.post(reverse("calls:hangup"), {"call": call.pk}, **HTMX)) == "Ending the call…"
    assert _flash(client.post(reverse("calls:redial"), {"call": call.pk}, **HTMX)) == "Calling 2109876543…"
    assert [type(c).__name__ for c in bridge_listener.received] == ["Answer", "Transfer", "Hangup", "Dial"]


def test_an_administrator_without_resource_sees_calls_but_has_no_phone(asterisk, alice):
    from django.contrib.auth.models import User

    boss = User.objects.create_superuser("boss", password="x" * 12)
    call_ended("100")
    client = Client()
    client.force_login(boss)
    assert len(_rows(_page(client.get(SCREEN)))) == 1
    assert "not a resource" in _flash(client.post(reverse("calls:dial"), {"number": "2101234567"}, **HTMX))


def test_the_screen_speaks_the_manuals_greek(alice, asterisk):
    call_ended()
    client = client_for(alice)
    client.post(reverse("set_language"), {"language": "el", "next": SCREEN})
    page = _page(client.get(SCREEN))
    for greek in ("Κέντρο κλήσεων", "Από ημερομηνία", "Πεδίο αναζήτησης", "Εισερχόμενη", "Έχει γίνει είσοδος",
                  "Απασχολημένος", "Στοιχεία κλήσης", "Αριθμός", "Πίσω", "Διαγραφή", "Επανάκληση", "Κλήση",
                  "Απάντηση", "Τέλος κλήσης", "Μεταφορά", "Ανανέωση", "Καθαρισμός επιλεγμένων", "Καθαρισμός όλων",
                  "Ενέργειες", "Σύνδεση με επαφή", "Δημιουργία δραστηριότητας", "Διάρκεια", "Δραστηριότητα",
                  "Επαφή"):
        assert greek in page, greek
    details = _page(client.get(reverse("calls:details", args=[_only_call().pk]), **HTMX))
    assert "Καλών" in details and "Ενημέρωση" in details


# ---- the settings the screen's script follows (S-2.6, S-2.7, S-3.5, S-3.10) and other S-3 rules as shown ----------


def _config(page: str) -> dict:
    import json

    return json.loads(re.search(r'<script id="cc-config" type="application/json">(.*?)</script>', page, re.S).group(1))


def test_the_page_tells_its_script_the_notification_auto_show_and_auto_open_options(alice, asterisk):
    alice.notify_new_call, alice.notification_seconds = True, 7
    alice.save()
    asterisk.auto_show_screen, asterisk.auto_open_activity = True, True
    asterisk.save()
    config = _config(_page(client_for(alice).get(SCREEN)))
    assert (config["notify"], config["notify_seconds"], config["auto_show"], config["auto_open"]) == (True, 7, True,
                                                                                                        True)
    assert config["resource_id"] == alice.pk and config["ws"] == "/ws/callcenter/"
    alice.notify_new_call = False
    alice.save()
    asterisk.auto_show_screen, asterisk.auto_open_activity = False, False
    asterisk.save()
    config = _config(_page(client_for(alice).get(SCREEN)))
    assert (config["notify"], config["auto_show"], config["auto_open"]) == (False, False, False)


def test_internal_calls_are_listed_only_with_update_from_internal_calls(alice, bob, asterisk):
    e = NowEvents()
    internal = [e.ringing("100", 0, number="101", direction=wire.Direction.INTERNAL, internal_direction="in"),
                e.answered("100", 1), e.ended("100", 5)]
    receive_events(None, internal)
    assert _rows(_page(client_for(alice).get(SCREEN))) == []
    asterisk.update_from_internal_calls = True
    asterisk.save()
    e2 = NowEvents()
    receive_events(None, [e2.ringing("100", 0, number="101", direction=wire.Direction.INTERNAL,
                                     internal_direction="in"), e2.ended("100", 3)])
    page = _page(client_for(alice).get(SCREEN))
    assert len(_rows(page)) == 1 and "Internal" in page


def test_with_the_call_center_off_logged_in_says_why(alice, cc_settings):
    status = _page(client_for(alice).get(reverse("calls:status"), **HTMX))
    assert 'data-logged-in="0"' in status and "The call center is off" in status


def test_a_transferred_call_shows_the_original_caller_on_the_second_agents_row(alice, bob, asterisk):
    create_contact(first_name="Maria", phones=["2101234567"])
    e = NowEvents()
    receive_events(None, [e.ringing("100", 0, number="00302101234567"), e.answered("100", 2),
                          e.transferred("100", 10, "101"), e.ended("100", 10),
                          e.ringing("101", 10, number="00302101234567", transferred_from="100"),
                          e.answered("101", 12), e.ended("101", 40)])
    page = _page(client_for(bob).get(SCREEN))
    row = re.search(r'<tr id="call-\d+".*?</tr>', page, re.S).group(0)
    assert "+30 21 0123 4567" in row and "Maria" in row and "0:00:28" in row
    bobs = Call.objects.get(extension="101")
    details = _page(client_for(bob).get(reverse("calls:details", args=[bobs.pk]), **HTMX))
    assert "Transferred from" in details and ">100<" in details
