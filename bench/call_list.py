"""Call list: the first page of the Call Center screen's list with millions of calls stored, on SQLite and PostgreSQL.

What it measures (issue 5, item 7; target p95 < 50 ms on both databases):
- The product's own code path, `calls.queries.call_list(user, from_date=..., search=..., rules=...)`, with the match
  rules built from the settings as the screen's views build them (`views._list_context`): the first page (50 rows,
  the contact, activity type and resource read with them) as the screen asks for it.
- Six filters, each its own figure, each over --samples pages with different users, days and terms:
  * agent: an agent's own calls from a recent day (the from-date drawn from the last 7 days of the data);
  * agent-number: the same with a number searched (a whole number as people type it, the last digits of one, or a
    number nobody has);
  * agent-name: the same with a name searched (a contact's surname, full name or company, or a name nobody has);
  * admin, admin-number, admin-name: the same as the administrator, who sees every agent's calls.
- The anchor, measured in the same run on the same samples: the same page as a first cut with Django's generic tools
  would fetch it (a ListView with paginate_by): `started_at__date__gte` for the from-date, `icontains` over the raw
  number, caller name and the contact's names for the search, `order_by("-started_at")`, and Paginator's COUNT(*)
  before the page. The ratio is anchor p50 / product p50.
- The pages run in --rounds rounds over the same samples; the round with the lowest p95 counts (on a shared machine
  the other rounds' tails are other processes' time slices), and every round's p95 is printed.

The data (deterministic for --seed): 200 agents (extensions 100-299, some busier than others) and an administrator;
a few thousand contacts (made with the real create_contact action; a few surnames common, most rare, as in a real
customer base, and a quarter with a company); N calls (default 5,000,000)
spread over two years up to the day of the load, on working days and hours, each with its activity (the settings
create one for every incoming and outgoing call, as the demo's do): 70% inbound (a fifth of them missed), 30%
outbound; a third of the numbers belong to contacts, the rest are unknown (some calling again); numbers written the
ways PBXs report them; ring, talk and hang-up times as people make them. The derived columns (match key, digits,
type, duration, activity subject) come from the product's own helpers, and every run re-creates a sample of the
loaded calls through the real path (`calls.actions.receive_events` with the same wire events, rolled back) and
compares the rows field by field.

How the data gets in: in one transaction, the plain indexes and (PostgreSQL) foreign keys dropped first and rebuilt
afterwards from their own definitions in the catalog (executemany on SQLite, COPY on PostgreSQL). The SQLite file is
kept under var/bench/, keyed by row count, seed and data version, and reused while its fingerprint matches; newer
migrations are applied to it as to any production database. PostgreSQL gets a throwaway database
`callcenter_bench_<pid>`, VACUUM ANALYZEd after the load (what autovacuum does) and dropped at the end, even on
failure or Ctrl-C. SQLite gets no ANALYZE: the product never runs one.

Output: progress on stderr; on stdout one summary line per database and filter, starting with
"call_list <db> <filter>:".
"""

from __future__ import annotations

import argparse
import bisect
import datetime as dt
import gc
import hashlib
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import _common
from _common import log, percentile

DATA_VERSION = 2  # bump when the generator below changes what it writes
TARGET_P95_MS = 50.0
BATCH = 50_000
VERIFY_SAMPLE = 40
AGENTS = 200
FIRST_EXTENSION = 100
DAYS = 730
RECENT_DAYS = 7
ADMIN = "supervisor"
TABLES = ("calls_call", "activities_activity")
FILTERS = ("agent", "agent-number", "agent-name", "admin", "admin-number", "admin-name")


def fmt_ms(seconds: float) -> str:
    return _common.fmt_ms(seconds, small_decimals=2)


# --------------------------------------------------------------------------------------------------------------------
# The people, the settings and the contacts: few rows, made through the product's own actions
# --------------------------------------------------------------------------------------------------------------------

GREEK_FIRST = ("Άρης", "Βάσω", "Γιώτα", "Δέσποινα", "Ερμής", "Ζωή", "Ηρώ", "Θάλεια", "Ιάσονας", "Κλεοπάτρα",
               "Λήδα", "Μάρκος", "Νεφέλη", "Ορέστης", "Πηνελόπη", "Ραφαήλ", "Σταυρούλα", "Τάσος", "Υπατία", "Φοίβος")
GREEK_LAST = ("Αναστασίου", "Βλάχου", "Γκίκα", "Δούκα", "Ευθυμίου", "Ζέρβα", "Ηλιοπούλου", "Θεοδώρου", "Καλογήρου",
              "Λιάπη", "Μπούρα", "Ντόκου", "Ξανθού", "Πολίτη", "Ρούσσου", "Σαββίδη", "Τζαννή", "Φωτίου", "Χριστάκη",
              "Ψυχογιού")
# Contacts' names: surnames from stems and endings, a few very common and a long tail of rare ones, as in a real
# customer base (a name searched for usually belongs to a handful of contacts, or one).
MEN = ("Γιώργος", "Νίκος", "Κώστας", "Δημήτρης", "Γιάννης", "Παναγιώτης", "Βασίλης", "Χρήστος", "Θανάσης", "Μιχάλης",
       "Βαγγέλης", "Σπύρος", "Αντώνης", "Ηλίας", "Θοδωρής", "Στέλιος", "Άγγελος", "Μανώλης", "Πέτρος", "Λευτέρης",
       "Απόστολος", "Σωτήρης", "Αλέξανδρος", "Στάθης", "Τάκης", "Φώτης", "Χάρης", "Μάριος", "Παύλος", "Ορέστης")
