"""The registrar (RFC 3261 §10): REGISTER checked (digest, the guard on each binding:
R-ACCT-1/2, R-LIMIT-7, R-LIFE-5, R-EMERG-6) and stored in ``softphone.edge.bindings``; Path
(RFC 3327) kept, echoed, and used to reach the phone (``binding_destination``)."""

from __future__ import annotations

import logging

from softphone.edge.authentication import AuthenticationRoom
from softphone.edge.bindings import (
    DEFAULT_EXPIRES,
    Binding,
    RegistrationError,
)
from softphone.edge.room import quoted
from softphone.policy.admission import CallAdmission
from softphone.policy.facts import DeviceClass
from softphone.sip.core import Address
from softphone.sip.errors import SipParseError
from softphone.sip.message import SipRequest
from softphone.sip.transaction import ServerTransaction
from softphone.sip.uri import NameAddr, SipUri

log = logging.getLogger(__name__)



class RegistrarRoom(AuthenticationRoom):
    """REGISTER: bindings, Path, the guard at REGISTER."""

    def _on_register(self, req: SipRequest, txn: ServerTransaction, source: Address) -> None:
        now = self.clock()
        try:
            aor_uri = req.to.uri
        except SipParseError as exc:
            self._respond(txn, 400, exc.reason)
            return
        user = aor_uri.user or ""
        if self.auth is None and not self.is_user(user):
            self._respond(txn, 404, "Not Found")
            return
        if self.auth is not None:
            # an unknown user is challenged like a known one, and a wrong password gets the
            # same new challenge for both (Asterisk's alwaysauthreject): no user enumeration
            who = self.auth.verify(req, now, proxy=False)
            if who is None:
                self._auth_failed(req, source, user, self.auth.failure(req))
                self._respond(txn, 401, "Unauthorized",
                              extra=self.auth.challenge(req, now, proxy=False))
                return
            if who != user:
                self._auth_failed(req, source, user, f"credentials of another user ({who})")
                self._respond(txn, 403, "Forbidden: credentials of another user")
                return
            self._auth_succeeded(source, user)
        try:
            path = registered_path(req)
        except SipParseError as exc:
            self._respond(txn, 400, exc.reason)
            return
        contacts_raw = req.headers.values("contact")
        expires_hdr = req.headers.get("expires")
        default_exp = int(expires_hdr) if expires_hdr and expires_hdr.strip().isdigit() else None
        src = (source.transport, source.host, source.port, source.conn_id)
        warnings: list[tuple[str, str]] = []
        try:
            if contacts_raw == ["*"]:
                if default_exp != 0:
                    self._respond(txn, 400, "Contact * needs Expires: 0")
                    return
                gone = [(b.contact, 0) for b in self.location.lookup(user, now)]
                if self._registration_refused(req, txn, source, user, gone, warnings):
                    return
                self.location.unregister_all(user, call_id=req.call_id, cseq=req.cseq.number)
                bindings: list[Binding] = []
            else:
                contacts: list[tuple[str, int | None]] = []
                for na in req.contacts:
                    exp = na.params.get("expires")
                    contacts.append((str(na.uri), int(exp) if exp and exp.isdigit() else None))
                asked = [(c, e if e is not None else default_exp if default_exp is not None
                          else DEFAULT_EXPIRES) for c, e in contacts]
                if self._registration_refused(req, txn, source, user, asked, warnings):
                    return
                if contacts:
                    bindings = self.location.register(
                        user, contacts, default_expires=default_exp, source=src,
                        call_id=req.call_id, cseq=req.cseq.number, now=now,
                        device_class="webrtc" if source.transport in ("ws", "wss") else "sip",
                        user_agent=req.headers.get("user-agent") or "",
                        path=path)
                else:
                    bindings = self.location.lookup(user, now)
        except RegistrationError as err:
            extra = [("Min-Expires", str(err.min_expires))] if err.min_expires else []
            self._respond(txn, err.status, err.reason, extra=extra)
            return
        except (SipParseError, ValueError) as exc:
            self._respond(txn, 400, f"Bad Contact: {exc}")
            return
        extra = [("Contact", f"<{b.contact}>;expires={b.remaining(now)}") for b in bindings]
        extra += path_echo(req)
        extra += emergency_state(self.guard, user, bindings)
        self._respond(txn, 200, "OK", extra=extra + warnings)

    def _registration_refused(self, req: SipRequest, txn: ServerTransaction, source: Address,
                              user: str, contacts: list[tuple[str, int]],
                              warnings: list[tuple[str, str]]) -> bool:
        """The guard on each binding of a REGISTER (R-ACCT-1/2, R-LIMIT-7, R-LIFE-5,
        R-EMERG-6), before anything is stored. A refusal is answered here (True) and no
        binding is kept; what the user must be told is added to ``warnings`` as RFC 3261
        §20.43 Warning headers (399: miscellaneous, with our domain) for the 200 OK."""
        if self.guard is None:
            return False
        agent = req.headers.get("user-agent") or ""
        for contact, expires in contacts:
            d = self.guard.registered(user, device=contact, source_ip=source.host,
                                      expires_s=expires, user_agent=agent,
                                      device_class=DeviceClass.WEBRTC
                                      if source.transport in ("ws", "wss") else DeviceClass.SIP)
            if d is None:
                continue
            if not d.allowed:
                log.warning("REGISTER of %s from %s refused: %s %s (%s)", user, source.host,
                            d.sip_status, d.reason_phrase, d.rule_id)
                self._refuse(txn, d, 403, "Forbidden")
                return True
            warnings += [h for h in self._warning_headers([d]) if h not in warnings]
        return False


