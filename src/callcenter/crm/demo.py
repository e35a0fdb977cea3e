"""The demo data: people, contacts, activity and campaign types, campaigns and call-center settings.

Rules:
- Idempotent: every row is looked up by a natural key (username, activity-type name, campaign type and name, a
  contact's e-mail address) and written only when missing or different, so seeding twice adds and changes nothing.
  Contacts that exist are left as they are (a demo user may have edited them).
- Deterministic: contacts come from one seeded random generator, drawn in order, so the first N contacts are the
  same for every run and every --contacts >= N, on every machine.
- Every write goes through the apps' actions (the same validation as the pages).
- The callers of the AMI captures in ../shared/fixtures (00302101234567 "Γιώργος Παπαδόπουλος", +302107654321,
  00302109876543) are known contacts, written in other formats than the PBX sends, so matching by the last digits
  shows. Two colleagues share one switchboard number: a caller that matches two contacts.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from callcenter import numbers
from callcenter.activities.actions import ensure_activity_type
from callcenter.activities.models import ActivityKind
from callcenter.campaigns.actions import ItemSpec, ensure_campaign, ensure_campaign_type
from callcenter.campaigns.models import Campaign
from callcenter.contacts.actions import MatchRules, create_contact
from callcenter.contacts.models import Contact
from callcenter.resources.actions import ensure_resource, update_call_center_settings
from callcenter.resources.models import PhoneSystem

DEFAULT_CONTACTS = 300
RANDOM_SEED = 20240501
EMAIL_DOMAIN = "example.com"

BRIDGE_ADDRESS, BRIDGE_PORT = "127.0.0.1", 5050
CRM_ADDRESS, CRM_PORT = "127.0.0.1", 8000


@dataclass(frozen=True)
class DemoLogin:
    username: str
    password: str
    first_name: str
    last_name: str
    extension: str | None
    is_administrator: bool

    @property
    def role(self) -> str:
        if self.is_administrator:
            return "administrator"
        return f"agent, extension {self.extension}"


LOGINS: tuple[DemoLogin, ...] = (
    DemoLogin("carol", "demo-carol", "Carol", "Supervisor", "199", True),
    DemoLogin("alice", "demo-alice", "Alice", "Agent", "100", False),
    DemoLogin("bob", "demo-bob", "Bob", "Agent", "101", False),
)

PHONE_CALL, SALE_OPPORTUNITY = "Phone call", "Sale opportunity"
CAMPAIGN_TYPE = "Call center"
ACTIVE_CAMPAIGN = "Προσφορά Fiber & κινητής"
EXPIRED_CAMPAIGN = "Καλοκαιρινή προσφορά"


@dataclass(frozen=True)
class KnownContact:
    first_name: str
    last_name: str
    company: str
    email: str
    phones: tuple[str, ...]


KNOWN_CONTACTS: tuple[KnownContact, ...] = (
    # The AMI captures' callers: 00302101234567 (with the caller name Γιώργος Παπαδόπουλος), +302107654321,
    # 00302109876543.
    KnownContact("Γιώργος", "Παπαδόπουλος", "", f"giorgos.papadopoulos@{EMAIL_DOMAIN}",
                 ("210 123 4567", "+30 694 412 3456")),
    KnownContact("Μαρία", "Κωνσταντίνου", "Ελαιουργική Κρήτης Α.Ε.", f"maria.konstantinou@{EMAIL_DOMAIN}",
                 ("210-7654321",)),
    KnownContact("Helen", "Carter", "Aegean Logistics Ltd", f"helen.carter@{EMAIL_DOMAIN}",
                 ("0030 210 987 6543", "+44 20 7946 0321")),
    # Two colleagues behind one switchboard: a call from 2310 555 010 matches both.
    KnownContact("Ελένη", "Οικονόμου", "Οικονόμου & Συνεργάτες Ο.Ε.", f"eleni.oikonomou@{EMAIL_DOMAIN}",
                 ("2310 555010", "697 700 1122")),
    KnownContact("Κώστας", "Οικονόμου", "Οικονόμου & Συνεργάτες Ο.Ε.", f"kostas.oikonomou@{EMAIL_DOMAIN}",
                 ("+30 2310 555010",)),
)

# (Greek, Latin) first names, and surnames as (Greek male, Greek female, Latin male, Latin female).
GREEK_MEN = (
    ("Γιώργος", "giorgos"), ("Νίκος", "nikos"), ("Κώστας", "kostas"), ("Δημήτρης", "dimitris"),
    ("Γιάννης", "giannis"), ("Παναγιώτης", "panagiotis"), ("Βασίλης", "vasilis"), ("Χρήστος", "christos"),
    ("Αθανάσιος", "athanasios"), ("Μιχάλης", "michalis"), ("Σπύρος", "spyros"), ("Ευάγγελος", "evangelos"),
    ("Αντώνης", "antonis"), ("Στέλιος", "stelios"), ("Θοδωρής", "thodoris"), ("Ηλίας", "ilias"),
    ("Άγγελος", "angelos"), ("Σωτήρης", "sotiris"),
)
GREEK_WOMEN = (
    ("Μαρία", "maria"), ("Ελένη", "eleni"), ("Αικατερίνη", "aikaterini"), ("Βασιλική", "vasiliki"),
    ("Σοφία", "sofia"), ("Αγγελική", "angeliki"), ("Γεωργία", "georgia"), ("Δήμητρα", "dimitra"),
    ("Κωνσταντίνα", "konstantina"), ("Ευαγγελία", "evangelia"), ("Χριστίνα", "christina"), ("Ιωάννα", "ioanna"),
    ("Φωτεινή", "foteini"), ("Παρασκευή", "paraskevi"), ("Αναστασία", "anastasia"), ("Ζωή", "zoi"),
    ("Ειρήνη", "eirini"), ("Δέσποινα", "despoina"),
)
GREEK_SURNAMES = (
    ("Παπαδόπουλος", "Παπαδοπούλου", "papadopoulos", "papadopoulou"),
    ("Παπαδάκης", "Παπαδάκη", "papadakis", "papadaki"),
    ("Γεωργίου", "Γεωργίου", "georgiou", "georgiou"),
    ("Οικονόμου", "Οικονόμου", "oikonomou", "oikonomou"),
    ("Παπανικολάου", "Παπανικολάου", "papanikolaou", "papanikolaou"),
    ("Κωνσταντίνου", "Κωνσταντίνου", "konstantinou", "konstantinou"),
    ("Βασιλείου", "Βασιλείου", "vasileiou", "vasileiou"),
    ("Νικολάου", "Νικολάου", "nikolaou", "nikolaou"),
    ("Δημητρίου", "Δημητρίου", "dimitriou", "dimitriou"),
    ("Ιωάννου", "Ιωάννου", "ioannou", "ioannou"),
    ("Καραγιάννης", "Καραγιάννη", "karagiannis", "karagianni"),
    ("Μακρής", "Μακρή", "makris", "makri"),
    ("Αλεξίου", "Αλεξίου", "alexiou", "alexiou"),
    ("Αντωνίου", "Αντωνίου", "antoniou", "antoniou"),
    ("Παππάς", "Παππά", "pappas", "pappa"),
    ("Λαμπράκης", "Λαμπράκη", "lamprakis", "lampraki"),
    ("Χατζηδάκης", "Χατζηδάκη", "chatzidakis", "chatzidaki"),
    ("Ζαχαρίου", "Ζαχαρίου", "zachariou", "zachariou"),
    ("Μιχαηλίδης", "Μιχαηλίδου", "michailidis", "michailidou"),
    ("Αθανασίου", "Αθανασίου", "athanasiou", "athanasiou"),
    ("Σταυρόπουλος", "Σταυροπούλου", "stavropoulos", "stavropoulou"),
    ("Κυριακίδης", "Κυριακίδου", "kyriakidis", "kyriakidou"),
    ("Τσακίρης", "Τσακίρη", "tsakiris", "tsakiri"),
    ("Μαυρίδης", "Μαυρίδου", "mavridis", "mavridou"),
    ("Πετρόπουλος", "Πετροπούλου", "petropoulos", "petropoulou"),
)
ENGLISH_FIRST = (
    "James", "Emma", "Oliver", "Sophie", "William", "Charlotte", "Thomas", "Olivia", "Daniel", "Grace",
    "Michael", "Hannah", "David", "Lucy", "Peter", "Anna", "John", "Sarah", "George", "Emily",
)
ENGLISH_LAST = (
    "Smith", "Johnson", "Brown", "Taylor", "Wilson", "Evans", "Thomas", "Roberts", "Walker", "Wright",
    "Robinson", "Thompson", "White", "Hughes", "Edwards", "Green", "Hall", "Wood", "Harris", "Clarke",
)
COMPANIES = (
    "Αφοί Παπαδόπουλοι Ο.Ε.", "Τεχνική Βορείου Ελλάδος Ε.Π.Ε.", "Κτήμα Αμπελώνες Νεμέας", "Φαρμακείο Κεντρικό",
    "Ξενοδοχεία Αιγαίου Α.Ε.", "Ηπειρωτικά Τυροκομεία", "Aegean Logistics Ltd", "Olive Grove Imports",
    "Hellenic Solar S.A.", "Blue Harbour Shipping", "Athens Tech Solutions",
)
# Area codes with the number of subscriber digits that make 10 in all: Athens, Thessaloniki, Patras, Heraklion,
# Larissa, Ioannina, Chalkida, Kalamata, Mytilene, Rhodes.
AREA_CODES = ("210", "210", "210", "2310", "2310", "2610", "2810", "2410", "2651", "2221", "2721", "22510", "22410")
MOBILE_PREFIXES = ("690", "693", "694", "695", "697", "698", "699")


def _split(national: str) -> tuple[str, str]:
    """The area code (or mobile prefix) and the subscriber number."""
    if national.startswith("69"):
        return national[:3], national[3:]
    code = max((c for c in AREA_CODES if national.startswith(c)), key=len, default=national[:3])
    return code, national[len(code):]


def _spaced(national: str) -> str:
    code, rest = _split(national)
    if len(rest) == 7:
        return f"{code} {rest[:3]} {rest[3:]}"
    return f"{code} {rest}"


def _joined(separator: str) -> Callable[[str], str]:
    def write(national: str) -> str:
        code, rest = _split(national)
        return f"{code}{separator}{rest}"
    return write


# How people write the same Greek number: plain, spaced, dashed, dotted, in brackets, with +30 or 0030 in front.
FORMATS: tuple[Callable[[str], str], ...] = (
    lambda n: n,
    lambda n: n,
    _spaced,
    _spaced,
    _joined("-"),
    _joined("."),
    lambda n: "({}) {}".format(*_split(n)),
    lambda n: f"+30 {_spaced(n)}",
    lambda n: f"+30{n}",
    lambda n: f"0030 {n}",
    lambda n: f"0030{n}",
)


@dataclass(frozen=True)
class ContactSpec:
    first_name: str
    last_name: str
    company: str
    email: str
    phones: tuple[str, ...]


def _national_number(rng: random.Random) -> str:
    if rng.random() < 0.45:
        prefix = rng.choice(MOBILE_PREFIXES)
    else:
        prefix = rng.choice(AREA_CODES)
        # A subscriber number does not start with 0 or 1.
        return prefix + str(rng.randint(2, 9)) + "".join(str(rng.randint(0, 9)) for _ in range(9 - len(prefix)))
    return prefix + "".join(str(rng.randint(0, 9)) for _ in range(10 - len(prefix)))


def generated_contacts(count: int, *, taken_keys: set[str] | None = None) -> list[ContactSpec]:
    """``count`` contacts, the same ones on every run; no two share a number, nor any number in ``taken_keys``."""
    rng = random.Random(RANDOM_SEED)
    used = set(taken_keys or ())
    specs = []
    for index in range(1, count + 1):
        if rng.random() < 0.7:
            if rng.random() < 0.5:
                first, first_latin = rng.choice(GREEK_MEN)
                male, _female, latin, _latin_female = rng.choice(GREEK_SURNAMES)
                last, last_latin = male, latin
            else:
                first, first_latin = rng.choice(GREEK_WOMEN)
                _male, female, _latin_male, latin = rng.choice(GREEK_SURNAMES)
                last, last_latin = female, latin
        else:
            first, last = rng.choice(ENGLISH_FIRST), rng.choice(ENGLISH_LAST)
            first_latin, last_latin = first.lower(), last.lower()
        company = rng.choice(COMPANIES) if rng.random() < 0.3 else ""
        how_many = rng.choices((1, 2, 3, 4), weights=(50, 30, 14, 6))[0]
        phones: list[str] = []
        while len(phones) < how_many:
            national = _national_number(rng)
            if national[-10:] in used:
                continue
            used.add(national[-10:])
            phones.append(rng.choice(FORMATS)(national))
        email = f"{first_latin}.{last_latin}.{index:04d}@{EMAIL_DOMAIN}"
        specs.append(ContactSpec(first, last, company, email, tuple(phones)))
    return specs


def demo_contacts(total: int) -> list[ContactSpec]:
    """The known contacts, then generated ones up to ``total`` in all (never fewer than the known ones)."""
    known = [ContactSpec(k.first_name, k.last_name, k.company, k.email, k.phones) for k in KNOWN_CONTACTS]
    taken = {numbers.digits_only(phone)[-10:] for k in KNOWN_CONTACTS for phone in k.phones}
    return known + generated_contacts(max(0, total - len(known)), taken_keys=taken)


@dataclass
class SeedReport:
    logins: Sequence[DemoLogin] = LOGINS
    contacts_created: int = 0
    contacts_total: int = 0
    campaigns: list[Campaign] = field(default_factory=list)

    def lines(self) -> list[str]:
        width = max(len(login.username) for login in self.logins)
        pwidth = max(len(login.password) for login in self.logins)
        out = [
            f"Demo data ready: {len(self.logins)} resources, {self.contacts_total} contacts "
            f"({self.contacts_created} new), activity types “{PHONE_CALL}” and “{SALE_OPPORTUNITY}”, "
            f"campaign type “{CAMPAIGN_TYPE}”.",
            "Demo logins (username / password):",
        ]
        out += [f"  {login.username:<{width}} / {login.password:<{pwidth}}  {login.role}" for login in self.logins]
        return out


def _campaign_dates(name: str, today: dt.date, default: tuple[dt.date, dt.date], *,
                    should_be_available: bool) -> tuple[dt.date, dt.date]:
    """Keep a campaign's dates while they still say what the demo needs (available today, or expired), so that
    seeding on another day rewrites nothing; otherwise move them around today."""
    campaign = Campaign.objects.filter(campaign_type__name=CAMPAIGN_TYPE, name=name).first()
    if campaign and campaign.available_from and campaign.available_to:
        available = campaign.available_from <= today <= campaign.available_to
        expired = campaign.available_to < today
        if (should_be_available and available) or (not should_be_available and expired):
            return campaign.available_from, campaign.available_to
    return default


@transaction.atomic
def seed(contacts: int = DEFAULT_CONTACTS, *, today: dt.date | None = None, crm_port: int = CRM_PORT,
         bridge_port: int = BRIDGE_PORT, crm_address: str = CRM_ADDRESS) -> SeedReport:
    """Load the demo data; ``crm_address``:``crm_port`` is where the resources' bridges reach the CRM (S-2.4/2.5),
    ``bridge_port`` where the CRM reaches the demo bridge (S-2.3)."""
    if contacts < 0:
        raise ValueError("the number of contacts cannot be negative")
    today = today or timezone.localdate()
    report = SeedReport()

    phone_call = ensure_activity_type(PHONE_CALL, ActivityKind.PHONE_CALL)
    ensure_activity_type(SALE_OPPORTUNITY, ActivityKind.SALE_OPPORTUNITY)

    campaign_type = ensure_campaign_type(CAMPAIGN_TYPE)
    items = (
        ItemSpec("Fiber 200 Mbps, 24 μήνες", Decimal(1), Decimal("29.90")),
        ItemSpec("Κινητή 20 GB", Decimal(1), Decimal("12.50")),
        ItemSpec("Εγκατάσταση router Wi-Fi 6", Decimal(1), Decimal("49.00")),
    )
    start, end = _campaign_dates(ACTIVE_CAMPAIGN, today, (today - dt.timedelta(days=14), today + dt.timedelta(days=76)),
                                 should_be_available=True)
    report.campaigns.append(
        ensure_campaign(campaign_type, ACTIVE_CAMPAIGN, available_from=start, available_to=end, items=items)
    )
    start, end = _campaign_dates(EXPIRED_CAMPAIGN, today,
                                 (today - dt.timedelta(days=150), today - dt.timedelta(days=60)),
                                 should_be_available=False)
    report.campaigns.append(
        ensure_campaign(campaign_type, EXPIRED_CAMPAIGN, available_from=start, available_to=end, items=(
            ItemSpec("ADSL 24 Mbps, 12 μήνες", Decimal(1), Decimal("19.90")),
            ItemSpec("Σταθερή τηλεφωνία, απεριόριστα", Decimal(1), Decimal("9.90")),
            ItemSpec("Δωρεάν ενεργοποίηση", Decimal(1), Decimal("0.00")),
        ))
    )

    update_call_center_settings(
        phone_system=PhoneSystem.ASTERISK,
        digits_to_scan=10,
        internal_digits=3,
        incoming_activity_type=phone_call,
        outgoing_activity_type=phone_call,
        default_activity_type=phone_call,
        campaign_type=campaign_type,
        insert_campaign_items=True,
        phone_region="GR",
    )

    options = {
        "cc_active": True,
        "service_address": BRIDGE_ADDRESS,
        "service_port": bridge_port,
        "internal_address": crm_address,
        "internal_port": crm_port,
        "notify_new_call": True,
        "notification_seconds": 10,
    }
    for login in LOGINS:
        ensure_resource(
            login.username, password=login.password, first_name=login.first_name, last_name=login.last_name,
            email=f"{login.username}@{EMAIL_DOMAIN}", is_administrator=login.is_administrator,
            extension=login.extension, options=options,
        )

    specs = demo_contacts(contacts)
    existing = set(Contact.objects.filter(email__in=[spec.email for spec in specs]).values_list("email", flat=True))
    rules = MatchRules.current()
    for spec in specs:
        if spec.email in existing:
            continue
        create_contact(first_name=spec.first_name, last_name=spec.last_name, company=spec.company,
                       email=spec.email, phones=spec.phones, rules=rules)
        report.contacts_created += 1
    report.contacts_total = Contact.objects.count()
    return report


def demo_callers(contacts: int = DEFAULT_CONTACTS) -> list[tuple[str, str]]:
    """Who calls in the demo: seeded contacts with Greek names, as (national number, name), one number each and no
    number twice. The switchboard of the two Οικονόμου is among them (a caller that matches two contacts)."""
    callers: list[tuple[str, str]] = []
    seen: set[str] = set()
    for spec in demo_contacts(contacts):
        if spec.first_name.isascii():
            continue
        national = numbers.digits_only(spec.phones[0])[-10:]
        if len(national) == 10 and national not in seen:
            seen.add(national)
            callers.append((national, f"{spec.first_name} {spec.last_name}"))
    return callers
