"""What an operator graphs and reads: the edge's Prometheus metrics and its live state as JSON.

Nothing here counts on the hot path. The counters are those the edge keeps anyway (the SIP
core's messages by method and class, ``B2BUA.stats``, the call log's end causes and RTP totals,
the port allocator, the guard's decisions as the ledger writer queues them, the digest
failures, the flood guard's refusals); ``EdgeCollector`` reads them, and the live calls' RTP
sessions, when Prometheus scrapes. No metric has a per-call label (Call-ID, user, address):
the label sets are bounded (methods, classes, end causes, rule ids).

``live_state`` is the JSON of ``/api/status`` and of ``softphone status``: calls with their legs
and codecs, registrations, ports, the guard's decision counters.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

from softphone.media.session import RtpSession

if TYPE_CHECKING:
    from softphone.edge.app import Edge

__all__ = ["EdgeCollector", "live_state", "registry_for"]

P = "softphone_"


def _live_legs(edge: Edge) -> Iterator[tuple[str, RtpSession]]:
    """(leg name, RtpSession) of every live call's media."""
    for call in list(edge.b2bua.calls.values()):
        yield from list(call.media.sessions.items())


class EdgeCollector(Collector):
    """The edge's metrics, read from its live objects at each scrape."""

    def __init__(self, edge: Edge) -> None:
        self.edge = edge

    def collect(self) -> Iterator[Metric]:
        edge = self.edge
        core, b2bua, log = edge.core, edge.b2bua, edge.b2bua.call_log

        requests = CounterMetricFamily(P + "sip_requests_received", "SIP requests received "
                                       "(retransmissions included), by method", labels=["method"])
        for method, n in sorted(core.requests_in.items()):
            requests.add_metric([method], n)
        yield requests
        responses = CounterMetricFamily(P + "sip_responses", "SIP responses sent and received, "
                                        "by class", labels=["direction", "class"])
        for (direction, cls), n in sorted(core.responses.items()):
            responses.add_metric(["sent" if direction == "out" else "received", cls], n)
        yield responses
        yield CounterMetricFamily(P + "sip_parse_errors", "SIP messages that did not parse",
                                  value=core.stats["parse_errors"])
        yield CounterMetricFamily(P + "sip_rate_limited", "requests dropped by the flood guard",
                                  value=edge.transport.stats.rate_limited)
        auth_failures = b2bua.auth.failures if b2bua.auth is not None else 0
        yield CounterMetricFamily(P + "auth_failures", "digest credentials refused (wrong "
                                  "password, unknown user, replay)", value=auth_failures)

        stats = b2bua.stats
        yield CounterMetricFamily(P + "calls_started", "calls the edge took on",
                                  value=stats["calls"])
        yield CounterMetricFamily(P + "calls_answered", "calls answered",
                                  value=stats["answered"])
        yield CounterMetricFamily(P + "calls_failed", "calls that ended without an answer",
                                  value=stats["failed"])
        ended = CounterMetricFamily(P + "calls_ended", "calls ended, by end cause",
                                    labels=["cause"])
        for cause, n in sorted(log.causes.items()):
            ended.add_metric([cause], n)
        yield ended
        emergency = CounterMetricFamily(P + "emergency_calls", "emergency calls, by outcome",
                                        labels=["outcome"])
        for key in ("routed", "refused", "failed"):
            emergency.add_metric([key], stats.get(f"emergency_{key}", 0))
        yield emergency
        yield GaugeMetricFamily(P + "calls_active", "calls in progress", value=b2bua.live_calls)
        yield GaugeMetricFamily(P + "registrations", "registered contacts",
                                value=len(b2bua.location))
        yield GaugeMetricFamily(P + "sip_transactions", "live SIP transactions",
                                value=len(core.transactions))
        yield GaugeMetricFamily(P + "draining", "1 while the edge drains (SIGTERM)",
                                value=1 if b2bua.draining else 0)

        alloc = edge.allocator
        ports = GaugeMetricFamily(P + "rtp_port_pairs", "RTP/RTCP port pairs of the range",
                                  labels=["state"])
        ports.add_metric(["in_use"], alloc.in_use)
        ports.add_metric(["free"], alloc.capacity - alloc.in_use)
        yield ports

        packets_in, packets_out, lost = (log.totals["packets_in"], log.totals["packets_out"],
                                         log.totals["lost"])
        jitters: list[float] = []
        buffers: dict[str, float] = {"late_discarded": 0, "lost": 0, "frames_concealed": 0}
        delays: list[float] = []
        bridged = 0
        for _leg, s in _live_legs(edge):
            packets_in += s.packets_received
            packets_out += s.packets_sent
            lost += max(0, s.reception.lost)
            jitters.append(s.reception.jitter_ms)
            if s.jitter is not None:  # a bridged leg (a relayed one has no buffer)
                js = s.jitter.stats  # a property
                for key in buffers:
                    buffers[key] += getattr(js, key)
                delays.append(js.current_delay_ms)
        for call in list(b2bua.calls.values()):
            if call.media.bridge is not None and len(call.media.sessions) >= 2 and not call.app:
                bridged += 1
        packets = CounterMetricFamily(P + "rtp_packets", "RTP packets through the edge",
                                      labels=["direction"])
        packets.add_metric(["received"], packets_in)
        packets.add_metric(["sent"], packets_out)
        yield packets
        yield CounterMetricFamily(P + "rtp_packets_lost", "RTP packets lost on the way to the "
                                  "edge (RFC 3550 A.3)", value=lost)
        jitter = GaugeMetricFamily(P + "rtp_jitter_ms", "interarrival jitter of the live legs "
                                   "(RFC 3550 A.8)", labels=["stat"])
        jitter.add_metric(["mean"], sum(jitters) / len(jitters) if jitters else 0.0)
        jitter.add_metric(["max"], max(jitters, default=0.0))
        yield jitter
        jb = GaugeMetricFamily(P + "jitter_buffer_packets", "the live bridged legs' jitter "
                               "buffers: packets discarded as too late, lost, frames concealed",
                               labels=["kind"])
        for key, value in buffers.items():
            jb.add_metric([key], value)
        yield jb
        yield GaugeMetricFamily(P + "jitter_buffer_delay_ms", "the largest playout delay of the "
                                "live bridged legs' jitter buffers",
                                value=max(delays, default=0.0))
        yield CounterMetricFamily(P + "calls_transcoded", "ended calls that went through the "
                                  "bridge (transcoding, notice or recording)",
                                  value=log.totals["transcoded"])
        yield GaugeMetricFamily(P + "calls_bridged_active", "live calls on the bridge",
                                value=bridged)

        decisions = CounterMetricFamily(P + "policy_decisions", "the guard's decisions, by rule "
                                        "id and outcome", labels=["rule", "outcome"])
        counts = edge.store.decisions if edge.store is not None else {}
        for (rule, outcome), n in sorted(counts.items()):
            decisions.add_metric([rule, outcome], n)
        yield decisions


