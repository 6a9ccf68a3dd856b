"""R-REC-2/3/4 through the running edge: the recording notice, the right to object, retention.

sipp phones do the signalling (digest, INVITE, BYE); each phone's audio is a test-owned RTP
socket named in its SDP (``RtpPhone``), so what the correspondent hears is checked on the
decoded audio: the spoken notice (its loudness envelope must follow the edge's prompt file) or,
without espeak-ng, the 1400 Hz recorder warning beeps. The recording is the WAV the edge wrote;
an objection is a real RFC 4733 key press; the purge job runs in an edge started under
libfaketime, months later.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import stat
import subprocess
import time
import wave
from pathlib import Path
from typing import Any

import pytest
from lab.audio import best_correlation, envelope, read_channel0, strongest_window
from lab.edge_proc import FAKETIME_LIB, EdgeProcess, days_later
from lab.edge_sipp import finish, media_call
from lab.rtp_phone import RtpPhone

RTP = (21000, 21999)
ROOT = Path(__file__).resolve().parents[2]
PJ_PYTHON = Path(os.environ.get("SOFTPHONE_PJSUA_PYTHON", ROOT / ".venv-pj" / "bin" / "python"))
PJ_PEER = Path(__file__).with_name("pjsua_peer.py")
USER_HZ, CORRESPONDENT_HZ, BEEP_HZ = 600.0, 1000.0, 1400.0

pytestmark = pytest.mark.skipif(not Path("/usr/bin/sipp").exists(), reason="sipp missing")


def edge_config(path: Path, *, off: tuple[str, ...] = ()) -> Path:
    """1001 and 1003 record their calls (unless listed in ``off``); 1002 and 1004 do not."""
    users = []
    for ext in ("1001", "1002", "1003", "1004"):
        rec = ext in ("1001", "1003") and ext not in off
        users.append(f'[[users]]\next = "{ext}"\npassword = "demo-{ext}"\n'
                     f'recording = {"true" if rec else "false"}\n')
    path.write_text("\n".join(users))
    return path


def audit(edge_dir: Path) -> list[dict[str, Any]]:
    path = edge_dir / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def notice_seconds(edge_dir: Path, edge: EdgeProcess) -> float:
    """How long the notice lasts: the spoken prompt the edge prepared, or its two beeps."""
    path = edge_dir / "prompts" / "recording-notice.wav"
    if path.exists():
        with wave.open(str(path), "rb") as w:
            return w.getnframes() / w.getframerate()
    assert "recording-notice: no speech" in edge.log(), edge.log()
    return 2.0


def assert_heard_notice(pcm: bytes, edge_dir: Path) -> None:
    path = edge_dir / "prompts" / "recording-notice.wav"
    if path.exists():
        prompt, rate = read_channel0(path)
        want, got = envelope(prompt, rate), envelope(pcm, 8000)
        assert len(got) >= 0.9 * len(want), (len(got), len(want))
        assert best_correlation(want, got) > 0.8, best_correlation(want, got)
    else:
        assert strongest_window(pcm, BEEP_HZ) > 0.6


def recordings(edge_dir: Path) -> list[Path]:
    folder = edge_dir / "recordings"
    return sorted(folder.glob("*.wav")) if folder.exists() else []


def decisions(records: list[dict[str, Any]], point: str) -> list[dict[str, Any]]:
    return [r for r in records if r.get("point") == point]


@pytest.mark.timeout(120)
def test_the_correspondent_hears_the_notice_before_the_recording_starts(
        tmp_path: Path, lab: Any, sipp: Any) -> None:
    """1001 records its calls and calls 1002: 1002 hears the notice (with the key that
    objects) as soon as it answers; the recording starts when the notice has been heard, holds
    both voices, lasts the call minus the notice, and is kept with no access for others (mode
    checked: owner and group only)."""
    edge_port, *ports = lab.take_ports(4)
    data = tmp_path / "edge"
    edge = EdgeProcess(data, edge_port, RTP,
                       extra=["--config", str(edge_config(tmp_path / "edge.toml"))]).start()
    notice_s = notice_seconds(data, edge)
    user = RtpPhone(USER_HZ, talk_after=notice_s + 1.0)
    corr = RtpPhone(CORRESPONDENT_HZ)
    try:
        uas, uac = media_call(sipp, lab, f"127.0.0.1:{edge_port}", "1001", "1002", ports,
                            user, corr)
        finish([(uas, uac)], edge)
        st = edge.wait_idle()
    finally:
        user.close()
        corr.close()
        edge.stop()
    assert st.get("live_calls") == 0 and st.get("ports_in_use") == 0, st
    # what the correspondent heard first is the notice ...
    assert corr.first_at is not None and user.first_at is not None
    assert_heard_notice(corr.pcm(corr.first_at, corr.first_at + notice_s + 1.0), data)
    # ... and then our user, talking once it was over
    assert strongest_window(corr.pcm(corr.first_at + notice_s + 2.0), USER_HZ) > 0.6
    # our user heard the correspondent all along
    assert strongest_window(user.pcm(user.first_at), CORRESPONDENT_HZ) > 0.6
    # the decisions, in order, each with its rule and clause
    records = audit(data)
    answer = [r for r in decisions(records, "answer") if r.get("notices")]
    assert len(answer) == 1 and answer[0]["rule_id"] == "R-REC-2" and answer[0]["clause"], records
    assert answer[0]["notices"] == [{"id": "recording-notice", "to": "correspondent"}]
    played = decisions(records, "notice_played")
    assert len(played) == 1 and played[0]["recording"][0]["action"] == "start", records
    started_after = played[0]["t"] - answer[0]["t"]
    assert started_after >= notice_s - 0.3, (started_after, notice_s)
    ends = [r for r in decisions(records, "call_end") if r.get("recording")]
    assert ends and ends[0]["recording"][0]["action"] == "stop", records
    # the recording: one file, owner and group only, both voices, as long as the call after
    # the notice
    files = recordings(data)
    assert len(files) == 1, files
    assert stat.S_IMODE(os.stat(files[0]).st_mode) & 0o007 == 0
    pcm, rate = read_channel0(files[0])
    assert rate == 16000
    seconds = len(pcm) / 2 / rate
    call = edge.calls()[0]
    talk = call["ended"] - call["answered"]
    assert abs(seconds - (talk - started_after)) < 1.0, (seconds, talk, started_after)
    assert strongest_window(pcm, CORRESPONDENT_HZ, rate) > 0.5
    assert strongest_window(pcm[len(pcm) // 2:], USER_HZ, rate) > 0.1


@pytest.mark.timeout(120)
def test_an_objection_key_stops_the_recording_and_deletes_it(
        tmp_path: Path, lab: Any, sipp: Any) -> None:
    """1004 calls 1003, who records: 1004 is the correspondent, hears the notice, then presses
    9 (RFC 4733). The recording stops and is deleted, the objection is audited, and the call
    itself goes on."""
    edge_port, *ports = lab.take_ports(4)
    data = tmp_path / "edge"
    edge = EdgeProcess(data, edge_port, RTP,
                       extra=["--config", str(edge_config(tmp_path / "edge.toml"))]).start()
    notice_s = notice_seconds(data, edge)
    corr = RtpPhone(CORRESPONDENT_HZ)
    user = RtpPhone(USER_HZ, talk_after=notice_s + 1.0)
    seen: dict[str, Any] = {}

    def object_after_the_notice() -> None:
        end = time.monotonic() + 20
        while corr.first_at is None and time.monotonic() < end:
            time.sleep(0.05)
        assert corr.first_at is not None, "no media from the edge"
        time.sleep(max(0.0, corr.first_at + notice_s + 2.0 - time.monotonic()))
        seen["before"] = recordings(data)
        corr.press("9")
        time.sleep(1.0)
        seen["after"] = recordings(data)

    try:
        uas, uac = media_call(sipp, lab, f"127.0.0.1:{edge_port}", "1004", "1003", ports,
                            corr, user, during=object_after_the_notice)
        finish([(uas, uac)], edge)
        st = edge.wait_idle()
    finally:
        user.close()
        corr.close()
        edge.stop()
    assert st.get("live_calls") == 0, st
    assert corr.first_at is not None
    assert_heard_notice(corr.pcm(corr.first_at, corr.first_at + notice_s + 1.0), data)
    # the recording was being written, and the key press removed it at once
    assert len(seen["before"]) == 1 and seen["after"] == [], seen
    assert recordings(data) == []
    records = audit(data)
    objection = decisions(records, "dtmf")
    assert len(objection) == 1, records
    assert objection[0]["rule_id"] == "R-REC-2" and objection[0]["clause"]
    assert objection[0]["recording"][0]["action"] == "stop_and_delete"
    assert objection[0]["details"]["recording_was"] == "on"
    # the call went on: the correspondent still heard our user after objecting
    pressed_at = corr.digits_sent[0][0]
    assert strongest_window(corr.pcm(pressed_at + 1.0), USER_HZ) > 0.6
    call = edge.calls()[0]
    assert call["status"] == 200 and call["end_cause"] == "caller-bye", call


@pytest.mark.timeout(120)
def test_a_correspondent_on_hold_hears_the_whole_notice_after_resuming(
        tmp_path: Path, lab: Any, sipp: Any) -> None:
    """1004 calls 1003, who records: 1004 is the correspondent and puts the call on hold
    (a=sendonly) 0.3 s after the answer, for 4 s. The edge answers recvonly and sends it
    nothing; the notice waits, goes on where it was after the resume, is heard whole, and the
    recording starts only once the rest of it has been sent."""
    hold_s = 4.0
    edge_port, *ports = lab.take_ports(4)
    data = tmp_path / "edge"
    edge = EdgeProcess(data, edge_port, RTP,
                       extra=["--config", str(edge_config(tmp_path / "edge.toml"))]).start()
    notice_s = notice_seconds(data, edge)
    corr = RtpPhone(CORRESPONDENT_HZ)
    user = RtpPhone(USER_HZ, talk_after=notice_s + hold_s + 2.0)
    try:
        uas, uac = media_call(sipp, lab, f"127.0.0.1:{edge_port}", "1004", "1003", ports,
                              corr, user, scenario="recording_uac_hold.xml")
        finish([(uas, uac)], edge)
        edge.wait_idle()
    finally:
        user.close()
        corr.close()
        edge.stop()
    # on the wire: the hold was answered recvonly, the resume sendrecv
    answers = {}
    for m in uac.messages().split("SIP/2.0 200 OK")[1:]:
        cseq = m.split("CSeq:")[1].split("\n")[0].split()
        if cseq[1] == "INVITE":
            answers[int(cseq[0])] = "a=recvonly" in m.split("-----")[0]
    assert answers == {2: False, 3: True, 4: False}, uac.messages()
    # nothing reached the correspondent while it held the call
    arrivals = [at for at, _pt, _p in corr.received]
    gap = max(b - a for a, b in zip(arrivals, arrivals[1:], strict=False))
    assert gap > hold_s - 0.6, gap
    # what it did receive opens with the whole notice, no piece of it lost in the hold
    assert_heard_notice(corr.pcm()[:int(2 * 8000 * (notice_s + 1.0))], data)
    # the recording started after the resume and the rest of the notice
    records = audit(data)
    (answer,) = [r for r in decisions(records, "answer") if r.get("notices")]
    (played,) = decisions(records, "notice_played")
    assert played["recording"][0]["action"] == "start", records
    started_after = played["t"] - answer["t"]
    assert started_after >= notice_s + hold_s - 0.6, (started_after, notice_s)
    (path,) = recordings(data)
    pcm, rate = read_channel0(path)
    call = edge.calls()[0]
    talk = call["ended"] - call["answered"]
    assert abs(len(pcm) / 2 / rate - (talk - started_after)) < 1.0, (len(pcm), talk)


def _pjsua_ok() -> bool:
    return PJ_PYTHON.exists() and subprocess.run(
        [str(PJ_PYTHON), "-c", "import pjsua2"], capture_output=True, timeout=30).returncode == 0


def write_tone_wav(path: Path, freq: float, secs: float, rate: int = 8000) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(int(8000 * math.sin(2 * math.pi * freq * i / rate)).to_bytes(
            2, "little", signed=True) for i in range(int(rate * secs))))


@pytest.mark.timeout(120)
@pytest.mark.skipif(not _pjsua_ok(), reason="pjsua2 venv (.venv-pj) missing: make lab-deps")
def test_a_real_phone_hears_the_notice_and_objects_from_its_keypad(
        tmp_path: Path, lab: Any, sipp: Any) -> None:
    """The correspondent is a pjsip phone (pjsua2): what it decoded and recorded starts with
    the notice; two seconds after it, its keypad's 9 (RFC 4733, as pjsip sends it) ends the
    recording, which the edge deletes."""
    edge_port, pj_port, _, uac_port = lab.take_ports(4)
    data = tmp_path / "edge"
    edge = EdgeProcess(data, edge_port, RTP,
                       extra=["--config", str(edge_config(tmp_path / "edge.toml"))]).start()
    notice_s = notice_seconds(data, edge)
    where = f"127.0.0.1:{edge_port}"
    tone, heard = tmp_path / "tone1000.wav", tmp_path / "pj_heard.wav"
    write_tone_wav(tone, CORRESPONDENT_HZ, 3)
    pj_log = tmp_path / "pj.log"
    seen: dict[str, list[Path]] = {}
    user = RtpPhone(USER_HZ, talk_after=notice_s + 1.0)
    with pj_log.open("w") as out:
        pj = subprocess.Popen(
            ["timeout", "-k", "3", "60", str(PJ_PYTHON), str(PJ_PEER), "answer",
             "--port", str(pj_port), "--user", "1002", "--password", "demo-1002",
             "--edge", where, "--tone-wav", str(tone), "--record", str(heard),
             "--secs", "20", "--rtp-port", "40300", "--dtmf", "9",
             "--dtmf-at", f"{notice_s + 2.0:.1f}"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 15
        while "READY" not in pj_log.read_text() and time.monotonic() < end:
            assert pj.poll() is None, pj_log.read_text()
            time.sleep(0.1)
        assert "READY" in pj_log.read_text(), pj_log.read_text()
        uac = sipp.start("uac", [
            where, "-sf", str(lab.scenarios / "recording_uac.xml"), "-s", "1002",
            "-i", "127.0.0.1", "-p", str(uac_port), "-au", "1001", "-ap", "demo-1001",
            "-set", "user", "1001", "-set", "mport", str(user.port),
            "-auth_uri", f"1002@{where}", "-m", "1", "-timeout_error"], trace_msg=True, wall=60)
        end = time.monotonic() + 30
        while "DTMF 9 sent" not in pj_log.read_text() and time.monotonic() < end:
            seen["before"] = recordings(data)
            time.sleep(0.2)
        time.sleep(1.0)
        seen["after"] = recordings(data)
        assert uac.wait(60) == 0, uac.errors() + edge.log()
        assert pj.wait(30) == 0, pj_log.read_text()
        edge.wait_idle()
    finally:
        user.close()
        if pj.poll() is None:
            pj.terminate()
            pj.wait(10)
        edge.stop()
    assert "DTMF 9 sent" in pj_log.read_text() and "RESULT OK" in pj_log.read_text()
    # the phone's own recording of what it heard opens with the notice
    pcm, rate = read_channel0(heard)
    path = data / "prompts" / "recording-notice.wav"
    if path.exists():
        prompt, prate = read_channel0(path)
        got = envelope(pcm[:int(2 * rate * (notice_s + 1.0))], rate)
        assert best_correlation(envelope(prompt, prate), got) > 0.8
    else:
        assert strongest_window(pcm[:int(2 * rate * 2.5)], BEEP_HZ, rate) > 0.6
    # the recording was being written, and the keypad's 9 deleted it
    assert len(seen["before"]) == 1 and seen["after"] == [], seen
    (objection,) = decisions(audit(data), "dtmf")
    assert objection["recording"][0]["action"] == "stop_and_delete", objection


@pytest.mark.timeout(120)
def test_an_objection_by_sip_info_deletes_the_recording_too(tmp_path: Path, lab: Any,
                                                             sipp: Any) -> None:
    """Phones that send keys as SIP INFO (application/dtmf-relay, Signal=9) object as well:
    sent two seconds after the notice has played (however long the notice is), the INFO gets
    its 200 on the wire and the recording that had started is gone."""
    edge_port, *ports = lab.take_ports(4)
    data = tmp_path / "edge"
    edge = EdgeProcess(data, edge_port, RTP,
                       extra=["--config", str(edge_config(tmp_path / "edge.toml"))]).start()
    notice_s = notice_seconds(data, edge)
    info_after_ms = int((notice_s + 2.0) * 1000)  # after the ACK: the scenario's <pause/>
    corr, user = RtpPhone(CORRESPONDENT_HZ), RtpPhone(USER_HZ)
    seen: list[list[Path]] = []

    def watch_the_recording() -> None:
        end = time.monotonic() + info_after_ms / 1000 + 10
        while not seen and time.monotonic() < end:
            if recordings(data):
                seen.append(recordings(data))
            time.sleep(0.1)

    try:
        uas, uac = media_call(sipp, lab, f"127.0.0.1:{edge_port}", "1004", "1003", ports,
                            corr, user, scenario="recording_uac_info.xml",
                            uac_extra=["-d", str(info_after_ms)], during=watch_the_recording)
        finish([(uas, uac)], edge)
        edge.wait_idle()
    finally:
        user.close()
        corr.close()
        edge.stop()
    # on the wire: the INFO went out and its own 200 came back (one message, no blank line)
    wire = uac.messages()
    assert re.search(r"^INFO sip:.*\r?\n(?:[^\r\n]+\r?\n)*?CSeq: 3 INFO\r?$", wire, re.M), wire
    assert re.search(r"^SIP/2\.0 200 .*\r?\n(?:[^\r\n]+\r?\n)*?CSeq: 3 INFO\r?$", wire,
                     re.M), wire
    # the recording had started, and the INFO deleted it
    assert seen and len(seen[0]) == 1, "the recording never started before the INFO"
    assert recordings(data) == []
    records = audit(data)
    played, dtmf = decisions(records, "notice_played"), decisions(records, "dtmf")
    assert len(played) == 1 and played[0]["recording"][0]["action"] == "start", records
    assert [d["recording"][0]["action"] for d in dtmf] == ["stop_and_delete"], records
    assert dtmf[0]["t"] > played[0]["t"], records


@pytest.mark.timeout(150)
@pytest.mark.skipif(FAKETIME_LIB is None, reason="libfaketime missing")
def test_recordings_are_purged_after_retention_or_after_the_option_goes_off(
        tmp_path: Path, lab: Any, sipp: Any) -> None:
    """Two recorded calls at once (1001 -> 1002, 1003 -> 1004). Then 1003's recording option
    is switched off in the configuration. Restarted 40 days later: both kept (retention is three
    months; the export window 30 days). Restarted 100 days later: 1001's is purged under
    R-REC-3, 1003's under R-REC-4, files and all, each audited."""
    edge_port, *ports = lab.take_ports(7)
    data = tmp_path / "edge"
    cfg = edge_config(tmp_path / "edge.toml")
    edge = EdgeProcess(data, edge_port, RTP, extra=["--config", str(cfg)]).start()
    target = f"127.0.0.1:{edge_port}"
    phones = [RtpPhone(USER_HZ), RtpPhone(CORRESPONDENT_HZ), RtpPhone(USER_HZ),
              RtpPhone(CORRESPONDENT_HZ)]
    try:
        a = media_call(sipp, lab, target, "1001", "1002", ports[0:3], phones[0], phones[1],
                     name="a")
        b = media_call(sipp, lab, target, "1003", "1004", ports[3:6], phones[2], phones[3],
                     name="b")
        finish([a, b], edge)
        edge.wait_idle()
    finally:
        for phone in phones:
            phone.close()
        edge.stop()
    kept = recordings(data)
    assert len(kept) == 2, kept
    off = edge_config(tmp_path / "edge-off.toml", off=("1003",))

    def restart(days: int) -> list[Path]:
        later = EdgeProcess(data, edge_port, RTP, extra=["--config", str(off)],
                            wrap=days_later(days))
        try:
            later.start()
            time.sleep(1.0)  # the purge job runs as the edge starts
            return recordings(data)
        finally:
            later.stop()

    assert restart(40) == kept
    records = audit(data)
    option = decisions(records, "recording_option")
    assert len(option) == 1 and option[0]["rule_id"] == "R-REC-4", records
    assert option[0]["details"] == {"scope": "user:1003", "enabled": "False"}
    assert "deleted on" in option[0]["warnings"][0]["message"]
    assert decisions(records, "purge") == []
    assert restart(100) == []
    purged = {r["user_id"]: r["rule_id"] for r in decisions(audit(data), "purge")}
    assert purged == {"1001": "R-REC-3", "1003": "R-REC-4"}, purged


