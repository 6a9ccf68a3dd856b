"""The policy guard's limits acted on by the running edge, on the wire with sipp.

Every test starts ``softphone edge`` with its own account settings (``[account]`` of the edge
configuration) and a small policy file written from the embedded configs/policy.toml with a
few thresholds lowered, so that a limit is reached in seconds: SMART contacts 3, automated
dialing flagged after 5 attempts, one short-call breach day suspends, trial minutes 0.1 (6 s).
sipp stands for the phones (``limits_uac*.xml``, ``limits_register.xml``) and for the provider
behind the trunk (``limits_provider.xml`` grants the upstream REGISTERs and answers calls,
logging each number it is asked for; ``limits_trunk_uac.xml`` calls a DID from the trunk's
address). What is checked is what crossed the wire (sipp's -trace_msg: status, reason,
Warning, Retry-After, SDP) and what the edge wrote: the audit log (rule id and clause of each
decision) and calls.jsonl (billable).
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from lab.edge_proc import EdgeProcess
from softphone.policy.config import CLAUSE_RE

from softphone.configfile import ConfigText

pytestmark = pytest.mark.lab

RTP = (21000, 21999)
LOCATION = '{ country = "FR", city = "Paris", street = "Rue de Rivoli", number = "1", ' \
           'postcode = "75001" }'


# ------------------------------------------------------------------ configuration

def policy_file(path: Path, changes: dict[str, dict[str, str]]) -> Path:
    """The embedded policy with ``{table: {key: toml value}}`` replaced, key by key, inside
    that table only (the first ``key =`` line after its header)."""
    text = ConfigText.embedded("policy.toml").text
    for table, keys in changes.items():
        header = re.search(rf"^\[{re.escape(table)}\]\s*$", text, re.M)
        assert header is not None, table
        for key, value in keys.items():
            line = re.compile(rf"^{re.escape(key)}\s*=.*$", re.M)
            m = line.search(text, header.end())
            assert m is not None, (table, key)
            text = text[:m.start()] + f"{key} = {value}" + text[m.end():]
    path.write_text(text)
    return path


def edge_file(path: Path, account: dict[str, str], users: list[dict[str, str]],
              extra: str = "") -> Path:
    """An edge configuration: ``[account]`` keys (TOML values) and ``[[users]]`` with the lab
    password convention (demo-EXT locally, up-ACCOUNT upstream)."""
    lines = ["[sip]", "t1_ms = 200", "", "[account]"]
    lines += [f"{k} = {v}" for k, v in account.items()]
    lines += ["", extra, ""]
    for u in users:
        lines += ["[[users]]", f'ext = "{u["ext"]}"', f'password = "demo-{u["ext"]}"']
        if "trunk_user" in u:
            lines += [f'trunk_user = "{u["trunk_user"]}"',
                      f'trunk_password = "up-{u["trunk_user"]}"']
        lines += [f"{k} = {v}" for k, v in u.items() if k not in ("ext", "trunk_user")]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def trunk_user(ext: str, did: str, **more: str) -> dict[str, str]:
    return {"ext": ext, "trunk_user": f"331000{ext}", "did": f'"{did}"', **more}


# ------------------------------------------------------------------ processes

def start_edge(tmp_path: Path, lab: Any, cfg: Path, policy: Path, *,
               trunk_port: int | None = None) -> EdgeProcess:
    (edge_port,) = lab.take_ports(1)
    extra = ["--config", str(cfg), "--policy", str(policy)]
    if trunk_port is not None:
        extra += ["--trunk", f"sip:127.0.0.1:{trunk_port}"]
    return EdgeProcess(tmp_path / "edge", edge_port, RTP, extra=extra).start()


def wait_for(pred: Any, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.1)
    return bool(pred())


def answering(sipp: Any, lab: Any, port: int, name: str) -> Any:
    """limits_provider.xml on ``port``: answers every call (and REGISTER) it gets."""
    (media,) = lab.take_ports(1)
    proc = sipp.start(name, ["-sf", str(lab.scenarios / "limits_provider.xml"),
                             "-i", "127.0.0.1", "-p", str(port), "-mi", "127.0.0.1",
                             "-mp", str(media)], trace_logs=True, trace_msg=True, wall=120)
    lab.wait_udp_listening(port)
    return proc


def provider(sipp: Any, lab: Any, edge: EdgeProcess, trunk_port: int, name: str = "provider"
             ) -> Any:
    """The provider on the trunk port, once every upstream account is registered there."""
    prov = answering(sipp, lab, trunk_port, name)

    def registered() -> bool:
        regs = (edge.status().get("trunk") or {}).get("registrations", {})
        return bool(regs) and all(r.get("state") == "registered" for r in regs.values())

    assert wait_for(registered, 15), edge.status()
    return prov


def dial(sipp: Any, lab: Any, edge: EdgeProcess, name: str, caller: str, number: str, *,
         scenario: str = "limits_uac.xml", calls: int = 1, hold_ms: int = 0,
         wall: float = 40) -> list[Message]:
    """``caller`` dials ``number`` (``calls`` times, one after the other, each answered call
    held ``hold_ms``); the responses to its authenticated INVITEs, as the caller saw them."""
    (port,) = lab.take_ports(1)
    target = f"127.0.0.1:{edge.sip_port}"
    proc = sipp.start(name, [target, "-sf", str(lab.scenarios / scenario), "-s", number,
                             "-i", "127.0.0.1", "-p", str(port), "-au", caller,
                             "-ap", f"demo-{caller}", "-set", "user", caller,
                             "-auth_uri", f"{number}@{target}", "-m", str(calls), "-l", "1",
                             "-d", str(hold_ms), "-timeout_error"], wall=wall,
                      trace_msg=True)
    assert proc.wait(wall) == 0, proc.errors()[-3000:] + edge.log()[-3000:]
    return finals(proc.messages(), "INVITE", cseq=2)


def register(sipp: Any, lab: Any, edge: EdgeProcess, name: str, user: str, *,
             source: str = "127.0.0.1", ua: str = "sipp-phone/1.0") -> Message:
    """``user`` registers from ``source``; the edge's final answer to the signed REGISTER."""
    (port, contact) = lab.take_ports(2)
    proc = sipp.start(name, [f"127.0.0.1:{edge.sip_port}", "-sf",
                             str(lab.scenarios / "limits_register.xml"), "-i", source,
                             "-p", str(port), "-au", user, "-ap", f"demo-{user}",
                             "-set", "user", user, "-set", "cport", str(contact),
                             "-set", "ua", ua, "-m", "1", "-timeout_error"],
                      wall=20, trace_msg=True)
    assert proc.wait(20) == 0, proc.errors() + edge.log()[-3000:]
    (answer,) = finals(proc.messages(), "REGISTER", cseq=2)
    return answer