def registry_for(edge: Edge) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EdgeCollector(edge))
    ProcessCollector(registry=registry)  # RSS, open descriptors, CPU: what a leak shows in
    return registry


def live_state(edge: Edge) -> dict[str, Any]:
    """The JSON of ``/api/status``: the edge's state now (``softphone status`` prints it)."""
    b2bua = edge.b2bua
    now = b2bua.clock()
    calls = []
    for call in list(b2bua.calls.values()):
        legs = []
        for leg, pair in call.media.pairs.items():
            neg = call.leg(leg).neg
            s = call.media.sessions.get(leg)
            legs.append({
                "leg": leg, "user": call.caller if leg == "a" else call.callee,
                "codec": neg.codec.name if neg is not None else "",
                "local_rtp": pair.rtp,
                "remote_rtp": f"{neg.remote_address}:{neg.remote_port}" if neg else "",
                "packets_in": s.packets_received if s else 0,
                "packets_out": s.packets_sent if s else 0,
                "lost": s.reception.lost if s else 0,
                "jitter_ms": round(s.reception.jitter_ms, 2) if s else 0.0})
        calls.append({
            "call_id": call.key, "caller": call.caller, "callee": call.callee,
            "state": call.state.value, "direction": call.direction, "app": call.app,
            "age_s": round(time.time() - call.record.started, 1),
            "answered_s": round(now - call.answered_at, 1) if call.answered_at else None,
            "mode": "bridge" if call.media.bridge is not None else
                    "relay" if call.media.relaying else "",
            "legs": legs})
    registrations = [{"user": b.aor, "contact": b.contact, "transport": b.source[0],
                      "source": f"{b.source[1]}:{b.source[2]}",
                      "expires_s": b.remaining(now), "user_agent": b.user_agent,
                      "device_class": b.device_class}
                     for b in sorted(b2bua.location.bindings(), key=lambda b: (b.aor, b.contact))
                     if b.remaining(now) > 0]
    alloc = edge.allocator
    counts = edge.store.decisions if edge.store is not None else {}
    return {
        "time": time.time(),
        "draining": b2bua.draining,
        "calls": calls,
        "registrations": registrations,
        "ports": {"first": alloc.first, "last": alloc.last, "pairs": alloc.capacity,
                  "in_use": alloc.in_use, "free": alloc.capacity - alloc.in_use},
        "policy": [{"rule": r, "outcome": o, "count": n} for (r, o), n in sorted(counts.items())],
        "totals": {**b2bua.stats, "media_objects": b2bua.allocator.media_objects,
                   "transactions": len(edge.core.transactions),
                   "auth_failures": b2bua.auth.failures if b2bua.auth is not None else 0,
                   "rate_limited": edge.transport.stats.rate_limited},
    }
