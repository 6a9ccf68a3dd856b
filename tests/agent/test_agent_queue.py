"""The outgoing queue while the broker is away: bounded, in order, drops counted."""

from __future__ import annotations

import json

from softphone.agent.config import MqttSettings
from softphone.agent.mqtt import MqttLink


async def _ignore(_payload: bytes) -> None:
    return None


async def test_a_full_queue_drops_the_oldest_counts_it_and_keeps_the_order() -> None:
    link = MqttLink(MqttSettings(host="127.0.0.1", port=1, queue=3), "desk-1",
                    on_command=_ignore)
    for n in range(1, 6):
        link.send("event", {"version": 1, "seq": n})
    assert link.queued == 3 and link.dropped == 2 and link.dropped_total == 2
    kept = [json.loads(payload)["seq"] for _topic, payload in link._queue]
    assert kept == [3, 4, 5]
    assert {topic for topic, _ in link._queue} == {"softphone/desk-1/event"}