# ------------------------------------------------------------------ what crossed the wire

class Message:
    """One SIP response as sipp received it: status line, headers (all values), body."""

    def __init__(self, text: str) -> None:
        head, _, self.body = text.replace("\r\n", "\n").partition("\n\n")
        first, *rest = head.split("\n")
        self.status = int(first.split()[1])
        self.reason = first.split(" ", 2)[2].strip()
        self.headers: dict[str, list[str]] = {}
        for line in rest:
            name, _, value = line.partition(":")
            self.headers.setdefault(name.strip().lower(), []).append(value.strip())

    def header(self, name: str) -> str:
        values = self.headers.get(name.lower(), [])
        return values[0] if values else ""

    def __repr__(self) -> str:
        return f"<{self.status} {self.reason} {self.headers}>"


def finals(log: str, method: str, *, cseq: int) -> list[Message]:
    """The final responses received for ``cseq method``, one per call (retransmissions of
    the same response are one)."""
    out: dict[tuple[str, int], Message] = {}
    for block in re.split(r"^-{20,}.*$", log, flags=re.M):
        if "message received" not in block:
            continue
        text = block.split("\n", 2)[2].strip("\n") if block.count("\n") >= 2 else ""
        if not text.startswith("SIP/2.0 "):
            continue
        msg = Message(text)
        if msg.status < 200 or msg.header("cseq") != f"{cseq} {method}":
            continue
        out.setdefault((msg.header("call-id"), msg.status), msg)
    return list(out.values())


