"""REC on the web phone: the edge tells a phone registered over WebSocket when its call's
recording starts and stops, in a SIP INFO (``application/vnd.softphone.recording``), checked on
the wire with a plain Python SIP-over-WebSocket client (no browser: it offers plain RTP, which
the edge takes today, so this runs before the WebRTC media leg exists)."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser.conftest import WebEdge
from browser.peers import desk_phone
from browser.ws_sip import WsSip
from lab.rtp_phone import RtpPhone
from lab.sip_phone import pcma_sdp

pytestmark = [pytest.mark.lab, pytest.mark.timeout(90)]

RECORDING = "application/vnd.softphone.recording"


def test_a_web_phone_is_told_when_its_call_is_recorded_and_when_that_stops(
        web_edge: WebEdge, tmp_path: Path) -> None:
    """1001 (over /ws) calls 1003, whose calls are recorded: 1001 hears the recording notice,
    then gets ``state=on``; its objection key sent as the page sends it (SIP INFO
    dtmf-relay, Signal=9) stops and deletes the recording, and it gets ``state=off`` with
    ``reason=objection``."""
    with desk_phone(tmp_path, web_edge, user="1003", auto_answer=True):
        media = RtpPhone(440, seconds=40)
        ws = WsSip(web_edge.http_port, "1001", "demo-1001")
        try:
            assert ws.register().status == 200
            answer = ws.invite("1003", pcma_sdp(media.port))
            assert answer.status == 200, answer
            on = ws.wait_request("INFO", 40)  # after the notice, when the recording starts
            assert on is not None, web_edge.proc.log()
            assert (on.content_type, on.body) == (RECORDING, b"state=on\r\n")
            recordings = web_edge.proc.data_dir / "recordings"
            assert [p.suffix for p in recordings.iterdir()] == [".wav"]
            objection = ws.in_dialog("INFO", b"Signal=9\r\nDuration=160\r\n",
                                     "application/dtmf-relay")
            assert objection.status == 200
            off = ws.wait_request("INFO", 10)
            assert off is not None, web_edge.proc.log()
            assert (off.content_type, off.body) == (RECORDING,
                                                    b"state=off\r\nreason=objection\r\n")
            assert list(recordings.iterdir()) == []  # deleted
            assert ws.in_dialog("BYE").status == 200
        finally:
            ws.close()
            media.close()
