"""The same driver on a real Asterisk and on the simulator gives the same wire events.

Each real capture in ``fixtures/ami`` comes with the actions its driver sent (``NAME.sent``) and when (the summary).
Here those very actions are sent to the simulator, at the same (simulated) times, with its agents behaving as the
lab's did (answer after N s, hang up after M s). The simulator's capture, translated with the *production* profile,
must give the same wire events as the real capture translated with the *lab* profile: who rang, from which number,
who answered, how each leg ended."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from callcenter.bridge.connectors.ami.codec import AMIConnection, Message, encode_message
from callcenter.bridge.connectors.ami.pipeline import Pipeline
from callcenter.bridge.connectors.ami.translate import TranslatorConfig
from callcenter.pbxsim import Behaviour, SimulatedPBX
from tests.pbxsim.amiclient import AMIClient
from tests.pbxsim.test_crosscheck import by_extension

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ami"
LAB_SECRET = "crmsecret"  # what the drivers send: the simulator gets the lab's manager.conf user
SPEED = 100.0


@dataclass
class Lab:
    """How the lab's phones and far ends behaved in one capture."""

    agents: dict[str, Behaviour]
    ring_timeout: float = 20.0
    remote: Behaviour = field(default_factory=lambda: Behaviour(answer_after=2.0))
    groups: dict[str, list[str]] = field(default_factory=dict)


LABS = {
    "inbound_answered": Lab({"100": Behaviour(answer_after=3, hangup_after=6)}),
    "inbound_missed": Lab({"101": Behaviour()}, ring_timeout=8),  # the driver's LAB_RINGTIME=8
    "outbound": Lab({"100": Behaviour()}, remote=Behaviour(answer_after=2, hangup_after=8)),
    "ringgroup": Lab({"100": Behaviour(), "101": Behaviour(answer_after=4, hangup_after=6), "102": Behaviour()},
                     groups={"600": ["100", "101", "102"]}),
    "internal": Lab({"100": Behaviour(), "102": Behaviour(answer_after=3, hangup_after=6)}),
    "transfer_blind": Lab({"100": Behaviour(answer_after=3), "103": Behaviour(answer_after=3, hangup_after=6)}),
}


def driver(name: str) -> list[tuple[float, Message]]:
    """The actions of ``NAME.sent`` with the times the summary gives for them."""
    if not (FIXTURES / f"{name}.sent").exists():
        pytest.skip(f"fixture {name}.sent not found under {FIXTURES}")
    conn = AMIConnection("server")
    conn.receive_data((FIXTURES / f"{name}.sent").read_bytes())
    conn.receive_data(b"")
    actions = conn.next_events()
    summary = (FIXTURES / f"{name}.summary.txt").read_text(encoding="utf-8")
    times = [float(t) for t in re.findall(r"^\s+(\d+\.\d+) \w+:", summary.split("Channels (")[0], re.MULTILINE)]
    assert len(times) == len(actions), "one time per action"
    return list(zip(times, actions, strict=True))


def facts_of(data: bytes, profile: str) -> dict[str, list[tuple[object, ...]]]:
    pipeline = Pipeline(TranslatorConfig.for_profile(profile))
    return by_extension(pipeline.receive(data) + pipeline.receive(b""))


async def drive(name: str) -> bytes:
    lab = LABS[name]
    async with SimulatedPBX(users={"crm": LAB_SECRET}, agents=list(lab.agents), speed=SPEED,
                            ring_timeout=lab.ring_timeout, remote=lab.remote, groups=lab.groups or None) as pbx:
        for ext, behaviour in lab.agents.items():
            pbx.set_behaviour(ext, behaviour)
        client = await AMIClient.connect(pbx.port)
        start = pbx.clock.now()
        for at, action in driver(name):
            wait = start + at - pbx.clock.now()
            if wait > 0:
                await pbx.clock.sleep(wait)
            headers = list(action.headers)
            if action.name == "Logoff":
                await pbx.wait_until(lambda: not pbx.channels(), timeout=5)
            if action.name == "BlindTransfer":
                # The lab's agent channel was Local/100@phones-...;1; here it is PJSIP/100-...
                agent = next(c.name for c in pbx.channels() if c.extension == "100")
                headers = [(k, agent if k == "Channel" else v) for k, v in headers]
            client.send_raw(encode_message(headers))
        await asyncio.wait_for(client.closed.wait(), 5)
        assert pbx.errors == []
        assert [c.response for c in pbx.commands] == ["Success"] * (len(pbx.commands) - 1) + ["Goodbye"]
        return bytes(client.raw)


@pytest.mark.parametrize("name", sorted(LABS))
async def test_the_fixture_driver_gives_the_same_wire_events_as_on_the_real_asterisk(name: str) -> None:
    real = facts_of((FIXTURES / f"{name}.ami").read_bytes(), "lab")
    simulated = facts_of(await drive(name), "production")
    assert simulated == real
