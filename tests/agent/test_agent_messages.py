"""Commands checked field by field as their JSON Schema says, replies and status against
theirs: the hand-written checks and the shipped schema agree on every case below."""

from __future__ import annotations

import json
from typing import Any

import pytest

from softphone.agent.messages import (
    CommandError,
    parse_command,
    reply,
    schema,
    status,
    token_of,
)

jsonschema = pytest.importorskip("jsonschema")

VALID: list[dict[str, Any]] = [
    {"version": 1, "token": "t1", "command": "dial", "target": "600"},
    {"version": 1, "token": "t-2.x_", "command": "dial", "target": "sip:600@127.0.0.1:5060",
     "account": "main"},
    {"version": 1, "token": "t3", "command": "answer"},
    {"version": 1, "token": "t4", "command": "reject", "call": "c1", "status": 603},
    {"version": 1, "token": "t5", "command": "hangup", "call": "c12"},
    {"version": 1, "token": "t6", "command": "dtmf", "digits": "0123456789*#ABCD"},
    {"version": 1, "token": "t7", "command": "hold"},
    {"version": 1, "token": "t8", "command": "resume", "call": "c1"},
    {"version": 1, "token": "t9", "command": "mute", "on": True},
    {"version": 1, "token": "t10", "command": "status"},
    {"version": 1, "token": "t11", "command": "record", "on": False, "call": "c2"},
    {"version": 1, "token": "t12", "command": "transfer", "target": "1003"},
    {"version": 1, "token": "t13", "command": "transfer", "target": "sip:1003@127.0.0.1",
     "call": "c4"},
]

# (message, the field the error names)
INVALID: list[tuple[dict[str, Any], str]] = [
    ({"version": 2, "token": "t", "command": "status"}, "version"),
    ({"version": True, "token": "t", "command": "status"}, "version"),
    ({"version": 1, "token": "a/b", "command": "status"}, "token"),
    ({"version": 1, "token": "t" * 65, "command": "status"}, "token"),
    ({"version": 1, "command": "status"}, "token"),
    ({"version": 1, "token": "t", "command": "teleport"}, "command"),
    ({"version": 1, "token": "t", "command": "dial"}, "target"),
    ({"version": 1, "token": "t", "command": "dial", "target": ""}, "target"),
    ({"version": 1, "token": "t", "command": "dial", "target": "6 00"}, "target"),
    ({"version": 1, "token": "t", "command": "dial", "target": 600}, "target"),
    ({"version": 1, "token": "t", "command": "dial", "target": "600", "digits": "1"},
     "digits"),
    ({"version": 1, "token": "t", "command": "dtmf", "digits": "12x"}, "digits"),
    ({"version": 1, "token": "t", "command": "dtmf"}, "digits"),
    ({"version": 1, "token": "t", "command": "mute", "on": "yes"}, "on"),
    ({"version": 1, "token": "t", "command": "mute"}, "on"),
    ({"version": 1, "token": "t", "command": "record"}, "on"),
    ({"version": 1, "token": "t", "command": "record", "on": 1}, "on"),
    ({"version": 1, "token": "t", "command": "reject", "status": 200}, "status"),
    ({"version": 1, "token": "t", "command": "reject", "status": True}, "status"),
    ({"version": 1, "token": "t", "command": "hangup", "call": "x1"}, "call"),
    ({"version": 1, "token": "t", "command": "status", "extra": 1}, "extra"),
    ({"version": 1, "token": "t", "command": "transfer"}, "target"),
    ({"version": 1, "token": "t", "command": "transfer", "target": "<sip:1003@h>"}, "target"),
    ({"version": 1, "token": "t", "command": "transfer", "target": "1003", "account": "main"},
     "account"),
]


@pytest.mark.parametrize("message", VALID, ids=lambda m: str(m["token"]))
def test_valid_commands_pass_both_checks(message: dict[str, Any]) -> None:
    jsonschema.validate(message, schema("command"))
    cmd = parse_command(json.dumps(message).encode())
    assert cmd.token == message["token"] and cmd.command == message["command"]


@pytest.mark.parametrize(("message", "field"), INVALID, ids=lambda x: str(x)[:60])
def test_invalid_commands_fail_both_checks_and_the_error_names_the_field(
        message: dict[str, Any], field: str) -> None:
    assert not jsonschema.Draft202012Validator(schema("command")).is_valid(message)
    with pytest.raises(CommandError) as err:
        parse_command(json.dumps(message).encode())
    assert err.value.code == "invalid" and err.value.field == field, err.value.message
    answer = reply("t", message.get("command"), error=err.value)
    jsonschema.validate(answer, schema("cmd_resp"))
    assert answer["error"]["field"] == field


@pytest.mark.parametrize("payload", [b"", b"{", b"[]", b"\xff\xfe", b"null",
                                     b'{"token": "t"}' + b" " * 5000])
def test_unreadable_payloads_are_errors_not_crashes(payload: bytes) -> None:
    with pytest.raises(CommandError):
        parse_command(payload)


def test_the_token_is_read_even_from_an_invalid_command() -> None:
    assert token_of(b'{"token": "abc", "command": 5}') == "abc"
    assert token_of(b'{"token": "a/b"}') is None  # never a topic level of its own
    assert token_of(b"{") is None


def test_replies_and_status_validate() -> None:
    ok = reply("t1", "dial", result={"call": "c1"})
    jsonschema.validate(ok, schema("cmd_resp"))
    refused = reply("t2", "dial", error=CommandError("refused", "busy", rule="R-CALLS-1",
                                                     clause="Terms, Annex 4"))
    jsonschema.validate(refused, schema("cmd_resp"))
    for online in (True, False):
        jsonschema.validate(status(online), schema("status"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**ok, "error": {"code": "failed", "message": "x"}},
                            schema("cmd_resp"))
