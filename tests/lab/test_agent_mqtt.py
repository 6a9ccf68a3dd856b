"""``softphone agent`` driven over MQTT: a real edge, Debian's mosquitto, the agent's process.

The agent registers as 1001 at the edge; a test-side MQTT client tells it to dial 600 (the
echo) with file audio and to hang up. Checked: the events arrive in order (``seq`` up by one,
call states in protocol order) and each message validates against its JSON Schema; a
duplicated command token is answered once; an invalid command gets an error naming the field;
a second dial while the call is up is refused with R-CALLS-1 (reply and policy event); the
recorded out.wav holds the tone in.wav played (Goertzel, median over 100 ms windows). Then the
broker is stopped mid-call and started again: the watcher saw ``offline`` (the agent's Will),
the agent reconnects, the events it produced meanwhile arrive in order, and the call was never
dropped (the edge's call log has one call, ended by the agent's BYE after the outage).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from lab.agent_mqtt import AgentProcess, Watcher
from lab.edge_proc import EdgeProcess
from lab.mosquitto import MOSQUITTO, Mosquitto

from softphone.agent.messages import schema
from softphone.media.tone import median_tone_ratio, read_wav, tone, write_wav
from softphone.sip.tls import make_self_signed

pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed "
                                 "(Debian package mosquitto; `make system-deps` installs it)")]
jsonschema = pytest.importorskip("jsonschema")

EDGE_RTP = (23000, 23199)
AGENT_RTP = "23200-23399"
AGENT_ID = "desk-7"
TONE_HZ = 440.0


def validator(name: str) -> Any:
    return jsonschema.Draft202012Validator(schema(name))


def check_schemas(watcher: Watcher) -> None:
    kinds = {"event": validator("event"), "state": validator("state"),
             "status": validator("status")}
    resp = validator("cmd_resp")
    for m in watcher.messages:
        suffix = m.topic.removeprefix(watcher.prefix + "/")
        v = resp if suffix.startswith("cmd_resp/") else kinds.get(suffix)
        if v is None:
            continue  # our own commands on cmd
        errors = sorted(v.iter_errors(m.json()), key=str)
        assert not errors, f"{m.topic} {m.payload!r}: {errors[0].message}"


def in_order(events: list[dict[str, Any]]) -> None:
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs


def write_config(tmp: Path, sip: int, mqtt: int, interval: int = 5, queue: int = 100) -> Path:
    path = tmp / "agent.toml"
    path.write_text(f"""
[agent]
id = "{AGENT_ID}"
rtp_ports = "{AGENT_RTP}"
quality_interval_s = {interval}

[mqtt]
host = "127.0.0.1"
port = {mqtt}
queue = {queue}

[[accounts]]
name = "main"
registrar = "sip:127.0.0.1:{sip}"
user = "1001"
password = "demo-1001"
expires = 120
""")
    return path


def make_tone(path: Path) -> None:
    write_wav(path, tone(TONE_HZ, 8000, 8000 * 3), 8000)


def notice_s(event: dict[str, Any]) -> float:
    """How long the notice took: from the call's establishment to the R-REC-2 event."""
    return float(event["notice_elapsed_s"])


def recorded_ratio(path: Path) -> float:
    pcm, rate = read_wav(path)
    skip = 2 * rate // 2  # the first half second: the echo's path filling up
    return median_tone_ratio(pcm[skip:], rate, TONE_HZ)


def registered(watcher: Watcher) -> bool:
    """The retained state says the account is registered (events may have been dropped)."""
    states = watcher.on("state")
    return bool(states) and states[-1].json()["registrations"][0]["state"] == "registered"


async def dial_600(watcher: Watcher) -> str:
    await watcher.wait_for(lambda: registered(watcher), 15)
    await watcher.publish("cmd", {"version": 1, "token": "dial-1", "command": "dial",
                                  "target": "600"})
    reply = await watcher.wait_reply("dial-1")
    assert reply["ok"], reply
    call: str = reply["result"]["call"]
    await watcher.wait_event(10, type="call", call=call, state="established")
    return call


