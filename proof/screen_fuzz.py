"""Proof: every page and form of the CRM that a logged-in agent or administrator can reach survives random and hostile
input: never a 5xx, and a refused request stores nothing.

What is fuzzed: every URL pattern of the CRM's URLconf, found by walking it (so a new page is fuzzed without anyone
listing it) — the Call Center screen and its filters, the list, details and row partials, the call actions (dial,
redial, answer, hang up, transfer, busy, clear, campaign, contact, link, activity, open), activities, resources and
their options, the call-center settings, login/logout, the language switch, and the Django admin (one target per
model admin plus the site's own pages). The signed bridge endpoint (/bridge/v1/events) is left out: it takes no
session and is fuzzed by its own proof.

How: Django's test client with a real login (a POST of the login form) and CSRF enforced (a valid token on most
posts, a missing or wrong one on some), as an agent (Alice), another agent (Bob, whose calls Alice must not reach)
and an administrator (Carol). hypothesis draws, per target: the user, the method, the path's ids (own, another
agent's, unknown, 0, huge), a query string and a body of known field names (harvested from the pages' own forms)
and hostile values — huge strings, NUL, invalid UTF-8 (percent-encoded and raw, in the query string and the body),
markup, SQL-ish text, negative and huge numbers, impossible dates — and htmx or not. Each request runs inside a
savepoint rolled back afterwards, so every example starts from the same rows. After each request: the status is
below 500, and when the request was refused (4xx, a form shown again with errors, an error or warning message or
flash) every table except sessions holds exactly the rows it held before (a digest of every row, not only counts).

Figure: requests sent, 5xx answers, refused requests that stored something — per database (SQLite, and PostgreSQL on
a throwaway database), 200 hostile requests per target after the well-formed ones, both databases at once (two
processes). `--quick`: 20 per target. The unit-level version (50 per target, derandomized) is
tests/calls/test_screen_fuzz.py.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import os
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote, urlencode

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

NAME = "screen_fuzz"
PASSWORD = "correct horse battery staple"
SKIPPED_ROUTES = {"bridge/v1/events"}  # signed, sessionless: the bridge-endpoint fuzz covers it
# Not checked: the session (a login or a message may touch it; it is not data) and the login throttle's record of
# failed logins (keeping a refused login is its purpose).
UNCHECKED_MODELS = {"sessions.Session", "crm.LoginFailure"}


# ---- targets: the URLconf, walked ------------------------------------------------------------------------------


@dataclass
class Route:
    route: str  # the whole pattern, as text
    name: str | None  # namespaced, for reverse()
    kwargs: dict[str, str]  # argument name: "int", "str", "path" or "regex"


@dataclass
class Target:
    name: str
    routes: list[Route] = field(default_factory=list)


def _walk(patterns: list[Any], prefix: str = "", namespace: str = "") -> Iterator[Route]:
    from django.urls import URLResolver
    from django.urls.resolvers import RoutePattern

    for pattern in patterns:
        text = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            inner = ":".join(part for part in (namespace, pattern.namespace or "") if part)
            yield from _walk(pattern.url_patterns, text, inner)
            continue
        if isinstance(pattern.pattern, RoutePattern):
            kinds = {name: type(conv).__name__.removesuffix("Converter").lower()
                     for name, conv in pattern.pattern.converters.items()}
        else:
            kinds = {name: "regex" for name in pattern.pattern.regex.groupindex}
        full = f"{namespace}:{pattern.name}" if namespace and pattern.name else pattern.name
        yield Route(text, full, kinds)


def targets() -> list[Target]:
    """One target per URL pattern of the CRM's own pages; the admin's patterns grouped per model admin (its list,
    add, change, delete and history) and one for the admin site's own pages."""
    from django.urls import get_resolver

    found: dict[str, Target] = {}
    for route in _walk(get_resolver().url_patterns):
        if route.route in SKIPPED_ROUTES:
            continue
        if route.route.startswith("admin/"):
            model = re.match(r"admin/(\w+)/(\w+)/", route.route) if route.name and route.name.endswith(
                ("_changelist", "_add", "_change", "_delete", "_history")) else None
            key = f"admin {model.group(1)}.{model.group(2)}" if model else "admin site"
        else:
            key = route.name or route.route
        found.setdefault(key, Target(key)).routes.append(route)
    return sorted(found.values(), key=lambda target: target.name)