def audit(edge: EdgeProcess) -> list[dict[str, Any]]:
    path = edge.data_dir / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def decisions(edge: EdgeProcess, rule: str, **match: Any) -> list[dict[str, Any]]:
    """Audited decisions of ``rule`` (with its clause) matching ``match``."""
    out = [a for a in audit(edge) if a.get("rule_id") == rule
           and all(a.get(k) == v for k, v in match.items())]
    assert all(CLAUSE_RE.fullmatch(a["clause"]) for a in out), out
    return out


def warned(edge: EdgeProcess, rule: str, audience: str) -> list[dict[str, Any]]:
    return [w for a in audit(edge) for w in a.get("warnings", [])
            if w["rule_id"] == rule and w["audience"] == audience]


def warning_text(msg: Message) -> str:
    """The text of a ``Warning: 399 <agent> "<text>"`` header (RFC 3261 §20.43)."""
    m = re.fullmatch(r'399 (\S+) "(.*)"', msg.header("warning"))
    assert m is not None, msg
    return m.group(2)


def provider_numbers(prov: Any) -> list[str]:
    return re.findall(r"invite to=(\S+)", prov.logs())


# ------------------------------------------------------------------ tests

@pytest.mark.timeout(90)
def test_registration_rules_and_mrcp(tmp_path: Path, lab: Any, sipp: Any) -> None:
    """R-EMERG-6, R-ACCT-1, R-ACCT-2 at REGISTER; R-TECH-9 on INVITE between two users."""
    policy = policy_file(tmp_path / "policy.toml", {"accounts": {"pbx_action": '"reject"'}})
    cfg = edge_file(tmp_path / "edge.toml", {"emergency": "false"}, [
        {"ext": "1001", "emergency": "true", "location": LOCATION},
        {"ext": "1002"}, {"ext": "1003"}, {"ext": "1004"}])
    edge = start_edge(tmp_path, lab, cfg, policy)
    try:
        # R-EMERG-6: the user without the service is told in the 200 OK, the other is not
        with_service = register(sipp, lab, edge, "reg1001", "1001")
        without = register(sipp, lab, edge, "reg1002", "1002")
        assert with_service.status == 200 and not with_service.header("warning"), with_service
        assert without.status == 200, without
        assert warning_text(without) == ("Emergency calls are not available from this line. "
                                         "Hang up and call from a mobile phone or a landline.")
        # R-ACCT-1: one user from two networks at once (127.0.0.0/24 and 127.0.1.0/24)
        assert register(sipp, lab, edge, "reg1004a", "1004").status == 200
        there = register(sipp, lab, edge, "reg1004b", "1004", source="127.0.1.1")
        assert there.status == 200, there
        # R-ACCT-2: a PBX's User-Agent is refused (pbx_action = "reject"), nothing is stored
        pbx = register(sipp, lab, edge, "reg1003", "1003", ua="Asterisk PBX 18.20.0")
        assert (pbx.status, pbx.reason) == (403, "Switches Not Allowed"), pbx
        (unbound,) = dial(sipp, lab, edge, "to1003", "1001", "1003")
        assert unbound.status == 480, unbound
        # R-TECH-9: an offer of MRCP alone is refused with the configured status
        (mrcp,) = dial(sipp, lab, edge, "mrcp", "1001", "1002", scenario="limits_uac_mrcp.xml")
        assert (mrcp.status, mrcp.reason) == (488, "MRCP Not Supported"), mrcp
        assert warning_text(mrcp) == "This service is not supported.", mrcp
        # MRCP next to audio: the call goes through, the MRCP m-line answered with port 0
        (uas_port,) = lab.take_ports(1)
        uas = sipp.start("uas1002", ["-sf", str(lab.scenarios / "edge_uas_answer.xml"),
                                     "-i", "127.0.0.1", "-p", str(uas_port), "-m", "1"],
                         wall=40)
        lab.wait_udp_listening(uas_port)
        reg = sipp.start("rereg1002", [f"127.0.0.1:{edge.sip_port}", "-sf",
                                       str(lab.scenarios / "edge_register.xml"),
                                       "-i", "127.0.0.1", "-p", str(lab.take_ports(1)[0]),
                                       "-au", "1002", "-ap", "demo-1002", "-set", "user",
                                       "1002", "-set", "cport", str(uas_port), "-m", "1",
                                       "-timeout_error"], wall=20)
        assert reg.wait(20) == 0, reg.errors()
        (both,) = dial(sipp, lab, edge, "mrcpaudio", "1001", "1002",
                       scenario="limits_uac_mrcp_audio.xml")
        assert uas.wait(20) == 0, uas.errors()
        st = edge.wait_idle()
    finally:
        edge.stop()
    assert st.get("live_calls") == 0 and st.get("ports_in_use") == 0, st
    assert both.status == 200, both
    mlines = re.findall(r"^m=(\S+) (\d+) (\S+)", both.body, re.M)
    assert [(m, p != "0", proto) for m, p, proto in mlines] == [
        ("audio", True, "RTP/AVP"), ("application", False, "TCP/MRCPv2")], both.body
    # the audit: every decision with its rule and clause
    told = {a["user_id"] for a in decisions(edge, "R-ACCT-1", point="registration")
            if any(w["rule_id"] == "R-EMERG-6" for w in a.get("warnings", []))}
    assert told == {"1002", "1004"}, audit(edge)  # every user but 1001, which has the service
    places = [a for a in decisions(edge, "R-ACCT-1", point="registration")
              if a.get("user_id") == "1004"]
    assert [a["details"]["places"] for a in places] == ["1", "2"], places
    assert len(warned(edge, "R-ACCT-1", "admin")) == 1, audit(edge)
    (refused,) = decisions(edge, "R-ACCT-2", action="reject")
    assert refused["details"]["user_agent"] == "Asterisk PBX 18.20.0", refused
    (tech,) = decisions(edge, "R-TECH-9", action="reject")
    assert tech["sip_status"] == 488, tech
    allowed = [a for a in decisions(edge, "R-CALLS-1", action="allow")
               if a.get("strip_media") == [1]]
    assert len(allowed) == 2, audit(edge)  # the caller's side and the callee's


