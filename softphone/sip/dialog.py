"""SIP dialogs (RFC 3261 §12, §13.2.2.4, §14; target refresh per RFC 6141).

Pure state: a :class:`Dialog` is built from the request and response that create it, builds
the requests sent inside it (§12.2.1.1) and checks those received (§12.2.2). A
:class:`DialogStore` finds the dialog of a message and handles forking: several early dialogs
per INVITE, one per To tag, and the 2xx of a second fork that the UAC must ACK and then BYE
(:func:`ack_and_bye`).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from softphone.sip.errors import SipError
from softphone.sip.message import Headers, SipRequest, SipResponse
from softphone.sip.uri import NameAddr, SipUri

#: Methods that create a dialog (§12.1; SUBSCRIBE/REFER through RFC 6665 are out of scope).
DIALOG_CREATING = frozenset({"INVITE"})
#: Target refresh requests (§12.2, RFC 3311 UPDATE).
TARGET_REFRESH = frozenset({"INVITE", "UPDATE"})


class DialogError(SipError):
    """A message that does not fit the dialog; ``status`` is the response to send."""

    def __init__(self, reason: str, status: int = 500) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class DialogState(enum.Enum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


@dataclass(frozen=True, slots=True)
class DialogId:
    """Call-ID + local tag + remote tag (§12): the same dialog has mirrored ids on each side."""

    call_id: str
    local_tag: str
    remote_tag: str


def _contact_uri(message: SipRequest | SipResponse) -> str | None:
    contacts = message.contacts
    return str(contacts[0].uri) if contacts else None


def _without_tag(addr: NameAddr) -> NameAddr:
    params = {k: v for k, v in addr.params.items() if k != "tag"}
    return NameAddr(uri=addr.uri, display=addr.display, params=params, bracketed=addr.bracketed)


@dataclass(eq=False)
class Dialog:
    """One dialog as seen from our side (UAC or UAS)."""

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: NameAddr
    remote_uri: NameAddr
    remote_target: str
    route_set: list[str] = field(default_factory=list)
    local_seq: int | None = None
    remote_seq: int | None = None
    secure: bool = False
    state: DialogState = DialogState.EARLY
    is_uac: bool = True
    #: Our Contact, put in target refresh requests we build (§12.2.1.1 asks for one).
    local_contact: str | None = None
    #: The CSeq number of the INVITE that created or last refreshed the dialog (for its ACK).
    invite_cseq: int | None = None

    @property
    def id(self) -> DialogId:
        return DialogId(self.call_id, self.local_tag, self.remote_tag)

    # ---------------------------------------------------------------- creation
    @classmethod
    def from_uac(cls, request: SipRequest, response: SipResponse, *,
                 local_contact: str | None = None) -> Dialog:
        """The UAC's dialog from a 101-199 (early) or 2xx (confirmed) with a To tag (§12.1.2)."""
        if not 101 <= response.status < 300:
            raise DialogError(f"a {response.status} does not create a dialog")
        to = response.to
        if not to.tag:
            raise DialogError("response without a To tag creates no dialog")
        from_ = request.from_
        if not from_.tag:
            raise DialogError("request without a From tag")
        rr = response.headers.values("record-route")
        target = _contact_uri(response)
        if target is None:
            if response.status >= 200:
                raise DialogError("2xx without Contact")
            target = request.uri  # an early dialog may lack one; refreshed by the 2xx
        return cls(
            call_id=request.call_id, local_tag=from_.tag, remote_tag=to.tag,
            local_uri=_without_tag(from_), remote_uri=_without_tag(to),
            remote_target=target, route_set=list(reversed(rr)),
            local_seq=request.cseq.number, remote_seq=None,
            secure=request.uri.lower().startswith("sips:"),
            state=DialogState.CONFIRMED if response.status >= 200 else DialogState.EARLY,
            is_uac=True,
            local_contact=local_contact or _first_contact(request),
            invite_cseq=request.cseq.number if request.method == "INVITE" else None,
        )

    @classmethod
    def from_uas(cls, request: SipRequest, response: SipResponse, *,
                 secure: bool = False) -> Dialog:
        """The UAS's dialog from the request and our 101-199 or 2xx carrying our tag (§12.1.1).

        ``secure``: the request came over TLS with a sips Request-URI.
        """
        if not 101 <= response.status < 300:
            raise DialogError(f"a {response.status} does not create a dialog")
        local_tag = response.to.tag
        if not local_tag:
            raise DialogError("our response lacks a To tag")
        from_ = request.from_
        target = _contact_uri(request)
        if target is None:
            raise DialogError("dialog-creating request without Contact", status=400)
        return cls(
            call_id=request.call_id, local_tag=local_tag, remote_tag=from_.tag or "",
            local_uri=_without_tag(request.to), remote_uri=_without_tag(from_),
            remote_target=target, route_set=list(request.headers.values("record-route")),
            local_seq=None, remote_seq=request.cseq.number, secure=secure,
            state=DialogState.CONFIRMED if response.status >= 200 else DialogState.EARLY,
            is_uac=False, local_contact=_first_contact(response),
            invite_cseq=request.cseq.number if request.method == "INVITE" else None,
        )

    # ---------------------------------------------------------------- UAC side
    def create_request(self, method: str, *, cseq: int | None = None, body: bytes = b"",
                       content_type: str | None = None,
                       extra: Iterable[tuple[str, str]] = ()) -> SipRequest:
        """A request inside the dialog (§12.2.1.1), without Via (the core adds it).

        The local CSeq is incremented, except for ACK (it takes the INVITE's number, or
        ``cseq``) and CANCEL (not built here: CANCEL is a hop-by-hop copy of the INVITE).
        """
        if self.state is DialogState.TERMINATED:
            raise DialogError("dialog terminated")
        if method == "CANCEL":
            raise DialogError("CANCEL is built from the INVITE transaction (SipCore.cancel)")
        if method == "ACK":
            number = cseq if cseq is not None else self.invite_cseq
            if number is None:
                raise DialogError("no INVITE to acknowledge in this dialog")
        else:
            if cseq is not None:
                number = cseq
            elif self.local_seq is None:
                number = 1
            else:
                number = self.local_seq + 1
            self.local_seq = number
            if method == "INVITE":
                self.invite_cseq = number
        uri, routes = self._request_target()
        h = Headers()
        h.add("Max-Forwards", "70")
        h.add("From", str(self.local_uri.with_tag(self.local_tag)))
        to = self.remote_uri.with_tag(self.remote_tag) if self.remote_tag else self.remote_uri
        h.add("To", str(to))
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{number} {method}")
        for route in routes:
            h.add("Route", route)
        if self.local_contact and method in TARGET_REFRESH:
            h.add("Contact", self.local_contact)
        for name, value in extra:
            h.add(name, value)
        if content_type is not None:
            h.add("Content-Type", content_type)
        return SipRequest(method, uri, h, body)

    def create_ack(self, invite_cseq: int | None = None, *, body: bytes = b"",
                   content_type: str | None = None) -> SipRequest:
        """The ACK for a 2xx to the INVITE with ``invite_cseq`` (default: the last INVITE)."""
        return self.create_request("ACK", cseq=invite_cseq, body=body, content_type=content_type)

    def _request_target(self) -> tuple[str, list[str]]:
        """Request-URI and Route values per loose (lr) or strict routing (§12.2.1.1)."""
        if not self.route_set:
            return self.remote_target, []
        first = NameAddr.parse(self.route_set[0])
        if "lr" in first.uri.params:
            return self.remote_target, list(self.route_set)
        # Strict router: it goes in the Request-URI, the remote target at the end of Route.
        uri = SipUri.parse(str(first.uri))
        uri.params = {k: v for k, v in uri.params.items() if k not in ("method", "maddr", "ttl",
                                                                      "transport", "lr")}
        uri.headers = ""
        return str(uri), [*self.route_set[1:], f"<{self.remote_target}>"]

    def receive_response(self, request: SipRequest, response: SipResponse) -> None:
        """Update from a response to a request we sent in this dialog.

        A 2xx to the INVITE confirms an early dialog and, per §12.1.2/§13.2.2.4, fixes its
        route set; a 2xx to a target refresh (re-INVITE, UPDATE) updates the remote target;
        a 481 or 408 to an in-dialog request ends it (§12.2.1.2).
        """
        status = response.status
        if status in (408, 481) and self.state is DialogState.CONFIRMED:
            self.state = DialogState.TERMINATED
            return
        if not 200 <= status < 300:
            return
        if request.method in TARGET_REFRESH:
            target = _contact_uri(response)
            if target is not None:
                self.remote_target = target
        if request.method == "INVITE" and self.state is DialogState.EARLY:
            self.route_set = list(reversed(response.headers.values("record-route")))
            self.state = DialogState.CONFIRMED
        if request.method == "BYE":
            self.state = DialogState.TERMINATED

    # ---------------------------------------------------------------- UAS side
    def receive_request(self, request: SipRequest) -> None:
        """Check an in-dialog request (§12.2.2): a CSeq lower than the last one -> 500.

        ACK and CANCEL carry the CSeq of their INVITE and are not counted. BYE ends the dialog;
        any request after it -> 481 (§15.1.2).
        """
        method = request.method
        if method in ("ACK", "CANCEL"):
            return
        if self.state is DialogState.TERMINATED:
            raise DialogError("dialog terminated", status=481)  # §15.1.2
        number = request.cseq.number
        if self.remote_seq is not None and number < self.remote_seq:
            raise DialogError("CSeq lower than the last request's", status=500)
        self.remote_seq = number
        if method == "BYE":
            self.state = DialogState.TERMINATED

    def response_sent(self, request: SipRequest, response: SipResponse) -> None:
        """Update after we answered an in-dialog request: 2xx to a target refresh takes the
        request's Contact (RFC 6141 §3.4); a 2xx to the INVITE confirms an early dialog."""
        if not 200 <= response.status < 300:
            return
        if request.method in TARGET_REFRESH:
            target = _contact_uri(request)
            if target is not None:
                self.remote_target = target
        if request.method == "INVITE" and self.state is DialogState.EARLY:
            self.state = DialogState.CONFIRMED

    def terminate(self) -> None:
        self.state = DialogState.TERMINATED