# ---- the world every example starts from ------------------------------------------------------------------------


@dataclass
class World:
    users: dict[str, Any]  # role: User
    own_call_ids: list[int]
    other_call_ids: list[int]
    activity_ids: list[int]
    other_ids: list[int]  # contacts, resources, types, campaigns
    field_names: list[str]
    app_labels: list[str]
    forms: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # target: field: values the pages offer


def build_world() -> World:
    """Alice (agent, 100), Bob (agent, 101), Carol (administrator); calls of each, contacts, activity types, a
    campaign type with campaigns, the call-center settings on (Asterisk, activities created with calls)."""
    from django.apps import apps
    from django.contrib.auth.models import User

    from callcenter import wire
    from callcenter.activities.models import Activity, ActivityKind, ActivityType
    from callcenter.calls.actions import receive_events
    from callcenter.calls.models import Call
    from callcenter.campaigns.models import Campaign, CampaignType
    from callcenter.contacts.actions import create_contact
    from callcenter.resources.models import CallCenterSettings, PhoneSystem, Resource

    users = {}
    for role, (username, extension, admin) in {"agent": ("alice", "100", False), "other": ("bob", "101", False),
                                               "admin": ("carol", "199", True)}.items():
        user = User.objects.create_user(username, password=PASSWORD, first_name=username.title(),
                                        is_staff=admin, is_superuser=admin)
        Resource.objects.create(user=user, extension=extension, is_administrator=admin, cc_active=True)
        users[role] = user
    phone = ActivityType.objects.create(name="Phone call", kind=ActivityKind.PHONE_CALL)
    sale = ActivityType.objects.create(name="Sale", kind=ActivityKind.SALE_OPPORTUNITY)
    ActivityType.objects.create(name="Retired", active=False)
    campaign_type = CampaignType.objects.create(name="Autumn")
    Campaign.objects.create(campaign_type=campaign_type, name="Open")
    Campaign.objects.create(campaign_type=campaign_type, name="Closed", active=False)
    settings_row = CallCenterSettings.load()
    settings_row.phone_system = PhoneSystem.ASTERISK
    settings_row.incoming_activity_type = phone
    settings_row.outgoing_activity_type = sale
    settings_row.campaign_type = campaign_type
    settings_row.save()
    create_contact(first_name="Anna", last_name="Known", phones=["2101234567"])
    create_contact(first_name="Anna", last_name="Twin", phones=["2107654321"])
    create_contact(company="Twin Ltd", phones=["2107654321"])
    start = time.time() - 600
    events: list[wire.Event] = []
    for index, (ext, number) in enumerate([("100", "2101234567"), ("100", "2107654321"), ("100", "6900000000"),
                                           ("101", "2101234567"), ("101", "2109999999"), ("555", "2108888888")]):
        call_id = f"fuzz.{index}"
        base = {"call_id": call_id, "extension": ext}
        at = start + index * 20
        events.append(wire.CallRinging(event_id=f"{call_id}:r", occurred_at=at, remote_number=number,
                                       direction=wire.Direction.INBOUND, **base))
        if index % 3 != 2:
            events.append(wire.CallAnswered(event_id=f"{call_id}:a", occurred_at=at + 2, **base))
        if index != 0:  # the first stays in progress
            events.append(wire.CallEnded(event_id=f"{call_id}:e", occurred_at=at + 10, **base))
    receive_events(None, events)
    own = list(Call.objects.filter(resource__user=users["agent"]).values_list("pk", flat=True))
    other = list(Call.objects.exclude(resource__user=users["agent"]).values_list("pk", flat=True))
    activity_ids = list(Activity.objects.values_list("pk", flat=True))
    from callcenter.contacts.models import Contact

    other_ids = sorted({*Contact.objects.values_list("pk", flat=True), *Resource.objects.values_list("pk", flat=True),
                        *ActivityType.objects.values_list("pk", flat=True),
                        *Campaign.objects.values_list("pk", flat=True)})
    return World(users, own, other, activity_ids, other_ids, harvest_field_names(),
                 sorted({model._meta.app_label for model in apps.get_models()}))


