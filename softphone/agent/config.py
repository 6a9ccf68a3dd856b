"""The agent's configuration file (TOML): who it is, its SIP accounts, its broker.

Read and checked before anything binds, like the edge's (:mod:`softphone.configfile`): an
unknown key, a missing one or a bad value raises :class:`~softphone.configfile.ConfigError`
naming the file, the key and its line. No ``[mqtt]`` table: the agent runs as a phone alone
and says that control is off.

.. code-block:: toml

    [agent]
    id = "desk-1"                 # the topic segment: softphone/desk-1/...
    listen = ["udp:127.0.0.1:0"]  # SIP transports to bind (port 0: any)
    rtp_ports = "20000-22000"
    codecs = ["opus", "pcma", "pcmu"]
    quality_interval_s = 5

    [mqtt]                        # optional: the control plane
    host = "127.0.0.1"
    port = 1883
    username = ""                 # with password: MQTT username/password authentication
    password = ""
    tls = false                   # TLS to the broker (ca_file: its CA, else the system's)
    ca_file = ""
    keepalive_s = 30
    queue = 1000                  # events kept while the broker is away (older ones dropped)
    backoff_max_s = 30

    [[accounts]]
    name = "main"
    registrar = "sip:127.0.0.1:5060"   # ;transport=tcp / sips: for TLS
    user = "1001"
    password = "demo-1001"
    expires = 300
    emergency = false             # the line has the emergency service (R-EMERG-1)
    country = "FR"                # where the line is: what counts as an emergency code
    outside_line_prefix = ""
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from softphone.codecs.registry import Codec, UnknownCodecError, codec_order_from_names
from softphone.configfile import ConfigError, ConfigText, Section
from softphone.phone.uas import parse_listen
from softphone.sip.errors import SipError
from softphone.sip.transport import ListenSpec
from softphone.sip.uri import SipUri

__all__ = ["Account", "AgentConfig", "ConfigError", "MqttSettings", "load", "parse"]

AGENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_AGENT_KEYS = ("id", "listen", "rtp_ports", "codecs", "quality_interval_s")
_MQTT_KEYS = ("host", "port", "username", "password", "tls", "ca_file", "keepalive_s", "queue",
              "backoff_max_s", "client_id", "homeassistant", "discovery_prefix")
_ACCOUNT_KEYS = ("name", "registrar", "user", "password", "expires", "emergency", "country",
                 "outside_line_prefix", "display_name")


@dataclass(frozen=True)
class Account:
    name: str
    registrar: str
    user: str
    password: str = ""
    expires: int = 300
    emergency: bool = False
    country: str = "FR"
    outside_line_prefix: str = ""
    display_name: str = ""


@dataclass(frozen=True)
class MqttSettings:
    host: str
    port: int = 1883
    username: str = ""
    password: str = ""
    tls: bool = False
    ca_file: str = ""
    keepalive_s: int = 30
    queue: int = 1000
    backoff_max_s: float = 30.0
    client_id: str = ""
    homeassistant: bool = False     # Home Assistant MQTT discovery (softphone.agent.homeassistant)
    discovery_prefix: str = "homeassistant"


@dataclass(frozen=True)
class AgentConfig:
    agent_id: str
    accounts: tuple[Account, ...]
    listen: tuple[ListenSpec, ...] = ()
    rtp_ports: tuple[int, int] = (20000, 22000)
    codecs: tuple[Codec, ...] = ()
    quality_interval_s: float = 5.0
    mqtt: MqttSettings | None = None
    source: str = field(default="<config>", compare=False)


def _port_range(sec: Section, key: str, text: str) -> tuple[int, int]:
    first_s, dash, last_s = text.partition("-")
    if not dash or not first_s.strip().isdigit() or not last_s.strip().isdigit():
        raise sec.error(key, f"must look like 20000-22000, got {text!r}")
    first, last = int(first_s), int(last_s)
    if not 1024 <= first < last <= 65535 or first % 2:
        raise sec.error(key, f"must be an even first port and first < last within 1024-65535, "
                             f"got {text!r}")
    return first, last


def _account(doc: ConfigText, index: int, raw: object, seen: set[str]) -> Account:
    path: tuple[str | int, ...] = ("accounts", index)
    if not isinstance(raw, dict):
        raise doc.error(path, "must be a table")
    sec = Section(doc, path, raw, known=_ACCOUNT_KEYS)
    name = sec.text("name", f"account{index + 1}")
    if not AGENT_ID.match(name):
        raise sec.error("name", f"must be letters, digits, _ or - (at most 64), got {name!r}")
    if name in seen:
        raise sec.error("name", f"{name!r} is already the name of another account")
    seen.add(name)
    registrar = sec.text("registrar")
    try:
        uri = SipUri.parse(registrar)
    except SipError as exc:
        raise sec.error("registrar", f"must be a SIP URI such as sip:127.0.0.1:5060: {exc}") \
            from None
    if uri.scheme not in ("sip", "sips"):
        raise sec.error("registrar", f"must be a sip: or sips: URI, got {registrar!r}")
    user = sec.text("user")
    if not user or any(c in user for c in "@:;<> "):
        raise sec.error("user", f"must be a SIP user part, got {user!r}")
    country = sec.text("country", "FR")
    if len(country) != 2 or not country.isalpha() or not country.isupper():
        raise sec.error("country", f"must be an ISO 3166 alpha-2 code like FR, got {country!r}")
    prefix = sec.text("outside_line_prefix", "")
    if prefix and not prefix.isdigit():
        raise sec.error("outside_line_prefix", f"must be digits, got {prefix!r}")
    return Account(name=name, registrar=registrar, user=user, password=sec.text("password", ""),
                   expires=sec.integer("expires", 300, lo=60, hi=86400),
                   emergency=sec.boolean("emergency", False), country=country,
                   outside_line_prefix=prefix, display_name=sec.text("display_name", ""))


def _mqtt(doc: ConfigText, raw: object) -> MqttSettings:
    if not isinstance(raw, dict):
        raise doc.error(("mqtt",), "must be a table")
    sec = Section(doc, ("mqtt",), raw, known=_MQTT_KEYS)
    host = sec.text("host")
    if not host:
        raise sec.error("host", "must name the broker")
    tls = sec.boolean("tls", False)
    ca_file = sec.text("ca_file", "")
    if ca_file and not Path(ca_file).is_file():
        raise sec.error("ca_file", f"no such file: {ca_file}")
    username, password = sec.text("username", ""), sec.text("password", "")
    if password and not username:
        raise sec.error("password", "given without a username")
    client_id = sec.text("client_id", "")
    backoff = sec.integer("backoff_max_s", 30, lo=1, hi=3600)
    prefix = sec.text("discovery_prefix", "homeassistant")
    if not prefix or any(c in prefix for c in "+#") or prefix.startswith("/") \
            or prefix.endswith("/"):
        raise sec.error("discovery_prefix", f"must be a topic without wildcards or outer "
                                            f"slashes, got {prefix!r}")
    return MqttSettings(host=host, port=sec.integer("port", 8883 if tls else 1883, lo=1, hi=65535),
                        username=username, password=password, tls=tls, ca_file=ca_file,
                        keepalive_s=sec.integer("keepalive_s", 30, lo=5, hi=3600),
                        queue=sec.integer("queue", 1000, lo=1, hi=1_000_000),
                        backoff_max_s=float(backoff), client_id=client_id,
                        homeassistant=sec.boolean("homeassistant", False),
                        discovery_prefix=prefix)


def _read(doc: ConfigText) -> AgentConfig:
    data = doc.data
    for key in data:
        if key not in ("agent", "mqtt", "accounts"):
            raise doc.error((key,), "unknown table (expected agent, mqtt, accounts)")
    raw_agent = data.get("agent", {})
    if not isinstance(raw_agent, dict):
        raise doc.error(("agent",), "must be a table")
    sec = Section(doc, ("agent",), raw_agent, known=_AGENT_KEYS)
    agent_id = sec.text("id")
    if not AGENT_ID.match(agent_id):
        raise sec.error("id", f"must be letters, digits, _ or - (at most 64; it is a topic "
                              f"level), got {agent_id!r}")
    listen: list[ListenSpec] = []
    for text in sec.texts("listen", ["udp:127.0.0.1:0"]):
        try:
            spec = parse_listen(text)
        except SipError as exc:
            raise sec.error("listen", str(exc)) from None
        if spec.transport not in ("udp", "tcp", "tls"):
            raise sec.error("listen", f"transport must be udp, tcp or tls, got {text!r}")
        listen.append(spec)
    if not listen:
        raise sec.error("listen", "needs at least one transport")
    rtp = _port_range(sec, "rtp_ports", sec.text("rtp_ports", "20000-22000"))
    try:
        codecs = codec_order_from_names(sec.texts("codecs", ["opus", "pcma", "pcmu"]))
    except UnknownCodecError as exc:
        raise sec.error("codecs", str(exc)) from None
    interval = sec.integer("quality_interval_s", 5, lo=1, hi=3600)
    raw_accounts = data.get("accounts", [])
    if not isinstance(raw_accounts, list) or not raw_accounts:
        raise doc.error(("accounts",), "needs at least one [[accounts]] table")
    seen: set[str] = set()
    accounts = tuple(_account(doc, i, a, seen) for i, a in enumerate(raw_accounts))
    mqtt = _mqtt(doc, data["mqtt"]) if "mqtt" in data else None
    return AgentConfig(agent_id=agent_id, accounts=accounts, listen=tuple(listen), rtp_ports=rtp,
                       codecs=codecs, quality_interval_s=float(interval), mqtt=mqtt,
                       source=doc.path)


def parse(text: str, path: str = "<config>") -> AgentConfig:
    return _read(ConfigText.parse(text, path))


def load(path: str | Path) -> AgentConfig:
    return _read(ConfigText.load(path))
