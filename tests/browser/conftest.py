"""The web phone's tests: the edge as a real process (``softphone edge`` with its HTTP
listener: the page at /, SIP over WebSocket at /ws), Debian's chromium driven by Playwright
(tests/browser/chromium.py), all on loopback, every process stopped by PID."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lab.conftest import take_ports
from lab.edge_proc import EdgeProcess

# RTP ports of these tests' edges: clear of the other lab tests' ranges (grep "RTP =")
RTP = (21700, 21799)  # inside 20000-22000, the range the terms open (Annex 2)

# 1001 has the emergency service and a recorded address; 1002 has not (the account's default:
# off); 1003 records its calls (the other party hears the notice, 9 objects).
EDGE_TOML = """
[[users]]
ext = "1001"
name = "Alice Martin"
password = "demo-1001"
emergency = true
location = { country = "FR", city = "Paris", street = "Rue de Rivoli", number = "1", postcode = "75001", floor = "2" }

[[users]]
ext = "1002"
name = "Desk 1002"
password = "demo-1002"

[[users]]
ext = "1003"
name = "Recorded 1003"
password = "demo-1003"
recording = true

[[users]]
ext = "1004"
name = "Demo 1004"
password = "demo-1004"
"""
LOCATION_1001 = "1 Rue de Rivoli, floor 2, 75001 Paris, FR"


class WebEdge:
    """One edge with its HTTP listener; ``url`` is the page."""

    def __init__(self, tmp_path: Path) -> None:
        self.sip_port, self.http_port = take_ports(2)
        cfg = tmp_path / "edge.toml"
        cfg.write_text(EDGE_TOML)
        self.proc = EdgeProcess(tmp_path / "edge", self.sip_port, RTP, http_port=self.http_port,
                                extra=["--config", str(cfg)])
        self.url = f"http://127.0.0.1:{self.http_port}/"

    def registrations(self) -> list[dict[str, object]]:
        """The bindings the edge holds, from its own /api/status."""
        import json
        import urllib.request

        with urllib.request.urlopen(self.url + "api/status", timeout=5) as r:
            state = json.loads(r.read())
        regs: list[dict[str, object]] = state["registrations"]
        return regs


def sign_in(page: Any, ext: str, password: str, *, remember: bool = False) -> None:
    page.fill("#ext", ext)
    page.fill("#password", password)
    if remember:
        page.check("#remember")
    page.click("#signin-button")


def wait_registered(page: Any) -> None:
    page.wait_for_function("phone.state().registration === 'registered'")


def registered_page(b: Any, web_edge: WebEdge, ext: str) -> Any:
    """A page of browser ``b`` on the edge, signed in as ``ext`` (its demo password) and
    registered."""
    page = b.page(web_edge.url)
    sign_in(page, ext, f"demo-{ext}")
    wait_registered(page)
    return page


@pytest.fixture
def web_edge(tmp_path: Path) -> Iterator[WebEdge]:
    edge = WebEdge(tmp_path)
    edge.proc.start()
    try:
        yield edge
    finally:
        edge.proc.stop()
