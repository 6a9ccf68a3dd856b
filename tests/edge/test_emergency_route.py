"""Emergency facts of the edge (R-EMERG): per-user service and location in the configuration,
the guard's emergency decision as the edge asks for it, and the INVITE body that carries the
location (RFC 6442 §4.1, multipart/mixed of RFC 5621), read back with the standard library's
MIME parser."""

from __future__ import annotations

import email
import email.policy
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from softphone.policy import PolicyGuard
from softphone.policy.admission import CallAdmission
from softphone.policy.config import load_default
from softphone.policy.decision import Action

from softphone.configfile import ConfigError
from softphone.edge.app import check_extensions, policy_users
from softphone.edge.config import EdgeConfig, load_edge_config
from softphone.edge.emergency import multipart_mixed
from softphone.media.bridge import FrameSource
from softphone.media.prompts import EdgePrompts, linear_resample, sit_tone
from softphone.media.tone import read_wav, rms, tone, tone_power_ratio

T0 = 1_768_989_600.0
CA = "{urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr}"

CONFIG = """\
[emergency]
route = "sip:sos@127.0.0.1:5099"

[[users]]
ext = "1001"
password = "demo-1001"
emergency = true
location = { country = "FR", city = "Paris", street = "Rue de Rivoli", number = "99", postcode = "75001" }

[[users]]
ext = "1002"
password = "demo-1002"
location = { country = "FR", latitude = 48.8566, longitude = 2.3522, radius_m = 30 }

[[users]]
ext = "1003"
password = "demo-1003"
emergency = true
"""


def load(tmp_path: Path, text: str) -> EdgeConfig:
    path = tmp_path / "edge.toml"
    path.write_text(text)
    return load_edge_config(path)


def test_users_carry_service_and_location(tmp_path: Path) -> None:
    cfg = load(tmp_path, CONFIG)
    assert cfg.emergency_route == "sip:sos@127.0.0.1:5099"
    u1, u2, u3 = cfg.users
    assert u1.emergency is True and u1.location is not None and u1.location.civic is not None
    assert (u1.location.civic.a3, u1.location.civic.rd, u1.location.civic.hno,
            u1.location.civic.pc) == ("Paris", "Rue de Rivoli", "99", "75001")
    assert u2.emergency is None and u2.location is not None and u2.location.point is not None
    assert u2.location.civic is None and u2.location.point.radius_m == 30.0
    assert u3.location is None
    users = policy_users(cfg)
    assert users["1001"].emergency_on and users["1001"].location == u1.location
    assert not users["1002"].emergency_on  # follows the account, off by default


@pytest.mark.parametrize(("bad", "key", "line"), [
    ('location = { country = "France", city = "Paris" }', "users[0].location.country", 4),
    ('location = { country = "FR" }', "users[0].location", 4),
    ('location = { country = "FR", town = "Paris" }', "users[0].location.town", 4),
    ('location = { country = "FR", latitude = 91.0, longitude = 2.0 }',
     "users[0].location.latitude", 4),
    ('location = { country = "FR", radius_m = 5 }', "users[0].location.radius_m", 4),
    ('location = "Paris"', "users[0].location", 4),
    ('emergency = "yes"', "users[0].emergency", 4),
])
def test_bad_user_emergency_facts_name_key_and_line(tmp_path: Path, bad: str, key: str,
                                                    line: int) -> None:
    text = f'[[users]]\next = "1001"\npassword = "demo-1001"\n{bad}\n'
    with pytest.raises(ConfigError) as err:
        load(tmp_path, text)
    assert err.value.key == key, err.value
    assert err.value.line == line, err.value


def test_bad_emergency_route_names_key_and_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, '[emergency]\nroute = "tel:112"\n')
    assert err.value.key == "emergency.route" and err.value.line == 2, err.value
    with pytest.raises(ConfigError) as err:
        load(tmp_path, '[emergency]\ngateway = "sip:sos@127.0.0.1"\n')
    assert err.value.key == "emergency.gateway", err.value


def admission(tmp_path: Path) -> CallAdmission:
    users = policy_users(load(tmp_path, CONFIG))
    return CallAdmission(PolicyGuard(load_default()), users.get)


def test_the_edge_asks_first_whether_a_number_is_an_emergency_code(tmp_path: Path) -> None:
    adm = admission(tmp_path)
    assert all(adm.is_emergency("1001", n) for n in ("112", "15", "17", "18", "115", "114",
                                                     "119", "191", "196", "197"))
    assert not adm.is_emergency("1001", "1002")
    assert not adm.is_emergency("1001", "0123456789")
    assert not adm.is_emergency("1001", "sip:alice@pbx")  # a name, not digits
    assert not adm.is_emergency("somebody", "112")          # not a local user
    assert adm.guard.held("1001") == 0                       # asking decides nothing


def test_routed_decision_carries_route_and_location(tmp_path: Path) -> None:
    adm = admission(tmp_path)
    d = adm.admit_decision("c1", "1001", "15", inbound_local=False, now=T0)
    assert d is not None and d.action is Action.ROUTE_EMERGENCY, d
    assert d.service_urn == "urn:service:sos.ambulance" and d.location is not None
    assert adm.admit("c2", "1001", "112", inbound_local=False, now=T0) is None  # never blocked
    assert adm.guard.held("1001") == 2