def _syscalls(trace: Path) -> list[str]:
    return [line.split(None, 1)[1] for line in trace.read_text().splitlines()
            if line.split(None, 1)[0].isdigit() and len(line.split(None, 1)) == 2]


@pytest.mark.timeout(180)
@pytest.mark.skipif(FAKETIME_LIB is None or shutil.which("strace") is None,
                    reason="libfaketime or strace missing")
def test_deletes_are_durable_retried_and_the_folder_reconciled(
        tmp_path: Path, lab: Any, sipp: Any) -> None:
    """A recorded call (1001 -> 1002), then, edge stopped: its WAV cannot be removed (a
    directory stands in its place: unlink fails, even for root), and a WAV the ledger never
    heard of (an orphan) lies next to it. 100 days later the edge starts (faketime): the
    orphan, past retention, is deleted and audited; the failed delete is audited and the
    ledger keeps the recording; a day later it fails again and is audited again. With the file
    back, the next start deletes it, and strace on the edge shows the order: unlink, fsync of
    the recordings folder, then the ledger's write, then the audit line. After that nothing
    is left to retry."""
    edge_port, *ports = lab.take_ports(4)
    data = tmp_path / "edge"
    cfg = edge_config(tmp_path / "edge.toml")
    edge = EdgeProcess(data, edge_port, RTP, extra=["--config", str(cfg)]).start()
    phones = [RtpPhone(USER_HZ), RtpPhone(CORRESPONDENT_HZ)]
    try:
        finish([media_call(sipp, lab, f"127.0.0.1:{edge_port}", "1001", "1002", ports,
                           *phones)], edge)
        edge.wait_idle()
    finally:
        for phone in phones:
            phone.close()
        edge.stop()
    (kept,) = recordings(data)
    saved, orphan = tmp_path / "saved.wav", data / "recordings" / "lost-0123456789ab.wav"
    shutil.copy2(kept, saved)
    shutil.copy2(kept, orphan)
    kept.unlink()
    kept.mkdir()
    (kept / "in-the-way").write_bytes(b"")

    def restart(days: int, until: Any, trace: Path | None = None) -> list[dict[str, Any]]:
        wrap = days_later(days)
        if trace is not None:
            wrap = ["strace", "-f", "-y", "-qq", "-o", str(trace), "-e",
                    "trace=unlink,unlinkat,fsync,fdatasync,pwrite64,write", *wrap]
        later = EdgeProcess(data, edge_port, RTP, extra=["--config", str(cfg)], wrap=wrap)
        try:
            later.start(timeout=40)
            end = time.monotonic() + 15
            while not until(audit(data)) and time.monotonic() < end:
                time.sleep(0.2)
            return audit(data)
        finally:
            later.stop()

    def failed(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return decisions(records, "purge_failed")

    records = restart(100, lambda r: failed(r) and decisions(r, "purge"))
    (gone,) = decisions(records, "purge")
    assert gone["rule_id"] == "R-REC-3" and gone["details"]["orphan_file"] == orphan.name
    assert not orphan.exists() and kept.is_dir()
    (first,) = failed(records)
    assert first["rule_id"] == "R-REC-3" and "directory" in first["details"]["error"], first
    assert first["user_id"] == "1001" and first["details"]["retry"] == "next purge run"
    records = restart(101, lambda r: len(failed(r)) == 2)
    assert len(failed(records)) == 2 and len(decisions(records, "purge")) == 1, records
    shutil.rmtree(kept)
    shutil.copy2(saved, kept)
    trace = tmp_path / "edge.strace"
    records = restart(102, lambda r: len(decisions(r, "purge")) == 2, trace)
    purged = decisions(records, "purge")[1]
    assert purged["rule_id"] == "R-REC-3" and purged["user_id"] == "1001", purged
    assert purged["recording"] == [{"action": "delete", "recording_id": first["call_id"]}]
    assert not kept.exists() and recordings(data) == []
    calls = _syscalls(trace)

    def after(start: int, syscall: str, path: str) -> int:
        """The first ``syscall`` on a descriptor of ``path`` (strace -y) from ``start`` on."""
        return next(i for i, c in enumerate(calls[start:], start)
                    if c.startswith(f"{syscall}(") and f"{path}>" in c.split(",")[0])

    unlink = next(i for i, c in enumerate(calls) if c.startswith("unlink")
                  and f'{kept}"' in c)
    folder = after(unlink, "fsync", str(data / "recordings"))
    ledger = after(unlink, "pwrite64", str(data / "policy-ledger.sqlite3-wal"))
    line = after(unlink, "write", str(data / "audit.jsonl"))
    assert unlink < folder < ledger < line, (unlink, folder, ledger, line)
    # nothing left: the next start neither deletes nor fails anything
    records = restart(103, lambda r: False)
    assert len(decisions(records, "purge")) == 2 and len(failed(records)) == 2


@pytest.mark.timeout(150)
@pytest.mark.skipif(FAKETIME_LIB is None, reason="libfaketime missing")
def test_a_removed_user_or_a_terminated_account_loses_its_recordings_after_the_window(
        tmp_path: Path, lab: Any, sipp: Any) -> None:
    """Two recorded calls (1001 -> 1002, 1003 -> 1004). 1001 is then removed from the
    configuration: the next start (a day later) audits R-REC-4 for 1001, why "user removed";
    40 days later its recording is purged under R-REC-4 (not kept until retention), 1003's
    stays. Then the account is terminated: R-REC-4 for 1003, why "account terminated", and 34
    days later (75 days after the call, well within retention) its recording is purged too."""
    edge_port, *ports = lab.take_ports(7)
    data = tmp_path / "edge"
    edge = EdgeProcess(data, edge_port, RTP,
                       extra=["--config", str(edge_config(tmp_path / "edge.toml"))]).start()
    target = f"127.0.0.1:{edge_port}"
    phones = [RtpPhone(USER_HZ), RtpPhone(CORRESPONDENT_HZ), RtpPhone(USER_HZ),
              RtpPhone(CORRESPONDENT_HZ)]
    try:
        a = media_call(sipp, lab, target, "1001", "1002", ports[0:3], phones[0], phones[1],
                       name="a")
        b = media_call(sipp, lab, target, "1003", "1004", ports[3:6], phones[2], phones[3],
                       name="b")
        finish([a, b], edge)
        edge.wait_idle()
    finally:
        for phone in phones:
            phone.close()
        edge.stop()
    assert len(recordings(data)) == 2
    owner = {r["recording"][0]["recording_id"]: r["user_id"]
             for r in decisions(audit(data), "notice_played")}
    removed = tmp_path / "removed.toml"
    removed.write_text("".join(f'[[users]]\next = "{ext}"\npassword = "demo-{ext}"\n'
                               f'recording = {"true" if ext == "1003" else "false"}\n\n'
                               for ext in ("1002", "1003", "1004")))
    terminated = tmp_path / "terminated.toml"
    terminated.write_text('[account]\nstate = "terminated"\n\n' + removed.read_text())

    def restart(cfg: Path, days: int) -> list[str]:
        later = EdgeProcess(data, edge_port, RTP, extra=["--config", str(cfg)],
                            wrap=days_later(days))
        try:
            later.start()
            time.sleep(1.0)  # the option sync and the purge job run as the edge starts
        finally:
            later.stop()
        return sorted(owner[r["recording_id"]] for r in
                      (rec["recording"][0] for rec in decisions(audit(data), "purge")))

    def options() -> list[tuple[str, str, str]]:
        return [(r["rule_id"], r["details"]["scope"], r["details"].get("why", ""))
                for r in decisions(audit(data), "recording_option")]

    assert restart(removed, 1) == []
    assert options() == [("R-REC-4", "user:1001", "user removed from the configuration")]
    assert restart(removed, 40) == ["1001"]
    (purged,) = decisions(audit(data), "purge")
    assert purged["rule_id"] == "R-REC-4" and len(recordings(data)) == 1
    assert restart(terminated, 41) == ["1001"]
    assert options()[1:] == [("R-REC-4", "user:1003", "account terminated")]
    assert restart(terminated, 75) == ["1001", "1003"]
    assert [r["rule_id"] for r in decisions(audit(data), "purge")] == ["R-REC-4", "R-REC-4"]
    assert recordings(data) == []
