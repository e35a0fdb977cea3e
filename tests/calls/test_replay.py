"""`callcenter replay`: the six real Asterisk captures through codec, translator and the CRM's call rules.

Most tests run the real ``callcenter`` entry point in a child process, with the environment of someone typing the
command plus a configured database that must stay untouched; the expected calls are computed from the hand-written
wire events of each capture (tests/fixtures/ami/NAME.events.jsonl, whose times are the capture's Timestamps). The
child processes of the scenarios start together (each makes and migrates its own throwaway database).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from callcenter import replay_env
from callcenter.bridge.connectors.ami.translate import TranslatorConfig
from callcenter.calls import replay
from callcenter.calls.models import Call

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ami"
AGENTS = ["--ext", "100=alice", "--ext", "101=bob"]
SECONDS = 120


def capture(name: str) -> str:
    return str(FIXTURES / f"{name}.ami")


def wire_events(name: str) -> list[dict[str, Any]]:
    lines = (FIXTURES / f"{name}.events.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def leg_times(name: str, extension: str) -> tuple[dt.datetime, int]:
    """(when the leg rang, whole seconds from answer to end) of ``extension``'s leg, from the capture's times."""
    times = {event["type"]: event["occurred_at"] for event in wire_events(name) if event["extension"] == extension}
    started = dt.datetime.fromtimestamp(times["call.ringing"], tz=dt.UTC)
    answered = times.get("call.answered")
    duration = int(times["call.ended"] - answered) if answered is not None else 0
    return started, duration


def expected(name: str, extension: str, resource: str | None, kind: str, number: str, *, answered: bool,
             contact: str | None = None, **extra: str) -> dict[str, Any]:
    started, duration = leg_times(name, extension)
    return {"resource": resource, "extension": extension, "type": kind, "number": number, "contact": contact,
            "answered": answered, "started": started, "duration": duration, **extra}


def entry_point() -> list[str]:
    script = Path(sys.executable).parent / "callcenter"
    return [str(script)] if script.exists() else [sys.executable, "-m", "callcenter"]


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    workdir: Path

    @property
    def calls(self) -> list[dict[str, Any]]:
        records = [json.loads(line) for line in self.stdout.splitlines()]
        for record in records:
            record["started"] = dt.datetime.fromisoformat(record["started"])  # an aware time: compared as an instant
        return records

    @property
    def leftovers(self) -> list[str]:
        """What the run left behind: its temporary directory, or a file at the configured database's path."""
        return sorted(p.name for p in (self.workdir / "tmp").iterdir()) + sorted(
            p.name for p in self.workdir.glob("configured.sqlite3*")
        )


def run_replay(args: list[str], workdir: Path, *, stdin: bytes | None = None) -> Run:
    """`callcenter replay ARGS` as a user types it, with a configured database (which it must not touch) and its
    own TMPDIR (which must be empty afterwards)."""
    (workdir / "tmp").mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLCENTER_", "DJANGO_"))}
    env.update(
        CALLCENTER_DATABASE_URL=f"sqlite:///{workdir / 'configured.sqlite3'}",
        CALLCENTER_SECRET_KEY="the-user's-own-key",
        TMPDIR=str(workdir / "tmp"),
        PYTHONIOENCODING="utf-8",
    )
    result = subprocess.run(
        [*entry_point(), "replay", *args], cwd=workdir, env=env, input=stdin, capture_output=True,
        timeout=SECONDS, check=False,
    )
    return Run(result.returncode, result.stdout.decode("utf-8"), result.stderr.decode("utf-8"), workdir)


CONTACTS = "name,number\nΓιώργος Παπαδόπουλος,+30 210 123 4567\nΕλένη Οικονόμου,210 987 6543,6944000001\n"
TWINS = "Γιώργος Παπαδόπουλος,2101234567\nΚώστας Παπαδόπουλος,+302101234567\n"