@pytest.mark.timeout(120)
def test_outbound_limits_through_the_trunk(tmp_path: Path, lab: Any, sipp: Any) -> None:
    """R-NUM-3, R-CLI-1/2, R-LIMIT-4 and R-ACCT-3 on calls that would leave by the trunk."""
    (trunk_port,) = lab.take_ports(1)
    policy = policy_file(tmp_path / "policy.toml", {
        "limits.smart": {"max_contacts": "3", "warn_at": "3"},
        "accounts.automated_dialing": {"max_attempts": "5", "gap_streak": "50"}})
    cfg = edge_file(tmp_path / "edge.toml",
                    {"plan": '"unlimited"', "smart_pack": "true", "sip_option": "true"},
                    [trunk_user("1001", "+33123450001"), trunk_user("1002", "+12125550123"),
                     trunk_user("1003", "+33123450003"), {"ext": "1004"}])
    edge = start_edge(tmp_path, lab, cfg, policy, trunk_port=trunk_port)
    try:
        prov = provider(sipp, lab, edge, trunk_port)
        # R-NUM-3: a blocked special number (FR 0899) never reaches the provider
        (special,) = dial(sipp, lab, edge, "special", "1001", "+33899123456")
        # R-CLI-1: a US caller ID towards France; R-CLI-2: a French one towards Switzerland
        (eea,) = dial(sipp, lab, edge, "cli1", "1002", "+33123456701")
        (swiss,) = dial(sipp, lab, edge, "cli2", "1001", "+41441234567")
        (home,) = dial(sipp, lab, edge, "home", "1001", "+33123456702")
        # R-LIMIT-4: the fourth distinct number of the month is refused, a known one is not
        (fourth,) = dial(sipp, lab, edge, "fourth", "1001", "+33123456703")
        (known,) = dial(sipp, lab, edge, "known", "1001", "+33123456701")
        # R-ACCT-3: six attempts in a row (to a user with no phone: 480 each); the sixth is
        # throttled as automated dialing
        robot = dial(sipp, lab, edge, "robot", "1003", "1004", calls=6)
        edge.wait_idle()
    finally:
        edge.stop()
    prov.stop()
    assert (special.status, special.reason) == (403, "Special Number Not Routable"), special
    assert warning_text(special) == "This number cannot be reached from this line."
    assert [m.status for m in (eea, swiss, home, known)] == [200] * 4
    # the caller is told on the 200 OK that the call goes ahead but is charged
    assert "only when presenting an EEA number: this call is charged" in warning_text(eea)
    assert "only when presenting a Swiss number: this call is charged" in warning_text(swiss)
    assert "new contacts left this month" in warning_text(home)
    assert (fourth.status, fourth.reason) == (403, "Monthly Contact Limit Reached"), fourth
    assert "monthly limit of distinct numbers" in warning_text(fourth)
    assert provider_numbers(prov) == ["+33123456701", "+41441234567", "+33123456702",
                                      "+33123456701"], prov.logs()
    assert [m.status for m in robot] == [480] * 5 + [403], robot
    throttled = robot[-1]
    assert throttled.reason == "Automated Dialing Throttled", throttled
    assert 50 <= int(throttled.header("retry-after")) <= 60, throttled
    assert "too quickly" in warning_text(throttled)
    # calls.jsonl: both caller-ID cases charged, the call from and to France not
    billed = {c["callee"]: (c["billable"], c["policy"]) for c in edge.calls()
              if c["status"] == 200}
    assert billed["+41441234567"] == (True, ["R-CLI-2"]), billed
    # not charged; the third distinct contact of three is warned about (warn_at = 3)
    assert billed["+33123456702"] == (False, ["R-LIMIT-4"]), billed
    first_eea = [c for c in edge.calls() if c["callee"] == "+33123456701"]
    assert [(c["caller"], c["billable"]) for c in first_eea] == [("1002", True),
                                                                  ("1001", False)], first_eea
    # the audit: each refusal under its rule with its clause, the billing flags as evidence
    assert decisions(edge, "R-NUM-3", action="reject")[0]["sip_status"] == 403
    assert decisions(edge, "R-LIMIT-4", action="reject")[0]["details"]["contacts"] == "3"
    (robot_d,) = decisions(edge, "R-ACCT-3", action="reject")
    assert robot_d["retry_after_s"] == int(throttled.header("retry-after")), robot_d
    assert len([a for a in decisions(edge, "R-CALLS-1", action="allow") if a.get("billable")
                ]) == 2
    assert len(warned(edge, "R-CLI-1", "user")) == 1 and len(warned(edge, "R-CLI-2", "user")) == 1


