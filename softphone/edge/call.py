"""What the edge knows of one call: its state, its legs (the caller's SIP leg "a", the callee's
SIP leg "b" with its INVITE to each device rung, or the app leg the edge plays itself), and what
the policy wants done with it (notices, recordings, time limit). The rooms of the B2BUA
(``softphone.edge.calls`` and the others) act on it."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from softphone.edge.calllog import CallRecord
from softphone.edge.legs import AppLeg
from softphone.edge.sip_leg import CalleeLeg, CallerLeg
from softphone.edge.trunk import Cancellable
from softphone.media.call import CallMedia


class CallState(enum.Enum):
    ROUTING = "routing"      # INVITE received, forks out
    EARLY = "early"          # a provisional came back
    ANSWERED = "answered"    # 2xx sent to the caller, waiting for its ACK
    CONFIRMED = "confirmed"
    ENDED = "ended"


@dataclass
class Call:
    key: str
    caller: str
    callee: str
    a: CallerLeg
    b: CalleeLeg
    media: CallMedia
    record: CallRecord
    state: CallState = CallState.ROUTING
    ringing_sent: bool = False
    early_sdp_sent: bool = False
    app: str = ""            # "" for a bridged call, "echo" or "tone" for edge applications,
    #                          "notice" for an emergency refusal's early-media notice
    answered_at: float | None = None
    direction: str = "local"  # "local", "outbound" (to the trunk), "inbound" (from the trunk),
    #                           "emergency" (to the emergency route)
    # R-REC/R-AI-2: notices still to play after the answer, per media leg, in order, as
    # (guard call id, notice id); recordings being written for this call
    notices: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    playing: set[str] = field(default_factory=set)
    recordings: set[str] = field(default_factory=set)
    limit_timer: Cancellable | None = None  # ends the call at max_duration_s (trial)
    warnings: list[tuple[str, str]] = field(default_factory=list)  # for the caller, on 18x/200
    # the parties the edge itself plays in this call (app legs: echo 600, tone 601), by name;
    # such a call has no callee leg on the wire (``b`` stays unused)
    apps: dict[str, AppLeg] = field(default_factory=dict)

    def leg(self, name: str) -> CallerLeg | CalleeLeg:
        """The SIP leg by its name ("a" the caller, "b" the callee)."""
        return self.a if name == "a" else self.b
