"""``softphone status``: the live state of a running edge, as a table or as JSON.

It reads the edge's ``/api/status`` (``softphone.edge.http``) on the HTTP listener named by
``--config`` (``[http] bind`` and ``port``; default: the embedded configuration) or by
``--http-port N`` on ``--host`` (default the configuration's bind address). Like Asterisk's
``core show channels`` or ``kamcmd``: one line per call with its legs and codecs, the
registrations, the RTP ports, the guard's decisions. Exit status 0, or 1 when the edge cannot
be reached (said on stderr), 2 for a bad configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from typing import Any

from softphone.configfile import ConfigError

TIMEOUT_S = 5.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="the edge's configuration file (default: the embedded "
                                    "configs/edge.toml): where its HTTP listener is")
    p.add_argument("--http-port", type=int, help="the edge's HTTP port (overrides the file)")
    p.add_argument("--host", help="the edge's HTTP address (default: the file's [http] bind)")
    p.add_argument("--json", action="store_true", help="the API's JSON, as it is")


def fetch(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:  # noqa: S310 - our own edge
        loaded: dict[str, Any] = json.loads(resp.read())
    return loaded


def _table(rows: list[list[str]], header: list[str]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in [header, *rows]]


def render(state: dict[str, Any]) -> str:
    """The state as an operator reads it: calls, registrations, ports, policy."""
    out: list[str] = []
    calls = state.get("calls", [])
    rows = []
    for c in calls:
        legs = {leg["leg"]: leg for leg in c.get("legs", [])}
        a, b = legs.get("a", {}), legs.get("b", {})
        codecs = "/".join(x.get("codec") or "-" for x in (a, b) if x) or "-"
        rtp = "/".join(str(x.get("local_rtp", "")) for x in (a, b) if x)
        pkts = "/".join(f"{x.get('packets_in', 0)}:{x.get('packets_out', 0)}" for x in (a, b)
                        if x)
        rows.append([c.get("call_id", ""), c.get("caller", ""), c.get("callee", ""),
                     c.get("state", ""), c.get("direction", "") + (f":{c['app']}" if c.get("app")
                                                                   else ""),
                     codecs, c.get("mode") or "-", rtp, pkts,
                     f"{c['answered_s']:.0f}s" if c.get("answered_s") is not None else "-"])
    draining = " (draining: new calls get 503)" if state.get("draining") else ""
    out.append(f"{len(calls)} active call(s){draining}")
    if rows:
        out += _table(rows, ["Call-ID", "caller", "callee", "state", "direction", "codecs a/b",
                             "media", "rtp a/b", "pkts in:out a/b", "talking"])
    regs = state.get("registrations", [])
    out.append("")
    out.append(f"{len(regs)} registration(s)")
    if regs:
        out += _table([[r.get("user", ""), r.get("contact", ""), r.get("transport", ""),
                        r.get("source", ""), f"{r.get('expires_s', 0)}s",
                        r.get("user_agent", "")] for r in regs],
                      ["user", "contact", "transport", "from", "expires", "user agent"])
    ports = state.get("ports", {})
    out.append("")
    out.append(f"RTP ports {ports.get('first')}-{ports.get('last')}: {ports.get('in_use', 0)} "
               f"pair(s) in use, {ports.get('free', 0)} free")
    totals = state.get("totals", {})
    out.append(f"calls since start: {totals.get('calls', 0)} started, "
               f"{totals.get('answered', 0)} answered, {totals.get('failed', 0)} failed; "
               f"{totals.get('transactions', 0)} SIP transactions live; "
               f"{totals.get('auth_failures', 0)} auth failures; "
               f"{totals.get('rate_limited', 0)} requests dropped by the flood guard")
    policy = state.get("policy", [])
    if policy:
        out.append("")
        out.append("policy decisions")
        out += _table([[p.get("rule", ""), p.get("outcome", ""), str(p.get("count", 0))]
                       for p in policy], ["rule", "outcome", "count"])
    return "\n".join(out)


def main(args: argparse.Namespace) -> int:
    from softphone.edge.config import load_edge_config

    try:
        cfg = load_edge_config(args.config)
    except (ConfigError, OSError) as exc:
        print(f"softphone status: configuration error: {exc}", file=sys.stderr)
        return 2
    port = cfg.http_port if args.http_port is None else args.http_port
    if not 0 < port <= 65535:
        print(f"softphone status: the edge has no HTTP listener (port {port}); "
              "give --http-port N", file=sys.stderr)
        return 2
    host = args.host or cfg.http_bind
    if ":" in host:
        host = f"[{host}]"
    url = f"http://{host}:{port}/api/status"
    try:
        state = fetch(url)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"softphone status: no edge answers at {url}: {reason}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(state, indent=2, sort_keys=True))
    else:
        print(render(state))
    return 0
