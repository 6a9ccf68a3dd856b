"""What an operator expects of the running edge, with real peers (sipp) and an HTTP client.

``/metrics`` parsed with prometheus_client's own parser, ``/healthz``, ``/api/status`` and
``softphone status`` (table and ``--json``) while a sipp call talks through the edge; SIGTERM
drains (a new INVITE gets 503 with Retry-After on the wire, a call in progress goes on and a
call too long is ended with BYE at ``--drain-timeout``); SIGHUP reloads users, passwords and
``[account]`` without dropping a call, and refuses a broken file naming its key and line.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from lab.edge_proc import EdgeProcess
from lab.edge_sipp import register, start_callee
from lab.sipp_media import media_ports, write_alaw

pytestmark = pytest.mark.lab

RTP = (21000, 21999)


def get(port: int, path: str) -> tuple[int, str, str]:
    """(status, content type, body) of GET http://127.0.0.1:port/path."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read().decode()


def metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, parsed by prometheus_client: (name, labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    status, ctype, body = get(port, "/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4"), (status, ctype)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(body) for s in fam.samples}


def talk(sipp: Any, lab: Any, name: str, target: str, caller: str, callee: str, port: int,
         media: int, ms: int, password: str | None = None) -> Any:
    """``caller`` calls ``callee`` and talks (PCMA) for ``ms``, then hangs up."""
    return sipp.start(name, [target, "-sf", str(lab.scenarios / "edge_uac_talk.xml"),
                             "-s", callee, "-i", "127.0.0.1", "-p", str(port),
                             "-au", caller, "-ap", password or f"demo-{caller}",
                             "-set", "user", caller, "-auth_uri", f"{callee}@{target}",
                             "-mi", "127.0.0.1", "-mp", str(media), "-d", str(ms),
                             "-m", "1", "-timeout_error"], wall=90, trace_msg=True)


def quick(sipp: Any, lab: Any, name: str, target: str, caller: str, callee: str, port: int,
          password: str, scenario: str = "edge_uac_quick.xml") -> Any:
    """One short call with ``password``; returns the finished sipp (rc 0: it went as the
    scenario expects)."""
    proc = sipp.start(name, [target, "-sf", str(lab.scenarios / scenario), "-s", callee,
                             "-i", "127.0.0.1", "-p", str(port), "-au", caller, "-ap", password,
                             "-set", "user", caller, "-auth_uri", f"{callee}@{target}",
                             "-m", "1", "-timeout_error", "-recv_timeout", "8000"],
                      wall=30, trace_msg=True)
    proc.wait(40)
    return proc


def wait_until(what: Any, timeout: float = 15.0) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = what()
        if got:
            return got
        time.sleep(0.2)
    return what()


