"""The edge's configuration: configs/edge.toml (embedded defaults) plus command-line overrides.

Everything is validated before anything binds: a bad value raises :class:`ConfigError`
naming the file, the key and the line, and the edge exits non-zero without starting.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from softphone.configfile import ConfigError, ConfigText, Section
from softphone.edge.trunk import TrunkError, TrunkUri
from softphone.policy.facts import AccountState, CivicAddress, GeoPoint, Location, Plan
from softphone.sip.errors import SipParseError
from softphone.sip.uri import SipUri

KNOWN_CODECS = ("opus", "pcma", "pcmu")
_E = TypeVar("_E", bound=enum.Enum)


class Durability(enum.Enum):
    """When the guard's ledger and the audit log reach the disk (``[data] durability``)."""

    FULL = "full"        # both fsync'd before the SIP messages of that loop turn leave
    RELAXED = "relaxed"  # survives a crash of the process, not a power cut (see docs/POLICY.md)


@dataclass(frozen=True)
class LocalUser:
    ext: str
    password: str
    name: str = ""
    did: str = ""                # the upstream number routed to this user (trunk -> local)
    trunk_user: str = ""         # this user's own upstream account (never shared: R-ACCT-1)
    trunk_password: str = ""
    extra_channels: int = 0      # R-CALLS-1: simultaneous calls beyond the first (paid option)
    emergency: bool | None = None   # R-EMERG-1: service activated; None follows the account
    location: Location | None = None  # R-EMERG-3: where this line is, sent with 112 calls
    recording: bool | None = None   # R-REC: calls recorded (after the notice); None: the account's


