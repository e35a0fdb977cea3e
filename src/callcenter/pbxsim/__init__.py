"""A simulated Asterisk that speaks real AMI on a real TCP port: ``callcenter pbxsim`` and ``SimulatedPBX``.

It stands in for a production FreePBX-style Asterisk 22 so that the bridge, the CRM and their tests can be driven end
to end without a PBX. It is held to the real Asterisk 22 PJSIP lab (tests/live/test_simulator_parity.py runs each
flow on both and compares the wire events, their timing, the device and hint states and each channel's events with
their caller ids, connected lines, contexts and causes), and its dialplan is the lab's (FreePBX-shaped):

    agent's phone          PJSIP/<ext>-<seq>     context from-internal, caller id = the endpoint's ("<name>" <ext>)
                                                 (dialled: Exten "s", created Down, then the caller's exten, and
                                                 none once answered; dialling out: Exten = the number, created Ring)
    provider trunk         PJSIP/trunk-<seq>     context from-pstn (inbound: Exten = the DID, created Ring, caller id
                                                 and name from the call; outbound: Exten "s", created Down, caller id
                                                 = the number dialled)
    <seq>                  eight hex digits, one counter for all PJSIP channels (PJSIP/100-0000002a); Local channels
                           (Local/<exten>@<context>-<seq>;1 and ;2) have their own
    Uniqueid               <epoch>.<n>, Linkedid = the Uniqueid of the call's first channel
    dialplan               from-pstn / from-internal -> ext-agent (Dial, or Busy for DND), ext-group, ext-queue
                           (Answer, Queue); a failed Dial() goes to dial-result,s-<DIALSTATUS>
    device states          an agent's phone is BUSY while it has a call (device_state_busy_at=1, as on the lab),
                           the trunk the aggregate of its channels (RINGING, INUSE, ONHOLD, BUSY)
    hints                  PJSIP/<ext>&Custom:DND<ext> in context ext-local (ExtensionStatus: Busy during a call)
    ring group / queue     600 / 400 with every agent, unless configured otherwise

Call flows (see ``engine``): inbound answered; missed (Dial() times out: DialEnd NOANSWER, cause 19); busy (a DND
extension: the caller's channel goes Busy at once, no ringing, cause 17; a phone or far end that answers 486, at once
or after ringing: cause 17); ring group (all ring, the first answer wins, the others end with cause 26 "Answered
elsewhere"); queue (ring-all, after Answer() and Queue() each waited 0.5 s for media); outbound; internal; blind
transfer (AMI BlindTransfer, or Redirect of the caller); attended transfer (AMI Atxfer: Asterisk's transfer feature,
consulting through a Local channel; or the phone's own transfer key); the caller hanging up while it rings (SIP
CANCEL: DialEnd CANCEL, cause 127); click-to-call (AMI Originate to an agent's phone, which rings first).

Actions: Login (plain or MD5 Challenge), Logoff, Ping, Events, Originate, Hangup, Redirect, BlindTransfer, Atxfer,
CoreShowChannels, Status, DBPut, DBGet, DBDel, QueuePause, PJSIPNotify, Setvar, Getvar, ExtensionState; anything else
gets ``Response: Error`` / ``Message: Invalid/unknown command: ...``.
- Originate ``Channel: PJSIP/<ext>`` with ``Exten``/``Context``: the agent's phone rings (it auto-answers after
  ``originate_answer_after``), then dials Exten: an outbound call, or an internal one if Exten is an extension.
  ``ChannelId`` sets the phone channel's Uniqueid. ``Channel: Local/<did>@from-pstn`` with ``CallerID`` makes an
  outside caller ring ``<did>``; ``Local/<number>@from-internal`` with ``CallerID: <ext>`` makes agent ``<ext>`` dial
  ``<number>`` from an off-hook handset (the fixture drivers' two tricks).
- Hangup of a ringing phone declines the call; of the caller while it rings abandons it; during an Atxfer the
  transferer's hang-up completes the transfer (the Local channel's ;1 half joins the caller's bridge).
- Redirect moves that channel to the extension (it leaves its bridge already at the new place) and hangs up its bridge
  peer, as Asterisk does, with no transfer event: to transfer a caller, redirect the caller's channel
  (``PJSIP/trunk-...``).
- DBPut/DBDel of ``DND/<ext>`` (value ``YES``) is FreePBX's DND: it also sets ``Custom:DND<ext>``, so the extension's
  ``ExtensionStatus`` goes Busy (2) / back to Idle (0), and calls to it get busy without ringing.
- PJSIPNotify to an endpoint (``Endpoint: 100``) or a channel with ``Variable: Event=talk`` (or ``Option: talk``)
  answers the phone's ringing call, like a Yealink/Polycom remote answer.

Time can be compressed: every delay is in simulated seconds and the clock runs ``speed`` times faster than real time
(``Timestamp`` headers show simulated time). Scenarios (``scenario``) script calls; the load generator (``loadgen``)
makes them at a rate; faults (``server``: drop, garbage, stall, restart) test a client's resilience.
"""

from callcenter.pbxsim.model import Behaviour
from callcenter.pbxsim.pbx import SimulatedPBX
from callcenter.pbxsim.scenario import Scenario, ScenarioError, ScenarioRun, load_scenario, parse_scenario
from callcenter.pbxsim.server import PortInUseError

__all__ = [
    "Behaviour",
    "PortInUseError",
    "Scenario",
    "ScenarioError",
    "ScenarioRun",
    "SimulatedPBX",
    "load_scenario",
    "parse_scenario",
]
