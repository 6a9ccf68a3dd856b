"""The control plane's messages: commands read and checked, replies, events, state, status.

Every message is a JSON object with ``"version": 1`` (``VERSION``); each kind has a JSON
Schema file in ``softphone/agent/schemas/`` (installed with the package; the tests check
what the agent publishes against them). A command is checked here by hand, field by field,
with the same rules as ``command.schema.json``, so that an invalid one gets an error naming
the field and the agent never needs the schema library at run time.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

VERSION = 1
TOKEN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
DIGITS = re.compile(r"^[0-9*#A-D]{1,32}$")
CALL_REF = re.compile(r"^c[0-9]{1,9}$")
COMMANDS = ("dial", "answer", "reject", "hangup", "dtmf", "hold", "resume", "mute", "record",
            "status", "transfer")
# the fields each command takes beside version, token and command (required, optional)
FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "dial": (("target",), ("account",)),
    "answer": ((), ("call",)),
    "reject": ((), ("call", "status")),
    "hangup": ((), ("call",)),
    "dtmf": (("digits",), ("call",)),
    "hold": ((), ("call",)),
    "resume": ((), ("call",)),
    "mute": (("on",), ()),
    "record": (("on",), ("call",)),
    "status": ((), ()),
    "transfer": (("target",), ("call",)),
}
MAX_COMMAND_BYTES = 4096
SCHEMAS = ("command", "cmd_resp", "event", "state", "status")


class CommandError(Exception):
    """A command that cannot be carried out; ``field`` names the culprit when there is one."""

    def __init__(self, code: str, message: str, *, field: str | None = None,
                 rule: str | None = None, clause: str | None = None) -> None:
        super().__init__(message)
        self.code = code  # "invalid" | "unknown_call" | "wrong_state" | "refused" | "failed"
        self.message = message
        self.field = field
        self.rule = rule
        self.clause = clause

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            out["field"] = self.field
        if self.rule is not None:
            out["rule"] = self.rule
        if self.clause:
            out["clause"] = self.clause
        return out


@dataclass(frozen=True)
class Command:
    token: str
    command: str
    args: dict[str, Any] = field(default_factory=dict)


def _invalid(name: str, message: str) -> CommandError:
    return CommandError("invalid", f"{name}: {message}", field=name)


def token_of(payload: bytes) -> str | None:
    """The command's token if one can be read at all (to know where to answer)."""
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(data, dict):
        token = data.get("token")
        if isinstance(token, str) and TOKEN.match(token):
            return token
    return None


def parse_command(payload: bytes) -> Command:
    """Read one ``cmd`` message; raises :class:`CommandError` naming the field at fault."""
    if len(payload) > MAX_COMMAND_BYTES:
        raise CommandError("invalid", f"message longer than {MAX_COMMAND_BYTES} bytes")
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CommandError("invalid", f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CommandError("invalid", "must be a JSON object")
    version = data.get("version")
    if version != VERSION or isinstance(version, bool):
        raise _invalid("version", f"must be {VERSION}, got {version!r}")
    token = data.get("token")
    if not isinstance(token, str) or not TOKEN.match(token):
        raise _invalid("token", f"must be 1-64 of A-Z a-z 0-9 _ . -, got {token!r}")
    name = data.get("command")
    if not isinstance(name, str) or name not in COMMANDS:
        raise _invalid("command", f"must be one of {', '.join(COMMANDS)}, got {name!r}")
    required, optional = FIELDS[name]
    args: dict[str, Any] = {}
    for key in data:
        if key in ("version", "token", "command"):
            continue
        if key not in required and key not in optional:
            raise _invalid(key, f"not a field of {name}")
    for key in required:
        if key not in data:
            raise _invalid(key, f"required by {name}")
    for key in (*required, *optional):
        if key in data:
            args[key] = _check(key, data[key])
    return Command(token, name, args)


def _check(key: str, value: Any) -> Any:
    if key in ("target", "account"):
        if not isinstance(value, str) or not 1 <= len(value) <= 256 or any(
                ord(c) < 0x20 or c in "<> " for c in value):
            raise _invalid(key, f"must be a non-empty string without spaces or <>, got {value!r}")
    elif key == "call":
        if not isinstance(value, str) or not CALL_REF.match(value):
            raise _invalid(key, f"must be a call id such as c1, got {value!r}")
    elif key == "digits":
        if not isinstance(value, str) or not DIGITS.match(value):
            raise _invalid(key, f"must be 1-32 of 0-9 * # A-D, got {value!r}")
    elif key == "on":
        if not isinstance(value, bool):
            raise _invalid(key, f"must be true or false, got {value!r}")
    elif key == "status":
        if isinstance(value, bool) or not isinstance(value, int) or not 400 <= value <= 699:
            raise _invalid(key, f"must be a SIP status 400-699, got {value!r}")
    return value


def reply(token: str, command: str | None, *, result: dict[str, Any] | None = None,
          error: CommandError | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"version": VERSION, "token": token, "command": command,
                           "ok": error is None}
    if error is None:
        out["result"] = result or {}
    else:
        out["error"] = error.as_dict()
    return out


def status(online: bool) -> dict[str, Any]:
    """The ``status`` payload (the Will is the offline one, fixed at connect)."""
    return {"version": VERSION, "status": "online" if online else "offline"}


def schema(name: str) -> dict[str, Any]:
    """One of the JSON Schema files shipped with the package: command, cmd_resp, event,
    state, status."""
    if name not in SCHEMAS:
        raise KeyError(name)
    text = resources.files("softphone.agent").joinpath(f"schemas/{name}.schema.json") \
        .read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def dumps(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), sort_keys=True).encode()
