"""What the web phone reads from the registrar, checked on the wire over the edge's /ws (no
browser): the 200 OK of a REGISTER says whether emergency calls work on the line, with the
recorded address when they do (X-Emergency), the guard's Warning when they do not."""

from __future__ import annotations

import re

import pytest
from browser.conftest import LOCATION_1001, WebEdge
from lab.webrtc_phone import WebRtcPhone

pytestmark = [pytest.mark.lab, pytest.mark.timeout(60)]


async def test_register_over_ws_tells_the_emergency_state(web_edge: WebEdge) -> None:
    url = f"ws://127.0.0.1:{web_edge.http_port}/ws"
    async with WebRtcPhone(url, "1001", "demo-1001") as ready, \
            WebRtcPhone(url, "1002", "demo-1002") as without:
        ok = await ready.register()
        assert ok.status == 200, ok
        assert ok.headers.values("x-emergency") == [f'available; location="{LOCATION_1001}"']
        assert not ok.headers.values("warning")

        no = await without.register()
        assert no.status == 200, no
        assert not no.headers.values("x-emergency")
        (warning,) = no.headers.values("warning")
        assert re.fullmatch(r'399 \S+ "Emergency calls are not available from this line\..*"',
                            warning), warning

        # taking the binding away again: nothing about emergency calls to show
        gone = await ready.register(expires=0)
        assert gone.status == 200 and not gone.headers.values("x-emergency")