@pytest.mark.timeout(180)
def test_metrics_api_and_status_show_a_live_call(tmp_path: Path, lab: Any, sipp: Any) -> None:
    edge_port, http_port, uas_port, reg_port, c1, c2 = lab.take_ports(6)
    (uac_media,) = media_ports(36400, 1)
    write_alaw(tmp_path / "uac.alaw", 1000, 1)
    edge = EdgeProcess(tmp_path / "edge", edge_port, RTP, http_port=http_port).start()
    target = f"127.0.0.1:{edge_port}"
    try:
        start_callee(sipp, lab, "uas", "edge_uas_answer.xml", uas_port, wall=90)
        register(sipp, lab, target, "1002", uas_port, reg_port)
        bad = quick(sipp, lab, "bad", target, "1001", "1002", c1, "not-the-password")
        assert bad.proc.returncode != 0, "a wrong password was accepted"
        uac = talk(sipp, lab, "talk", target, "1001", "1002", c2, uac_media, 6000)
        state = wait_until(lambda: (s := json.loads(get(http_port, "/api/status")[2]))["calls"]
                           and all(leg["packets_in"] for leg in s["calls"][0]["legs"][:1])
                           and s)
        live = metrics(http_port)
        table = subprocess.run([sys.executable, "-m", "softphone", "status", "--http-port",
                                str(http_port)], capture_output=True, text=True, timeout=30)
        as_json = subprocess.run([sys.executable, "-m", "softphone", "status", "--http-port",
                                  str(http_port), "--json"], capture_output=True, text=True,
                                 timeout=30)
        health = get(http_port, "/healthz")
        assert uac.wait(60) == 0, uac.errors() + edge.log()[-3000:]
        edge.wait_calls(1)
        after = metrics(http_port)
        missing = get(http_port, "/nothing-here")
        log = edge.log()
    finally:
        edge.stop()
    # the refused password is logged as fail2ban's filter in docs/DEPLOY.md expects it
    deploy = (Path(__file__).parents[2] / "docs" / "DEPLOY.md").read_text()
    failregex = deploy.split("failregex = ", 1)[1].split("\n", 1)[0]
    pattern = re.compile(failregex.replace("<HOST>", r"(?P<host>[0-9a-fA-F.:]+)"))
    hosts = [m["host"] for ln in log.splitlines() if (m := pattern.match(ln))]
    assert hosts == ["127.0.0.1"], (failregex, [ln for ln in log.splitlines() if "digest" in ln])
    # the API: the call with both legs, their codecs and ports; the registration; the ports
    (c,) = state["calls"]
    assert (c["caller"], c["callee"], c["state"], c["mode"]) == ("1001", "1002", "confirmed",
                                                                 "relay"), c
    assert [(leg["leg"], leg["codec"]) for leg in c["legs"]] == [("a", "PCMA"), ("b", "PCMA")]
    assert all(RTP[0] <= leg["local_rtp"] <= RTP[1] for leg in c["legs"]), c
    assert [r["user"] for r in state["registrations"]] == ["1002"], state["registrations"]
    assert state["ports"]["in_use"] == 2 and state["ports"]["free"] == 500 - 2, state["ports"]
    assert {"rule", "outcome", "count"} <= set(state["policy"][0]), state["policy"]
    # softphone status: the same, as a table and as JSON
    assert table.returncode == 0, table.stderr
    assert "1 active call(s)" in table.stdout and c["call_id"] in table.stdout, table.stdout
    assert "PCMA/PCMA" in table.stdout and "1 registration(s)" in table.stdout, table.stdout
    assert "RTP ports 21000-21999: 2 pair(s) in use, 498 free" in table.stdout, table.stdout
    assert json.loads(as_json.stdout)["calls"][0]["call_id"] == c["call_id"], as_json
    assert health[0] == 200 and json.loads(health[2]) == {
        "ok": True, "checks": {"sip": "ok", "ledger": "ok"}}, health
    assert missing[0] == 404
    # /metrics during the call ...
    assert live["softphone_calls_active", ()] == 1
    assert live["softphone_registrations", ()] == 1
    assert live["softphone_rtp_port_pairs", (("state", "in_use"),)] == 2
    assert live["softphone_rtp_port_pairs", (("state", "free"),)] == 498
    assert live["softphone_rtp_packets_total", (("direction", "received"),)] > 0
    assert live["process_open_fds", ()] > 0 and live["process_resident_memory_bytes", ()] > 0
    # ... and after it: requests by method, responses by class, calls by end cause, the
    # guard's decisions by rule and outcome, the refused password
    assert after["softphone_calls_active", ()] == 0
    assert after["softphone_sip_requests_received_total", (("method", "INVITE"),)] >= 4
    assert after["softphone_sip_requests_received_total", (("method", "BYE"),)] >= 1
    assert after["softphone_sip_requests_received_total", (("method", "REGISTER"),)] >= 2
    assert after["softphone_sip_responses_total", (("class", "4xx"), ("direction", "sent"))] >= 3
    assert after["softphone_sip_responses_total", (("class", "2xx"),
                                                   ("direction", "received"))] >= 2
    assert after["softphone_calls_started_total", ()] == 1
    assert after["softphone_calls_answered_total", ()] == 1
    assert after["softphone_calls_ended_total", (("cause", "caller-bye"),)] == 1
    assert after["softphone_auth_failures_total", ()] >= 1
    assert after["softphone_rtp_packets_total", (("direction", "received"),)] >= 100
    decisions = {dict(labels)["rule"]: v for (name, labels), v in after.items()
                 if name == "softphone_policy_decisions_total"}
    assert decisions and all(v >= 1 for v in decisions.values()), decisions
    # no per-call label: neither the Call-ID nor an address appears in any label value
    values = {v for (_, labels) in after for _, v in labels}
    assert not any(c["call_id"] in v or "127.0.0.1" in v for v in values), values


