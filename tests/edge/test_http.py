"""The edge's HTTP listener in process, over a real socket: /healthz says what is wrong.

The lab tests (tests/lab/test_edge_operator.py) drive the shipped process with sipp; here the
failures an operator must see are made on purpose: a ledger that refuses writes, and a drain.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from softphone.edge.app import start_edge
from softphone.edge.config import Overrides, apply_overrides, load_edge_config
from softphone.edge.http import HttpListener

pytestmark = pytest.mark.timeout(60)


def get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


async def test_healthz_names_an_unwritable_ledger_and_a_drain(tmp_path: Path) -> None:
    cfg = apply_overrides(load_edge_config(None), Overrides(
        sip_port=0, tls_port=0, rtp_ports="21950-21999", data_dir=str(tmp_path)))
    edge = await start_edge(replace(cfg, http_port=0))
    http = HttpListener(edge)
    await http.start("127.0.0.1", 0)
    db: Any = edge.store.store._db if edge.store is not None else None
    try:
        ok = await asyncio.to_thread(get, http.port, "/healthz")
        db.execute("PRAGMA query_only = ON")  # every write now fails, as on a read-only disk
        unwritable = await asyncio.to_thread(get, http.port, "/healthz")
        db.execute("PRAGMA query_only = OFF")
        edge.b2bua.draining = True
        draining = await asyncio.to_thread(get, http.port, "/healthz")
    finally:
        await http.close()
        await edge.close()
    assert ok == (200, {"ok": True, "checks": {"sip": "ok", "ledger": "ok"}}), ok
    status, body = unwritable
    assert status == 503 and body["checks"]["sip"] == "ok", unwritable
    assert body["checks"]["ledger"].startswith("ledger not writable: "), unwritable
    assert draining[0] == 503 and body["ok"] is False, draining
    assert "503" in draining[1]["checks"]["draining"], draining


async def test_ws_is_sip_over_websocket_and_nothing_else_upgrades(tmp_path: Path) -> None:
    """/ws speaks RFC 7118 (subprotocol sip) through the SIP transport; a plain GET of it is
    told so (426), and no other path upgrades."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    cfg = apply_overrides(load_edge_config(None), Overrides(
        sip_port=0, tls_port=0, rtp_ports="21950-21999", data_dir=str(tmp_path)))
    edge = await start_edge(replace(cfg, http_port=0))
    http = HttpListener(edge)
    await http.start("127.0.0.1", 0)
    base = f"ws://127.0.0.1:{http.port}"
    register = ("REGISTER sip:127.0.0.1 SIP/2.0\r\n"
                "Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK56sdasks\r\n"
                "Max-Forwards: 70\r\nTo: <sip:1001@127.0.0.1>\r\n"
                "From: <sip:1001@127.0.0.1>;tag=5ub3ab\r\nCall-ID: ws-1\r\nCSeq: 1 REGISTER\r\n"
                "Contact: <sip:k3c9@df7jal23ls0d.invalid;transport=ws>\r\nExpires: 300\r\n"
                "Content-Length: 0\r\n\r\n")
    try:
        async with connect(f"{base}/ws", subprotocols=["sip"]) as ws:  # type: ignore[list-item]
            await ws.send(register)
            answer = str(await asyncio.wait_for(ws.recv(), 5))
        with pytest.raises(InvalidStatus) as no_sip:  # no "sip" subprotocol (RFC 7118 §4.1)
            async with connect(f"{base}/ws"):
                pass
        with pytest.raises(InvalidStatus) as elsewhere:
            async with connect(f"{base}/metrics", subprotocols=["sip"]):  # type: ignore[list-item]
                pass
        plain = await asyncio.to_thread(_get_status, http.port, "/ws")
        assert "ws" in edge.core.local
    finally:
        await http.close()
        await edge.close()
    assert answer.startswith("SIP/2.0 401 Unauthorized\r\n"), answer
    assert "Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK56sdasks" in answer, answer
    assert no_sip.value.response.status_code == 400
    assert elsewhere.value.response.status_code == 404
    assert plain == 426


def _get_status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code