def _first_contact(message: SipRequest | SipResponse) -> str | None:
    values = message.headers.values("contact")
    return values[0] if values else None


def ack_and_bye(request: SipRequest, response: SipResponse, *,
                local_contact: str | None = None) -> tuple[SipRequest, SipRequest]:
    """For a 2xx from a fork we do not keep (§13.2.2.4): its ACK and the BYE that ends it.

    Send the ACK with ``SipCore.send_ack_2xx`` then the BYE with ``SipCore.send_request``,
    both to the fork's first route or remote target.
    """
    dialog = Dialog.from_uac(request, response, local_contact=local_contact)
    ack = dialog.create_ack(request.cseq.number)
    bye = dialog.create_request("BYE")
    return ack, bye


@dataclass(slots=True)
class UacUpdate:
    """What a response did to the dialogs of an INVITE (see :meth:`DialogStore.uac_response`)."""

    dialog: Dialog | None
    created: bool = False
    #: A 2xx from a fork after another fork's 2xx confirmed a dialog: ACK and BYE it.
    redundant_fork: bool = False


class DialogStore:
    """Dialogs by id, with the early dialogs of each INVITE (forking, §13.2.2.4)."""

    def __init__(self) -> None:
        self._dialogs: dict[DialogId, Dialog] = {}

    def __len__(self) -> int:
        return len(self._dialogs)

    def __iter__(self) -> Iterator[Dialog]:
        return iter(list(self._dialogs.values()))

    def add(self, dialog: Dialog) -> None:
        self._dialogs[dialog.id] = dialog

    def remove(self, dialog: Dialog) -> None:
        self._dialogs.pop(dialog.id, None)

    def get(self, dialog_id: DialogId) -> Dialog | None:
        return self._dialogs.get(dialog_id)

    def for_request(self, request: SipRequest) -> Dialog | None:
        """The dialog a received request belongs to (local tag = To tag, §12.2.2)."""
        local = request.to.tag
        if not local:
            return None
        return self._dialogs.get(DialogId(request.call_id, local, request.from_.tag or ""))

    def for_response(self, response: SipResponse) -> Dialog | None:
        """The dialog a received response belongs to (local tag = From tag)."""
        local = response.from_.tag
        remote = response.to.tag
        if not local or not remote:
            return None
        return self._dialogs.get(DialogId(response.call_id, local, remote))

    def dialog_set(self, call_id: str, local_tag: str) -> list[Dialog]:
        """Every dialog created by one request of ours (the forks of an INVITE)."""
        return [d for d in self._dialogs.values()
                if d.call_id == call_id and d.local_tag == local_tag]

    def uac_response(self, request: SipRequest, response: SipResponse, *,
                     local_contact: str | None = None) -> UacUpdate:
        """Apply a response to a dialog-creating request we sent.

        1xx with a To tag -> an early dialog per tag (created or updated); 2xx -> the
        dialog of its tag confirmed (created if the fork sent no 1xx), or, when another fork
        already holds a confirmed dialog, a ``redundant_fork`` the TU must ACK and BYE
        (:func:`ack_and_bye`); a 3xx-6xx ends every early dialog of the request.
        """
        status = response.status
        call_id = request.call_id
        local_tag = request.from_.tag or ""
        if status >= 300:
            for d in self.dialog_set(call_id, local_tag):
                if d.state is DialogState.EARLY:
                    d.terminate()
                    self.remove(d)
            return UacUpdate(None)
        remote_tag = response.to.tag
        if status < 101 or not remote_tag:
            return UacUpdate(None)
        existing = self._dialogs.get(DialogId(call_id, local_tag, remote_tag))
        if status < 200:
            if existing is None:
                d = Dialog.from_uac(request, response, local_contact=local_contact)
                self.add(d)
                return UacUpdate(d, created=True)
            target = _contact_uri(response)
            if target is not None and existing.state is DialogState.EARLY:
                existing.remote_target = target
            return UacUpdate(existing)
        others_confirmed = any(
            d.state is DialogState.CONFIRMED and d.remote_tag != remote_tag
            and d.invite_cseq == request.cseq.number
            for d in self.dialog_set(call_id, local_tag))
        if existing is not None:
            existing.receive_response(request, response)
            if others_confirmed:
                # Its early dialog is done with: the TU ACKs and BYEs it (ack_and_bye).
                existing.terminate()
                self.remove(existing)
            return UacUpdate(existing, redundant_fork=others_confirmed)
        d = Dialog.from_uac(request, response, local_contact=local_contact)
        if others_confirmed:
            return UacUpdate(d, created=False, redundant_fork=True)
        self.add(d)
        return UacUpdate(d, created=True)