STATES = {  # state: (rule, reason of the outbound refusal, REGISTER status)
    "billing_suspended": ("R-BILL-10", "Account Suspended", 200),
    "terminated": ("R-LIFE-5", "Account Terminated", 403),
    "pending_kyc": ("R-LIMIT-8", "Account Suspended", 200),  # identity proofs not provided
    "unlimited_suspended": ("R-LIMIT-3", "", 200),
}


@pytest.mark.timeout(90)
@pytest.mark.parametrize("state", sorted(STATES))
def test_account_states(tmp_path: Path, lab: Any, sipp: Any, state: str) -> None:
    """A suspended account registers (so that its lines keep emergency calls) but its outbound
    calls get 403 with the reason, and the trunk's call to its DID 480; a terminated account
    cannot even register. The unlimited plan suspended: calls go on, charged."""
    rule, reason, reg_status = STATES[state]
    (trunk_port,) = lab.take_ports(1)
    policy = policy_file(tmp_path / "policy.toml", {})
    cfg = edge_file(tmp_path / "edge.toml", {"state": f'"{state}"'},
                    [trunk_user("1001", "+33123450001"), trunk_user("1002", "+33123450002")])
    edge = start_edge(tmp_path, lab, cfg, policy, trunk_port=trunk_port)
    try:
        prov = provider(sipp, lab, edge, trunk_port)
        reg = register(sipp, lab, edge, "reg1001", "1001")
        (out,) = dial(sipp, lab, edge, "out", "1001", "+33123456789")
        prov.stop()
        inbound = None
        if reason:
            (media,) = lab.take_ports(1)
            call = sipp.start("inbound", [f"127.0.0.1:{edge.sip_port}", "-sf",
                                          str(lab.scenarios / "limits_trunk_uac.xml"),
                                          "-s", "+33123450002", "-i", "127.0.0.1",
                                          "-p", str(trunk_port), "-mp", str(media), "-m", "1",
                                          "-timeout_error"], wall=20, trace_msg=True)
            assert call.wait(20) == 0, call.errors() + edge.log()[-3000:]
            (inbound,) = finals(call.messages(), "INVITE", cseq=1)
        edge.wait_idle()
    finally:
        edge.stop()
    assert reg.status == reg_status and (reg_status == 200 or reg.reason == reason), reg
    if not reason:
        assert out.status == 200, out
        assert provider_numbers(prov) == ["+33123456789"]
        (rec,) = edge.calls()
        assert rec["billable"] is True and rec["policy"] == [rule], rec
        return
    assert (out.status, out.reason) == (403, reason), out
    assert warning_text(out).startswith("Outgoing calls are suspended on this account.")
    assert provider_numbers(prov) == []
    assert inbound is not None and (inbound.status, inbound.reason) == (
        480, "Temporarily Unavailable"), inbound
    refused = decisions(edge, rule, action="reject")
    assert sorted((a["point"], a["sip_status"]) for a in refused) == sorted(
        [("call_attempt", 403), ("call_attempt", 480)]
        + ([("registration", 403)] if reg_status == 403 else [])), refused


