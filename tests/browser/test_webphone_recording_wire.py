"""REC on the web phone: the edge tells a phone registered over WebSocket when its call's
recording starts and stops, in a SIP INFO (``application/vnd.softphone.recording``), checked on
the wire with a browser-style phone without a browser (``lab.webrtc_phone``: SIP over /ws,
aiortc media)."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser.conftest import WebEdge
from browser.peers import desk_phone
from lab.webrtc_phone import WebRtcPhone

pytestmark = [pytest.mark.lab, pytest.mark.timeout(90)]

RECORDING = "application/vnd.softphone.recording"


async def test_a_web_phone_is_told_when_its_call_is_recorded_and_when_that_stops(
        web_edge: WebEdge, tmp_path: Path) -> None:
    """1001 (a browser-style phone over /ws) calls 1003, whose calls are recorded: 1001 hears
    the recording notice, then gets ``state=on``; its objection key sent as the page sends it
    (SIP INFO dtmf-relay, Signal=9) stops and deletes the recording, and it gets ``state=off``
    with ``reason=objection``."""
    with desk_phone(tmp_path, web_edge, user="1003", auto_answer=True):
        async with WebRtcPhone(f"ws://127.0.0.1:{web_edge.http_port}/ws", "1001",
                               "demo-1001", tone_hz=440) as phone:
            assert (await phone.register()).status == 200
            answer, invite = await phone.call("1003")
            assert answer.status == 200, answer
            # after the notice, when the recording starts
            on = await phone.wait_request("INFO", 40)
            assert on is not None, web_edge.proc.log()
            assert (on.content_type, on.body) == (RECORDING, b"state=on\r\n")
            recordings = web_edge.proc.data_dir / "recordings"
            assert [p.suffix for p in recordings.iterdir()] == [".wav"]
            assert (await phone.press(invite, answer, "9")).status == 200
            off = await phone.wait_request("INFO", 10)
            assert off is not None, web_edge.proc.log()
            assert (off.content_type, off.body) == (RECORDING,
                                                    b"state=off\r\nreason=objection\r\n")
            assert list(recordings.iterdir()) == []  # deleted
            assert (await phone.hang_up(invite, answer)).status == 200