SCENARIOS: dict[str, list[str]] = {
    "inbound_answered": [capture("inbound_answered"), *AGENTS, "--profile", "lab"],
    "inbound_missed": [capture("inbound_missed"), *AGENTS, "--profile", "lab"],
    "outbound": [capture("outbound"), *AGENTS, "--profile", "lab"],
    "ringgroup": [capture("ringgroup"), *AGENTS, "--profile", "lab"],
    "ringgroup_when_answered": [capture("ringgroup"), *AGENTS, "--profile", "lab", "--create-when-answered",
                                "--explain"],
    "transfer_blind": [capture("transfer_blind"), *AGENTS, "--profile", "lab"],
    "internal": [capture("internal"), *AGENTS, "--profile", "lab", "--explain"],
    "internal_recorded": [capture("internal"), *AGENTS, "--profile", "lab", "--update-internal"],
    "contacts": [capture("inbound_answered"), *AGENTS, "--profile", "lab", "--contacts", "{contacts}"],
    "contacts_outbound": [capture("outbound"), *AGENTS, "--profile", "lab", "--contacts", "{contacts}",
                          "--prefix", "0", "--digits", "10"],
    "contacts_twins": [capture("inbound_answered"), *AGENTS, "--profile", "lab", "--contacts", "{twins}",
                       "--explain"],
    "production_profile": [capture("inbound_answered"), *AGENTS],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    base = tmp_path_factory.mktemp("replay")
    (base / "contacts.csv").write_text(CONTACTS, encoding="utf-8")
    (base / "twins.csv").write_text(TWINS, encoding="utf-8")
    files = {"contacts": str(base / "contacts.csv"), "twins": str(base / "twins.csv")}

    def one(item: tuple[str, list[str]]) -> tuple[str, Run]:
        name, args = item
        return name, run_replay([arg.format(**files) for arg in args], base / name)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(one, SCENARIOS.items()))


def ok(run: Run) -> list[dict[str, Any]]:
    assert run.code == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert run.leftovers == [], "the throwaway database outlived the run, or the configured one was touched"
    return run.calls


# ---- the six captures ----------------------------------------------------------------------------------------------


def test_inbound_answered_is_one_incoming_call_for_alice(runs: dict[str, Run]) -> None:
    calls = ok(runs["inbound_answered"])
    assert calls == [expected("inbound_answered", "100", "alice", "incoming", "00302101234567", answered=True)]
    assert calls[0]["duration"] == 6  # answered after 3 s, hung up 6.5 s later
    assert runs["inbound_answered"].stderr == ""


def test_inbound_missed_is_a_missed_call_for_bob(runs: dict[str, Run]) -> None:
    calls = ok(runs["inbound_missed"])
    assert calls == [expected("inbound_missed", "101", "bob", "missed", "+302107654321", answered=False)]
    assert calls[0]["duration"] == 0


def test_outbound_is_an_answered_outgoing_call(runs: dict[str, Run]) -> None:
    calls = ok(runs["outbound"])
    assert calls == [expected("outbound", "100", "alice", "outgoing", "00302109876543", answered=True)]
    assert calls[0]["duration"] == 8


def test_ringgroup_stores_a_row_for_every_agent_it_rang(runs: dict[str, Run]) -> None:
    calls = ok(runs["ringgroup"])
    number = "00302101234567"
    assert calls == [
        expected("ringgroup", "100", "alice", "missed", number, answered=False),
        expected("ringgroup", "101", "bob", "incoming", number, answered=True),
        expected("ringgroup", "102", None, "missed", number, answered=False),  # 102 belongs to no resource
    ]
    assert calls[1]["duration"] == 6


def test_ringgroup_with_create_when_answered_stores_one_call_for_the_first_answerer(runs: dict[str, Run]) -> None:
    run = runs["ringgroup_when_answered"]
    assert ok(run) == [expected("ringgroup", "101", "bob", "incoming", "00302101234567", answered=True)]
    assert run.stderr.count("create-when-answered: stored for 101 who answered first") == 2  # for 100 and 102
    assert "stored: incoming for resource bob" in run.stderr