WOMEN = ("Μαρία", "Ελένη", "Κατερίνα", "Βασιλική", "Σοφία", "Αγγελική", "Γεωργία", "Δήμητρα", "Κωνσταντίνα",
         "Χριστίνα", "Ευαγγελία", "Ειρήνη", "Παναγιώτα", "Αναστασία", "Ιωάννα", "Δέσποινα", "Χαρά", "Φωτεινή", "Ζωή",
         "Στέλλα", "Αθηνά", "Νίκη", "Ευτυχία", "Αλεξάνδρα", "Μαργαρίτα", "Ρένα", "Σταυρούλα", "Βάσω", "Λένα", "Ξένια")
STEMS = ("Παπαδ", "Γεωργ", "Νικολ", "Κωνσταντιν", "Δημητρ", "Αντων", "Βασιλ", "Ιωανν", "Μιχαηλ", "Χριστ",
         "Αθανασ", "Σταυρ", "Καραγιανν", "Μαυρ", "Τσακαλ", "Λαμπρ", "Σπυρ", "Ηλι", "Φωτ", "Ζαχαρ", "Πετρ", "Αλεξ",
         "Θεοδωρ", "Στεφαν", "Κυριακ", "Παναγ", "Ευαγγελ", "Μανωλ", "Χατζηγεωργ", "Γιαννακ", "Ραπτ", "Σαρρ",
         "Τζαν", "Κοντ", "Μπαλτ", "Ξενακ", "Πολυχρον", "Σιδηρ", "Τριανταφυλλ", "Φραγκ", "Χαραλαμπ", "Ψαρ",
         "Καλογερ", "Λιακ", "Μαρκ", "Ντιν", "Οικονομ", "Πανταζ", "Ρουσ", "Σκορδ", "Τσιρ", "Βλαχ", "Γκιουλ",
         "Δρακ", "Ευθυμ", "Ζερβ", "Κατσαρ", "Μπεκ", "Νταλ", "Παπαθανασ")
ENDINGS = (("όπουλος", "οπούλου"), ("άκης", "άκη"), ("ίδης", "ίδου"), ("ίου", "ίου"), ("άτος", "άτου"),
           ("ιάδης", "ιάδου"), ("έας", "έα"), ("ίνης", "ίνη"), ("άρας", "άρα"), ("ούλης", "ούλη"))
ENGLISH = ("John", "Mary", "James", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "David", "Susan", "William",
           "Karen", "Thomas", "Sarah", "Daniel", "Emma", "Oliver", "Sophie", "George", "Helen")
ENGLISH_LAST = ("Smith", "Johnson", "Brown", "Taylor", "Wilson", "Davies", "Evans", "Thomas", "Roberts", "Walker",
                "Wright", "Thompson", "White", "Hughes", "Edwards", "Green", "Hall", "Wood", "Harris", "Clarke",
                "Fletcher", "Baxter", "Holloway", "Pemberton", "Whitfield", "Ashworth", "Kingsley", "Montgomery")
COMPANY_WORDS = ("Αιγαίον", "Ολυμπιακή", "Αττική", "Μακεδονική", "Κρητική", "Ιόνιος", "Θεσσαλική", "Aegean",
                 "Hellenic", "Delta", "Omega", "Poseidon", "Athena", "Apollo", "Hermes", "Ήπειρος", "Πελοπόννησος",
                 "Κυκλάδες", "Δωδεκάνησα", "Αρκαδία")
COMPANY_TRADES = ("Τεχνική", "Εμπορική", "Ναυτιλιακή", "Logistics", "Software", "Τρόφιμα", "Κατασκευαστική",
                  "Energy", "Foods", "Systems", "Ασφαλιστική", "Φαρμακευτική", "Travel", "Marine", "Consulting",
                  "Ηλεκτρονική", "Εκδόσεις", "Motors", "Καφέ", "Textiles")
COMPANY_FORMS = ("Α.Ε.", "Ο.Ε.", "Ε.Π.Ε.", "Ι.Κ.Ε.", "S.A.", "Ltd", "")
# Searched for as names, never generated for anybody: the page then scans the whole range.
MISSING_NAMES = ("Ζαφειρόπουλος", "Wolfenstein", "Καλλιγιανναράκης", "Brzęczyszczykiewicz")
MISSING_NUMBER_PREFIXES = ("800", "801", "6920", "2999")


@dataclass(frozen=True)
class ContactSpec:
    first_name: str
    last_name: str
    company: str
    phones: tuple[str, ...]


def generated_contacts(seed: int, count: int) -> list[ContactSpec]:
    """``count`` contacts with long-tailed names and 1-3 numbers each (written the ways people write them, as the
    demo data does), no number twice."""
    from callcenter.crm import demo

    rng = random.Random(seed + 1)
    surnames = [(stem + male, stem + female) for stem in STEMS for male, female in ENDINGS]
    rng.shuffle(surnames)
    surname_weights = [1 / (rank + 1) ** 0.9 for rank in range(len(surnames))]  # Zipf-like: few common, many rare
    used: set[str] = set()
    specs = []
    for _ in range(count):
        if rng.random() < 0.85:
            man = rng.random() < 0.5
            first = rng.choice(MEN if man else WOMEN)
            last = rng.choices(surnames, surname_weights)[0][0 if man else 1]
        else:
            first, last = rng.choice(ENGLISH), rng.choice(ENGLISH_LAST)
        company = ""
        if rng.random() < 0.25:
            company = " ".join(part for part in (rng.choice(COMPANY_WORDS), rng.choice(COMPANY_TRADES),
                                                 rng.choice(COMPANY_FORMS)) if part)
        phones: list[str] = []
        while len(phones) < rng.choices((1, 2, 3), weights=(55, 33, 12))[0]:
            number = random_national(rng)
            if number not in used:
                used.add(number)
                phones.append(rng.choice(demo.FORMATS)(number))
        specs.append(ContactSpec(first, last, company, tuple(phones)))
    return specs