def harvest_field_names() -> list[str]:
    """Every field name a form of the project or of Django's admin and auth can take, and the names views read
    straight from a request: so a new form's fields are fuzzed without being listed here."""
    from django import forms
    from django.contrib import admin

    names = {"call", "ids", "q", "purpose", "from_date", "cursor", "number", "busy", "next", "language",
             "username", "password", "csrfmiddlewaretoken", "o", "p", "e", "_popup", "_to_field", "all",
             "action", "_selected_action", "select_across", "index", "post", "_save", "_continue", "_addanother",
             "term", "app_label", "model_name", "field_name", "old_password", "new_password1", "new_password2"}

    def subclasses(cls: type) -> Iterator[type]:
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    for form_class in subclasses(forms.BaseForm):
        if form_class.__module__.startswith(("callcenter.", "django.contrib.auth")):
            with contextlib.suppress(Exception):
                names.update(getattr(form_class, "base_fields", {}))
    for model, model_admin in admin.site._registry.items():
        for model_field in model._meta.get_fields():
            names.add(model_field.name)
        names.update(getattr(model_admin, "list_filter", ()) if all(
            isinstance(item, str) for item in getattr(model_admin, "list_filter", ())) else ())
    return sorted(name for name in names if isinstance(name, str))


class _FormHarvester(HTMLParser):
    """The forms of a page: for each URL a form (or an htmx element inside it) sends to, its fields and the values
    the page offers for them (hidden values, options, checkboxes)."""

    def __init__(self, path: str) -> None:
        super().__init__(convert_charrefs=True)
        self.path = path
        self.forms: list[tuple[set[str], dict[str, set[str]]]] = []
        self._open: list[tuple[set[str], dict[str, set[str]]]] = []
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        urls = {values[name] for name in ("action", "hx-post", "hx-get") if values.get(name)}
        if tag == "form":
            self._open.append((urls or {self.path}, {}))
            self.forms.append(self._open[-1])
            return
        if urls:
            if self._open:
                self._open[-1][0].update(urls)
            else:
                self.forms.append((urls, {}))
        if not self._open:
            return
        fields = self._open[-1][1]
        name = values.get("name")
        if tag in ("input", "textarea", "select", "button") and name and name != "csrfmiddlewaretoken":
            default = "on" if values.get("type") in ("checkbox", "radio") else ""
            fields.setdefault(name, set()).add(values.get("value", default))
            if tag == "select":
                self._select = name
        elif tag == "option" and self._select:
            fields.setdefault(self._select, set()).add(values.get("value", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self._open:
            self._open.pop()
        elif tag == "select":
            self._select = None


def harvest_forms(session: Session, all_targets: list[Target]) -> dict[str, dict[str, list[str]]]:
    """GET every page (each route with the world's own ids) as each user and read its forms:
    which target each form posts to, with which fields and offered values."""
    from django.urls import NoReverseMatch, Resolver404, resolve, reverse

    by_route = {route.route: target.name for target in all_targets for route in target.routes}
    world = session.world
    found: dict[str, dict[str, set[str]]] = {}
    for target in all_targets:
        for route in target.routes:
            if not route.name or any(kind != "int" and kind != "path" for kind in route.kwargs.values()):
                continue
            ids = [*world.own_call_ids[:2], *world.activity_ids[:1], *world.other_ids[:3]] if route.kwargs else [0]
            for pk in ids:
                try:
                    path = reverse(route.name, kwargs={name: str(pk) for name in route.kwargs})
                except NoReverseMatch:
                    continue
                for role in session.clients:  # every user: the screen fills in a sole working campaign when first seen
                    response = session.clients[role].get(path)
                    if response.status_code != 200 or "html" not in response.get("Content-Type", ""):
                        continue
                    parser = _FormHarvester(path)
                    parser.feed(response.content.decode(errors="replace"))
                    for urls, fields in parser.forms:
                        for url in urls:
                            try:
                                match = resolve(url.split("?")[0] or path)
                            except Resolver404:
                                continue
                            name = by_route.get(match.route)
                            if name is None:
                                continue
                            into = found.setdefault(name, {})
                            for field_name, field_values in fields.items():
                                into.setdefault(field_name, set()).update(field_values)
    return {name: {field_name: sorted(values) for field_name, values in fields.items()}
            for name, fields in found.items()}


# ---- hostile values ---------------------------------------------------------------------------------------------


HOSTILE_TEXT = [
    "", " ", "\x00", "a\x00b", "<img src=x onerror=alert(1)>", "\"><script>alert(1)</script>", "' OR 1=1 --",
    "1; DROP TABLE calls_call; --", "%", "%%", "%(x)s", "{{ 7*7 }}", "../../etc/passwd", "-1", "0", "-0", "1e309",
    "NaN", "inf", "-9223372036854775809", "9223372036854775808", "9" * 40, "1.5", " 12 ", "\u0663", "\uff11",
    "2024-02-30", "0000-01-01", "9999-12-31", "10000-01-01", "1970-01-01", "on", "off", "yes", "no", "true",
    "GR", "gr", "XX", "asterisk", "none", "link", "caller", "el", "en", "zz", "\u202e", "\ufeff", "\U0001f600",
    "A" * 100_000, "ά" * 5000, "2101234567", "+302101234567", "100", "*72#", "\r\n\r\nX-Injected: 1",
    "javascript:alert(1)", "//evil.example/", "http://evil.example/", "0x1F",
]
INVALID_UTF8 = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80abc", b"\xe2\x82"]


def text_values(world: World) -> st.SearchStrategy[str]:
    ids = [*world.own_call_ids, *world.other_call_ids, *world.activity_ids, *world.other_ids, 0, 10**9, 2**63,
           10**30, -1]
    return st.one_of(
        st.sampled_from(HOSTILE_TEXT),
        st.sampled_from([str(value) for value in ids]),
        st.text(st.characters(exclude_categories=("Cs",)), max_size=40),
        st.integers(min_value=-(10**25), max_value=10**25).map(str),
    )


@dataclass
class Request:
    target: str
    role: str  # agent, other, admin
    method: str
    path: str
    query: bytes
    body: bytes | None
    content_type: str
    htmx: bool
    csrf: str  # "valid", "missing", "wrong"

    def __repr__(self) -> str:
        body = self.body if self.body is None or len(self.body) < 300 else self.body[:300] + b"..."
        query = self.query if len(self.query) < 300 else self.query[:300] + b"..."
        return (f"{self.method} {self.path}?{query!r} as {self.role} htmx={self.htmx} csrf={self.csrf} "
                f"body={body!r} ({self.content_type})")


def _encode_pairs(pairs: list[tuple[str, str]], raw: list[tuple[int, bytes]]) -> bytes:
    """``pairs`` urlencoded, with raw invalid UTF-8 spliced into some values (percent-encoded or as bytes)."""
    parts = []
    for index, (name, value) in enumerate(pairs):
        encoded = urlencode([(name, value)]).encode()
        for where, junk in raw:
            if where == index:
                encoded += junk if len(junk) % 2 else quote(junk).encode()
        parts.append(encoded)
    return b"&".join(parts)


def _path_value(kind: str, draw: Any, world: World) -> str:
    if kind == "int":
        return str(draw(st.sampled_from([*world.own_call_ids, *world.other_call_ids, *world.activity_ids,
                                         *world.other_ids, 0, 999_999, 2**31, 2**63, 10**30])))
    candidates = [*world.app_labels, "user", "call", "contact", "1", "0", "-1", "abc", "%FF"]
    return draw(st.one_of(st.sampled_from(candidates), text_values(world).filter(lambda s: 0 < len(s) < 200)))


def requests_for(target: Target, world: World) -> st.SearchStrategy[Request]:
    @st.composite
    def build(draw: Any) -> Request:
        from django.urls import NoReverseMatch, reverse

        route = draw(st.sampled_from(target.routes))
        path = None
        if route.name:
            kwargs = {name: _path_value(kind, draw, world) for name, kind in route.kwargs.items()}
            try:
                path = reverse(route.name, kwargs=kwargs)
            except NoReverseMatch:
                with contextlib.suppress(NoReverseMatch):
                    path = reverse(route.name, kwargs={name: "1" for name in route.kwargs})
        if path is None:  # unnamed (the admin's catch-all) or not reversible: the prefix and a hostile tail
            prefix = re.split(r"[<(^]", route.route)[0]
            path = "/" + prefix + quote(draw(text_values(world))[:200], safe="/")
        names = st.one_of(st.sampled_from(world.field_names), st.text(max_size=12))
        values = text_values(world)
        # The fields the pages' own forms send here, each with an offered value or a hostile one (so the request
        # gets past the first check often enough to reach the deeper ones), then random extra fields.
        known = world.forms.get(target.name, {})
        form_pairs = []
        for name in sorted(known):
            if draw(st.integers(0, 9)) < 8:
                offered = st.sampled_from(known[name]) if known[name] else values
                form_pairs.append((name, draw(st.one_of(offered, offered, values))))
        query_pairs = draw(st.lists(st.tuples(names, values), max_size=3))
        body_pairs = form_pairs + draw(st.lists(st.tuples(names, values), max_size=4))
        if draw(st.booleans()):  # a form that a page sends with GET (the filters) has its fields in the query
            query_pairs = form_pairs + query_pairs
        raw_q = draw(st.lists(st.tuples(st.integers(0, 5), st.sampled_from(INVALID_UTF8)), max_size=2))
        raw_b = draw(st.lists(st.tuples(st.integers(0, 8), st.sampled_from(INVALID_UTF8)), max_size=2))
        method = draw(st.sampled_from(["GET"] * 3 + ["POST"] * 6 + ["HEAD", "PUT", "DELETE"]))
        body_kind = draw(st.sampled_from(["form"] * 8 + ["raw", "multipart", "json", "many fields", "too big"]))
        if method in ("GET", "HEAD"):
            body, content_type = None, ""
        elif body_kind == "raw":
            body = draw(st.binary(max_size=200)) + draw(st.sampled_from(INVALID_UTF8))
            content_type = "application/x-www-form-urlencoded"
        elif body_kind == "multipart":
            boundary = "fuzzboundary"
            chunks = [f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name[:40]}\"\r\n\r\n".encode()
                      + value[:2000].encode() + junk + b"\r\n"
                      for (name, value), junk in zip(body_pairs, [b"\xff", b""] * 8, strict=False)
                      if '"' not in name and "\r" not in name and "\n" not in name]
            body = b"".join(chunks) + f"--{boundary}--\r\n".encode()
            content_type = f"multipart/form-data; boundary={boundary}"
        elif body_kind == "many fields":  # past DATA_UPLOAD_MAX_NUMBER_FIELDS (1,000)
            body, content_type = b"&".join(b"f%d=1" % n for n in range(1200)), "application/x-www-form-urlencoded"
        elif body_kind == "too big":  # past DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB)
            body, content_type = b"q=" + b"9" * 3_000_000, "application/x-www-form-urlencoded"
        elif body_kind == "json":
            body, content_type = b'{"number": "\xff", "busy": [1, {"x": null}]}', "application/json"
        else:
            body = _encode_pairs(body_pairs, raw_b)
            content_type = "application/x-www-form-urlencoded"
        return Request(
            target=target.name,
            role=draw(st.sampled_from(["agent", "agent", "other", "admin"])),
            method=method,
            path=path,
            query=_encode_pairs(query_pairs, raw_q),
            body=body,
            content_type=content_type,
            htmx=draw(st.booleans()),
            csrf=draw(st.sampled_from(["valid"] * 10 + ["missing", "wrong"])),
        )

    return build()


# ---- one request, checked ---------------------------------------------------------------------------------------


class Finding(AssertionError):
    """A 5xx, or a refused request that stored something."""


@dataclass
class Tally:
    requests: int = 0
    refused: int = 0
    server_errors: int = 0
    stored_when_refused: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


def snapshot() -> dict[str, str]:
    """A digest of every row of every table (but sessions), by model."""
    from django.apps import apps

    digest = {}
    for model in apps.get_models():
        if model._meta.label in UNCHECKED_MODELS or not model._meta.managed:
            continue
        rows = list(model._base_manager.order_by("pk").values_list())
        digest[model._meta.label] = f"{len(rows)}:{hashlib.sha256(repr(rows).encode()).hexdigest()[:16]}"
    return digest


def refusal(response: Any) -> str | None:
    """Why ``response`` is a refusal (nothing should have been stored), or None when it reports success."""
    from django import forms
    from django.forms.formsets import BaseFormSet

    if response.status_code >= 400:
        return f"status {response.status_code}"
    contexts = response.context or []
    if not isinstance(contexts, list):
        contexts = [contexts]
    for context in contexts:
        flat = context.flatten() if hasattr(context, "flatten") else dict(context)
        if flat.get("flash") and flat.get("level") in ("error", "warning"):
            return f"{flat['level']} flash: {str(flat['flash'])[:80]}"
        for value in flat.values():
            form = getattr(value, "form", value)  # the admin's AdminForm wraps its form
            if isinstance(form, forms.BaseForm) and form.is_bound and form.errors:
                return f"form errors: {form.errors.as_text()[:80]}"
            if isinstance(value, BaseFormSet) and value.is_bound and not value.is_valid():
                return "formset errors"
    request = getattr(response, "wsgi_request", None)
    if request is not None and hasattr(request, "_messages"):
        for message in getattr(request._messages, "_queued_messages", []):  # this request's own messages
            if message.level_tag in ("error", "warning"):
                return f"{message.level_tag} message: {str(message)[:80]}"
    return None


class Session:
    """The test clients of the three users, each logged in by posting the login form, CSRF enforced."""

    def __init__(self, world: World) -> None:
        from django.test import Client

        self.world = world
        self.clients = {role: Client(enforce_csrf_checks=True) for role in world.users}
        for role in self.clients:
            self.login(role)
        world.forms = harvest_forms(self, targets())

    def login(self, role: str) -> None:
        client = self.clients[role]
        page = client.get("/login/")
        token = page.cookies["csrftoken"].value if "csrftoken" in page.cookies else client.cookies["csrftoken"].value
        done = client.post("/login/", {"username": self.world.users[role].username, "password": PASSWORD,
                                       "csrfmiddlewaretoken": token})
        if done.status_code != 302 or "_auth_user_id" not in client.session:
            raise RuntimeError(f"could not log in as {role}: {done.status_code} {done.content[:300]!r}")

    def token(self, role: str) -> str:
        client = self.clients[role]
        if "csrftoken" not in client.cookies:
            client.get("/login/")
        return client.cookies["csrftoken"].value

    def send(self, request: Request, tally: Tally) -> None:
        """Send ``request`` inside a savepoint that is rolled back; raise Finding for a 5xx or a refused request
        that stored something."""
        from django.db import transaction

        client = self.clients[request.role]
        headers: dict[str, str] = {"QUERY_STRING": request.query.decode("latin-1")}
        if request.htmx:
            headers["HTTP_HX_REQUEST"] = "true"
        if request.method not in ("GET", "HEAD"):
            token = self.token(request.role)
            if request.csrf == "valid":
                headers["HTTP_X_CSRFTOKEN"] = token
            elif request.csrf == "wrong":
                headers["HTTP_X_CSRFTOKEN"] = "x" * 64
        if "login" in request.path or "password" in request.path:
            # Each from an address of its own: login throttling, where there is some, must not lock the fuzz out.
            headers["REMOTE_ADDR"] = f"127.1.{tally.requests // 250 % 250}.{tally.requests % 250 + 1}"
        tally.requests += 1
        cookies = copy.deepcopy(client.cookies)  # a logout, a login or a password change is undone with the rows
        try:
            with transaction.atomic():
                before = snapshot()
                try:
                    response = client.generic(request.method, request.path, data=request.body or b"",
                                              content_type=request.content_type or None, **headers)
                except Exception as exc:  # noqa: BLE001 - a view raising is a 500 for the user: the finding
                    tally.server_errors += 1
                    raise Finding(f"500 (raised {type(exc).__name__}: {exc!s:.300}) for {request!r}\n"
                                  f"{traceback.format_exc(limit=-6)}") from exc
                status = response.status_code
                tally.statuses[status] = tally.statuses.get(status, 0) + 1
                if status >= 500:
                    tally.server_errors += 1
                    raise Finding(f"{status} for {request!r}: {response.content[:500]!r}")
                why = refusal(response)
                if why is not None:
                    tally.refused += 1
                    after = snapshot()
                    changed = {label for label in before if before[label] != after.get(label)}
                    if changed:
                        tally.stored_when_refused += 1
                        raise Finding(f"refused ({why}) but stored rows in {sorted(changed)} for {request!r}")
                transaction.set_rollback(True)
        finally:
            client.cookies = cookies


def well_formed(target: Target, world: World) -> list[Request]:
    """The requests a browser would send to ``target``: each route with an own id, by each user, GET and POST, htmx
    or not, with the fields of the pages' forms at values the pages offer. Sent first, so the fuzz always reaches
    the code behind the first checks; the random requests then vary from there."""
    from django.urls import NoReverseMatch, reverse

    known = world.forms.get(target.name, {})
    body = urlencode([(name, next((value for value in reversed(values) if value), "")) for name, values
                      in sorted(known.items())]).encode()
    found = []
    for route in target.routes:
        if not route.name:
            continue
        try:
            path = reverse(route.name, kwargs={name: str(world.own_call_ids[0]) for name in route.kwargs})
        except NoReverseMatch:
            continue
        if "logout" in path:
            continue  # a logout would be undone, but it sends nothing to check beyond the fuzz's own cases
        for role in ("agent", "other", "admin"):
            for method in ("GET", "POST"):
                for htmx in (False, True):
                    found.append(Request(target.name, role, method, path, body if method == "GET" else b"",
                                         body if method == "POST" else None,
                                         "application/x-www-form-urlencoded" if method == "POST" else "", htmx,
                                         "valid"))
    return found


def fuzz_target(target: Target, session: Session, tally: Tally, examples: int, *, derandomize: bool = True,
                seed: int | None = None) -> None:
    """The well-formed requests, then ``examples`` random ones to ``target``; raises Finding (minimised by
    hypothesis) for the first failure."""
    for request in well_formed(target, session.world):
        session.send(request, tally)

    @settings(max_examples=examples, derandomize=derandomize, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate, Phase.shrink],
              print_blob=False)
    @given(request=requests_for(target, session.world))
    def run(request: Request) -> None:
        session.send(request, tally)

    if seed is not None:
        from hypothesis import seed as with_seed

        run = with_seed(seed)(run)
    run()


