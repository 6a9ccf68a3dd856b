"""Home Assistant MQTT discovery: the agent as a device with a call-state sensor and answer and
hang-up buttons.

Enabled by ``[mqtt] homeassistant = true``. The configs are retained under
``<discovery_prefix>/<component>/softphone_<agent_id>/<object>/config`` (Home Assistant's
default prefix ``homeassistant``) and published again whenever Home Assistant's birth message
(``online`` on ``<discovery_prefix>/status``) arrives, as its documentation asks: a restarted
Home Assistant may have lost them. Availability follows the agent's ``status`` topic.

A button's payload is fixed, but every command needs a token of its own (a repeated token is
a duplicate and is not carried out): the buttons' ``command_template`` makes one from the time
of the press, in milliseconds (``now()`` in Home Assistant's templates).
"""

from __future__ import annotations

import json
from typing import Any

from softphone import __version__

SENSOR_TEMPLATE = "{{ value_json.call.state if value_json.call else 'idle' }}"
BUTTONS = (("answer", "Answer"), ("hangup", "Hang up"))


def command_template(command: str) -> str:
    return ('{"version": 1, "token": "ha-' + command +
            '-{{ (now().timestamp() * 1000) | int }}", "command": "' + command + '"}')


def discovery(agent_id: str, prefix: str = "homeassistant") -> list[tuple[str, bytes]]:
    """(topic, retained payload) of every entity of the agent."""
    base = f"softphone/{agent_id}"
    node = f"softphone_{agent_id}"
    common: dict[str, Any] = {
        "availability": [{"topic": f"{base}/status", "value_template": "{{ value_json.status }}",
                          "payload_available": "online", "payload_not_available": "offline"}],
        "device": {"identifiers": [node], "name": f"softphone {agent_id}",
                   "manufacturer": "softphone", "model": "agent", "sw_version": __version__},
    }
    out: list[tuple[str, bytes]] = []
    sensor = {**common, "name": "Call state", "unique_id": f"{node}_call_state",
              "state_topic": f"{base}/state", "value_template": SENSOR_TEMPLATE,
              "icon": "mdi:phone"}
    out.append((f"{prefix}/sensor/{node}/call_state/config", json.dumps(sensor).encode()))
    for command, name in BUTTONS:
        button = {**common, "name": name, "unique_id": f"{node}_{command}",
                  "command_topic": f"{base}/cmd", "command_template": command_template(command),
                  "qos": 1, "retain": False}
        out.append((f"{prefix}/button/{node}/{command}/config", json.dumps(button).encode()))
    return out
