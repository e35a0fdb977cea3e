"""The Greek gettext catalog: complete, free of fuzzy guesses, compiled, and in the manual's own words (SPEC S-7).

After adding or changing a user-facing string, refresh and recompile the catalog (from the repository root):

    cd src/callcenter && CALLCENTER_DEBUG=true ../../.venv/bin/django-admin makemessages -l el \
        --settings=callcenter.crm.settings --no-obsolete
    # translate every new or "#, fuzzy" entry in src/callcenter/locale/el/LC_MESSAGES/django.po, remove the
    # fuzzy flags, then:
    make messages        # compilemessages: django.po -> django.mo (commit both)

The tests read the .po with the small parser below (blank lines between entries are optional in the PO format and
Django's makemessages leaves none after the header, so entries are split on their keywords), and the .mo through
Python's gettext.
"""

from __future__ import annotations

import ast
import gettext
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.urls import reverse

import callcenter

PACKAGE_DIR = Path(callcenter.__file__).resolve().parent
CATALOG_DIR = PACKAGE_DIR / "locale" / "el" / "LC_MESSAGES"
PO_PATH = CATALOG_DIR / "django.po"
MO_PATH = CATALOG_DIR / "django.mo"

# SPEC S-7: the manual's Greek words for the controls, and the manual's name of the resource options page
# ("Επιλογές τηλ. Κέντρου", Resources → resource → Other). Labels the manual kept in English are translated naturally
# and not pinned here.
S7_TERMS = {
    "Call center": "Κέντρο κλήσεων",
    "From date": "Από ημερομηνία",
    "Campaign": "Καμπάνια",
    "Search": "Πεδίο αναζήτησης",
    "Incoming": "Εισερχόμενη",
    "Outgoing": "Εξερχόμενη",
    "Missed": "Αναπάντητη",
    "Logged in": "Έχει γίνει είσοδος",
    "Busy": "Απασχολημένος",
    "Call details": "Στοιχεία κλήσης",
    "Caller": "Καλών",
    "Update": "Ενημέρωση",
    "Number": "Αριθμός",
    "Back": "Πίσω",
    "Delete": "Διαγραφή",
    "Redial": "Επανάκληση",
    "Call": "Κλήση",
    "Answer": "Απάντηση",
    "End call": "Τέλος κλήσης",
    "Transfer": "Μεταφορά",
    "Refresh": "Ανανέωση",
    "Clear selected": "Καθαρισμός επιλεγμένων",
    "Clear all": "Καθαρισμός όλων",
    "Actions": "Ενέργειες",
    "Link to contact": "Σύνδεση με επαφή",
    "Create activity": "Δημιουργία δραστηριότητας",
    "Resource": "Πόρος",
    "Resources": "Πόροι",
    "Active": "Ενεργό",
    "Service address": "Διεύθυνση υπηρεσίας",
    "Service port": "Θύρα υπηρεσίας",
    "Internal service address": "Διεύθυνση εσωτερικής υπηρεσίας",
    "Internal communication port": "Θύρα εσωτερικής επικοινωνίας",
    "Notify on new call": "Ειδοποίηση σε νέα κλήση",
    "Notification duration": "Διάρκεια ειδοποίησης",
    "Phone system": "Τηλεφωνικό κέντρο",
    "Digits to scan": "Ψηφία για σάρωση",
    "Auto-show call-center screen": "Αυτόματη εμφάνιση φόρμας τηλ. κέντρου",
    "Auto-open activity from incoming call": "Αυτόματο άνοιγμα δραστ. από εισερχόμενη κλήση",
    "Update call center from internal calls": "Ενημέρωση τηλεφωνικού κέντρου από εσωτερικές κλήσεις",
    "Error log": "Ιστορικό σφαλμάτων",
    "Start": "Έναρξη",
    "Stop": "Διακοπή",
    "Exit": "Έξοδος",
    "Duration": "Διάρκεια",
    "Activity": "Δραστηριότητα",
    "Contact": "Επαφή",
    "Call center options": "Επιλογές τηλ. κέντρου",
}

# S-7 terms that the settings pages and models already carry; each must be in the catalog (guards against a parser or
# a catalog that silently finds nothing to compare).
PRESENT_NOW = {
    "Active", "Service address", "Service port", "Internal service address", "Internal communication port",
    "Notify on new call", "Notification duration", "Phone system", "Digits to scan", "Auto-show call-center screen",
    "Auto-open activity from incoming call", "Update call center from internal calls", "Resource", "Resources",
    "Campaign", "Call center", "Call center options",
}