@pytest.mark.timeout(150)
async def test_dial_600_over_mqtt_events_in_order_schemas_guard_and_the_tone_recorded(
        tmp_path: Path, lab: Any) -> None:
    sip, mqtt_port = lab.take_ports(2)
    make_tone(tmp_path / "in.wav")
    out = tmp_path / "out.wav"
    broker = Mosquitto(tmp_path / "mq", mqtt_port).start()
    edge = EdgeProcess(tmp_path / "edge", sip, EDGE_RTP).start()
    agent = AgentProcess(write_config(tmp_path, sip, mqtt_port),
                         f"file:{tmp_path / 'in.wav'},{out}")
    watcher = Watcher(mqtt_port, AGENT_ID, f"test-{os.getpid()}-a")
    try:
        await watcher.start()
        agent.start()
        call = await dial_600(watcher)
        # a second dial while the call is up: refused by the guard, with its rule id
        await watcher.publish("cmd", {"version": 1, "token": "dial-2", "command": "dial",
                                      "target": "1002"})
        second = await watcher.wait_reply("dial-2")
        assert not second["ok"] and second["error"]["code"] == "refused", second
        assert second["error"]["rule"] == "R-CALLS-1", second
        assert "Annex 4" in second["error"]["clause"], second
        policy = await watcher.wait_event(5, type="policy", rule="R-CALLS-1")
        assert policy["decision"] == "refused" and policy["target"] == "1002", policy
        # the same token again (QoS 1 may deliver twice): answered once
        await watcher.publish("cmd", {"version": 1, "token": "dial-1", "command": "dial",
                                      "target": "600"})
        # invalid commands: the error names the field
        await watcher.publish("cmd", {"version": 1, "token": "bad-1", "command": "dtmf",
                                      "digits": "12x"})
        bad = await watcher.wait_reply("bad-1")
        assert not bad["ok"] and bad["error"]["field"] == "digits", bad
        await watcher.publish("cmd", {"version": 1, "token": "bad-2", "command": "teleport"})
        bad2 = await watcher.wait_reply("bad-2")
        assert bad2["error"]["field"] == "command", bad2
        await watcher.publish("cmd", b"{not json")  # no token: logged, nothing answered
        # 112 on a line without the emergency service: refused with the notice, even though
        # a call is up (the emergency rule is asked first)
        await watcher.publish("cmd", {"version": 1, "token": "sos-1", "command": "dial",
                                      "target": "112"})
        sos = await watcher.wait_reply("sos-1")
        assert sos["error"]["rule"] == "R-EMERG-1", sos
        notice = await watcher.wait_event(5, type="policy", rule="R-EMERG-1")
        assert notice["decision"] == "refused" and "not available" in notice["notice"], notice
        # hold and resume are re-INVITEs the edge answers; dtmf, mute and status answered
        for token, command, extra in (("hold-1", "hold", {}), ("resume-1", "resume", {}),
                                      ("dtmf-1", "dtmf", {"digits": "12#"}),
                                      ("mute-1", "mute", {"on": False}),
                                      ("status-1", "status", {})):
            await watcher.publish("cmd", {"version": 1, "token": token, "command": command,
                                          **extra})
            answer = await watcher.wait_reply(token)
            assert answer["ok"], answer
        # our offer said sendonly, the edge's answer recvonly: we send, it does not
        await watcher.wait_event(5, type="call", call=call, state="held", media="sendonly")
        await watcher.wait_event(5, type="call", call=call, state="resumed", media="sendrecv")
        status = (await watcher.wait_reply("status-1"))["result"]
        assert status["call"]["call"] == call and status["call"]["held"] is False, status
        assert status["registrations"][0]["state"] == "registered", status
        # R-REC-2: the agent records, so the other party hears the notice first; recording
        # starts once it has been sent
        notice = await watcher.wait_event(15, type="policy", rule="R-REC-2")
        assert notice["decision"] == "allowed" and "press 9" in notice["notice"], notice
        await asyncio.sleep(1.0)
        # record off for 2 s, then on again: out.wav is that much shorter than the call
        await watcher.publish("cmd", {"version": 1, "token": "rec-off", "command": "record",
                                      "on": False})
        assert (await watcher.wait_reply("rec-off"))["ok"]
        await asyncio.sleep(2.0)
        await watcher.publish("cmd", {"version": 1, "token": "rec-on", "command": "record",
                                      "on": True})
        assert (await watcher.wait_reply("rec-on"))["ok"]
        recording = [e["on"] for e in watcher.events() if e["type"] == "recording"]
        assert recording == [False, True], recording
        await asyncio.sleep(2.0)
        await watcher.publish("cmd", {"version": 1, "token": "hang-1", "command": "hangup"})
        assert (await watcher.wait_reply("hang-1"))["ok"]
        ended = await watcher.wait_event(10, type="call", call=call, state="terminated")
        assert ended["end_cause"] == "local hangup" and ended["duration_s"] > 10, ended
        quality = ended["quality"]
        assert quality["packets_received"] > 100 and quality["loss_percent"] < 5, quality
        assert quality["interval_s"] > 10 and 4.0 < quality["mos"] <= 4.5, quality
        print(json.dumps({"codec": quality["codec"], "quality": quality}))
        assert len(watcher.on("cmd_resp/dial-1")) == 1, "a duplicate token was answered again"
        states = [e["state"] for e in watcher.events() if e["type"] == "call"
                  and e.get("call") == call]
        assert [s for s in states if s != "ringing"] == [
            "calling", "established", "held", "resumed", "terminated"], states
        rc = agent.stop()
        assert rc == 0, agent.log()[-3000:]
        assert "Traceback" not in agent.log(), agent.log()
        await watcher.wait_for(lambda: watcher.on("status")[-1].json()["status"] == "offline",
                               5)
        in_order(watcher.events())
        check_schemas(watcher)
        calls = edge.wait_calls(1)
        assert len(calls) == 1, calls  # neither 1002 nor 112 reached the edge
    finally:
        agent.stop()
        await watcher.stop()
        edge.stop()
        broker.stop()
    ratio = recorded_ratio(out)
    pcm, rate = read_wav(out)
    kept = len(pcm) / 2 / rate
    print(json.dumps({"tone_ratio": round(ratio, 3), "recorded_s": round(kept, 2),
                      "call_s": ended["duration_s"], "notice_s": notice_s(notice)}))
    # recorded: the call less the notice and the 2 s off (one second of slack each way)
    expected = ended["duration_s"] - notice_s(notice) - 2.0
    assert expected - 1.0 < kept < expected + 1.0, (kept, expected)
    assert ratio > 0.8, ratio