@pytest.mark.timeout(180)
def test_sigterm_drains_then_ends_what_is_left(tmp_path: Path, lab: Any, sipp: Any) -> None:
    edge_port, http_port, uas_port, reg_port, c1, c2, c3 = lab.take_ports(7)
    m1, m2 = media_ports(36500, 2)
    write_alaw(tmp_path / "uac.alaw", 1000, 1)
    edge = EdgeProcess(tmp_path / "edge", edge_port, RTP, http_port=http_port,
                       drain_timeout=8, extra=["--config", str(two_channels(tmp_path))]).start()
    target = f"127.0.0.1:{edge_port}"
    try:
        uas = start_callee(sipp, lab, "uas", "edge_uas_answer.xml", uas_port, wall=90)
        register(sipp, lab, target, "1002", uas_port, reg_port)
        short = talk(sipp, lab, "short", target, "1001", "1002", c1, m1, 4000)
        long = talk(sipp, lab, "long", target, "1003", "1002", c2, m2, 60000)
        assert wait_until(lambda: len(json.loads(get(http_port, "/api/status")[2])["calls"])
                          == 2), edge.log()[-3000:]
        os.kill(edge.edge_pid(), signal.SIGTERM)
        assert wait_until(lambda: json.loads(get(http_port, "/api/status")[2])["draining"])
        health = get(http_port, "/healthz")
        refused = quick(sipp, lab, "new", target, "1004", "1002", c3, "demo-1004",
                        scenario="edge_uac_unavailable.xml")
        assert short.wait(30) == 0, short.errors() + edge.log()[-3000:]
        assert edge.proc is not None
        rc = edge.proc.wait(30)
        uas.stop(soft_timeout=2)
        long.stop(soft_timeout=2)
        calls = edge.calls()
        log = edge.log()
    finally:
        edge.stop()
    assert health[0] == 503 and "draining" in json.loads(health[2])["checks"], health
    # the new INVITE: 503 with Retry-After, on the wire
    assert refused.proc.returncode == 0, refused.errors() + log[-3000:]
    answer = refused.messages().split("SIP/2.0 503")[1].split("\n\n")[0]
    assert "Retry-After: 5" in answer, answer
    # the short call went on to its own BYE; the long one was ended by the edge at the timeout
    causes = {c["caller"]: c["end_cause"] for c in calls}
    assert causes == {"1001": "caller-bye", "1003": "shutdown"}, calls
    long_ended = next(c for c in calls if c["caller"] == "1003")
    assert long_ended["duration_s"] >= 6, long_ended
    assert "BYE sip:" in long.messages(), "the long call's caller got no BYE from the edge"
    assert rc == 0 and "softphone edge stopped" in log, log[-2000:]
    assert "Traceback" not in log, log[-4000:]


def two_channels(tmp_path: Path) -> Path:
    """The embedded config with room for the two calls to 1002 at once."""
    text = resources.files("softphone.configs").joinpath("edge.toml").read_text()
    text = text.replace('password = "demo-1002"', 'password = "demo-1002"\nextra_channels = 2')
    path = tmp_path / "edge.toml"
    path.write_text(text)
    return path