@pytest.mark.timeout(90)
def test_short_calls_suspend_the_unlimited_plan(tmp_path: Path, lab: Any, sipp: Any) -> None:
    """R-LIMIT-1 + R-LIMIT-3: a burst of calls under 15 s whose average *reaches* the threshold
    (2 calls, threshold 2, the shipped ``>=``) makes a breach day; one breach day (lowered
    from three) suspends the unlimited plan for 7 calendar days of the account's time zone
    (New York here), the admin told until when: the next outbound call goes on, charged
    (Warning on its 200 OK, billable with R-LIMIT-3 in calls.jsonl); 112 as ever. R-LIMIT-2
    on the same calls: with the fair-use limit lowered to 8.64 s of conversation a day for
    the one seat, the admin is warned near it and past it, and no call is refused for it."""
    trunk_port, psap_port = lab.take_ports(2)
    policy = policy_file(tmp_path / "policy.toml", {
        "limits.short_calls": {"threshold": "2", "warn_at_days": "[]", "suspend_at_days": "1"},
        "limits.fair_use": {"baseline_rate": "0.0001", "multiple": "1", "warn_fraction": "0.1",
                            "window_days": "1"}})
    cfg = edge_file(tmp_path / "edge.toml", {"timezone": '"America/New_York"'},
                    [trunk_user("1001", "+33123450001", emergency="true", location=LOCATION)],
                    extra=f'[emergency]\nroute = "sip:sos@127.0.0.1:{psap_port}"')
    edge = start_edge(tmp_path, lab, cfg, policy, trunk_port=trunk_port)
    try:
        prov = provider(sipp, lab, edge, trunk_port)
        psap = answering(sipp, lab, psap_port, "psap")
        burst = dial(sipp, lab, edge, "burst", "1001", "+33123456789", calls=2, hold_ms=4500)
        (after,) = dial(sipp, lab, edge, "after", "1001", "+33123456788")
        # emergency calls stay available through the suspension
        (sos,) = dial(sipp, lab, edge, "sos", "1001", "112")
        edge.wait_idle()
    finally:
        edge.stop()
    prov.stop()
    psap.stop()
    assert sos.status == 200, sos
    assert len(re.findall(r"invite to=", psap.logs())) == 1, psap.logs()
    assert len(decisions(edge, "R-EMERG-1", action="route_emergency")) == 1
    assert [m.status for m in burst] == [200, 200], burst
    # the unlimited plan suspended: the call goes through, the caller told it is charged
    assert after.status == 200 and not after.header("retry-after"), after
    assert "the unlimited plan is suspended until" in warning_text(after), after
    assert "this call is charged" in warning_text(after), after
    assert provider_numbers(prov) == ["+33123456789"] * 2 + ["+33123456788"]
    charged = {c["callee"]: (c["billable"], c["policy"]) for c in edge.calls()
               if c["callee"] != "112"}
    assert charged == {"+33123456789": (False, []), "+33123456788": (True, ["R-LIMIT-3"])}, \
        charged
    # the admin is told once, with the end: 7 calendar days later, New York wall-clock time
    (told,) = [w["message"] for w in warned(edge, "R-LIMIT-3", "admin")]
    m = re.search(r"until (\d{4}-\d\d-\d\d \d\d:\d\d) (E[SD]T)", told)
    assert m is not None, told
    ny = ZoneInfo("America/New_York")
    expected = datetime.now(ny) + timedelta(days=7)  # aware + timedelta: wall clock
    end = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M").replace(tzinfo=ny)
    assert abs((end - expected.replace(second=0, microsecond=0)).total_seconds()) <= 120, told
    assert not decisions(edge, "R-LIMIT-1", action="reject")
    assert not decisions(edge, "R-LIMIT-3", action="reject")
    # fair use: 4.5 s of talk is past 10 % of the limit, 9 s past the limit itself
    fair = [w["message"] for w in warned(edge, "R-LIMIT-2", "admin")]
    assert len(fair) >= 2 and "near the fair-use limit" in fair[0], fair
    assert all("fair use exceeded" in f for f in fair[1:]), fair
    assert not decisions(edge, "R-LIMIT-2", action="reject")