@pytest.mark.timeout(150)
@pytest.mark.parametrize("queue", [100, 2])
async def test_broker_stopped_mid_call_reconnect_queued_events_in_order_call_kept(
        tmp_path: Path, lab: Any, queue: int) -> None:
    """queue 100: nothing is lost; queue 2: the oldest are dropped, the rest come in order,
    and the reconnected event says how many are missing."""
    sip, mqtt_port = lab.take_ports(2)
    make_tone(tmp_path / "in.wav")
    out = tmp_path / "out.wav"
    broker = Mosquitto(tmp_path / "mq", mqtt_port).start()
    edge = EdgeProcess(tmp_path / "edge", sip, EDGE_RTP).start()
    agent = AgentProcess(write_config(tmp_path, sip, mqtt_port, interval=1, queue=queue),
                         f"file:{tmp_path / 'in.wav'},{out}")
    watcher = Watcher(mqtt_port, AGENT_ID, f"test-{os.getpid()}-b{queue}")
    try:
        await watcher.start()
        agent.start()
        call = await dial_600(watcher)
        await asyncio.sleep(1.5)
        broker.stop()
        # the broker sent the agent's Will to the watcher on its way down
        await watcher.wait_for(lambda: watcher.on("status")[-1].json()["status"] == "offline",
                               3)
        await asyncio.sleep(4.0)  # quality reports every second: queued meanwhile
        broker.start()
        reconnected = await watcher.wait_event(20, type="control", what="reconnected")
        assert reconnected["offline_s"] > 3.0, reconnected
        await watcher.wait_for(lambda: watcher.on("status")[-1].json()["status"] == "online",
                               5)
        events = watcher.events()
        seqs = [e["seq"] for e in events]
        assert seqs == sorted(set(seqs)), seqs  # in order, none twice
        missing = seqs[-1] - len(seqs)  # seq starts at 1 (a queue of 2 drops at start too)
        # what came after the Will (the broker delivers what it has before it goes down)
        will = max(i for i, m in enumerate(watcher.messages) if m.topic.endswith("/status")
                   and m.json()["status"] == "offline")
        before = sum(1 for m in watcher.messages[:will] if m.topic.endswith("/event"))
        during = [e for e in events[before:] if e["seq"] < reconnected["seq"]]
        if queue == 100:
            assert reconnected["dropped"] == 0 and missing == 0, (reconnected, seqs)
            assert len([e for e in during if e["type"] == "quality"]) >= 3, during
        else:
            reports = [e for e in events if e["type"] == "control"]
            assert reconnected["dropped"] >= 1, reconnected
            # exact but for the one message in flight as the broker went down: delivered yet
            # unacknowledged, then dropped from the queue (counted, not missing), or
            # acknowledged by a broker that stopped before passing it on (missing, not counted)
            assert abs(missing - sum(e["dropped"] for e in reports)) <= 1, (reports, seqs)
            assert len(during) == queue, during  # the newest ones were kept
        assert all(e.get("state") != "terminated" for e in events), "the call was dropped"
        await watcher.publish("cmd", {"version": 1, "token": "hang-1", "command": "hangup"})
        ended = await watcher.wait_event(10, type="call", call=call, state="terminated")
        assert ended["end_cause"] == "local hangup" and ended["duration_s"] > 6, ended
        reports = [e for e in watcher.events() if e["type"] == "quality"]
        # the edge's RTCP receiver report about our stream came and was read
        assert reports and reports[-1]["remote_loss_percent"] == 0.0, reports[-1:]
        print(json.dumps({"last_quality": reports[-1]}))
        assert agent.stop() == 0, agent.log()[-3000:]
        if queue == 100:
            in_order(watcher.events())
        check_schemas(watcher)
        (record,) = edge.wait_calls(1)  # one call, ended by our BYE after the outage
        assert record["end_cause"] == "caller-bye" and record["duration_s"] > 6, record
    finally:
        agent.stop()
        await watcher.stop()
        edge.stop()
        broker.stop()
    assert recorded_ratio(out) > 0.8
    print(json.dumps({"reconnected": reconnected}))


