"""Home Assistant discovery payloads: topics, availability, and button templates that render
to commands the agent accepts, a new token at each press."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from softphone.agent.homeassistant import discovery
from softphone.agent.messages import parse_command, schema

jsonschema = pytest.importorskip("jsonschema")


def test_a_sensor_and_two_buttons_under_the_prefix() -> None:
    configs = dict(discovery("desk-1", "ha"))
    assert sorted(configs) == ["ha/button/softphone_desk-1/answer/config",
                               "ha/button/softphone_desk-1/hangup/config",
                               "ha/sensor/softphone_desk-1/call_state/config"]
    sensor = json.loads(configs["ha/sensor/softphone_desk-1/call_state/config"])
    assert sensor["state_topic"] == "softphone/desk-1/state"
    assert sensor["availability"][0]["topic"] == "softphone/desk-1/status"
    ids = {json.loads(p)["unique_id"] for p in configs.values()}
    assert len(ids) == 3
    for payload in configs.values():
        assert json.loads(payload)["device"]["identifiers"] == ["softphone_desk-1"]


def test_the_templates_render_to_valid_commands_with_a_token_per_press() -> None:
    jinja2 = pytest.importorskip("jinja2")
    env = jinja2.Environment()
    t0 = datetime(2026, 1, 1, 12, 0, 0)
    rendered = []
    for command in ("answer", "hangup"):
        button = json.loads(dict(discovery("d"))[f"homeassistant/button/softphone_d/{command}"
                                                  "/config"])
        template = env.from_string(button["command_template"])
        for press in (t0, t0 + timedelta(milliseconds=1500)):
            text = template.render(now=lambda p=press: p, value="PRESS")
            jsonschema.validate(json.loads(text), schema("command"))
            rendered.append(parse_command(text.encode()))
    assert [c.command for c in rendered] == ["answer", "answer", "hangup", "hangup"]
    assert len({c.token for c in rendered}) == 4
    sensor = json.loads(dict(discovery("d"))["homeassistant/sensor/softphone_d/call_state/config"])
    value = env.from_string(sensor["value_template"])
    assert value.render(value_json={"call": None}) == "idle"
    assert value.render(value_json={"call": {"state": "established"}}) == "established"