@pytest.mark.timeout(240)
def test_sighup_reloads_users_and_account_without_dropping_a_call(tmp_path: Path, lab: Any,
                                                                 sipp: Any) -> None:
    edge_port, http_port, uas_port, reg_port, c0, c1, c2, c3, c4, c5 = lab.take_ports(10)
    (m0,) = media_ports(36600, 1)
    write_alaw(tmp_path / "uac.alaw", 1000, 1)
    cfg = two_channels(tmp_path)
    original = cfg.read_text()
    edge = EdgeProcess(tmp_path / "edge", edge_port, RTP, http_port=http_port,
                       extra=["--config", str(cfg)]).start()
    target = f"127.0.0.1:{edge_port}"

    def hup() -> None:
        n = edge.log().count("reload")
        os.kill(edge.edge_pid(), signal.SIGHUP)
        assert wait_until(lambda: edge.log().count("reload") > n), edge.log()[-2000:]

    try:
        start_callee(sipp, lab, "uas", "edge_uas_answer.xml", uas_port, wall=200)
        register(sipp, lab, target, "1002", uas_port, reg_port)
        up = talk(sipp, lab, "up", target, "1003", "1002", c0, m0, 25000)
        assert wait_until(lambda: json.loads(get(http_port, "/api/status")[2])["calls"])
        # 1) a new password for 1001, recording on for the account
        cfg.write_text(original.replace('password = "demo-1001"', 'password = "fresh-1001"')
                       .replace("recording = false", "recording = true", 1))
        hup()
        old_pw = quick(sipp, lab, "oldpw", target, "1001", "1002", c1, "demo-1001")
        new_pw = quick(sipp, lab, "newpw", target, "1001", "1002", c2, "fresh-1001")
        # 2) a broken file: refused with its key and line, the configuration in force kept
        broken = cfg.read_text().replace('plan = "unlimited"', 'plan = "gold"')
        line = next(i for i, ln in enumerate(broken.splitlines(), 1) if ln.startswith("plan ="))
        cfg.write_text(broken)
        hup()
        still = quick(sipp, lab, "still", target, "1001", "1002", c3, "fresh-1001")
        # 3) the account suspended: 1001's outbound calls are refused (403)
        cfg.write_text(broken.replace('plan = "gold"', 'plan = "unlimited"')
                       .replace('state = "active"', 'state = "abuse_suspended"'))
        hup()
        suspended = quick(sipp, lab, "susp", target, "1001", "1002", c4, "fresh-1001",
                          scenario="edge_uac_forbidden.xml")
        assert up.wait(60) == 0, up.errors() + edge.log()[-3000:]
        log = edge.log()
        calls = edge.wait_calls(4)
    finally:
        edge.stop()
    assert old_pw.proc.returncode != 0, "the old password still works after the reload"
    # the INVITE with the old password's digest was challenged again, not answered
    assert old_pw.messages().count("SIP/2.0 407") >= 2, old_pw.messages()[-2000:]
    assert new_pw.proc.returncode == 0, new_pw.errors() + log[-3000:]
    assert "recording on" in log, log[-3000:]
    assert f"reload refused, the configuration in force is kept: {cfg}:{line}: account.plan" \
        in log, log[-3000:]
    assert still.proc.returncode == 0, still.errors() + log[-3000:]
    assert suspended.proc.returncode == 0, suspended.errors() + log[-3000:]
    # the call in progress lived through the three reloads and ended with its own BYE
    ended = next(c for c in calls if c["caller"] == "1003")
    assert ended["end_cause"] == "caller-bye" and ended["duration_s"] >= 20, ended
    assert "Traceback" not in log, log[-4000:]


@pytest.mark.timeout(120)
def test_jitter_buffer_metrics_of_a_bridged_leg(tmp_path: Path, lab: Any, sipp: Any) -> None:
    """A call to the echo test (600) goes through the bridge, whose leg has a jitter buffer:
    its playout delay and its counters show on /metrics while the call is up."""
    edge_port, http_port, c1 = lab.take_ports(3)
    (media,) = media_ports(36700, 1)
    write_alaw(tmp_path / "uac.alaw", 1000, 1)
    edge = EdgeProcess(tmp_path / "edge", edge_port, RTP, http_port=http_port).start()
    target = f"127.0.0.1:{edge_port}"
    try:
        uac = talk(sipp, lab, "echo", target, "1001", "600", c1, media, 5000)
        live = wait_until(lambda: (m := metrics(http_port))
                          .get(("softphone_jitter_buffer_delay_ms", ()), 0) > 0 and m)
        assert uac.wait(60) == 0, uac.errors() + edge.log()[-3000:]
    finally:
        edge.stop()
    assert live, "no jitter buffer delay on /metrics during the echo call"
    assert live["softphone_calls_active", ()] == 1
    assert live["softphone_jitter_buffer_delay_ms", ()] >= 20  # jitter_min_ms of the config
    assert ("softphone_jitter_buffer_packets", (("kind", "frames_concealed"),)) in live
    assert live["softphone_rtp_packets_total", (("direction", "sent"),)] > 0  # the echo