@dataclass(frozen=True)
class EdgeConfig:
    bind: str = "127.0.0.1"
    udp_port: int = 5060
    tcp_port: int = 5060
    tls_port: int = 5061
    domain: str = "127.0.0.1"
    realm: str = "softphone"
    digest_algorithms: tuple[str, ...] = ("MD5",)
    flood_rate: int = 200           # requests per second per source address; 0 = no limit
    flood_burst: int = 400
    # in-dialog requests (BYE, re-INVITE, INFO, UPDATE) from another address than the dialog
    # peer's are refused unless they carry that peer's credentials
    dialog_peer_check: bool = True
    # the caller's display name towards the callee: the edge's user table (false) or the phone's
    trust_display_name: bool = False
    # stream connections (TCP/TLS/WS): total, per source address; a message must arrive whole
    # within message_timeout after its first byte; a connection that carries no registration
    # and no call is closed after idle_unregistered seconds of silence
    max_connections: int = 1024
    max_connections_per_address: int = 32
    message_timeout: float = 10.0
    idle_unregistered: float = 30.0
    t1: float = 0.5
    user_agent: str = "softphone-edge/0.1"
    media_bind: str = "127.0.0.1"
    rtp_first: int = 20000
    rtp_last: int = 22000
    codecs: tuple[str, ...] = ("opus", "PCMA", "PCMU")
    jitter_min_ms: int = 20
    jitter_max_ms: int = 200
    rtp_timeout: float = 30.0
    retry_after: int = 5
    # RTP+RTCP ports (two per call leg) only emergency calls may take, and that one user's
    # ordinary calls may hold together (0 = no cap); whom RTP may latch to (media.session)
    emergency_reserved_ports: int = 4
    per_user_max_ports: int = 262
    latch: str = "address-only"
    data_dir: Path = Path("var/edge")
    durability: Durability = Durability.FULL
    trunk_uri: str = ""
    trunk_expires: int = 3600    # the Expires each user's upstream REGISTER asks for
    echo_ext: str = "600"
    tone_ext: str = "601"
    app_calls_per_user: int = 1  # simultaneous calls of one user to 600/601
    demo_prefix: str = "demo-"
    account_id: str = "demo"
    country: str = "FR"
    emergency_route: str = ""    # the emergency gateway; "" = the policy's route per country
    # the emergency INVITE's Request-URI: the service URN (RFC 6881) or the route itself
    emergency_request_uri: str = "service-urn"
    recording: bool = False      # R-REC: the account's recording option (users may override)
    plan: Plan = Plan.UNLIMITED  # "unlimited" (R-LIMIT-1/2, R-CLI-1/2, R-ACCT-3) or "usage"
    state: AccountState = AccountState.ACTIVE   # lifecycle (R-BILL-10, R-LIMIT-3/8, R-LIFE-5)
    trial: bool = False          # R-LIMIT-7: trial seats and minutes
    smart_pack: bool = False     # R-LIMIT-4: distinct contacts a month
    sip_option: bool = False     # R-ACCT-3: automated dialing watched
    emergency: bool = False      # R-EMERG-1: the account's activation (users may override)
    outside_line_prefix: str = ""  # "0" or "9": dialled before an outside number ("0112" is 112)
    emergency_callback_s: int = 3600  # how long after an emergency call the gateway may call back
    timezone: str = "Europe/Paris"  # the account's calendar (R-LIMIT-3: 7 calendar days)
    # R-ACCT-5: this many authentication failures within auth_window_s lock the source address
    # (and the user) out for auth_lockout_s
    max_auth_failures: int = 10
    auth_window_s: int = 60
    auth_lockout_s: int = 600
    http_bind: str = "127.0.0.1"  # the operator's HTTP listener: /metrics, /healthz, /api/status
    http_port: int = 8080         # 0 = no HTTP listener
    # the web phone's https/wss: required off loopback; empty = the SIP TLS listener's own
    http_tls_cert: str = ""
    http_tls_key: str = ""
    users: tuple[LocalUser, ...] = field(default_factory=tuple)
    source: str = "configs/edge.toml"

    def user(self, ext: str) -> LocalUser | None:
        for u in self.users:
            if u.ext == ext:
                return u
        return None

    @property
    def has_demo_passwords(self) -> bool:
        """A user's password starts with the demo prefix, or is one of the shipped
        configuration's (whatever ``password_prefix`` says: emptying it hides nothing)."""
        shipped = shipped_passwords()
        return any((self.demo_prefix and u.password.startswith(self.demo_prefix))
                   or u.password in shipped for u in self.users)

    def demo_users(self) -> list[str]:
        shipped = shipped_passwords()
        return [u.ext for u in self.users if u.password in shipped
                or (self.demo_prefix and u.password.startswith(self.demo_prefix))]


@functools.cache
def shipped_passwords() -> frozenset[str]:
    """Every password of the embedded configs/edge.toml: known to anyone with the package."""
    users = ConfigText.embedded("edge.toml").data.get("users", [])
    return frozenset(str(u["password"]) for u in users
                     if isinstance(u, dict) and isinstance(u.get("password"), str))


def parse_port_range(text: str) -> tuple[int, int]:
    """``"20000-22000"`` -> (20000, 22000); the first port even, at least one RTP/RTCP pair."""
    first_s, dash, last_s = text.partition("-")
    if not dash or not first_s.strip().isdigit() or not last_s.strip().isdigit():
        raise ValueError(f"must look like 20000-22000, got {text!r}")
    first, last = int(first_s), int(last_s)
    if not 1024 <= first < last <= 65535:
        raise ValueError(f"must lie within 1024-65535 with first < last, got {text!r}")
    if first % 2:
        raise ValueError(f"must start on an even port (RTP even, RTCP odd), got {first}")
    return first, last