def test_transfer_blind_is_a_call_for_100_then_one_for_103_with_the_original_caller(runs: dict[str, Run]) -> None:
    calls = ok(runs["transfer_blind"])
    number = "00302101234567"
    assert calls == [
        expected("transfer_blind", "100", "alice", "incoming", number, answered=True, transferred_to="103"),
        expected("transfer_blind", "103", None, "incoming", number, answered=True, transferred_from="100"),
    ]
    assert [call["duration"] for call in calls] == [3, 6]


def test_internal_calls_are_ignored_without_update_internal(runs: dict[str, Run]) -> None:
    run = runs["internal"]
    assert ok(run) == []
    assert run.stderr.count("internal call ignored: update-internal is off") == 2  # 100's leg and 102's
    # --explain shows the wire events the rules were given
    assert run.stderr.count(" call.ringing ") == 2
    assert "direction=internal" in run.stderr


def test_internal_calls_are_recorded_with_update_internal(runs: dict[str, Run]) -> None:
    calls = ok(runs["internal_recorded"])
    assert calls == [
        expected("internal", "102", None, "internal", "100", answered=True),
        expected("internal", "100", "alice", "internal", "102", answered=True),
    ]


def test_started_is_iso_8601_with_an_offset(runs: dict[str, Run]) -> None:
    line = json.loads(runs["inbound_answered"].stdout.splitlines()[0])
    started = dt.datetime.fromisoformat(line["started"])
    assert started.utcoffset() is not None
    assert list(line) == ["resource", "extension", "type", "number", "contact", "answered", "started", "duration"]


# ---- contacts and settings -----------------------------------------------------------------------------------------


def test_a_caller_in_the_contacts_file_is_matched(runs: dict[str, Run]) -> None:
    calls = ok(runs["contacts"])
    assert [call["contact"] for call in calls] == ["Γιώργος Παπαδόπουλος"]


def test_a_dialled_number_is_matched_with_the_prefix_stripped(runs: dict[str, Run]) -> None:
    calls = ok(runs["contacts_outbound"])
    assert [(call["type"], call["contact"]) for call in calls] == [("outgoing", "Ελένη Οικονόμου")]


def test_a_number_of_two_contacts_matches_none_and_explain_says_so(runs: dict[str, Run]) -> None:
    run = runs["contacts_twins"]
    assert [call["contact"] for call in ok(run)] == [None]
    assert "2 contacts have a number ending in 2101234567" in run.stderr
    assert "the call keeps none" in run.stderr


def test_a_lab_capture_with_the_production_profile_stores_nothing_and_says_why(runs: dict[str, Run]) -> None:
    run = runs["production_profile"]
    assert ok(run) == []
    assert "try --profile lab" in run.stderr


def test_a_capture_on_stdin(tmp_path: Path) -> None:
    run = run_replay(["-", "--ext", "100=alice", "--profile", "lab"], tmp_path,
                     stdin=(FIXTURES / "outbound.ami").read_bytes())
    assert [(call["resource"], call["type"]) for call in ok(run)] == [("alice", "outgoing")]


# ---- bad input: a clear message, exit code 2, no traceback, nothing left behind ------------------------------------


def refused(run: Run, *words: str) -> None:
    assert run.code == 2, (run.stdout, run.stderr)
    assert run.stdout == ""
    assert "Traceback" not in run.stderr
    for word in words:
        assert word in run.stderr
    assert run.leftovers == []


def test_a_missing_capture(tmp_path: Path) -> None:
    refused(run_replay([str(tmp_path / "nowhere.ami"), *AGENTS], tmp_path),
            "cannot read the capture", "No such file or directory")