def emergency_state(guard: CallAdmission | None, user: str,
                    bindings: list[Binding]) -> list[tuple[str, str]]:
    """``X-Emergency: available; location="<the recorded address in one line>"`` on the 200 OK
    of a REGISTER that leaves bindings, when the guard says an emergency call of this user
    would be routed now: what a phone shows its user, who can check the address the PSAP
    will get. When the service is not available, the guard's R-EMERG-6 Warning says so
    instead (and this header is absent)."""
    if guard is None or not bindings:
        return []
    where = guard.emergency_location(user)
    if where is None:
        return []
    return [("X-Emergency", f'available; location="{quoted(where)}"')]


def registered_path(req: SipRequest) -> tuple[str, ...]:
    """The REGISTER's Path values (RFC 3327), first hop first; SipParseError("Bad Path: ...")
    when one is not a SIP URI in angle brackets, so that nothing is stored."""
    values = tuple(req.headers.values("path"))
    for value in values:
        try:
            hop = NameAddr.parse(value)
        except SipParseError as exc:
            raise SipParseError(f"Bad Path: {exc.reason}") from None
        if hop.uri.scheme not in ("sip", "sips"):
            raise SipParseError(f"Bad Path: {hop.uri.scheme} URI")
    return values


def path_echo(req: SipRequest) -> list[tuple[str, str]]:
    """RFC 3327 §5.3: the 200 OK of a REGISTER carries the Path values stored, when the
    phone said it supports Path."""
    supported = {t.strip().lower() for t in req.headers.values("supported")}
    return [("Path", v) for v in req.headers.values("path")] if "path" in supported else []


def _path_hop(b: Binding) -> Address | None:
    """The first Path hop of a binding (RFC 3327 §5.3), None when it has no usable one."""
    try:
        uri = NameAddr.parse(b.path[0]).uri
    except (SipParseError, IndexError):
        return None
    transport = (uri.params.get("transport") or "udp").lower()
    port = uri.port or (5061 if uri.scheme == "sips" else 5060)
    src_transport, host, src_port, conn_id = b.source
    if transport != "udp" and (transport, uri.host_no_brackets, port) == (
            src_transport, host, src_port):
        return Address(transport, host, port, conn_id)  # the proxy's connection
    return Address(transport, uri.host_no_brackets, port)


def binding_destination(b: Binding) -> Address:
    """Where requests for a registered device go.

    A binding registered through a proxy that added Path (RFC 3327): its first hop, the
    INVITE carrying the Path values as Route headers.

    Over UDP, the registered Contact (RFC 3261 §10: it may name another host or port than
    the REGISTER came from, as third-party registrations do). Over TCP, TLS and WebSocket,
    the connection the device registered on: a browser's contact host is a placeholder
    (RFC 7118 §5) and a phone behind NAT keeps that connection open for us.
    """
    hop = _path_hop(b) if b.path else None
    if hop is not None:
        return hop
    transport, host, port, conn_id = b.source
    if transport == "udp":
        try:
            uri = SipUri.parse(b.contact)
        except SipParseError:
            return Address(transport, host, port, conn_id)
        wanted = (uri.params.get("transport") or "udp").lower()
        if wanted == "udp":
            default = 5061 if uri.scheme == "sips" else 5060
            return Address("udp", uri.host_no_brackets, uri.port or default)
    return Address(transport, host, port, conn_id)