@dataclass
class PoEntry:
    msgid: str = ""
    msgctxt: str | None = None
    msgid_plural: str | None = None
    msgstr: dict[int, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    references: list[str] = field(default_factory=list)
    obsolete: bool = False
    line: int = 0

    @property
    def is_header(self) -> bool:
        return self.msgid == "" and self.msgctxt is None

    def label(self) -> str:
        where = ", ".join(self.references[:2]) or f"line {self.line}"
        return f"{self.msgid!r} ({where})"


_FIELD = re.compile(r'^(msgctxt|msgid_plural|msgid|msgstr(?:\[(\d+)\])?)\s+(".*")$')


def _unquote(quoted: str, where: str) -> str:
    try:
        value = ast.literal_eval(quoted)
    except (SyntaxError, ValueError) as exc:
        raise ValueError(f"{where}: bad string {quoted!r}") from exc
    if not isinstance(value, str):
        raise ValueError(f"{where}: bad string {quoted!r}")
    return value


def parse_po(text: str) -> list[PoEntry]:
    """Entries of a PO file, obsolete ones (#~) flagged. Raises ValueError naming the line it cannot read."""
    entries: list[PoEntry] = []
    current = PoEntry(line=1)
    seen_msgstr = False
    started = False
    target: tuple[str, int] | None = None

    def begin(number: int) -> None:
        nonlocal current, seen_msgstr, started, target
        if started:
            entries.append(current)
        current, seen_msgstr, started, target = PoEntry(line=number), False, False, None

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        obsolete = line.startswith("#~")
        if obsolete:
            line = line[2:].strip()
            if not line or line.startswith("|"):
                continue
        if not line:
            continue
        if line.startswith("#") and not obsolete:
            if seen_msgstr:
                begin(number)
            if line.startswith("#,"):
                current.flags.update(flag.strip() for flag in line[2:].split(",") if flag.strip())
            elif line.startswith("#:"):
                current.references.extend(line[2:].split())
            continue
        where = f"{PO_PATH.name}:{number}"
        match = _FIELD.match(line)
        if match:
            key, index, quoted = match.group(1), match.group(2), match.group(3)
            if (key == "msgctxt" and (seen_msgstr or started)) or (key == "msgid" and seen_msgstr):
                begin(number)
            started = True
            current.obsolete = current.obsolete or obsolete
            value = _unquote(quoted, where)
            if key == "msgctxt":
                current.msgctxt, target = value, ("msgctxt", 0)
            elif key == "msgid":
                current.msgid, target = value, ("msgid", 0)
            elif key == "msgid_plural":
                current.msgid_plural, target = value, ("msgid_plural", 0)
            else:
                slot = int(index) if index is not None else 0
                current.msgstr[slot] = value
                target, seen_msgstr = ("msgstr", slot), True
        elif line.startswith('"') and target is not None:
            value = _unquote(line, where)
            name, slot = target
            if name == "msgstr":
                current.msgstr[slot] += value
            else:
                setattr(current, name, (getattr(current, name) or "") + value)
        else:
            raise ValueError(f"{where}: cannot read {raw!r}")
    if started:
        entries.append(current)
    return entries


def _live(entries: list[PoEntry]) -> list[PoEntry]:
    return [entry for entry in entries if not entry.obsolete and not entry.is_header]


@pytest.fixture(scope="module")
def entries() -> list[PoEntry]:
    return parse_po(PO_PATH.read_text(encoding="utf-8"))


def _greek_for(msgid: str) -> str | None:
    """The S-7 word for ``msgid``; a lower-case msgid ("incoming", a choice label) takes the lower-case word."""
    if msgid in S7_TERMS:
        return S7_TERMS[msgid]
    capitalised = msgid[:1].upper() + msgid[1:]
    if msgid[:1].islower() and capitalised in S7_TERMS:
        greek = S7_TERMS[capitalised]
        return greek[:1].lower() + greek[1:]
    return None


def test_the_parser_reads_entries_without_blank_lines_plurals_contexts_and_obsolete_ones() -> None:
    text = (
        'msgid ""\nmsgstr ""\n"Language: el\\n"\n'
        '#: a.py:1\n#, fuzzy, python-format\nmsgid "Hello %(name)s"\nmsgstr "Γεια %(name)s"\n'
        'msgctxt "button"\nmsgid "Call"\nmsgstr ""\n"Κλή"\n"ση"\n\n'
        'msgid "one call"\nmsgid_plural "%(n)s calls"\nmsgstr[0] "μία κλήση"\nmsgstr[1] ""\n\n'
        '#~ msgid "Gone"\n#~ msgstr "Έφυγε"\n'
    )
    parsed = parse_po(text)
    assert [e.msgid for e in parsed] == ["", "Hello %(name)s", "Call", "one call", "Gone"]
    assert parsed[0].is_header and parsed[0].msgstr[0] == "Language: el\n"
    assert parsed[1].flags == {"fuzzy", "python-format"} and parsed[1].references == ["a.py:1"]
    assert parsed[2].msgctxt == "button" and parsed[2].msgstr[0] == "Κλήση"
    assert parsed[3].msgid_plural == "%(n)s calls" and parsed[3].msgstr == {0: "μία κλήση", 1: ""}
    assert parsed[4].obsolete and not parsed[3].obsolete
    with pytest.raises(ValueError, match="line 1|:1"):
        parse_po("msgid unquoted\n")


def test_the_greek_catalog_has_a_translation_for_every_message(entries: list[PoEntry]) -> None:
    live = _live(entries)
    assert len(live) > 100, "the catalog lost its entries"
    untranslated = [
        entry.label() for entry in live
        if not entry.msgstr or any(not text.strip() for text in entry.msgstr.values())
    ]
    assert not untranslated, "untranslated Greek messages:\n" + "\n".join(untranslated)


def test_the_greek_catalog_has_no_fuzzy_entries(entries: list[PoEntry]) -> None:
    fuzzy = [entry.label() for entry in entries if "fuzzy" in entry.flags and not entry.obsolete]
    assert not fuzzy, "fuzzy entries (check the translation, then remove the flag):\n" + "\n".join(fuzzy)


def test_the_catalog_header_declares_greek_utf8_and_greek_plurals(entries: list[PoEntry]) -> None:
    header = next(entry for entry in entries if entry.is_header).msgstr[0]
    assert "Language: el\n" in header
    assert "charset=UTF-8" in header
    assert "Plural-Forms: nplurals=2; plural=(n != 1);" in header


def test_the_placeholders_survive_translation(entries: list[PoEntry]) -> None:
    placeholder = re.compile(r"%\(\w+\)[sdif]|%[sd]|\{\w*\}")
    broken = []
    for entry in _live(entries):
        if entry.msgid_plural is None:
            if sorted(placeholder.findall(entry.msgstr.get(0, ""))) != sorted(placeholder.findall(entry.msgid)):
                broken.append(entry.label())
            continue
        allowed = set(placeholder.findall(entry.msgid)) | set(placeholder.findall(entry.msgid_plural))
        if any(not set(placeholder.findall(text)) <= allowed for text in entry.msgstr.values()):
            broken.append(entry.label())
    assert not broken, "translations that drop or invent placeholders:\n" + "\n".join(broken)


def test_labels_use_the_greek_manuals_words(entries: list[PoEntry]) -> None:
    compared: set[str] = set()
    wrong = []
    for entry in _live(entries):
        greek = _greek_for(entry.msgid)
        if greek is None:
            continue
        compared.add(entry.msgid[:1].upper() + entry.msgid[1:])
        if entry.msgstr.get(0) != greek:
            wrong.append(f"{entry.label()}: {entry.msgstr.get(0)!r}, the manual says {greek!r}")
    assert not wrong, "\n".join(wrong)
    assert PRESENT_NOW <= compared, f"S-7 labels missing from the catalog: {sorted(PRESENT_NOW - compared)}"


def test_the_compiled_catalog_matches_the_po_file(entries: list[PoEntry]) -> None:
    with MO_PATH.open("rb") as handle:
        compiled = gettext.GNUTranslations(handle)
    stale = []
    for entry in _live(entries):
        if entry.msgid_plural is not None:
            got = [compiled.npgettext(entry.msgctxt, entry.msgid, entry.msgid_plural, 1) if entry.msgctxt
                   else compiled.ngettext(entry.msgid, entry.msgid_plural, 1)]
            expected = [entry.msgstr.get(0)]
        elif entry.msgctxt is not None:
            got, expected = [compiled.pgettext(entry.msgctxt, entry.msgid)], [entry.msgstr.get(0)]
        else:
            got, expected = [compiled.gettext(entry.msgid)], [entry.msgstr.get(0)]
        if got != expected:
            stale.append(entry.label())
    assert not stale, "django.mo is older than django.po; run `make messages`:\n" + "\n".join(stale)


def test_makemessages_finds_no_string_the_catalog_lacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-extract the sources into a copy of the catalog: every string in the code must already be translated."""
    if shutil.which("xgettext") is None or shutil.which("msgmerge") is None:
        pytest.skip("GNU gettext (xgettext, msgmerge) is not installed")
    work = tmp_path / "callcenter"
    shutil.copytree(PACKAGE_DIR, work, ignore=shutil.ignore_patterns("__pycache__", "*.mo", "static"))
    monkeypatch.chdir(work)
    with override_settings(LOCALE_PATHS=[]):
        call_command("makemessages", locale=["el"], verbosity=0, no_obsolete=True)
    refreshed = _live(parse_po((work / "locale/el/LC_MESSAGES/django.po").read_text(encoding="utf-8")))
    lacking = [
        entry.label() for entry in refreshed
        if "fuzzy" in entry.flags or not entry.msgstr or any(not text.strip() for text in entry.msgstr.values())
    ]
    assert not lacking, (
        "strings in the code without a Greek translation; run makemessages (see this file's docstring):\n"
        + "\n".join(lacking)
    )


@pytest.mark.django_db
def test_the_options_page_renders_in_greek_after_switching_language(client, alice) -> None:  # type: ignore[no-untyped-def]
    client.force_login(alice.user)
    response = client.post(reverse("set_language"), {"language": "el", "next": reverse("resources:own_options")})
    assert response.status_code == 302
    page = client.get(response["Location"]).content.decode()
    for greek in ("Επιλογές τηλ. κέντρου", "Θύρα υπηρεσίας", "Διεύθυνση εσωτερικής υπηρεσίας", "Αποσύνδεση"):
        assert greek in page
    assert "Service port" not in page