def test_a_directory_for_a_capture(tmp_path: Path) -> None:
    refused(run_replay([str(FIXTURES), *AGENTS], tmp_path), "cannot read the capture")


def test_an_unreadable_capture(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    path = tmp_path / "secret.ami"
    path.write_bytes((FIXTURES / "outbound.ami").read_bytes())
    path.chmod(0)
    refused(run_replay([str(path), *AGENTS], tmp_path), "cannot read the capture", "Permission denied")


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("100alice", ["argument --ext", "is not EXTENSION=USERNAME"]),
        ("=alice", ["argument --ext", "is not EXTENSION=USERNAME"]),
        ("100=", ["argument --ext", "is not EXTENSION=USERNAME"]),
        ("abc=alice", ["argument --ext", "is not 1 to 8 digits"]),
        ("100=al ice", ["argument --ext", "letters, digits"]),
    ],
)
def test_a_bad_ext(tmp_path: Path, value: str, words: list[str]) -> None:
    refused(run_replay([capture("outbound"), "--ext", value], tmp_path), *words)


def test_one_extension_given_twice(tmp_path: Path) -> None:
    refused(run_replay([capture("outbound"), "--ext", "100=alice", "--ext", "100=bob"], tmp_path),
            "--ext 100 is given twice")


@pytest.mark.parametrize("garbage", [b"\x00\xff garbage \x13" * 200, b"hello\nthis is not AMI\n\n", b'{"json": 1}\n'])
def test_a_capture_that_is_garbage(tmp_path: Path, garbage: bytes) -> None:
    path = tmp_path / "garbage.ami"
    path.write_bytes(garbage)
    refused(run_replay([str(path), *AGENTS], tmp_path), "is not an AMI capture")


def test_an_empty_capture(tmp_path: Path) -> None:
    path = tmp_path / "empty.ami"
    path.write_bytes(b"")
    refused(run_replay([str(path), *AGENTS], tmp_path), "is empty")


def test_out_of_range_settings(tmp_path: Path) -> None:
    refused(run_replay([capture("outbound"), "--digits", "3"], tmp_path), "argument --digits", "4 to 15")
    refused(run_replay([capture("outbound"), "--internal-digits", "x"], tmp_path), "argument --internal-digits")
    refused(run_replay([capture("outbound"), "--prefix", "9a"], tmp_path), "argument --prefix")


def test_a_bad_contacts_file(tmp_path: Path) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text("Maria,abc\n", encoding="utf-8")
    refused(run_replay([capture("outbound"), "--contacts", str(path)], tmp_path), "line 1", "holds no digits")
    refused(run_replay([capture("outbound"), "--contacts", str(tmp_path / "none.csv")], tmp_path),
            "cannot read the contacts file")


# ---- in the test process: the parts, and the guard ---------------------------------------------------------------


def test_the_command_refuses_any_database_but_its_own_throwaway_one() -> None:
    # Here the settings name the test database, not one made by `callcenter replay`: refused before touching it.
    with pytest.raises(CommandError, match="never touches a configured database"):
        call_command("replay", capture("outbound"), "--profile", "lab")


def test_the_replay_environment_replaces_every_user_setting_that_leads_elsewhere(tmp_path: Path) -> None:
    env = {
        "CALLCENTER_DATABASE_URL": "postgres://crm@db/production",
        "CALLCENTER_DATABASE_URL_FILE": "/run/secrets/db",
        "CALLCENTER_SECRET_KEY_FILE": "/run/secrets/key",
        "CALLCENTER_REDIS_URL": "redis://live-screens:6379",
        "TMPDIR": str(tmp_path),
    }
    directory = replay_env.apply_replay_environment(env)
    try:
        database = directory / replay_env.DATABASE_FILE_NAME
        assert env["CALLCENTER_DATABASE_URL"] == f"sqlite:///{database}"
        assert env[replay_env.REPLAY_DATABASE_ENV] == str(database)
        assert len(env["CALLCENTER_SECRET_KEY"]) >= 40
        for gone in ("CALLCENTER_DATABASE_URL_FILE", "CALLCENTER_SECRET_KEY_FILE", "CALLCENTER_REDIS_URL"):
            assert gone not in env
        assert directory.is_dir() and not database.exists()
    finally:
        replay_env.discard_replay_environment(directory)
    assert not directory.exists()