@pytest.mark.timeout(90)
def test_trial_seats_and_minutes(tmp_path: Path, lab: Any, sipp: Any) -> None:
    """R-LIMIT-7: the second user of a one-seat trial is refused at REGISTER; a trial call is
    ended by the edge when the minutes (0.1 = 6 s) are up, BYE to both legs; then refused."""
    (trunk_port,) = lab.take_ports(1)
    policy = policy_file(tmp_path / "policy.toml", {"limits.trial": {
        "max_users": "1", "minutes_per_user": "0.1"}})
    cfg = edge_file(tmp_path / "edge.toml", {"trial": "true"},
                    [trunk_user("1001", "+33123450001"), trunk_user("1002", "+33123450002")])
    edge = start_edge(tmp_path, lab, cfg, policy, trunk_port=trunk_port)
    try:
        prov = provider(sipp, lab, edge, trunk_port)
        first = register(sipp, lab, edge, "reg1001", "1001")
        second = register(sipp, lab, edge, "reg1002", "1002")
        started = time.monotonic()
        (held,) = dial(sipp, lab, edge, "held", "1001", "+33123456789",
                       scenario="limits_uac_held.xml")
        lasted = time.monotonic() - started
        (used_up,) = dial(sipp, lab, edge, "usedup", "1001", "+33123456788")
        edge.wait_idle()
    finally:
        edge.stop()
    prov.stop()
    assert first.status == 200, first
    assert (second.status, second.reason) == (403, "Trial User Limit Reached"), second
    assert warning_text(second) == "The trial is limited to five users."
    assert held.status == 200, held
    assert 5.5 <= lasted <= 12, lasted
    (rec,) = [c for c in edge.calls() if c["status"] == 200]
    assert rec["end_cause"] == "time-limit" and 5.5 <= rec["duration_s"] <= 7.5, rec
    assert "bye" in prov.messages().lower() and provider_numbers(prov) == ["+33123456789"]
    assert (used_up.status, used_up.reason) == (403, "Trial Minutes Used Up"), used_up
    (seat,) = decisions(edge, "R-LIMIT-7", point="registration")
    assert seat["sip_status"] == 403, seat
    answers = [a for a in audit(edge) if a.get("point") == "answer"]
    assert [a.get("max_duration_s") for a in answers] == [6], answers