@pytest.mark.timeout(90)
def test_without_a_broker_the_agent_is_a_phone_and_says_control_is_off(tmp_path: Path,
                                                                       lab: Any) -> None:
    (sip,) = lab.take_ports(1)
    edge = EdgeProcess(tmp_path / "edge", sip, EDGE_RTP).start()
    config = write_config(tmp_path, sip, 1)
    text = config.read_text()
    config.write_text(text[:text.index("[mqtt]")] + text[text.index("[[accounts]]"):])
    agent = AgentProcess(config, "null")
    try:
        agent.start()
        assert "control is off" in agent.log(), agent.log()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and edge.status().get("registrations") != 1:
            time.sleep(0.2)
        assert edge.status().get("registrations") == 1, edge.status()
        assert agent.stop() == 0, agent.log()[-3000:]
        assert "'state': 'unregistered'" in agent.log(), agent.log()[-3000:]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and edge.status().get("registrations") != 0:
            time.sleep(0.2)
        assert edge.status().get("registrations") == 0, edge.status()
    finally:
        agent.stop()
        edge.stop()


@pytest.mark.timeout(120)
async def test_an_incoming_call_is_announced_and_answered_over_mqtt(tmp_path: Path,
                                                                    lab: Any) -> None:
    """1002 (``softphone call`` with a 440 Hz tone) calls 1001, the agent: the incoming event
    names the caller, the answer command connects it, the caller hears the recording notice
    (7 s) then in.wav's tone (judged by the median of 100 ms windows over 20 s) and the
    agent's out.wav, begun after the notice, holds the caller's."""
    sip, mqtt_port = lab.take_ports(2)
    make_tone(tmp_path / "in.wav")
    out = tmp_path / "out.wav"
    broker = Mosquitto(tmp_path / "mq", mqtt_port).start()
    edge = EdgeProcess(tmp_path / "edge", sip, EDGE_RTP).start()
    agent = AgentProcess(write_config(tmp_path, sip, mqtt_port),
                         f"file:{tmp_path / 'in.wav'},{out}")
    watcher = Watcher(mqtt_port, AGENT_ID, f"test-{os.getpid()}-c")
    caller: asyncio.subprocess.Process | None = None
    try:
        await watcher.start()
        agent.start()
        await watcher.wait_event(15, type="registration", state="registered")
        caller = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "softphone", "call", f"sip:1001@127.0.0.1:{sip}",
            "--user", "1002", "--password", "demo-1002", "--tone", str(TONE_HZ),
            "--expect-tone", "--duration", "20", "--rtp-ports", "23400-23499",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL)
        incoming = await watcher.wait_event(15, type="call", state="incoming")
        assert "1002" in incoming["peer"] and incoming["direction"] == "incoming", incoming
        await watcher.publish("cmd", {"version": 1, "token": "ans-1", "command": "answer",
                                      "call": incoming["call"]})
        assert (await watcher.wait_reply("ans-1"))["ok"]
        await watcher.wait_event(5, type="call", call=incoming["call"], state="established")
        output, _ = await asyncio.wait_for(caller.communicate(), 40)
        text = output.decode()
        assert caller.returncode == 0, text  # the caller heard in.wav's tone
        ended = await watcher.wait_event(10, type="call", call=incoming["call"],
                                         state="terminated")
        assert ended["end_cause"] == "remote hangup", ended
        # answering a call that is over: the error names the field
        await watcher.publish("cmd", {"version": 1, "token": "ans-2", "command": "answer",
                                      "call": incoming["call"]})
        late = await watcher.wait_reply("ans-2")
        assert late["error"]["code"] == "unknown_call" and late["error"]["field"] == "call"
        assert agent.stop() == 0, agent.log()[-3000:]
        in_order(watcher.events())
        check_schemas(watcher)
    finally:
        if caller is not None and caller.returncode is None:
            caller.kill()
            await caller.wait()
        agent.stop()
        await watcher.stop()
        edge.stop()
        broker.stop()
    assert recorded_ratio(out) > 0.8


