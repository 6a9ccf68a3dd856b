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
