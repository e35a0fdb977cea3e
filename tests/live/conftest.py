"""Fixtures of the live tests: real Asterisk labs, SIPp phones, the real CRM and the real bridge.

    pbx            the module's PJSIP lab (labs.PjsipLab): pbx.phone("100", "answer", ring=1), pbx.call(did, caller),
                   pbx.ami (an AMI session), pbx.wait_idle(); per test: phones and callers stopped, channels hung
                   up, DND cleared, the raw AMI of the test kept in the test's tmp dir (ami.raw)
    fresh_pbx      a PJSIP lab of the test's own, for tests that change the PBX (DND ...)
    local_pbx      the module's Local-channel lab (labs.LocalLab; profile "lab")
    crm            stack.LiveCrm: `callcenter serve` on a copy of the seeded template database
    bridge         stack.LiveBridge: `callcenter bridge run` on `pbx` and `crm`, connected
    start_bridge   start_bridge(lab, extensions=(...), **asterisk_settings) for another lab or other settings
    settle(...)    (stack.settle) the CRM's rows once the PBX is idle and the bridge has delivered everything

Without the labs (CALLCENTER_ASTERISK_DIR, default ../shared) the live tests skip with one line saying so; in CI
(CI set to a true value) a skipped live test is a failure: CI must prove they ran. CALLCENTER_LIVE_SAVE_AMI=DIR copies
each test's raw AMI to DIR/<test name>.ami (the captures of tests/fixtures/ami/live were made so).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.bridge.live_crm import CrmTemplate, build_template

from . import labs
from .stack import LiveBridge, LiveCrm

RING_TIMEOUT_S = 8  # AstDB lab/timeout: how long an unanswered agent rings (the lab's default is 20 s)

atexit.register(labs.reap_all)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes", "on")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.live)


NOT_HERE = "live Asterisk tests not run: "


def _why_not_here() -> str:
    """'' when the labs can run on this machine, else one line saying why (and naming CALLCENTER_ASTERISK_DIR
    when they are not found)."""
    reason = labs.unavailable("pjsip") or labs.unavailable("local")
    if not reason:
        reason = labs.missing_libraries(labs.pjsip_package())
    return f"{NOT_HERE}{reason}" if reason else ""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if in_ci():
        report.outcome = "failed"
        report.longrepr = f"CI is set: a live test must run, not skip ({reason})"
    elif NOT_HERE in reason:
        # One place for every such skip, so the summary folds them into one line instead of one per test.
        report.longrepr = (__file__, _why_not_here.__code__.co_firstlineno, reason)


@pytest.fixture(scope="session")
def _labs_here() -> None:
    """One reason for every live test when the labs cannot run here."""
    reason = _why_not_here()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session", autouse=True)
def _reap_children() -> Iterator[None]:
    yield
    left = labs.reap_all()
    assert not left, f"live tests left processes running (now stopped): {left}"


@pytest.fixture(scope="session")
def crm_template(_labs_here: None, tmp_path_factory: pytest.TempPathFactory) -> CrmTemplate:
    return build_template(tmp_path_factory.mktemp("live-crm-template"))


_Lab = TypeVar("_Lab", labs.PjsipLab, labs.LocalLab)


@contextlib.contextmanager
def running_lab(lab: _Lab, ring_timeout: float = RING_TIMEOUT_S) -> Iterator[_Lab]:
    """``lab`` started, its unanswered phones ringing ``ring_timeout`` s (AstDB lab/timeout), stopped afterwards."""
    lab.start()
    try:
        lab.ami.db_put("lab", "timeout", f"{ring_timeout:g}")
        yield lab
    finally:
        lab.stop()


@pytest.fixture(scope="module")
def pjsip_lab(_labs_here: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[labs.PjsipLab]:
    with running_lab(labs.PjsipLab(tmp_path_factory.mktemp("pjsip-lab"))) as lab:
        yield lab


def _test_name(request: pytest.FixtureRequest) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name.removeprefix("test_")).strip("_")


@contextlib.contextmanager
def _one_test(lab: labs.PjsipLab | labs.LocalLab, request: pytest.FixtureRequest, tmp_path: Path
              ) -> Iterator[None]:
    """The test's raw AMI in tmp_path/ami.raw; afterwards everything it left on the PBX is cleared."""
    recorder = lab.recorder(tmp_path / "ami.raw")
    try:
        yield
    finally:
        try:
            if isinstance(lab, labs.PjsipLab):
                lab.stop_phones()
            with contextlib.suppress(AssertionError):
                lab.wait_idle(timeout=15)
            if lab.channels():
                lab.ami.command("channel request hangup all")
                lab.wait_idle(timeout=30)
        finally:
            recorder.stop()
            keep = os.environ.get("CALLCENTER_LIVE_SAVE_AMI")
            if keep:
                Path(keep).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(recorder.path, Path(keep) / f"{_test_name(request)}.ami")
        for ext in labs.EXTENSIONS:
            if lab.ami.db_get("DND", ext) is not None:
                lab.ami.db_del("DND", ext)
                lab.ami.action("Setvar", Variable=f"DEVICE_STATE(Custom:DND{ext})", Value="NOT_INUSE")


@pytest.fixture
def pbx(pjsip_lab: labs.PjsipLab, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[labs.PjsipLab]:
    with _one_test(pjsip_lab, request, tmp_path):
        yield pjsip_lab


@pytest.fixture
def fresh_pbx(_labs_here: None, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[labs.PjsipLab]:
    with running_lab(labs.PjsipLab(tmp_path / "pjsip-lab")) as lab, _one_test(lab, request, tmp_path):
        yield lab


@pytest.fixture(scope="module")
def local_lab(_labs_here: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[labs.LocalLab]:
    with running_lab(labs.LocalLab(tmp_path_factory.mktemp("local-lab"))) as lab:
        yield lab


@pytest.fixture
def local_pbx(local_lab: labs.LocalLab, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[labs.LocalLab]:
    with _one_test(local_lab, request, tmp_path):
        yield local_lab


@pytest.fixture
def crm(crm_template: CrmTemplate, tmp_path: Path) -> Iterator[LiveCrm]:
    live = LiveCrm(crm_template, tmp_path / "crm").start()
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture
def start_bridge(crm: LiveCrm, tmp_path: Path) -> Iterator[Callable[..., LiveBridge]]:
    started: list[LiveBridge] = []

    def start(lab: labs.PjsipLab | labs.LocalLab, **options: Any) -> LiveBridge:
        bridge = LiveBridge(tmp_path / f"bridge-{len(started) + 1}", lab, crm, **options)
        started.append(bridge)
        return bridge.start()

    try:
        yield start
    finally:
        for bridge in started:
            bridge.stop()


@pytest.fixture
def bridge(pbx: labs.PjsipLab, start_bridge: Callable[..., LiveBridge]) -> LiveBridge:
    return start_bridge(pbx)