@pytest.mark.timeout(120)
async def test_tls_and_a_password_to_the_broker(tmp_path: Path, lab: Any) -> None:
    """The agent's listener on the broker is TLS with users only: with the CA and the right
    password the agent comes online; with a wrong one it is refused, says so, keeps trying,
    and is a phone all the same (registered at the edge)."""
    sip, plain, secure = lab.take_ports(3)
    cert, key = tmp_path / "broker.crt", tmp_path / "broker.key"
    make_self_signed(cert, key, hosts=["127.0.0.1"])
    broker = Mosquitto(tmp_path / "mq", plain, secure_port=secure, cert=(cert, key),
                       users={"desk": "s3cret"}).start()
    edge = EdgeProcess(tmp_path / "edge", sip, EDGE_RTP).start()
    watcher = Watcher(plain, AGENT_ID, f"test-{os.getpid()}-d")
    config = write_config(tmp_path, sip, secure)
    base = config.read_text()
    wrong: AgentProcess | None = None
    agent: AgentProcess | None = None
    try:
        await watcher.start()
        config.write_text(base.replace("queue = 100", f'queue = 100\ntls = true\nca_file = '
                                       f'"{cert}"\nusername = "desk"\npassword = "guess"'))
        wrong = AgentProcess(config, "null").start()
        await asyncio.sleep(2.0)
        assert not watcher.on("status"), "came online with a wrong password"
        assert "not reachable" in wrong.log() and "authori" in wrong.log().lower(), wrong.log()
        assert edge.status().get("registrations") == 1 or "'state': 'registered'" in wrong.log()
        assert wrong.stop() == 0
        config.write_text(base.replace("queue = 100", f'queue = 100\ntls = true\nca_file = '
                                       f'"{cert}"\nusername = "desk"\npassword = "s3cret"'))
        agent = AgentProcess(config, "null").start()
        await watcher.wait_for(lambda: bool(watcher.on("status")) and
                               watcher.on("status")[-1].json()["status"] == "online", 10)
        await watcher.wait_event(10, type="registration", state="registered")
        assert agent.stop() == 0, agent.log()[-3000:]
        await watcher.wait_for(lambda: watcher.on("status")[-1].json()["status"] == "offline",
                               5)
        check_schemas(watcher)
    finally:
        for proc in (wrong, agent):
            if proc is not None:
                proc.stop()
        await watcher.stop()
        edge.stop()
        broker.stop()