def seed_people(options: argparse.Namespace) -> None:
    """Settings, activity type, agents, the administrator and the contacts, through the product's actions."""
    from django.db import transaction

    from callcenter.activities.actions import ensure_activity_type
    from callcenter.activities.models import ActivityKind
    from callcenter.contacts.actions import MatchRules, create_contact
    from callcenter.resources.actions import ensure_resource, update_call_center_settings
    from callcenter.resources.models import PhoneSystem

    rng = random.Random(options.seed)
    with transaction.atomic():
        phone_call = ensure_activity_type("Τηλεφώνημα", ActivityKind.PHONE_CALL)
        update_call_center_settings(phone_system=PhoneSystem.ASTERISK, digits_to_scan=10, internal_digits=3,
                                    incoming_activity_type=phone_call, outgoing_activity_type=phone_call,
                                    default_activity_type=phone_call, phone_region="GR")
        for index in range(AGENTS):
            ensure_resource(f"agent{index + 1:03d}", first_name=rng.choice(GREEK_FIRST),
                            last_name=rng.choice(GREEK_LAST), extension=str(FIRST_EXTENSION + index),
                            options={"cc_active": True})
        ensure_resource(ADMIN, first_name="Κάρολ", last_name="Επόπτρια", is_administrator=True)
        rules = MatchRules.current()
        for spec in generated_contacts(options.seed, options.contacts):
            create_contact(first_name=spec.first_name, last_name=spec.last_name, company=spec.company,
                           phones=spec.phones, rules=rules)


# --------------------------------------------------------------------------------------------------------------------
# The calls: generated in time order, with the columns the call rules would write
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Known:
    """A contact's number as the load uses it."""

    national: str
    contact_id: int
    display_name: str


@dataclass
class GeneratedCall:
    """One call as the PBX would report it (times in epoch milliseconds) and what the rules make of it."""

    call_id: int
    resource_index: int
    outbound: bool
    number: str
    caller_name: str
    contact: Known | None
    started_ms: int
    answered_ms: int | None
    ended_ms: int


# How PBXs report an outside caller's number, and how agents type the numbers they dial.
INBOUND_FORMATS: tuple[Callable[[str], str], ...] = (
    lambda n: n, lambda n: n, lambda n: n, lambda n: n, lambda n: n,
    lambda n: "0030" + n, lambda n: "0030" + n, lambda n: "0030" + n,
    lambda n: "+30" + n, lambda n: "+30" + n,
)
OUTBOUND_FORMATS: tuple[Callable[[str], str], ...] = (
    lambda n: n, lambda n: n, lambda n: n, lambda n: "0030" + n,
)
NETWORK_NAMES = ("Σπύρος Μαυρίδης", "Άννα Νικολάου", "Παναγιώτης Ιωάννου", "Σοφία Δημητρίου", "ΚΑΤΣΑΡΟΣ ΑΕ",
                 "Ιωάννα Καραγιάννη", "Private", "Anonymous")


def random_national(rng: random.Random) -> str:
    if rng.random() < 0.55:
        return rng.choice(("690", "693", "694", "695", "697", "698", "699")) + str(rng.randrange(10**7)).zfill(7)
    area = rng.choice(("210", "210", "210", "2310", "2310", "2610", "2810", "2410", "22510"))
    return area + str(rng.randint(2, 9)) + str(rng.randrange(10 ** (9 - len(area)))).zfill(9 - len(area))


