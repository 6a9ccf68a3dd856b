"""What every room of the edge's B2BUA shares: the configuration and the tables of live calls
(``Room.__init__``), the interfaces it is given (digest ``Authenticator``, the policy's
``CallAdmission``, which dates its decisions by its own wall clock, ``Prompts``), and how a
room answers on the wire (``_respond``, ``_refuse``, Warnings).

The rooms (``registrar``, ``authentication``, ``routing``, ``emergency``, ``calls``,
``dialogs``, ``notices``) each add the methods of one concern to ``Room``; ``B2BUA``
(``softphone.edge.b2bua``) composes them and dispatches the SIP core's events. A room calls
another's method through the declarations at the end of ``Room``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from softphone.codecs.registry import Codec
from softphone.edge.bindings import (
    LocationService,
)
from softphone.edge.call import Call, CallState
from softphone.edge.callbacks import CallbackWindows
from softphone.edge.calllog import CallLog
from softphone.edge.emergency_lane import EmergencyLane
from softphone.edge.recordings import RecordingStore
from softphone.edge.security import Security
from softphone.edge.trunk import Cancellable, Scheduler, Trunk
from softphone.media.bridge import FrameSource, TickScheduler
from softphone.media.call import CallMedia
from softphone.media.dtmf import DtmfEvent
from softphone.media.ports import PortAllocator
from softphone.policy.admission import CallAdmission
from softphone.policy.decision import (
    Audience,
    Decision,
)
from softphone.sip.auth import DigestClient
from softphone.sip.core import Address, SipCore
from softphone.sip.dialog import Dialog
from softphone.sip.message import SipRequest, SipResponse, make_response
from softphone.sip.transaction import ClientTransaction, ServerTransaction

log = logging.getLogger(__name__)


ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, UPDATE, INFO"


SDP = "application/sdp"
NOTICE_GUARD_S = 2.0   # the final answer follows a notice even if its end is never reported


# A spoken (or signalled) announcement by its id, at the bridge rate, and how long it lasts in
# seconds; None when the edge has nothing to play for that id.
Prompts = Callable[[str, int], "tuple[FrameSource, float] | None"]


class Authenticator(Protocol):
    """Digest for local users (``softphone.sip.auth.DigestServer`` behind an adapter)."""

    failures: int  # credentials sent and refused (the metrics)

    def challenge(self, request: SipRequest, now: float, *, proxy: bool) -> list[tuple[str, str]]:
        ...

    def verify(self, request: SipRequest, now: float, *, proxy: bool) -> str | None:
        ...

    def failure(self, request: SipRequest) -> str | None:
        """Why ``verify`` refused the credentials of ``request``; None when it carried none
        of ours or only a stale nonce (a challenge, not a failure)."""
        ...


def _no_prompts(announcement: str, rate: int) -> tuple[FrameSource, float] | None:
    return None


@dataclass(frozen=True)
class MediaSettings:
    host: str = "127.0.0.1"
    jitter_min_ms: int = 20
    jitter_max_ms: int = 200
    rtp_timeout: float = 30.0
    bridge_rate: int = 16000     # wideband mixing: OPUS keeps 8 kHz of audio band, G.711 4
    tone_hz: float = 1000.0
    latch: str = "address-only"  # whom RTP may latch to (media.session, RTPbleed)



class Room:
    """The B2BUA's shared state and its ways of answering; see the module's docstring."""

    def __init__(self, *, core: SipCore, flush: Callable[[], None], location: LocationService,
                 allocator: PortAllocator, media_settings: MediaSettings,
                 codecs: Iterable[Codec], users: Callable[[str], bool], domain: str,
                 echo_ext: str = "600", tone_ext: str = "601", retry_after: int = 5,
                 auth: Authenticator | None = None, guard: CallAdmission | None = None,
                 call_log: CallLog | None = None,
                 scheduler: TickScheduler | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 emergency_request_uri: str = "service-urn",
                 user_agent: str = "softphone-edge", trunk: Trunk | None = None,
                 emergency_route: str = "", prompts: Prompts = _no_prompts,
                 recordings: RecordingStore | None = None,
                 emergency_lane: EmergencyLane | None = None,
                 callbacks: CallbackWindows | None = None, app_calls_per_user: int = 1,
                 security: Security | None = None, timers: Scheduler | None = None) -> None:
        self.core = core
        self.flush = flush
        self.location = location
        self.allocator = allocator
        self.media_settings = media_settings
        self.codecs = tuple(codecs)
        self.is_user = users
        self.domain = domain
        self.echo_ext = echo_ext
        self.tone_ext = tone_ext
        self.app_calls_per_user = app_calls_per_user  # simultaneous calls to 600/601 per user
        self.retry_after = retry_after
        self.auth = auth
        self.guard = guard
        self.call_log = call_log or CallLog(None)
        self.scheduler = scheduler or TickScheduler()
        self.clock = clock
        # the call-level timers (the trial cut-off): the loop's call_later unless injected
        # (a fake in tests, with the fake clock)
        self.timers = timers
        self.user_agent = user_agent
        self.trunk = trunk
        self.emergency_route = emergency_route
        self.emergency_request_uri = emergency_request_uri  # "service-urn" or "route"
        self.prompts = prompts
        self.recordings = recordings
        # the flood guard's emergency lane: our Contact in an emergency call's two dialogs
        # carries a token of it, so that their in-dialog requests are never dropped
        self.emergency_lane = emergency_lane
        self.security = security  # R-ACCT-5: security log and lock-out of failed auth
        self._contact_users: dict[str, str] = {}  # Call-ID (either leg) -> our Contact's user
        # PSAP call-back: a call from the emergency gateway to a user within the window after
        # their last emergency call is never refused by the account's policy
        self.callbacks = callbacks or CallbackWindows(None, 3600.0)
        # in-dialog requests from another address than the dialog peer's need its credentials
        self.dialog_peer_check = True
        # the caller's name the callee sees: the edge's user table (extension -> name), or the
        # phone's own From display name when the configuration trusts it
        self.display_names: dict[str, str] = {}
        self.trust_display_name = False
        self.calls: dict[str, Call] = {}          # by the caller's Call-ID
        self._by_b: dict[str, Call] = {}          # by leg b's Call-ID
        # BYEs to the provider, with the caller's upstream credentials should it challenge
        self._bye_auth: dict[ClientTransaction, DigestClient] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.draining = False  # SIGTERM (edge.lifecycle.drain): new calls get 503
        self.stats: dict[str, int] = {"calls": 0, "answered": 0, "failed": 0,
                                      "emergency_routed": 0, "emergency_refused": 0,
                                      "emergency_failed": 0}

    def _contact(self, transport: str, call_id: str = "") -> str:
        local = self.core.local.get(transport) or next(iter(self.core.local.values()))
        suffix = "" if transport == "udp" else f";transport={transport}"
        user = self._contact_users.get(call_id, "edge")
        return f"<sip:{user}@{local.host}:{local.port}{suffix}>"

    def _respond(self, txn: ServerTransaction, status: int, reason: str, *,
                 to_tag: str | None = None, body: bytes = b"", extra: Iterable[tuple[str, str]] = (),
                 contact: bool = False) -> SipResponse:
        now = self.clock()
        hdrs = list(extra)
        if contact:
            hdrs.append(("Contact", self._contact(txn.peer.transport, txn.request.call_id)))
        if status == 405:
            hdrs.append(("Allow", ALLOW))
        resp = make_response(txn.request, status, reason, to_tag=to_tag, body=body,
                             content_type=SDP if body else None, extra=hdrs)
        resp.headers.add("Server", self.user_agent)
        self.core.send_response(txn, resp, now)
        return resp

    def _call_later(self, delay: float, fn: Callable[[], None]) -> Cancellable:
        if self.timers is not None:
            return self.timers(delay, fn)
        return asyncio.get_running_loop().call_later(delay, fn)

    def _spawn(self, coro: Awaitable[Any], call: Call | None) -> None:
        async def runner() -> None:
            try:
                await coro
            except Exception as exc:
                if call is not None and _ended_under(call, exc):
                    return
                log.exception("media task failed")
                if call is not None:
                    self._end(call, "media-error", bye_a=True, bye_b=True)
                    self.flush()

        task = asyncio.get_running_loop().create_task(runner())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _refuse(self, txn: ServerTransaction, d: Decision, status: int, reason: str) -> None:
        """A guard's refusal on the wire: its status and reason phrase, the reason a person
        sees in a Warning (399, RFC 3261 §20.43), and Retry-After when it says when to try
        again (RFC 3261 §20.33)."""
        extra: list[tuple[str, str]] = []
        if d.user_message:
            extra.append(("Warning", f'399 {self.domain} "{quoted(d.user_message)}"'))
        if d.retry_after_s is not None:
            extra.append(("Retry-After", str(max(0, d.retry_after_s))))
        self._respond(txn, d.sip_status or status, d.reason_phrase or reason, extra=extra)

    def _warning_headers(self, decisions: Iterable[Decision]) -> list[tuple[str, str]]:
        """What our user must be told about what goes ahead (a charged call, special rates,
        contacts left, no emergency service), as RFC 3261 §20.43 Warnings (399: other)."""
        out: list[tuple[str, str]] = []
        for d in decisions:
            for w in d.warnings:
                header = ("Warning", f'399 {self.domain} "{quoted(w.message)}"')
                if w.audience is Audience.USER and header not in out:
                    out.append(header)
        return out

    def _release_guard(self, call_id: str) -> None:
        """An admitted call refused here (488, 503, 480) was never placed: not a short call."""
        if self.guard is not None:
            self.guard.refused(call_id)

    def _prompt(self, announcement: str) -> tuple[FrameSource, float] | None:
        try:
            return self.prompts(announcement, self.media_settings.bridge_rate)
        except Exception:  # the final answer itself must still reach the caller
            log.exception("notice %s could not be prepared", announcement)
            return None

    # ------------------------------------------------------------------ what rooms ask each other
    # A room that calls back into a room built on it goes through these; the room named
    # in each docstring defines it.

    def _end(self, call: Call, cause: str, *, bye_a: bool = False, bye_b: bool = False,
             status: int = 0, reason: str = "", extra: Iterable[tuple[str, str]] = ()) -> None:
        """The one way a call ends (``calls``)."""
        raise NotImplementedError

    def _on_answered(self, call: Call, decisions: list[Decision]) -> None:
        """The guard's decisions at the answer: time limit, notices (``notices``)."""
        raise NotImplementedError

    def _play_notices(self, call: Call) -> None:
        """Start the queued notices once both legs' media runs (``notices``)."""
        raise NotImplementedError

    def _apply_recording(self, call: Call, decisions: Iterable[Decision]) -> None:
        """Carry out the guard's recording commands (``notices``)."""
        raise NotImplementedError

    def _media_dtmf(self, key: str, media: CallMedia, leg: str, event: DtmfEvent) -> None:
        """An RFC 4733 key on a leg (``notices``)."""
        raise NotImplementedError

    def _emergency_next_hop(self, dialog: Dialog, fallback: Address) -> Address:
        """Where the emergency dialog's ACK and BYE go (``emergency``)."""
        raise NotImplementedError

    def _emergency_failed(self, call: Call, status: int, reason: str) -> None:
        """The emergency gateway refused or never answered (``emergency``)."""
        raise NotImplementedError


def quoted(text: str) -> str:
    """Text for a quoted-string (RFC 3261 §25.1): no quotes, backslashes or line breaks."""
    return " ".join(text.replace("\\", "").replace('"', "'").split())


def _ended_under(call: Call, exc: Exception) -> bool:
    """A media task that failed because its call ended meanwhile (a BYE or CANCEL between the
    answer and the media's start: ``CallMedia.attach`` on a closed call): a normal race, which
    leaves nothing to clean up and is not an error."""
    if call.state is CallState.ENDED and call.media.closed:
        log.debug("%s: media task stopped, the call has ended (%s)", call.key, exc)
        return True
    return False
