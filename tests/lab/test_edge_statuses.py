"""What a caller sees when the edge cannot connect the call, on the wire, from the running edge.

404 unknown number, 480 callee not registered, 488 no common codec (with a Warning), 503 no RTP
port left (with Retry-After), and the RTP inactivity timeout that ends a call whose peers went
silent (both legs get a BYE, every port comes back).
"""

from __future__ import annotations

import asyncio
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from lab.edge_proc import EdgeProcess

from softphone.phone import CallState, UserAgent
from softphone.sip.transport import ListenSpec

pytestmark = pytest.mark.lab


def ua(user: str, rtp: tuple[int, int], *, answer: bool = False) -> UserAgent:
    return UserAgent(listen=[ListenSpec("udp", "127.0.0.1", 0)], user=user, domain="127.0.0.1",
                     username=user, password=f"demo-{user}", media_host="127.0.0.1",
                     rtp_ports=rtp, auto_answer=answer)


def edge_config(path: Path, *, rtp_timeout: int = 30, extra_channels: int = 0) -> Path:
    text = resources.files("softphone.configs").joinpath("edge.toml").read_text()
    text = text.replace("rtp_timeout_s = 30", f"rtp_timeout_s = {rtp_timeout}")
    text = text.replace('password = "demo-',
                        f'extra_channels = {extra_channels}\npassword = "demo-')
    path.write_text(text)
    return path


async def final_status(caller: UserAgent, target: str) -> tuple[int, Any]:
    call = await caller.call(target)
    await call.wait_ended(15)
    assert call.final_response is not None, call
    return call.final_response.status, call.final_response


@pytest.mark.timeout(90)
async def test_unknown_unregistered_and_full_range(tmp_path: Path, lab: Any) -> None:
    (sip,) = lab.take_ports(1)
    # two RTP pairs per call: a range of 6 pairs, 2 of them kept for emergency calls (the
    # default emergency_reserved_ports = 4), holds two calls, the third gets 503; the users
    # have a second channel (R-CALLS-1's paid option) so that the policy is not what refuses it
    cfg = edge_config(tmp_path / "edge.toml", extra_channels=1)
    edge = EdgeProcess(tmp_path / "edge", sip, (20600, 20611), extra=["--config", str(cfg)])
    edge.start()
    where = f"127.0.0.1:{sip}"
    try:
        async with ua("1001", (40200, 40299)) as a, ua("1002", (40300, 40399), answer=True) as b, \
                ua("1003", (40400, 40499)) as c, ua("1004", (40500, 40599), answer=True) as d:
            for phone in (b, d):
                reg = await phone.register(f"sip:{where}", aor=f"sip:{phone.user}@{where}")
                assert reg is not None
            status, _ = await final_status(a, f"sip:9999@{where}")
            assert status == 404
            status, _ = await final_status(a, f"sip:1003@{where}")  # 1003 never registered
            assert status == 480
            first = await a.call(f"sip:1002@{where}")
            assert await first.wait_answered(10)
            second = await c.call(f"sip:1004@{where}")
            assert await second.wait_answered(10)
            status, resp = await final_status(c, f"sip:1004@{where}")
            assert (status, resp.headers.get("retry-after")) == (503, "5"), resp
            await first.hangup_and_wait()
            await second.hangup_and_wait()
            st = await asyncio.to_thread(edge.wait_idle)
            assert st["ports_in_use"] == 0 and st["live_calls"] == 0, st
    finally:
        edge.stop()
    causes = sorted(c["end_cause"] for c in edge.calls())
    assert causes.count("caller-bye") == 2, causes


@pytest.mark.timeout(60)
async def test_silent_call_is_torn_down_by_rtp_timeout(tmp_path: Path, lab: Any) -> None:
    (sip,) = lab.take_ports(1)
    cfg = edge_config(tmp_path / "edge.toml", rtp_timeout=2)
    edge = EdgeProcess(tmp_path / "edge", sip, (20620, 20659), extra=["--config", str(cfg)])
    edge.start()
    where = f"127.0.0.1:{sip}"
    try:
        async with ua("1001", (40600, 40699)) as a, ua("1002", (40700, 40799), answer=True) as b:
            await b.register(f"sip:{where}", aor=f"sip:1002@{where}")
            call = await a.call(f"sip:1002@{where}")
            assert await call.wait_answered(10)
            # neither phone sends RTP (this UA does call control only): after 2 s the edge ends
            await call.wait_ended(10)
            assert call.state is CallState.TERMINATED
            callee = next(iter(b.calls.values()), None)
            if callee is not None:
                await callee.wait_ended(5)
            st = await asyncio.to_thread(edge.wait_idle)
            assert st["ports_in_use"] == 0, st
    finally:
        edge.stop()
    calls = edge.calls()
    assert len(calls) == 1 and calls[0]["end_cause"].startswith("rtp-timeout"), calls


@pytest.mark.timeout(60)
def test_no_common_codec_gets_488_with_warning(tmp_path: Path, lab: Any, sipp: Any) -> None:
    sip, port = lab.take_ports(2)
    edge = EdgeProcess(tmp_path / "edge", sip, (20660, 20699)).start()
    target = f"127.0.0.1:{sip}"
    try:
        run = sipp.start("g729", [target, "-sf", str(lab.scenarios / "edge_uac_nocodec.xml"),
                                  "-s", "600", "-i", "127.0.0.1", "-p", str(port), "-au", "1001",
                                  "-ap", "demo-1001", "-set", "user", "1001",
                                  "-auth_uri", f"600@{target}", "-m", "1", "-timeout_error"],
                         trace_msg=True, wall=30)
        assert run.wait(30) == 0, run.errors()
    finally:
        edge.stop()
    msgs = run.messages()
    assert "SIP/2.0 488" in msgs and "Warning: 30" in msgs, msgs[-2000:]