class CallSource:
    """Calls over DAYS days up to ``last_day`` (local time), in time order, ids from 1."""

    def __init__(self, seed: int, total: int, last_day: dt.date, known: Sequence[Known], zone: ZoneInfo) -> None:
        self.rng = random.Random(seed + 10)
        self.total = total
        self.last_day = last_day
        self.known = list(known)
        self.zone = zone
        rng = random.Random(seed + 11)
        # Some agents take many more calls than others.
        weights = [rng.lognormvariate(0, 0.5) for _ in range(AGENTS)]
        running = 0.0
        self.cum_weights = []
        for weight in weights:
            running += weight
            self.cum_weights.append(running)
        # Unknown numbers: most call once, some again.
        self.repeaters = [random_national(rng) for _ in range(max(100, total // 40))]

    def day_counts(self) -> list[tuple[dt.date, int]]:
        """Calls per day: working days full, Saturdays light, Sundays almost none; ``total`` in all."""
        days = [self.last_day - dt.timedelta(days=offset) for offset in range(DAYS - 1, -1, -1)]
        weight = {5: 0.25, 6: 0.05}
        weights = [weight.get(day.weekday(), 1.0) for day in days]
        scale = self.total / sum(weights)
        counts, carried = [], 0.0
        for day, w in zip(days, weights, strict=True):
            exact = w * scale + carried
            count = int(exact)
            carried = exact - count
            counts.append((day, count))
        missing = self.total - sum(count for _day, count in counts)
        if missing:
            day, count = counts[-1]
            counts[-1] = (day, count + missing)
        return counts

    def calls(self) -> Iterator[GeneratedCall]:
        rng = self.rng
        random_ = rng.random
        known, repeaters = self.known, self.repeaters
        call_id = 0
        for day, count in self.day_counts():
            midnight = int(dt.datetime.combine(day, dt.time.min, tzinfo=self.zone).timestamp() * 1000)
            # Working hours, busiest late in the morning.
            offsets = sorted(int(rng.triangular(8.0, 20.0, 11.0) * 3_600_000) for _ in range(count))
            for offset in offsets:
                call_id += 1
                outbound = random_() < 0.3
                draw = random_()
                contact = None
                if draw < (0.55 if outbound else 0.3):
                    contact = known[int(random_() * len(known))]
                    national = contact.national
                elif draw < 0.75:
                    national = repeaters[int(random_() * len(repeaters))]
                else:
                    national = random_national(rng)
                if outbound:
                    number = OUTBOUND_FORMATS[int(random_() * len(OUTBOUND_FORMATS))](national)
                    caller_name = ""
                else:
                    number = INBOUND_FORMATS[int(random_() * len(INBOUND_FORMATS))](national)
                    caller_name = NETWORK_NAMES[int(random_() * len(NETWORK_NAMES))] if random_() < 0.15 else ""
                started = midnight + offset
                ring = int(rng.uniform(3.0, 20.0) * 1000)
                answered = random_() < (0.75 if outbound else 0.8)
                if answered:
                    talk = int(min(7200.0, rng.lognormvariate(4.5, 0.9)) * 1000)  # median ~90 s
                    answered_ms: int | None = started + ring
                    ended = started + ring + talk
                else:
                    answered_ms = None
                    ended = started + ring
                resource_index = bisect.bisect_right(self.cum_weights, random_() * self.cum_weights[-1])
                yield GeneratedCall(call_id, min(resource_index, AGENTS - 1), outbound, number, caller_name,
                                    contact, started, answered_ms, ended)


CALL_FIELDS = ["id", "resource_id", "kind", "direction", "state", "started_at", "answered_at", "ended_at", "duration",
               "number", "number_key", "number_digits", "caller_name", "contact_id", "extension", "pbx_call_id",
               "pbx_leg_id", "created_at", "updated_at"]
ACTIVITY_FIELDS = ["id", "activity_type_id", "subject", "status", "starts_at", "contact_id", "resource_id", "call_id",
                   "created_at"]


def _timestamp_adapter(vendor: str) -> Callable[[int], Any]:
    """Epoch milliseconds to what the backend stores (checked against the model field's own adaptation)."""
    from django.db import connection

    from callcenter.calls.models import Call

    if vendor == "sqlite":
        def adapt(ms: int) -> Any:
            return str(dt.datetime.fromtimestamp(ms / 1000, dt.UTC).replace(tzinfo=None))
    else:
        def adapt(ms: int) -> Any:
            return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    field = Call._meta.get_field("started_at")
    for ms in (1_700_000_000_000, 1_700_000_000_123):
        expected = field.get_db_prep_save(dt.datetime.fromtimestamp(ms / 1000, dt.UTC), connection)
        if adapt(ms) != expected:
            raise SystemExit(f"timestamp adaptation differs from Django's: {adapt(ms)!r} != {expected!r}")
    return adapt


def generated_rows(source: CallSource, context: dict[str, Any], vendor: str
                   ) -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """Batches of (call rows, activity rows) in the column order of column_plan."""
    from callcenter import numbers
    from callcenter.calls.models import Call, CallDirection, CallKind, CallState

    rules = context["rules"]
    resources = context["resources"]  # (resource id, extension) by index
    activity_type_id = context["activity_type_id"]
    call_constants, activity_constants = context["call_constants"], context["activity_constants"]
    adapt = _timestamp_adapter(vendor)
    incoming_label = Call(kind=CallKind.INCOMING).kind_label()
    outgoing_label = Call(kind=CallKind.OUTGOING).kind_label()
    # A number's derived columns depend only on the number and its direction; numbers repeat.
    derived: dict[tuple[str, bool], tuple[str, str]] = {}
    prefix, internal_digits = rules.prefix, rules.internal_digits
    calls: list[tuple[Any, ...]] = []
    activities: list[tuple[Any, ...]] = []
    for call in source.calls():
        resource_id, extension = resources[call.resource_index]
        key = (call.number, call.outbound)
        found = derived.get(key)
        if found is None:
            found = (rules.key(call.number, dialled=call.outbound),
                     numbers.strip_prefix(call.number, prefix if call.outbound else "",
                                          internal_digits)[: numbers.MAX_RAW_LENGTH])
            if len(derived) < 3_000_000:
                derived[key] = found
        number_key, number_digits = found
        if call.outbound:
            kind, direction, label = CallKind.OUTGOING, CallDirection.OUTBOUND, outgoing_label
        else:
            kind = CallKind.INCOMING if call.answered_ms is not None else CallKind.MISSED
            direction, label = CallDirection.INBOUND, incoming_label  # the activity is made while it rings
        duration = (call.ended_ms - call.answered_ms) // 1000 if call.answered_ms is not None else 0
        started = adapt(call.started_ms)
        ended = adapt(call.ended_ms)
        contact_id = call.contact.contact_id if call.contact else None
        seq = call.call_id
        calls.append((
            seq, resource_id, kind.value, direction.value, CallState.ENDED.value, started,
            adapt(call.answered_ms) if call.answered_ms is not None else None, ended, duration,
            call.number, number_key, number_digits, call.caller_name, contact_id, extension,
            f"{call.started_ms // 1000}.{seq}", f"PJSIP/{extension}-{seq:08x}", ended, ended, *call_constants,
        ))
        name = call.contact.display_name if call.contact else (call.caller_name or call.number)
        activities.append((seq, activity_type_id, f"{label} {name}".strip()[:200], "open", started, contact_id,
                           resource_id, seq, ended, *activity_constants))
        if len(calls) >= BATCH:
            yield calls, activities
            calls, activities = [], []
    if calls:
        yield calls, activities


def load_context() -> dict[str, Any]:
    from callcenter.activities.models import Activity
    from callcenter.calls.models import Call
    from callcenter.contacts.actions import MatchRules
    from callcenter.resources.models import CallCenterSettings, Resource

    settings = CallCenterSettings.load()
    resources = list(Resource.objects.filter(extension__isnull=False).order_by("extension")
                     .values_list("id", "extension"))
    if len(resources) != AGENTS:
        raise SystemExit(f"expected {AGENTS} agents with extensions, found {len(resources)}")
    call_columns, call_constants = _common.column_plan(Call, CALL_FIELDS, "bench/call_list.py")
    activity_columns, activity_constants = _common.column_plan(Activity, ACTIVITY_FIELDS, "bench/call_list.py")
    return {
        "rules": MatchRules.current(), "resources": resources,
        "activity_type_id": settings.incoming_activity_type_id,
        "call_columns": call_columns, "call_constants": call_constants,
        "activity_columns": activity_columns, "activity_constants": activity_constants,
    }


def known_numbers() -> list[Known]:
    """Every contact's number (national, last 10 digits) that belongs to that contact alone."""
    from collections import Counter

    from callcenter.contacts.models import Contact, ContactPhone

    names = {contact.pk: contact.display_name for contact in Contact.objects.all()}
    phones = list(ContactPhone.objects.order_by("id").values_list("key", "contact_id"))
    owners = Counter(key for key, _contact in phones)
    return [Known(key, contact_id, names[contact_id]) for key, contact_id in phones
            if owners[key] == 1 and len(key) == 10]


# ---- bulk load with the indexes rebuilt afterwards -------------------------------------------------------------------


def _droppable(vendor: str) -> tuple[list[str], list[str]]:
    """(statements that drop the plain indexes and foreign keys of TABLES, statements that make them again), read
    from the catalog, so the rebuilt schema is the migrated one."""
    from django.db import connection

    drops, creates = [], []
    with connection.cursor() as cursor:
        if vendor == "sqlite":
            cursor.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
                           f"AND tbl_name IN ({', '.join('%s' for _ in TABLES)}) ORDER BY name", TABLES)
            for name, sql in cursor.fetchall():
                drops.append(f'DROP INDEX "{name}"')
                creates.append(sql)
        else:
            cursor.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
                "AND tablename = ANY(%s) AND indexname NOT IN (SELECT conname FROM pg_constraint) ORDER BY indexname",
                [list(TABLES)])
            for name, definition in cursor.fetchall():
                drops.append(f'DROP INDEX "{name}"')
                creates.append(definition)
            cursor.execute(
                "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE contype = 'f' AND conrelid::regclass::text = ANY(%s) ORDER BY conname", [list(TABLES)])
            for table, name, definition in cursor.fetchall():
                drops.append(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
                creates.append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
    return drops, creates


def load(options: argparse.Namespace, vendor: str, last_day: dt.date) -> int:
    """Bulk-load the generated calls and activities in one transaction; returns how many calls."""
    from django.conf import settings
    from django.core.management.color import no_style
    from django.db import connection, transaction

    from callcenter.activities.models import Activity
    from callcenter.calls.models import Call

    context = load_context()
    known = known_numbers()
    if not known:
        raise SystemExit("no contact numbers to call from; give --contacts > 0")
    source = CallSource(options.seed, options.calls, last_day, known, ZoneInfo(settings.TIME_ZONE))
    quote = connection.ops.quote_name
    loaded = 0
    connection.ensure_connection()
    with transaction.atomic():
        drops, creates = _droppable(vendor)
        with connection.cursor() as django_cursor:
            for statement in drops:
                django_cursor.execute(statement)
        raw = connection.connection.cursor()
        plans = ((Call._meta.db_table, context["call_columns"]), (Activity._meta.db_table, context["activity_columns"]))
        for batch in generated_rows(source, context, vendor):
            for (table, columns), rows in zip(plans, batch, strict=True):
                names = ", ".join(quote(column) for column in columns)
                if vendor == "sqlite":
                    raw.executemany(f"INSERT INTO {quote(table)} ({names}) VALUES ({', '.join('?' * len(columns))})",
                                    rows)
                else:
                    with raw.copy(f"COPY {quote(table)} ({names}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
            loaded += len(batch[0])
            if loaded % 500_000 < BATCH or loaded == options.calls:
                log(f"  loaded {loaded:,} calls and their activities")
        raw.close()
        log(f"  rebuilding {len(creates)} indexes and foreign keys")
        with connection.cursor() as django_cursor:
            for statement in creates:
                django_cursor.execute(statement)
            for statement in connection.ops.sequence_reset_sql(no_style(), [Call, Activity]):
                django_cursor.execute(statement)
    return loaded


# --------------------------------------------------------------------------------------------------------------------
# Verification: the real call rules, given the same calls as wire events, write the same rows
# --------------------------------------------------------------------------------------------------------------------


def verify_sample(options: argparse.Namespace) -> int:
    from django.db import transaction

    from callcenter import wire
    from callcenter.activities.models import Activity
    from callcenter.calls.actions import receive_events
    from callcenter.calls.models import Call

    class _Rollback(Exception):
        pass

    compared_fields = ["resource_id", "kind", "direction", "state", "started_at", "answered_at", "ended_at",
                       "duration", "number", "number_key", "number_digits", "caller_name", "contact_id", "extension",
                       "pbx_leg_id", "transferred_to", "transferred_from", "reconciled", "campaign_id", "answer_group"]
    activity_fields = ["activity_type_id", "subject", "status", "starts_at", "contact_id", "resource_id",
                       "campaign_id", "created_by_id", "notes"]
    rng = random.Random(options.seed + 20)
    max_id = Call.objects.order_by("-id").values_list("id", flat=True).first() or 0
    ids = sorted({rng.randint(1, max_id) for _ in range(min(VERIFY_SAMPLE, max_id))})
    compared = 0
    for loaded in Call.objects.filter(id__in=ids).select_related("activity"):
        inbound = loaded.direction == "in"
        call_id = f"verify-{loaded.pk}"
        stamp = loaded.started_at.timestamp()
        events: list[wire.Event] = [wire.CallRinging(
            event_id=f"{call_id}-ring", occurred_at=stamp, call_id=call_id, extension=loaded.extension,
            leg_id=loaded.pbx_leg_id, direction=wire.Direction.INBOUND if inbound else wire.Direction.OUTBOUND,
            remote_number=loaded.number, remote_name=loaded.caller_name)]
        if loaded.answered_at is not None:
            events.append(wire.CallAnswered(event_id=f"{call_id}-answer", occurred_at=loaded.answered_at.timestamp(),
                                            call_id=call_id, extension=loaded.extension))
        assert loaded.ended_at is not None
        events.append(wire.CallEnded(event_id=f"{call_id}-end", occurred_at=loaded.ended_at.timestamp(),
                                     call_id=call_id, extension=loaded.extension))
        try:
            with transaction.atomic():
                receipt = receive_events(None, events)
                if receipt.accepted != len(events) or receipt.failed:
                    raise SystemExit(f"the call rules refused the events of call {loaded.pk}: {receipt}")
                made = Call.objects.get(pbx_call_id=call_id)
                made_row = {name: getattr(made, name) for name in compared_fields}
                made_activity = Activity.objects.filter(call=made).values(*activity_fields).first()
                raise _Rollback
        except _Rollback:
            pass
        loaded_row = {name: getattr(loaded, name) for name in compared_fields}
        activity = getattr(loaded, "activity", None)
        loaded_activity = {name: getattr(activity, name) for name in activity_fields} if activity else None
        if made_row != loaded_row or made_activity != loaded_activity:
            diff = {name: (loaded_row[name], made_row[name]) for name in compared_fields
                    if loaded_row[name] != made_row[name]}
            raise SystemExit(f"bulk-loaded call {loaded.pk} differs from what the call rules write: {diff}\n"
                             f"  activity loaded: {loaded_activity}\n  activity made:   {made_activity}")
        compared += 1
    if not compared:
        raise SystemExit("verification compared no calls; the database looks empty")
    return compared


# --------------------------------------------------------------------------------------------------------------------
# Samples: who asks for which page
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    user_id: int
    from_date: dt.date
    search: str


def _typed_number(rng: random.Random, national: str) -> str:
    """A number as an agent types it into Search: whole (in one of the usual ways) or its last digits."""
    choice = rng.random()
    if choice < 0.3:
        return national[-rng.randint(4, 7):]
    if choice < 0.55:
        return f"{national[:3]} {national[3:6]} {national[6:]}"
    if choice < 0.7:
        return "+30 " + national
    return national


def make_samples(options: argparse.Namespace, last_day: dt.date) -> dict[str, list[Sample]]:
    """--samples pages per filter: a random agent (or the administrator), a from-date in the last RECENT_DAYS days
    of the data, and for the searches a number or name of a call that page should find (a fifth of them find
    nothing)."""
    from django.contrib.auth.models import User

    from callcenter import numbers
    from callcenter.calls.models import Call
    from callcenter.calls.queries import day_start

    rng = random.Random(options.seed + 30)
    admin_id = User.objects.get(username=ADMIN).pk
    agents = list(User.objects.filter(resource__extension__isnull=False).values_list("pk", "resource__id"))
    samples: dict[str, list[Sample]] = {name: [] for name in FILTERS}
    for name in FILTERS:
        admin = name.startswith("admin")
        search_kind = name.partition("-")[2]
        while len(samples[name]) < options.samples:
            from_date = last_day - dt.timedelta(days=rng.randrange(RECENT_DAYS))
            user_id, resource_id = (admin_id, None) if admin else rng.choice(agents)
            if not search_kind:
                samples[name].append(Sample(user_id, from_date, ""))
                continue
            if rng.random() < 0.2:  # something nobody has: the page finds nothing
                if search_kind == "number":
                    prefix = rng.choice(MISSING_NUMBER_PREFIXES)
                    text = prefix + "".join(rng.choices("0123456789", k=10 - len(prefix)))
                else:
                    text = rng.choice(MISSING_NAMES)
                samples[name].append(Sample(user_id, from_date, text))
                continue
            calls = Call.objects.filter(started_at__gte=day_start(from_date))
            if resource_id is not None:
                calls = calls.filter(resource_id=resource_id)
            if search_kind == "name":
                calls = calls.filter(contact__isnull=False)
            # A random call of the range: ids grow with time, so pick an id between the range's first and last.
            ends = [calls.order_by(*order).values_list("id", flat=True).first()
                    for order in (("started_at", "id"), ("-started_at", "-id"))]
            if ends[0] is None or ends[1] is None:
                continue
            target = calls.filter(id__gte=rng.randint(min(ends), max(ends))).order_by("id") \
                .select_related("contact").first()
            if target is None:
                continue
            if search_kind == "number":
                text = _typed_number(rng, numbers.digits_only(target.number)[-10:])
            else:
                contact = target.contact
                assert contact is not None
                choice = rng.random()
                if choice < 0.2 and contact.company:
                    text = contact.company
                elif choice < 0.45 and contact.first_name and contact.last_name:
                    text = f"{contact.first_name} {contact.last_name}"
                else:
                    text = contact.last_name or contact.company
            samples[name].append(Sample(user_id, from_date, text))
    return samples


# --------------------------------------------------------------------------------------------------------------------
# Measuring: the product's page, and the naive page (the anchor)
# --------------------------------------------------------------------------------------------------------------------


def product_page(user: Any, sample: Sample) -> int:
    """What the screen's views do for the list (views._list_context without the template): the rules from the
    settings, then queries.call_list; returns the rows on the page."""
    from callcenter.calls import queries
    from callcenter.contacts.actions import MatchRules
    from callcenter.resources.models import CallCenterSettings

    settings = CallCenterSettings.load()
    page = queries.call_list(user, from_date=sample.from_date, search=sample.search,
                             rules=MatchRules(settings.digits_to_scan, settings.call_prefix, settings.internal_digits))
    return len(page.calls)


def naive_page(user: Any, sample: Sample) -> int:
    """The same page as a ListView with paginate_by would fetch it: a date lookup on the start time, icontains over
    the raw columns, Paginator's COUNT(*) and the first 50 rows."""
    from django.core.paginator import Paginator
    from django.db.models import Q

    from callcenter.calls.models import Call
    from callcenter.calls.queries import PAGE_SIZE
    from callcenter.resources.permissions import is_administrator

    calls = Call.objects.all() if is_administrator(user) else Call.objects.filter(resource__user=user)
    calls = calls.filter(started_at__date__gte=sample.from_date)
    if sample.search:
        text = sample.search
        calls = calls.filter(Q(number__icontains=text) | Q(caller_name__icontains=text)
                             | Q(contact__first_name__icontains=text) | Q(contact__last_name__icontains=text)
                             | Q(contact__company__icontains=text))
    page = Paginator(calls.select_related("contact", "activity__activity_type", "resource__user")
                     .order_by("-started_at"), PAGE_SIZE).page(1)
    return len(list(page.object_list))


def _fresh_users(samples: Sequence[Sample]) -> dict[int, Any]:
    from django.contrib.auth.models import User

    return {user.pk: user for user in User.objects.filter(pk__in={s.user_id for s in samples})}


def time_pages(page: Callable[[Any, Sample], int], samples: Sequence[Sample]) -> tuple[list[float], int]:
    """Each sample's page, timed, with the user as a request's middleware gives it (its columns, nothing related
    cached: the view looks its resource up too). Returns (sorted durations, how many pages were empty)."""
    clock = time.perf_counter
    users = _fresh_users(samples)
    durations = []
    empty = 0
    for sample in samples:
        user = _copy_user(users[sample.user_id])
        t0 = clock()
        rows = page(user, sample)
        durations.append(clock() - t0)
        empty += rows == 0
    durations.sort()
    return durations, empty


def _copy_user(user: Any) -> Any:
    """A user object as a request's middleware gives it: its columns, nothing related cached."""
    clone = type(user)(**{field.attname: getattr(user, field.attname) for field in user._meta.concrete_fields})
    clone._state.adding = False
    clone._state.db = user._state.db
    return clone


@dataclass
class Figure:
    name: str
    p50: float
    p95: float
    p99: float
    worst: float
    round_p95s: list[float]
    samples: int
    empty_pages: int
    naive_p50: float
    naive_samples: int


def measure(options: argparse.Namespace, samples: dict[str, list[Sample]]) -> list[Figure]:
    figures = []
    for name in FILTERS:
        chosen = samples[name]
        time_pages(product_page, chosen[: options.warmup])
        rounds = []
        empty = 0
        for _round in range(options.rounds):
            gc.collect()
            durations, empty = time_pages(product_page, chosen)
            rounds.append(durations)
        best = min(rounds, key=lambda r: percentile(r, 0.95))
        naive_chosen = random.Random(options.seed + 40).sample(chosen, min(options.naive_samples, len(chosen)))
        naive, _rows = time_pages(naive_page, naive_chosen)
        figure = Figure(name, percentile(best, 0.5), percentile(best, 0.95), percentile(best, 0.99), best[-1],
                        [percentile(r, 0.95) for r in rounds], len(best), empty, percentile(naive, 0.5), len(naive))
        log(f"  {name}: p50={fmt_ms(figure.p50)} p95={fmt_ms(figure.p95)} p99={fmt_ms(figure.p99)} "
            f"max={fmt_ms(figure.worst)}; naive p50={fmt_ms(figure.naive_p50)}; "
            f"{empty} of {len(chosen)} pages empty")
        figures.append(figure)
    return figures


def report(db: str, calls: int, figure: Figure, load_note: str) -> tuple[str, bool]:
    ok = figure.p95 * 1000 < TARGET_P95_MS
    ratio = figure.naive_p50 / figure.p50 if figure.p50 else float("inf")
    line = (
        f"call_list {db} {figure.name}: calls={calls:,} p50={fmt_ms(figure.p50)} p95={fmt_ms(figure.p95)} "
        f"p99={fmt_ms(figure.p99)} (n={figure.samples}, best of {len(figure.round_p95s)} rounds: p95 "
        f"{'/'.join(fmt_ms(p) for p in figure.round_p95s)}) | naive ListView p50={fmt_ms(figure.naive_p50)} "
        f"(n={figure.naive_samples}) ratio={ratio:.0f}x | target p95<{TARGET_P95_MS:g}ms: {'OK' if ok else 'MISSED'} "
        f"| {load_note} | loadavg={os.getloadavg()[0]:.1f}"
    )
    return line, ok


def explain(samples: dict[str, list[Sample]]) -> None:
    """--explain: the query plan of one page per filter, on stderr."""
    from django.contrib.auth.models import User

    from callcenter.calls import queries
    from callcenter.contacts.actions import MatchRules

    rules = MatchRules.current()
    for name in FILTERS:
        sample = samples[name][0]
        user = User.objects.get(pk=sample.user_id)
        calls = queries.visible_calls(user).filter(started_at__gte=queries.day_start(sample.from_date))
        if sample.search:
            calls = calls.filter(queries.search_condition(sample.search, rules))
        query = calls.select_related("contact", "activity__activity_type", "resource__user").order_by(
            "-started_at", "-id")[: queries.PAGE_SIZE + 1]
        log(f"EXPLAIN {name} (search {sample.search!r}, from {sample.from_date}):\n{query.explain()}")


# --------------------------------------------------------------------------------------------------------------------
# SQLite (cached) and PostgreSQL (throwaway)
# --------------------------------------------------------------------------------------------------------------------


def fingerprint(options: argparse.Namespace) -> str:
    import inspect

    from callcenter import numbers
    from callcenter.contacts.actions import MatchRules

    source = "".join(inspect.getsource(part) for part in (numbers, MatchRules, generated_contacts))
    parts = [f"data-v{DATA_VERSION}", f"seed={options.seed}", f"calls={options.calls}", f"contacts={options.contacts}",
             hashlib.sha256(source.encode()).hexdigest()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def build(options: argparse.Namespace, vendor: str) -> tuple[int, dt.date, float]:
    from django.utils import timezone

    last_day = timezone.localdate()
    t0 = time.monotonic()
    log(f"{vendor}: agents, settings and {options.contacts:,} contacts through the actions...")
    seed_people(options)
    log(f"{vendor}: {options.calls:,} calls with their activities, ending {last_day}...")
    calls = load(options, vendor, last_day)
    return calls, last_day, time.monotonic() - t0


def run_measurements(db: str, options: argparse.Namespace, calls: int, last_day: dt.date, load_note: str) -> int:
    compared = verify_sample(options)
    log(f"{db}: {compared} sampled calls equal what the call rules write from the same wire events")
    samples = make_samples(options, last_day)
    if options.explain:
        explain(samples)
    log(f"{db}: {options.samples} pages per filter x {options.rounds} rounds, {options.naive_samples} naive pages...")
    failures = 0
    for figure in measure(options, samples):
        line, ok = report(db, calls, figure, load_note)
        print(line, flush=True)
        failures += not ok
    return 1 if (options.check_targets and failures) else 0


def run_sqlite(options: argparse.Namespace) -> int:
    path = _common.setup_cached_sqlite(
        options.cache_dir, f"call_list-{options.calls}-c{options.contacts}-s{options.seed}-v{DATA_VERSION}.sqlite3")
    from django.core.management import call_command
    from django.db import connection

    wanted = fingerprint(options)
    meta, why = _common.cached_sqlite(path, wanted, {"calls": "SELECT MAX(id) FROM calls_call"})
    if meta is not None and not options.rebuild:
        log(f"sqlite: reusing {path} ({int(meta['calls']):,} calls, data of {meta['last_day']}); --rebuild to load it "
            "again")
        call_command("migrate", verbosity=0, interactive=False)  # newer migrations, as on a production database
        calls, last_day, load_note = int(meta["calls"]), dt.date.fromisoformat(meta["last_day"]), "db=cached"
    else:
        log(f"sqlite: building {path} ({'--rebuild' if meta else why})")
        _common.remove_sqlite(path)
        call_command("migrate", verbosity=0, interactive=False)
        _common.sqlite_for_bulk_load(cache_kib=1048576)  # 1 GiB while the indexes are rebuilt
        calls, last_day, seconds = build(options, "sqlite")
        _common.sqlite_after_bulk_load({"fingerprint": wanted, "calls": str(calls), "last_day": last_day.isoformat()})
        connection.close()
        _common.fsync(path)
        seconds = time.monotonic() - _common.STARTED
        log(f"sqlite: {calls:,} calls loaded and flushed in {seconds:.0f}s")
        load_note = f"db=built in {seconds:.0f}s"
    return run_measurements("sqlite", options, calls, last_day, load_note)


def run_postgres(options: argparse.Namespace, url: str) -> int:
    _common.setup_django(url)
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0, interactive=False)
    calls, last_day, _seconds = build(options, "postgres")
    log("postgres: VACUUM ANALYZE (what autovacuum does after a bulk load), CHECKPOINT")
    connection.ensure_connection()
    with connection.cursor() as c:
        for table in (*TABLES, "contacts_contact", "contacts_contactphone", "resources_resource", "auth_user"):
            c.execute(f"VACUUM ANALYZE {table}")
        c.execute("CHECKPOINT")  # write the load out now, not in a checkpoint during the timings
    seconds = time.monotonic() - _common.STARTED
    connection.close()
    return run_measurements("postgres", options, calls, last_day, f"db=built in {seconds:.0f}s")


# --------------------------------------------------------------------------------------------------------------------
# Entry point: --db both runs each database in a child process of its own (a Django process has one settings module)
# --------------------------------------------------------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=5_000_000, help="calls to load (default 5,000,000)")
    parser.add_argument("--contacts", type=int, default=4000, help="contacts the calls come from (default 4000)")
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--samples", type=int, default=200, help="timed pages per filter and round (default 200)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="timed rounds over the same pages; the least disturbed (lowest p95) counts (default 3)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed pages per filter first (default 20)")
    parser.add_argument("--naive-samples", type=int, default=3, help="timed naive pages per filter (default 3)")
    parser.add_argument("--seed", type=int, default=5, help="data and sample seed (default 5)")
    _common.add_cache_arguments(parser)
    parser.add_argument("--explain", action="store_true", help="print each filter's query plan on stderr")
    _common.add_postgres_arguments(parser)
    options = parser.parse_args(argv)
    if options.calls < 1000 or options.contacts < 10:
        parser.error("need --calls >= 1000 and --contacts >= 10")
    if min(options.samples, options.rounds, options.naive_samples) < 1 or options.warmup < 0:
        parser.error("need --samples, --rounds, --naive-samples >= 1 and --warmup >= 0")
    return options


def main(argv: list[str] | None = None) -> int:
    return _common.run_database_benchmark("call_list", __file__, parse, run_sqlite, run_postgres, argv)


if __name__ == "__main__":
    raise SystemExit(main())