def _check_ip(sec: Section, key: str, value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise sec.error(key, f"must be an IP address, got {value!r}") from None
    return value


def _check_trunk(sec: Section, uri: str) -> str:
    if uri:
        try:
            TrunkUri.parse(uri)
        except TrunkError as exc:
            raise sec.error("uri", str(exc)) from None
    return uri


# [[users]] location keys -> CivicAddress fields (RFC 5139 element in the comment)
_CIVIC_KEYS = (("region", "a1"), ("city", "a3"), ("street", "rd"), ("number", "hno"),
               ("number_suffix", "hns"), ("postcode", "pc"), ("floor", "flr"), ("room", "room"),
               ("name", "nam"), ("note", "loc"))
_LOCATION_KEYS = ("country", *(k for k, _ in _CIVIC_KEYS), "latitude", "longitude", "radius_m")


def _location(doc: ConfigText, path: tuple[str | int, ...], raw: object) -> Location:
    """A user's recorded location: a civic address (country and at least a city or postcode)
    and/or a WGS 84 point. Written as an inline table, its keys have no line of their own:
    errors inside it point at the ``location`` line."""
    try:
        return _read_location(doc, path, raw)
    except ConfigError as exc:
        if exc.line is not None:
            raise
        message = str(exc).split(f"{exc.key}: ", 1)[-1]
        raise ConfigError(exc.path, exc.key, message, doc.line_of(path)) from None


def _read_location(doc: ConfigText, path: tuple[str | int, ...], raw: object) -> Location:
    if not isinstance(raw, dict):
        raise doc.error(path, "must be a table, e.g. { country = \"FR\", city = \"Paris\", "
                              "street = \"...\", postcode = \"75001\" }")
    sec = Section(doc, path, raw, known=_LOCATION_KEYS)
    country = sec.text("country")
    if len(country) != 2 or not country.isalpha() or not country.isupper():
        raise sec.error("country", f"must be an ISO 3166 alpha-2 code like FR, got {country!r}")
    fields = {attr: sec.text(key, "") for key, attr in _CIVIC_KEYS}
    civic = CivicAddress(country=country, **fields) if any(fields.values()) else None
    point = None
    if "latitude" in raw or "longitude" in raw:
        coords: list[float] = []
        for key, bound in (("latitude", 90.0), ("longitude", 180.0)):
            value = raw.get(key)
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not -bound <= value <= bound:
                raise sec.error(key, f"must be a number within +-{bound:g}, got {value!r}")
            coords.append(float(value))
        radius = raw.get("radius_m")
        if radius is not None and (isinstance(radius, bool) or not isinstance(radius, int | float)
                                   or radius <= 0):
            raise sec.error("radius_m", f"must be a positive number of metres, got {radius!r}")
        point = GeoPoint(coords[0], coords[1], None if radius is None else float(radius))
    elif "radius_m" in raw:
        raise sec.error("radius_m", "needs latitude and longitude")
    if civic is None and point is None:
        raise doc.error(path, "needs a civic address (city, street, postcode...) or "
                              "latitude/longitude besides the country")
    return Location(country=country, civic=civic, point=point)


def _check_route(sec: Section, uri: str) -> str:
    if uri:
        try:
            parsed = SipUri.parse(uri)
        except SipParseError as exc:
            raise sec.error("route", f"must be a SIP URI: {exc}") from None
        if parsed.scheme not in ("sip", "sips"):
            raise sec.error("route", f"must be a sip: URI, got {uri!r}")
    return uri


EMERGENCY_REQUEST_URIS = ("service-urn", "route")
LATCH_MODES = ("address-only", "strict", "any")  # media.session.LATCH_MODES, default first


def _even_ports(sec: Section, key: str, default: int, hi: int) -> int:
    value = sec.integer(key, default, lo=0, hi=hi)
    if value % 2:
        raise sec.error(key, f"must be even (RTP and RTCP ports go in pairs), got {value}")
    return value


def check_media_shares(first: int, last: int, reserved_ports: int) -> str | None:
    """Why the emergency share does not fit the RTP range, or None."""
    pairs = (last - first + 1) // 2
    if reserved_ports // 2 >= pairs:
        return (f"the RTP range {first}-{last} holds {pairs} port pairs; "
                f"emergency_reserved_ports = {reserved_ports} would leave none for other calls")
    return None


def _one_of(sec: Section, key: str, allowed: tuple[str, ...]) -> str:
    """A text key with a fixed set of values, the first being the default."""
    text = sec.text(key, allowed[0])
    if text not in allowed:
        raise sec.error(key, f"must be one of {', '.join(allowed)}, got {text!r}")
    return text


def _choice(sec: Section, key: str, kind: type[_E], default: _E) -> _E:
    """An enum-valued key, by its value ("usage", "billing_suspended"...)."""
    text = sec.text(key, default.value)
    try:
        return kind(text)
    except ValueError:
        names = ", ".join(str(m.value) for m in kind)
        raise sec.error(key, f"must be one of {names}, got {text!r}") from None


def load_edge_config(path: str | Path | None = None) -> EdgeConfig:
    doc = ConfigText.load(path) if path is not None else ConfigText.embedded("edge.toml")
    d = doc.data
    top = Section(doc, (), d, known=("sip", "media", "data", "trunk", "extensions", "demo",
                                     "account", "emergency", "users", "security", "http"))
    sip = Section(doc, ("sip",), d.get("sip", {}), known=(
        "bind", "udp_port", "tcp_port", "tls_port", "domain", "realm", "digest_algorithms", "t1_ms",
        "flood_rate_per_s", "flood_burst", "dialog_peer_check", "trust_display_name",
        "max_connections", "max_connections_per_address", "message_timeout_s",
        "idle_unregistered_s", "user_agent"))
    media = Section(doc, ("media",), d.get("media", {}), known=(
        "bind", "rtp_ports", "codecs", "jitter_min_ms", "jitter_max_ms", "rtp_timeout_s",
        "retry_after_s", "emergency_reserved_ports", "per_user_max_ports", "latch"))
    data = Section(doc, ("data",), d.get("data", {}), known=("dir", "durability"))
    trunk = Section(doc, ("trunk",), d.get("trunk", {}), known=("uri", "expires"))
    ext = Section(doc, ("extensions",), d.get("extensions", {}),
                  known=("echo", "tone", "calls_per_user"))
    demo = Section(doc, ("demo",), d.get("demo", {}), known=("password_prefix",))
    acct = Section(doc, ("account",), d.get("account", {}), known=(
        "id", "country", "recording", "plan", "state", "trial", "smart_pack", "sip_option",
        "emergency", "outside_line_prefix", "timezone"))
    emergency = Section(doc, ("emergency",), d.get("emergency", {}),
                        known=("route", "request_uri", "callback_window_s"))
    security = Section(doc, ("security",), d.get("security", {}),
                       known=("max_auth_failures", "window_s", "lockout_s"))
    http = Section(doc, ("http",), d.get("http", {}), known=("bind", "port", "tls_cert", "tls_key"))
    prefix = acct.text("outside_line_prefix", "")
    if not (prefix.isdigit() and prefix.isascii() and len(prefix) <= 2) and prefix:
        raise acct.error("outside_line_prefix",
                         f"must be one or two digits like \"0\" or \"9\", got {prefix!r}")
    country = acct.text("country", "FR")
    if len(country) != 2 or not country.isalpha() or not country.isupper():
        raise acct.error("country", f"must be an ISO 3166 alpha-2 code like FR, got {country!r}")
    del top
    plan = _choice(acct, "plan", Plan, Plan.UNLIMITED)
    state = _choice(acct, "state", AccountState, AccountState.ACTIVE)
    timezone = acct.text("timezone", "Europe/Paris")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise acct.error("timezone", f"unknown time zone {timezone!r} (an IANA name like "
                         "Europe/Paris)") from None

    rtp_text = media.text("rtp_ports", "20000-22000")
    try:
        rtp_first, rtp_last = parse_port_range(rtp_text)
    except ValueError as exc:
        raise media.error("rtp_ports", str(exc)) from None
    codecs = media.texts("codecs", ["opus", "PCMA", "PCMU"])
    for name in codecs:
        if name.lower() not in KNOWN_CODECS:
            raise media.error("codecs", f"unknown codec {name!r} (known: opus, PCMA, PCMU)")
    if not codecs:
        raise media.error("codecs", "must name at least one codec")
    reserved_ports = _even_ports(media, "emergency_reserved_ports", 4, 65534)
    why = check_media_shares(rtp_first, rtp_last, reserved_ports)
    if why is not None:
        raise media.error("emergency_reserved_ports", why)
    per_user_ports = _even_ports(media, "per_user_max_ports", 262, 65534)
    if per_user_ports and per_user_ports < 4:
        raise media.error("per_user_max_ports", "must be 0 (no cap) or at least 4 (the two "
                          f"pairs of one call), got {per_user_ports}")
    latch = _one_of(media, "latch", LATCH_MODES)
    jmin = media.integer("jitter_min_ms", 20, lo=0, hi=1000)
    jmax = media.integer("jitter_max_ms", 200, lo=20, hi=2000)
    if jmax < jmin:
        raise media.error("jitter_max_ms", f"must be >= jitter_min_ms ({jmin})")

    users: list[LocalUser] = []
    raw_users = d.get("users", [])
    if not isinstance(raw_users, list):
        raise doc.error(("users",), "must be an array of tables ([[users]])")
    seen: set[str] = set()
    for i, raw in enumerate(raw_users):
        u = Section(doc, ("users", i), raw, known=(
            "ext", "password", "name", "did", "trunk_user", "trunk_password", "extra_channels",
            "emergency", "location", "recording"))
        ext_no = u.text("ext")
        if not ext_no.isdigit():
            raise u.error("ext", f"must be digits, got {ext_no!r}")
        if ext_no in seen:
            raise u.error("ext", f"duplicate extension {ext_no}")
        seen.add(ext_no)
        password = u.text("password")
        if len(password) < 4:
            raise u.error("password", "must be at least 4 characters")
        trunk_user, trunk_password = u.text("trunk_user", ""), u.text("trunk_password", "")
        users.append(LocalUser(ext=ext_no, password=password, name=u.text("name", ""),
                               did=u.text("did", ""), trunk_user=trunk_user,
                               trunk_password=trunk_password,
                               extra_channels=u.integer("extra_channels", 0, lo=0, hi=64),
                               emergency=u.boolean("emergency") if "emergency" in raw else None,
                               location=(_location(doc, ("users", i, "location"), raw["location"])
                                         if "location" in raw else None),
                               recording=u.boolean("recording") if "recording" in raw else None))
    trunk_accounts = [u.trunk_user for u in users if u.trunk_user]
    if len(trunk_accounts) != len(set(trunk_accounts)):
        dup = next(a for a in trunk_accounts if trunk_accounts.count(a) > 1)
        idx = next(i for i, u in enumerate(users) if u.trunk_user == dup)
        raise doc.error(("users", idx, "trunk_user"),
                        f"upstream account {dup!r} is mapped to several users; the terms allow "
                        "one person per account (R-ACCT-1)")
    for idx, lu in enumerate(users):
        if lu.trunk_user and not lu.trunk_password:
            raise doc.error(("users", idx, "trunk_password"),
                            f"user {lu.ext} has a trunk_user but no trunk_password")

    algorithms = sip.texts("digest_algorithms", ["MD5"])
    for alg in algorithms:
        if alg.upper() not in ("MD5", "SHA-256"):
            raise sip.error("digest_algorithms", f"unknown algorithm {alg!r} (MD5, SHA-256)")
    if not algorithms:
        raise sip.error("digest_algorithms", "must name at least one algorithm")

    echo_ext = ext.text("echo", "600")
    tone_ext = ext.text("tone", "601")
    if echo_ext in seen or tone_ext in seen:
        raise ext.error("echo" if echo_ext in seen else "tone", "clashes with a user's extension")

    cfg = EdgeConfig(
        bind=_check_ip(sip, "bind", sip.text("bind", "127.0.0.1")),
        udp_port=sip.integer("udp_port", 5060, lo=0, hi=65535),
        tcp_port=sip.integer("tcp_port", 5060, lo=0, hi=65535),
        tls_port=sip.integer("tls_port", 5061, lo=0, hi=65535),
        domain=sip.text("domain", "127.0.0.1"),
        realm=sip.text("realm", "softphone"),
        digest_algorithms=tuple(a.upper() for a in algorithms),
        flood_rate=sip.integer("flood_rate_per_s", 200, lo=0, hi=1_000_000),
        flood_burst=sip.integer("flood_burst", 400, lo=1, hi=1_000_000),
        dialog_peer_check=sip.boolean("dialog_peer_check", True),
        trust_display_name=sip.boolean("trust_display_name", False),
        max_connections=sip.integer("max_connections", 1024, lo=8, hi=1_000_000),
        max_connections_per_address=sip.integer("max_connections_per_address", 32, lo=1,
                                                hi=1_000_000),
        message_timeout=float(sip.integer("message_timeout_s", 10, lo=1, hi=600)),
        idle_unregistered=float(sip.integer("idle_unregistered_s", 30, lo=1, hi=86400)),
        t1=sip.integer("t1_ms", 500, lo=50, hi=10000) / 1000.0,
        user_agent=sip.text("user_agent", "softphone-edge/0.1"),
        media_bind=_check_ip(media, "bind", media.text("bind", "127.0.0.1")),
        rtp_first=rtp_first,
        rtp_last=rtp_last,
        codecs=tuple(codecs),
        jitter_min_ms=jmin,
        jitter_max_ms=jmax,
        rtp_timeout=float(media.integer("rtp_timeout_s", 30, lo=1, hi=3600)),
        retry_after=media.integer("retry_after_s", 5, lo=0, hi=3600),
        emergency_reserved_ports=reserved_ports,
        per_user_max_ports=per_user_ports,
        latch=latch,
        data_dir=Path(data.text("dir", "var/edge")),
        durability=_choice(data, "durability", Durability, Durability.FULL),
        trunk_uri=_check_trunk(trunk, trunk.text("uri", "")),
        trunk_expires=trunk.integer("expires", 3600, lo=60, hi=86400),
        echo_ext=echo_ext,
        tone_ext=tone_ext,
        app_calls_per_user=ext.integer("calls_per_user", 1, lo=1, hi=64),
        demo_prefix=demo.text("password_prefix", "demo-"),
        account_id=acct.text("id", "demo"),
        country=country,
        recording=acct.boolean("recording", False),
        plan=plan,
        state=state,
        trial=acct.boolean("trial", False),
        smart_pack=acct.boolean("smart_pack", False),
        sip_option=acct.boolean("sip_option", False),
        emergency=acct.boolean("emergency", False),
        outside_line_prefix=prefix,
        emergency_callback_s=emergency.integer("callback_window_s", 3600, lo=0, hi=7 * 86400),
        timezone=timezone,
        emergency_route=_check_route(emergency, emergency.text("route", "")),
        emergency_request_uri=_one_of(emergency, "request_uri", EMERGENCY_REQUEST_URIS),
        max_auth_failures=security.integer("max_auth_failures", 10, lo=1, hi=100_000),
        auth_window_s=security.integer("window_s", 60, lo=1, hi=86400),
        auth_lockout_s=security.integer("lockout_s", 600, lo=0, hi=7 * 86400),
        users=tuple(users),
        source=doc.path,
        http_bind=_check_ip(http, "bind", http.text("bind", "127.0.0.1")),
        http_port=http.integer("port", 8080, lo=0, hi=65535),
        http_tls_cert=http.text("tls_cert", ""),
        http_tls_key=http.text("tls_key", ""),
    )
    if bool(cfg.http_tls_cert) != bool(cfg.http_tls_key):
        raise http.error("tls_cert" if not cfg.http_tls_cert else "tls_key",
                         "tls_cert and tls_key go together (a PEM certificate chain and its key)")
    return cfg


@dataclass(frozen=True)
class Overrides:
    """Command-line flags; None leaves the file's value."""

    bind: str | None = None
    sip_port: int | None = None
    tls_port: int | None = None
    rtp_ports: str | None = None
    trunk: str | None = None
    data_dir: str | None = None
    durability: str | None = None
    http_port: int | None = None


def apply_overrides(cfg: EdgeConfig, o: Overrides) -> EdgeConfig:
    changes: dict[str, object] = {}
    if o.bind is not None:
        try:
            ipaddress.ip_address(o.bind)
        except ValueError:
            raise ConfigError("--bind", "bind", f"must be an IP address, got {o.bind!r}") from None
        changes.update(bind=o.bind, media_bind=o.bind, domain=o.bind)
    if o.sip_port is not None:
        if not 0 <= o.sip_port <= 65535:
            raise ConfigError("--sip-port", "sip.udp_port", f"out of range: {o.sip_port}")
        changes.update(udp_port=o.sip_port, tcp_port=o.sip_port)
    if o.tls_port is not None:
        if not 0 <= o.tls_port <= 65535:
            raise ConfigError("--tls-port", "sip.tls_port", f"out of range: {o.tls_port}")
        changes["tls_port"] = o.tls_port
    if o.rtp_ports is not None:
        try:
            first, last = parse_port_range(o.rtp_ports)
        except ValueError as exc:
            raise ConfigError("--rtp-ports", "media.rtp_ports", str(exc)) from None
        why = check_media_shares(first, last, cfg.emergency_reserved_ports)
        if why is not None:
            raise ConfigError("--rtp-ports", "media.rtp_ports", why)
        changes.update(rtp_first=first, rtp_last=last)
    if o.trunk is not None:
        if o.trunk:
            try:
                TrunkUri.parse(o.trunk)
            except TrunkError as exc:
                raise ConfigError("--trunk", "trunk.uri", str(exc)) from None
        changes["trunk_uri"] = o.trunk
    if o.data_dir is not None:
        changes["data_dir"] = Path(o.data_dir)
    if o.durability is not None:
        try:
            changes["durability"] = Durability(o.durability)
        except ValueError:
            raise ConfigError("--durability", "data.durability",
                              f"must be full or relaxed, got {o.durability!r}") from None
    if o.http_port is not None:
        if not 0 <= o.http_port <= 65535:
            raise ConfigError("--http-port", "http.port", f"out of range: {o.http_port}")
        changes["http_port"] = o.http_port
    return replace(cfg, **changes)  # type: ignore[arg-type]


def check_exposure(cfg: EdgeConfig) -> None:
    """Demo passwords (the prefix's, or any password of the shipped configuration) never
    leave loopback; nor does the web phone's plain http/ws (a browser sends its SIP password
    over that WebSocket: off loopback it is https/wss or nothing)."""
    if cfg.http_port and not ipaddress.ip_address(cfg.http_bind).is_loopback \
            and not cfg.http_tls_cert and not cfg.tls_port:
        raise ConfigError(cfg.source, "http.bind",
                          f"refusing to serve the web phone on {cfg.http_bind} over plain http/ws: "
                          "off loopback it is https/wss only; set [http] tls_cert and tls_key, or "
                          "turn on sip.tls_port to use the SIP listener's certificate")
    for key, addr in (("sip.bind", cfg.bind), ("media.bind", cfg.media_bind),
                      ("http.bind", cfg.http_bind if cfg.http_port else "127.0.0.1")):
        if cfg.has_demo_passwords and not ipaddress.ip_address(addr).is_loopback:
            prefix = f"starting with {cfg.demo_prefix!r} or " if cfg.demo_prefix else ""
            raise ConfigError(cfg.source, key,
                              f"refusing to bind {addr}: users {', '.join(cfg.demo_users())} "
                              f"still have demo passwords ({prefix}from the shipped "
                              "configuration); change them first")
