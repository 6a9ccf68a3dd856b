"""The web phone in a real browser (Debian's chromium, headless) against a real edge: the page
loads clean, signs in over /ws, and shows what the edge says (registration, the emergency
state of the line, refusals in words); numbers are cleaned up as pasted; the keyboard dials."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from browser.chromium import browser
from browser.conftest import LOCATION_1001, WebEdge, registered_page, sign_in, wait_registered

pytestmark = [pytest.mark.lab, pytest.mark.timeout(90)]


def registered_users(edge: WebEdge) -> dict[str, str]:
    return {str(r["user"]): str(r["transport"]) for r in edge.registrations()}


def test_page_loads_signs_in_and_shows_the_line(web_edge: WebEdge, tmp_path: Path) -> None:
    with browser(tmp_path) as b:
        page = b.page(web_edge.url)
        assert page.title() == "Web phone"
        assert page.input_value("#domain") == "127.0.0.1"  # location.hostname
        sign_in(page, "1001", "demo-1001")
        wait_registered(page)
        assert page.inner_text("#reg-state") == "registered as 1001"
        assert "demo-1001" not in page.url
        assert page.evaluate("localStorage.length") == 0  # "remember me" not ticked
        banner = page.inner_text("#emergency")
        assert banner == f"Emergency calls: available — recorded location: {LOCATION_1001}"
        assert page.get_attribute("#emergency", "data-state") == "available"
        # the edge holds the browser's binding, over the WebSocket
        assert registered_users(web_edge) == {"1001": "ws"}
        # the microphone list, and the level meter on the fake microphone's tone
        page.wait_for_function("document.querySelectorAll('#mic option').length > 0")
        page.click("#devices summary")
        page.click("#mic-test")
        page.wait_for_function("phone.localLevel() > 0.5 && document.getElementById('level').value > 0.5")
        shot = tmp_path / "webphone.png"
        page.fill("#number", "+33123456789")
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        assert b.errors == [], b.errors


def test_a_wrong_password_says_why_and_registers_nothing(web_edge: WebEdge,
                                                         tmp_path: Path) -> None:
    with browser(tmp_path) as b:
        page = b.page(web_edge.url)
        sign_in(page, "1001", "not-the-password")
        page.wait_for_function("phone.state().registration === 'failed'")
        reason = page.inner_text("#reg-state")
        assert reason == "registration failed: wrong extension or password (401 Unauthorized)"
        assert page.is_visible("#signin") and page.is_visible("#problem")
        assert "wrong extension or password" in page.inner_text("#problem")
        assert registered_users(web_edge) == {}
        # the same page then signs in with the right password
        sign_in(page, "1001", "demo-1001")
        wait_registered(page)
        assert not page.is_visible("#problem")


def test_the_emergency_state_of_each_line(web_edge: WebEdge, tmp_path: Path) -> None:
    with browser(tmp_path) as b:
        without = b.page(web_edge.url)
        sign_in(without, "1002", "demo-1002")
        wait_registered(without)
        assert without.inner_text("#emergency") == (
            "Emergency calls are not available on this line: use a mobile or a landline")
        assert without.get_attribute("#emergency", "data-state") == "unavailable"
        assert without.evaluate("phone.state().emergency") == "unavailable"
        ready = b.page(web_edge.url)
        sign_in(ready, "1001", "demo-1001")
        wait_registered(ready)
        assert ready.evaluate("phone.state().emergency") == "available"
        assert LOCATION_1001 in ready.inner_text("#emergency")
        assert registered_users(web_edge) == {"1001": "ws", "1002": "ws"}
        assert b.errors == [], b.errors


PASTE = """(text) => {
  const field = document.getElementById("number");
  const data = new DataTransfer();
  data.setData("text/plain", text);
  field.focus();
  field.dispatchEvent(new ClipboardEvent("paste", {clipboardData: data, bubbles: true,
                                                   cancelable: true}));
  return field.value;
}"""


PASTED = [
    ("+33 (0)1 23-45.67 89", "+33123456789"),
    ("0033 1 23 45 67 89", "+33123456789"),
    ("tel:+44-20-7946-0958", "+442079460958"),
    ("(01) 23 45 67 89", "0123456789"),
    ("*21#", "*21#"),
]


def test_pasted_numbers_are_cleaned_up(web_edge: WebEdge, tmp_path: Path) -> None:
    with browser(tmp_path) as b:
        page = registered_page(b, web_edge, "1004")
        assert [page.evaluate(PASTE, pasted) for pasted, _ in PASTED] == [
            shown for _, shown in PASTED]
        page.evaluate("document.getElementById('number').value = '600'")
        assert page.evaluate(PASTE, "call me maybe") == "600"  # refused, field unchanged
        assert "not a telephone number" in page.inner_text("#reason")
        assert b.errors == [], b.errors


def test_the_keyboard_dials_and_enter_calls(web_edge: WebEdge, tmp_path: Path) -> None:
    with browser(tmp_path) as b:
        page = registered_page(b, web_edge, "1001")
        page.click("h1")  # nothing focused: typed digits go to the pad
        page.keyboard.type("10049")
        page.keyboard.press("Backspace")
        assert page.input_value("#number") == "1004"
        page.keyboard.press("Enter")
        assert page.evaluate("phone.lastTarget()") == "sip:1004@127.0.0.1"
        # 1004 is not registered: the call fails and the page says why, with the status
        page.wait_for_function("phone.state().call === 'failed'")
        assert page.evaluate("phone.lastReason()").startswith("Call failed: ")
        assert " (480 " in page.inner_text("#reason"), page.inner_text("#reason")
        # the edge's guard saw that call: 1001 calling 1004 (its audit log, one call id)
        parties: dict[str, dict[str, str]] = {}
        wanted = {"caller": "1001", "callee": "1004"}
        end = time.monotonic() + 10
        while time.monotonic() < end and wanted not in parties.values():
            for line in (web_edge.proc.data_dir / "audit.jsonl").read_text().splitlines():
                d = json.loads(line)
                cid, _, side = str(d.get("call_id") or "").rpartition("/")
                if side in ("caller", "callee"):
                    parties.setdefault(cid, {})[side] = d["user_id"]
            time.sleep(0.2)
        assert wanted in parties.values(), parties


def test_a_lost_connection_says_reconnecting_then_registers_again(web_edge: WebEdge,
                                                                  tmp_path: Path) -> None:
    """The edge stops (its WebSocket closes): the page says it is reconnecting and when at
    the latest; the edge comes back on the same ports: the page registers again by itself."""
    with browser(tmp_path) as b:
        page = registered_page(b, web_edge, "1001")
        web_edge.proc.stop()
        page.wait_for_function("phone.state().registration === 'reconnecting'")
        assert page.inner_text("#reg-state").startswith("connection lost: reconnecting in ")
        web_edge.proc.start()
        page.wait_for_function("phone.state().registration === 'registered'", timeout=40_000)
        assert page.inner_text("#reg-state") == "registered as 1001"
        assert registered_users(web_edge) == {"1001": "ws"}
