"""Facts the edge hands to the policy guard: who, from which device, which direction, which
numbers, what the account has bought and what state it is in, and the time.

All frozen: a fact is a statement about one instant, and the guard must be able to keep it
(for later decision points of the same call) without the caller mutating it underneath.
Times are POSIX seconds (float, UTC); the guard turns them into local days and months with the
time zone of the policy configuration.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Direction(enum.Enum):
    OUTBOUND = "outbound"  # placed by our user
    INBOUND = "inbound"  # towards our user


class DeviceClass(enum.Enum):
    """Endpoint classes of R-TECH-1: a browser, an IP desk phone, the mobile app."""

    WEBRTC = "webrtc"
    SIP = "sip"
    MOBILE = "mobile"


class AccountState(enum.Enum):
    """Account lifecycle states the edge reflects (R-LIFE-5)."""

    ACTIVE = "active"
    UNLIMITED_SUSPENDED = "unlimited_suspended"  # R-LIMIT-3: calls go on, out of bundle
    BILLING_SUSPENDED = "billing_suspended"  # R-BILL-10
    ABUSE_SUSPENDED = "abuse_suspended"  # R-LIMIT-3 / R-ACCT-7
    PENDING_KYC = "pending_kyc"  # R-LIMIT-8
    TERMINATED = "terminated"


class Plan(enum.Enum):
    UNLIMITED = "unlimited"  # "forfait avec appels illimités"
    USAGE = "usage"  # "Accès facturé à la consommation"


class Party(enum.Enum):
    """Who hears a notice or pressed a key: our user, or the other end of the call."""

    USER = "user"
    CORRESPONDENT = "correspondent"


class EndReason(enum.Enum):
    """Why a call ended, as the edge saw it. Every reason releases the channel."""

    HANGUP = "hangup"  # BYE/CANCEL from either side
    REJECTED = "rejected"  # final non-2xx
    RTP_TIMEOUT = "rtp_timeout"  # peer vanished: no media
    SESSION_TIMER = "session_timer"  # RFC 4028 refresh missed
    TRANSFERRED = "transferred"  # REFER completed, our user's leg is gone
    ERROR = "error"
    STALE = "stale"  # no sign of life for [calls] stale_after_s: released by the sweep
    RESTART = "restart"  # the edge restarted while the call was up
    NOT_PLACED = "not_placed"  # the edge refused it after the guard admitted it (no common
    # codec: 488, no media port: 503): the call never left, it is no short call


@dataclass(frozen=True)
class CivicAddress:
    """A postal address in the RFC 4776/5139 civic elements we use (country is ISO 3166 alpha-2)."""

    country: str
    a1: str = ""  # region / state
    a3: str = ""  # city
    rd: str = ""  # road
    hno: str = ""  # house number
    hns: str = ""  # house number suffix
    pc: str = ""  # postal code
    flr: str = ""  # floor
    room: str = ""  # unit / room
    nam: str = ""  # name of the site or company
    loc: str = ""  # free text: "building B, reception"


@dataclass(frozen=True)
class GeoPoint:
    """A WGS 84 point (EPSG:4326), optionally with an uncertainty radius in metres."""

    latitude: float
    longitude: float
    radius_m: float | None = None


@dataclass(frozen=True)
class Location:
    """The location recorded for a user or line: the "justificatifs de localisation" of
    R-EMERG-3. ``country`` decides which emergency dial plan applies."""

    country: str
    civic: CivicAddress | None = None
    point: GeoPoint | None = None
    method: str = "Manual"  # RFC 4119 <method>: how it was obtained
    recorded_at: float = 0.0


@dataclass(frozen=True)
class Account:
    """The customer account and its entitlements."""

    account_id: str
    country: str  # ISO alpha-2: home country, for "international" and local day boundaries
    seats: int = 1  # provisioned users: the denominator of the account averages (R-LIMIT-1/2)
    state: AccountState = AccountState.ACTIVE
    plan: Plan = Plan.UNLIMITED
    smart_pack: bool = False  # R-LIMIT-4
    sip_option: bool = False  # R-ACCT-3
    trial: bool = False  # R-LIMIT-7
    emergency_activated: bool = False  # R-EMERG-1: "sous réserve d'activation"
    recording: bool = False  # R-REC: option on for every user of the account
    # the digits a phone dials first to get an outside line ("0", "9"); an emergency code
    # dialled behind it ("0112") is that emergency code (Kari's law: no prefix may stand
    # between a caller and the emergency services, and none may stop them either)
    outside_line_prefix: str = ""
    # IANA time zone of the account's calendar: a 7-day suspension (R-LIMIT-3) ends at the
    # same local wall-clock time 7 days later; "" = the policy's [policy] timezone
    timezone: str = ""


@dataclass(frozen=True)
class User:
    """One person (R-ACCT-1: one person per user account)."""

    user_id: str
    account: Account
    extra_channels: int = 0  # R-CALLS-1 paid option
    numbers: tuple[str, ...] = ()  # numbers the user may present, E.164
    location: Location | None = None
    emergency_activated: bool | None = None  # None: follow the account
    recording: bool | None = None  # None: follow the account

    @property
    def channel_limit(self) -> int:
        return 1 + max(0, self.extra_channels)

    @property
    def emergency_on(self) -> bool:
        if self.emergency_activated is None:
            return self.account.emergency_activated
        return self.emergency_activated

    @property
    def recording_on(self) -> bool:
        return self.account.recording if self.recording is None else self.recording


@dataclass(frozen=True)
class MediaLine:
    """One SDP m= line as offered: media type, transport protocol, formats."""

    media: str  # "audio", "application", ...
    proto: str  # "RTP/AVP", "TCP/MRCPv2", ...
    formats: tuple[str, ...] = ()


@dataclass(frozen=True)
class CallAttempt:
    """A new call (INVITE) involving one of our users, at one instant.

    ``call_id`` names the user's call, not a SIP leg: forked legs of one INVITE (to several
    devices of the user, or early dialogs from upstream forking) carry the same call_id, so they
    share one channel. ``dialed`` is what the caller dialed (the Request-URI user part or a tel:
    URI); ``presented`` is the caller ID shown to the other end.
    """

    call_id: str
    user: User
    device: str
    device_class: DeviceClass
    direction: Direction
    dialed: str
    presented: str
    now: float
    media: tuple[MediaLine, ...] = ()
    automated_agent: bool = False  # answered or placed by an AI voice agent (R-AI-2)
    internal: bool = False  # the edge resolved `dialed` to one of its own users (an extension)
    user_agent: str = ""
    # inbound: the emergency services calling back a user soon after their emergency call
    # (the edge knows it from the source and the time); nothing of the account may refuse it
    psap_callback: bool = False


@dataclass(frozen=True)
class Registration:
    """A REGISTER from one device of a user."""

    user: User
    device: str
    device_class: DeviceClass
    source_ip: str
    now: float
    expires_s: int = 3600
    user_agent: str = ""


@dataclass(frozen=True)
class RecordingOptionChange:
    """The recording option switched on or off for a user (``user_id``) or a whole account."""

    account_id: str
    enabled: bool
    now: float
    user_id: str | None = None
    why: str = ""  # off without an admin's switch: "user removed", "account terminated"