@pytest.mark.parametrize(("caller", "rule"), [("1002", "R-EMERG-1"), ("1003", "R-EMERG-3")])
def test_refused_decision_has_the_status_reason_and_notice(tmp_path: Path, caller: str,
                                                           rule: str) -> None:
    adm = admission(tmp_path)
    d = adm.admit_decision("c1", caller, "112", inbound_local=False, now=T0)
    assert d is not None and d.action is Action.REJECT and d.rule_id == rule, d
    assert (d.sip_status, d.reason_phrase) == (403, "Emergency Calls Not Available From This Line")
    assert d.announcement == "emergency-unavailable" and d.user_message
    assert adm.admit("c2", caller, "112", inbound_local=False, now=T0) == (
        403, "Emergency Calls Not Available From This Line")


def test_invite_body_is_multipart_mixed_with_sdp_and_pidf_lo(tmp_path: Path) -> None:
    d = admission(tmp_path).admit_decision("c1", "1001", "112", inbound_local=False, now=T0)
    assert d is not None and d.location is not None
    sdp = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" \
          b"m=audio 20000 RTP/AVP 8\r\n"
    body = multipart_mixed("b-1", sdp, d.location)
    msg = email.message_from_bytes(b"Content-Type: multipart/mixed;boundary=b-1\r\n\r\n" + body,
                                   policy=email.policy.compat32)
    assert not msg.defects, msg.defects
    parts = msg.get_payload()
    assert [p.get_content_type() for p in parts] == ["application/sdp", "application/pidf+xml"]
    assert parts[0].get_payload().encode() == sdp
    cid = d.location.geolocation.removeprefix("<cid:").removesuffix(">")
    assert parts[1]["Content-ID"] == f"<{cid}>"
    civic = ET.fromstring(parts[1].get_payload()).find(f".//{CA}civicAddress")
    assert civic is not None and civic.findtext(f"{CA}A3") == "Paris"


def test_the_fallback_notice_is_the_special_information_tone() -> None:
    source, seconds = sit_tone(16000, repeats=1)
    pcm = b""
    while (frame := source.next_frame(320)) is not None:
        pcm += frame
    assert abs(seconds - 1.99) < 0.01 and abs(len(pcm) / 32000 - seconds) < 0.03
    seg = 2 * 16000 * 330 // 1000
    for i, freq in enumerate((950.0, 1400.0, 1800.0)):
        assert tone_power_ratio(pcm[i * seg:(i + 1) * seg], 16000, freq) > 0.9
    assert not any(pcm[3 * seg:3 * seg + 32000 // 2])  # then silence


NOTICE = {"emergency-unavailable": "Emergency calls are not available from this line."}


def frames(source: FrameSource, n: int) -> bytes:
    out = b""
    while (frame := source.next_frame(n)) is not None:
        out += frame
    return out


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_the_notice_is_spoken_once_into_the_data_dir(tmp_path: Path) -> None:
    prompts = EdgePrompts(tmp_path / "prompts", NOTICE)
    prompts.prepare()
    wav = tmp_path / "prompts" / "emergency-unavailable.wav"
    pcm, rate = read_wav(wav)
    assert rate == 16000 and rms(pcm) > 300
    made = prompts("emergency-unavailable", 8000)
    assert made is not None
    source, seconds = made
    assert 1.5 < seconds < 10 and abs(len(frames(source, 160)) / 16000 - seconds) < 0.03
    before = wav.stat().st_mtime_ns
    EdgePrompts(tmp_path / "prompts", NOTICE).prepare()  # a restart keeps the file
    assert wav.stat().st_mtime_ns == before


def test_without_espeak_the_notice_is_the_special_information_tone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    prompts = EdgePrompts(tmp_path / "prompts", NOTICE)
    prompts.prepare()
    assert not (tmp_path / "prompts" / "emergency-unavailable.wav").exists()
    made = prompts("emergency-unavailable", 16000)
    assert made is not None
    pcm = frames(made[0], 320)
    assert tone_power_ratio(pcm[:2 * 16000 * 330 // 1000], 16000, 950.0) > 0.9
    assert prompts("busy", 16000) is None  # the edge plays only the notices it owns
    beep = prompts("recording-notice", 16000)  # the recorder warning tone instead of speech
    assert beep is not None
    beep_pcm = beep[0].next_frame(8000)
    assert beep_pcm is not None and tone_power_ratio(beep_pcm, 16000, 1400.0) > 0.9


def test_linear_resample_keeps_the_pitch() -> None:
    pcm = tone(1000.0, 22050, 22050)
    out = linear_resample(pcm, 22050, 16000)
    assert len(out) == 2 * 16000
    assert tone_power_ratio(out, 16000, 1000.0) > 0.95
    assert linear_resample(pcm, 16000, 16000) == pcm


def test_an_extension_that_is_an_emergency_number_is_refused_at_start(tmp_path: Path) -> None:
    text = CONFIG + '\n[[users]]\next = "17"\npassword = "demo-0017"\n'
    cfg = load(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        check_extensions(cfg, load_default())
    assert err.value.key == "users[3].ext" and err.value.line == text.count("\n") - 1, err.value
    assert "emergency number in FR" in str(err.value)
    (tmp_path / "clash.toml").write_text(text)
    check_extensions(load(tmp_path, CONFIG), load_default())  # 1001..1003 are fine
    # the edge itself says so and exits 2 before binding anything
    done = subprocess.run([sys.executable, "-m", "softphone", "edge", "--config",
                           str(tmp_path / "clash.toml"), "--sip-port", "0", "--tls-port", "0",
                           "--data-dir", str(tmp_path / "data")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "users[3].ext: 17 is an emergency number in FR" in done.stderr
    assert not (tmp_path / "data").exists()