@pytest.mark.timeout(90)
async def test_home_assistant_discovery_retained_and_sent_again_on_its_birth(
        tmp_path: Path, lab: Any) -> None:
    sip, mqtt_port = lab.take_ports(2)
    broker = Mosquitto(tmp_path / "mq", mqtt_port).start()
    edge = EdgeProcess(tmp_path / "edge", sip, EDGE_RTP).start()
    config = write_config(tmp_path, sip, mqtt_port)
    config.write_text(config.read_text().replace("queue = 100", "queue = 100\n"
                                                 "homeassistant = true"))
    agent = AgentProcess(config, "null")
    seen: list[tuple[str, bool]] = []

    async def home_assistant() -> None:
        async with aiomqtt.Client("127.0.0.1", mqtt_port, identifier="ha-test") as ha:
            await ha.subscribe("homeassistant/+/+/+/config", qos=1)
            ready.set()
            async for m in ha.messages:
                seen.append((m.topic.value, bool(m.retain)))
                if len(seen) == 3:
                    await ha.publish("homeassistant/status", b"online", qos=1)  # its birth

    ready = asyncio.Event()
    task = asyncio.create_task(home_assistant())
    try:
        await asyncio.wait_for(ready.wait(), 10)
        agent.start()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(seen) < 6:
            await asyncio.sleep(0.1)
        topics = sorted({t for t, _ in seen})
        assert topics == [f"homeassistant/button/softphone_{AGENT_ID}/answer/config",
                          f"homeassistant/button/softphone_{AGENT_ID}/hangup/config",
                          f"homeassistant/sensor/softphone_{AGENT_ID}/call_state/config"], seen
        assert len(seen) == 6, seen  # once at connect, once more after the birth message
        assert agent.stop() == 0, agent.log()[-3000:]
        assert "Traceback" not in agent.log(), agent.log()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await task
        agent.stop()
        edge.stop()
        broker.stop()


@pytest.mark.timeout(120)
async def test_the_other_party_objects_to_the_recording_and_nothing_is_kept(
        tmp_path: Path, lab: Any) -> None:
    """R-REC-2 between two agents through the edge: desk-7 (1001, recording) calls desk-8
    (1002, answering over MQTT); desk-8 hears the notice, presses 9 (RFC 4733 through the
    edge); desk-7 stops recording, publishes the objection with its rule, and keeps no file."""
    sip, mqtt_port = lab.take_ports(2)
    make_tone(tmp_path / "in.wav")
    out = tmp_path / "out.wav"
    broker = Mosquitto(tmp_path / "mq", mqtt_port).start()
    edge = EdgeProcess(tmp_path / "edge", sip, EDGE_RTP).start()
    caller = AgentProcess(write_config(tmp_path, sip, mqtt_port),
                          f"file:{tmp_path / 'in.wav'},{out}")
    callee_dir = tmp_path / "callee"
    callee_dir.mkdir()
    callee_config = write_config(callee_dir, sip, mqtt_port)
    callee_config.write_text(callee_config.read_text().replace(f'"{AGENT_ID}"', '"desk-8"')
                             .replace('"1001"', '"1002"').replace("demo-1001", "demo-1002")
                             .replace(AGENT_RTP, "23400-23499"))
    callee = AgentProcess(callee_config, "null")
    watcher = Watcher(mqtt_port, AGENT_ID, f"test-{os.getpid()}-e")
    other = Watcher(mqtt_port, "desk-8", f"test-{os.getpid()}-f")
    try:
        await watcher.start()
        await other.start()
        caller.start()
        callee.start()
        await other.wait_for(lambda: registered(other), 15)
        await watcher.wait_for(lambda: registered(watcher), 15)
        await watcher.publish("cmd", {"version": 1, "token": "d1", "command": "dial",
                                      "target": "1002"})
        call = (await watcher.wait_reply("d1"))["result"]["call"]
        incoming = await other.wait_event(10, type="call", state="incoming")
        await other.publish("cmd", {"version": 1, "token": "a1", "command": "answer"})
        assert (await other.wait_reply("a1"))["ok"]
        await watcher.wait_event(10, type="call", call=call, state="established")
        await watcher.wait_event(15, type="policy", rule="R-REC-2", decision="allowed")
        await asyncio.sleep(1.0)
        await other.publish("cmd", {"version": 1, "token": "k1", "command": "dtmf",
                                    "digits": "9"})
        assert (await other.wait_reply("k1"))["ok"]
        objection = await watcher.wait_event(10, type="policy", rule="R-REC-2",
                                             decision="refused")
        assert "objected" in objection["reason"] and objection["call"] == call, objection
        await watcher.publish("cmd", {"version": 1, "token": "r1", "command": "record",
                                      "on": True})
        again = await watcher.wait_reply("r1")
        assert again["error"]["code"] == "refused" and again["error"]["rule"] == "R-REC-2"
        digit = await watcher.wait_event(5, type="dtmf", call=call)
        assert digit["digit"] == "9", digit
        await watcher.publish("cmd", {"version": 1, "token": "h1", "command": "hangup"})
        ended = await watcher.wait_event(10, type="call", call=call, state="terminated")
        assert ended["recording"] is None, ended
        await other.wait_event(10, type="call", call=incoming["call"], state="terminated")
        assert caller.stop() == 0 and callee.stop() == 0
        check_schemas(watcher)
        check_schemas(other)
    finally:
        caller.stop()
        callee.stop()
        await watcher.stop()
        await other.stop()
        edge.stop()
        broker.stop()
    assert not out.exists(), "the recording was kept after the objection"