# ---- the proof: standalone, on SQLite and PostgreSQL -------------------------------------------------------------


def _log(message: str) -> None:
    print(f"[screen_fuzz {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _setup_django(database_url: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "callcenter.crm.settings"
    os.environ["CALLCENTER_SECRET_KEY"] = "proof-only-throwaway-key-" + os.urandom(8).hex()
    os.environ["CALLCENTER_DATABASE_URL"] = database_url
    os.environ["CALLCENTER_TEST_FAST_HASHER"] = "true"
    os.environ["CALLCENTER_LOG_LEVEL"] = "CRITICAL"  # the views' own warnings for refused input would flood stderr
    import django

    django.setup()
    from django.test.utils import setup_test_environment

    setup_test_environment()
    import logging

    logging.disable(logging.CRITICAL)  # a refused request logs a warning; thousands of them would bury the progress


def run_database(label: str, examples: int, only: list[str]) -> tuple[Tally, list[str]]:
    from django.core.management import call_command
    from django.db import transaction

    call_command("migrate", verbosity=0, interactive=False)
    with transaction.atomic():
        world = build_world()
        session = Session(world)
        tally = Tally()
        failures = []
        chosen = [target for target in targets() if not only or target.name in only]
        for number, target in enumerate(chosen, 1):
            started = time.monotonic()
            try:
                fuzz_target(target, session, tally, examples)
                outcome = "ok"
            except Finding as finding:
                failures.append(f"{target.name}: {finding}")
                outcome = f"FAILED: {str(finding)[:300]}"
            except Exception as exc:  # noqa: BLE001 - hypothesis wraps several findings in one group
                failures.append(f"{target.name}: {type(exc).__name__}: {exc}")
                outcome = f"FAILED: {type(exc).__name__}: {str(exc)[:300]}"
            _log(f"{label}: {number}/{len(chosen)} {target.name}: {examples} examples in "
                 f"{time.monotonic() - started:.1f}s, {outcome}")
        transaction.set_rollback(True)
    return tally, failures


def _child(db: str, examples: int, only: list[str], pg_url: str) -> int:
    """One database in this process (a Django process has one database configuration)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))
    from _common import PostgresUnreachable, throwaway_postgres  # type: ignore[import-not-found]

    def run(url: str) -> int:
        _setup_django(url)
        tally, failures = run_database(db, examples, only)
        for failure in failures:
            print(failure, file=sys.stderr, flush=True)
        ok = tally.server_errors == 0 and tally.stored_when_refused == 0 and not failures
        statuses = ", ".join(f"{status}: {count}" for status, count in sorted(tally.statuses.items()))
        _log(f"{db}: statuses {statuses}")
        print(f"PROOF {NAME} | {db}: {len(targets_names(only))} targets: well-formed + {examples} hostile requests "
              f"each, logged in, CSRF enforced | {tally.requests} requests, {tally.server_errors} 5xx, "
              f"{tally.refused} refused, {tally.stored_when_refused} stored by a refused one | "
              f"{'PASS' if ok else 'FAIL'}", flush=True)
        return 0 if ok else 1

    if db == "sqlite":
        with tempfile.TemporaryDirectory(prefix="screen-fuzz-") as directory:
            return run(f"sqlite:///{directory}/fuzz.sqlite3")
    try:
        with throwaway_postgres(pg_url, f"callcenter_proof_fuzz_{os.getpid()}", log=_log) as url:
            try:
                return run(url)
            finally:
                from django.db import connections

                connections.close_all()
    except PostgresUnreachable as unreachable:
        print(f"PROOF {NAME} | postgres: the same fuzz | {unreachable} | FAIL", flush=True)
        return 1


def targets_names(only: list[str]) -> list[str]:
    return [target.name for target in targets() if not only or target.name in only]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20 examples per target instead of 200")
    parser.add_argument("--examples", type=int, help="examples per target")
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--target", action="append", default=[], help="fuzz this target only (repeatable)")
    parser.add_argument("--pg-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    options = parser.parse_args(argv)
    examples = options.examples or (20 if options.quick else 200)
    if options.db != "both":
        return _child(options.db, examples, options.target, options.pg_url)
    import subprocess

    # Both databases at once, each in a process of its own (a Django process has one database configuration); their
    # PROOF lines are printed here, last, in a fixed order.
    children = {}
    for db in ("sqlite", "postgres"):
        args = [sys.executable, "-m", "proof.screen_fuzz", "--db", db, "--examples", str(examples),
                "--pg-url", options.pg_url, *[f"--target={name}" for name in options.target]]
        children[db] = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    outputs = {}
    try:
        for db, child in children.items():
            outputs[db] = child.communicate()[0]
    except KeyboardInterrupt:
        for child in children.values():
            child.wait()  # each got the same Ctrl-C; let it drop its database
        raise
    for db in children:
        print(outputs.get(db, ""), end="", flush=True)
        if not outputs.get(db, "").strip():
            print(f"PROOF {NAME} | {db}: the same fuzz | the process printed nothing (exit "
                  f"{children[db].returncode}) | FAIL", flush=True)
    return 0 if all(child.returncode == 0 for child in children.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