def test_parse_agent() -> None:
    assert replay.parse_agent(" 100 = alice ") == ("100", "alice")
    with pytest.raises(ValueError, match="EXTENSION=USERNAME"):
        replay.parse_agent("alice")


def test_one_user_cannot_have_two_extensions() -> None:
    with pytest.raises(replay.ReplayError, match="alice is given two extensions"):
        replay.agents_from([("100", "alice"), ("101", "alice")])
    assert replay.agents_from([("100", "alice"), ("100", "alice")]) == {"100": "alice"}


def test_read_contacts(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("\ufeffName,Number,Number\nΓιώργος Παπαδόπουλος, +30 210 123 4567 ,\n\nHelen Carter,1,2,3,4\n",
                    encoding="utf-8")
    rows = replay.read_contacts(path)
    assert [(row.line, row.name, row.numbers) for row in rows] == [
        (2, "Γιώργος Παπαδόπουλος", ("+30 210 123 4567",)),
        (4, "Helen Carter", ("1", "2", "3", "4")),
    ]
    path.write_text("Helen Carter,1,2,3,4,5\n", encoding="utf-8")
    with pytest.raises(replay.ReplayError, match="line 1: 5 numbers"):
        replay.read_contacts(path)
    path.write_text("Helen Carter\n", encoding="utf-8")
    with pytest.raises(replay.ReplayError, match="at least one number"):
        replay.read_contacts(path)
    path.write_bytes(b"\xff\xfeH\x00")
    with pytest.raises(replay.ReplayError, match="not UTF-8"):
        replay.read_contacts(path)


def test_translation_counts_what_it_skipped() -> None:
    data = (FIXTURES / "inbound_answered.ami").read_bytes()
    config = TranslatorConfig.for_profile("lab", internal_digits=3)
    clean = replay.translate_capture(io.BytesIO(data), config)
    assert clean.malformed == 0 and clean.messages > 100 and len(clean.events) == 3
    dirty = replay.translate_capture(io.BytesIO(data + b"\x00junk with no colon\r\n\r\n"), config)
    assert dirty.malformed == 1 and dirty.first_malformed
    assert [event.event_id for event in dirty.events] == [event.event_id for event in clean.events]


@pytest.mark.django_db
def test_the_steps_on_the_current_database() -> None:
    """prepare/deliver/stored_calls on the test database (so on PostgreSQL too, in its pass): the ring group."""
    setup = replay.ReplaySetup(agents={"100": "alice", "101": "bob"}, profile="lab", create_call_when_answered=True,
                               contacts=[replay.ContactRow(1, "Γιώργος Παπαδόπουλος", ("+302101234567",))])
    translation = replay.translate_capture(io.BytesIO((FIXTURES / "ringgroup.ami").read_bytes()),
                                           replay.translator_config(setup))
    replay.prepare(setup)
    receipt = replay.deliver(translation.events)
    assert (receipt.accepted, receipt.failed) == (7, 0)
    records = replay.stored_calls()
    started, duration = leg_times("ringgroup", "101")
    assert records == [{
        "resource": "bob", "extension": "101", "type": "incoming", "number": "00302101234567",
        "contact": "Γιώργος Παπαδόπουλος", "answered": True, "started": replay._started(started),
        "duration": duration,
    }]
    assert Call.objects.count() == 1
    lines = list(replay.explain(translation, setup, receipt, []))
    assert sum("stored for 101 who answered first" in line for line in lines) == 2
    assert any("contact: Γιώργος Παπαδόπουλος" in line for line in lines)