@pytest.mark.timeout(120)
async def test_blind_transfer_over_mqtt_refer_on_the_wire_call_let_go_on_the_notify(
        tmp_path: Path, lab: Any, sipp: Any) -> None:
    """The agent calls a sipp party straight (a sip: target) and is told to transfer it to
    1003: the REFER sipp received carries Refer-To 1003 at the agent's registrar; the answer
    comes once the REFER is accepted (202); when sipp's NOTIFY reports the new call answered
    (sipfrag 200) the agent hangs up (sipp then sees the BYE) and the events say so, in order:
    transfer accepted, transfer completed, call terminated "transferred to 1003". Before that,
    a transfer of a call that does not exist and one to an invalid target are answered with
    the field and send nothing (sipp takes exactly one REFER)."""
    sip, mqtt_port, peer_port = lab.take_ports(3)
    broker = Mosquitto(tmp_path / "mq", mqtt_port).start()
    edge = EdgeProcess(tmp_path / "edge", sip, EDGE_RTP).start()
    agent = AgentProcess(write_config(tmp_path, sip, mqtt_port), "null")
    watcher = Watcher(mqtt_port, AGENT_ID, f"test-{os.getpid()}-x")
    try:
        await watcher.start()
        agent.start()
        await watcher.wait_for(lambda: registered(watcher), 15)
        peer = sipp.start("xfer", ["-sf", str(lab.scenarios / "desktop_uas_refer.xml"),
                                   "-i", "127.0.0.1", "-p", str(peer_port), "-mi", "127.0.0.1",
                                   "-m", "1"], wall=40, trace_msg=True)
        lab.wait_udp_listening(peer_port)
        await watcher.publish("cmd", {"version": 1, "token": "d1", "command": "dial",
                                      "target": f"sip:xfer@127.0.0.1:{peer_port}"})
        reply = await watcher.wait_reply("d1")
        assert reply["ok"], reply
        call = reply["result"]["call"]
        await watcher.wait_event(10, type="call", call=call, state="established")
        await watcher.publish("cmd", {"version": 1, "token": "x0", "command": "transfer",
                                      "target": "1003", "call": "c99"})
        wrong = await watcher.wait_reply("x0")
        assert wrong["error"]["code"] == "unknown_call", wrong
        assert wrong["error"]["field"] == "call", wrong
        await watcher.publish("cmd", {"version": 1, "token": "x1", "command": "transfer",
                                      "target": "10 03"})
        bad = await watcher.wait_reply("x1")
        assert bad["error"]["code"] == "invalid" and bad["error"]["field"] == "target", bad
        await watcher.publish("cmd", {"version": 1, "token": "x2", "command": "transfer",
                                      "target": "1003"})
        done = await watcher.wait_reply("x2", 15)
        assert done["ok"], done
        assert done["result"] == {"call": call, "status": 202,
                                  "target": f"sip:1003@127.0.0.1:{sip}"}, done
        ended = await watcher.wait_event(15, type="call", call=call, state="terminated")
        assert ended["end_cause"] == "transferred to 1003", ended
        assert await peer.wait_async(15) == 0, peer.errors()
        messages = peer.messages()
        assert f"Refer-To: <sip:1003@127.0.0.1:{sip}>" in messages, messages[-3000:]
        assert "Referred-By: <sip:1001@" in messages, messages[-3000:]
        assert messages.count("REFER sip:") == 1, messages[-3000:]
        transfer = [(e["seq"], e["state"], e.get("status")) for e in watcher.events()
                    if e["type"] == "transfer"]
        assert [t[1:] for t in transfer] == [("accepted", 202), ("completed", 200)], transfer
        assert transfer[-1][0] < ended["seq"], (transfer, ended)
        assert agent.stop() == 0, agent.log()[-3000:]
        assert "Traceback" not in agent.log(), agent.log()[-3000:]
        in_order(watcher.events())
        check_schemas(watcher)
    finally:
        agent.stop()
        await watcher.stop()
        edge.stop()
        broker.stop()
