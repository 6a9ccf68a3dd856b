"""A SIP user agent over the edge's WebSocket (RFC 7118), in plain Python: what the web phone
sends, without a browser, for checking the edge's answers on the wire.

Messages are the project's own (``softphone.sip.message``); the 401 is answered by the
project's digest client. Every wait is bounded; ``close()`` closes the socket.
"""

from __future__ import annotations

import contextlib
import time
import uuid

from websockets.sync.client import ClientConnection, connect

from softphone.sip.auth import DigestClient
from softphone.sip.message import (
    Headers,
    SipRequest,
    SipResponse,
    make_response,
    parse_message,
)


class WsSip:
    def __init__(self, http_port: int, user: str, password: str, *,
                 domain: str = "127.0.0.1") -> None:
        self._open = contextlib.ExitStack()
        self.ws: ClientConnection = self._open.enter_context(connect(
            f"ws://127.0.0.1:{http_port}/ws", subprotocols=["sip"],  # type: ignore[list-item]
            open_timeout=5, close_timeout=2))
        self.user = user
        self.domain = domain
        self.host = f"{uuid.uuid4().hex[:12]}.invalid"  # RFC 7118 §5: a placeholder
        self.digest = DigestClient(user, password)
        self.call_id = f"{uuid.uuid4().hex}"
        self.cseq = 0
        self.tag = uuid.uuid4().hex[:8]
        self.received: list[SipRequest | SipResponse] = []
        self.seen: list[SipRequest] = []  # requests ``wait_request`` returned
        self.call_tag = self.call_call_id = self.call_to = self.call_target = ""
        self.call_cseq = 0

    def close(self) -> None:
        self._open.close()

    def send(self, req: SipRequest) -> None:
        req.headers.insert_first("Via", f"SIP/2.0/WS {self.host};branch=z9hG4bK"
                                        f"{uuid.uuid4().hex[:16]}")
        self.ws.send(req.to_bytes().decode())

    def next_message(self, timeout: float) -> SipRequest | SipResponse | None:
        try:
            data = self.ws.recv(timeout=timeout)
        except TimeoutError:
            return None
        msg = parse_message(data.encode() if isinstance(data, str) else data)
        self.received.append(msg)
        return msg

    def final(self, req: SipRequest, wait: float = 10.0) -> SipResponse:
        """Send ``req`` and return its final answer (a reliable transport: sent once)."""
        self.send(req)
        end = time.monotonic() + wait
        while (left := end - time.monotonic()) > 0:
            msg = self.next_message(left)
            if isinstance(msg, SipRequest) and msg.method != "ACK":
                self.ws.send(make_response(msg, 200, "OK").to_bytes().decode())
            if isinstance(msg, SipResponse) and msg.call_id == req.call_id \
                    and msg.cseq.number == req.cseq.number and msg.status >= 200:
                return msg
        raise AssertionError(f"no final answer to {req.method} within {wait} s")

    def register(self, expires: int = 300) -> SipResponse:
        """REGISTER (answering one 401) and its final answer."""
        aor = f"sip:{self.user}@{self.domain}"
        req = self._register(aor, expires)
        resp = self.final(req)
        if resp.status == 401:
            req = self.digest.authorize(req, resp)  # CSeq + 1, no Via (``send`` adds one)
            self.cseq = req.cseq.number
            resp = self.final(req)
        return resp

    def _register(self, aor: str, expires: int) -> SipRequest:
        self.cseq += 1
        h = Headers()
        h.add("From", f"<{aor}>;tag={self.tag}")
        h.add("To", f"<{aor}>")
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{self.cseq} REGISTER")
        h.add("Contact", f"<sip:{self.user}@{self.host};transport=ws>;expires={expires}")
        h.add("Max-Forwards", "70")
        h.add("User-Agent", "ws-sip-test")
        return SipRequest("REGISTER", f"sip:{self.domain}", h, b"")

    # ------------------------------------------------------------------ one call

    def invite(self, number: str, sdp: bytes, wait: float = 15.0) -> SipResponse:
        """Call ``number`` with ``sdp`` (answering one 407), ACK the final answer; the final
        answer. On a 200 the dialog is kept for ``in_dialog``."""
        self.call_tag = uuid.uuid4().hex[:8]
        self.call_call_id = uuid.uuid4().hex
        uri = f"sip:{number}@{self.domain}"
        h = Headers()
        h.add("From", f"<sip:{self.user}@{self.domain}>;tag={self.call_tag}")
        h.add("To", f"<{uri}>")
        h.add("Call-ID", self.call_call_id)
        h.add("CSeq", "1 INVITE")
        h.add("Contact", f"<sip:{self.user}@{self.host};transport=ws>")
        h.add("Max-Forwards", "70")
        h.add("Content-Type", "application/sdp")
        req = SipRequest("INVITE", uri, h, sdp)
        resp = self.final(req, wait)
        if resp.status == 407:
            self._ack(req, resp, uri)
            req = self.digest.authorize(req, resp)
            resp = self.final(req, wait)
        self.call_cseq = req.cseq.number
        if resp.status == 200:
            self.call_to = resp.headers.get("to") or ""
            self.call_target = str(resp.contacts[0].uri)
            self._ack(req, resp, self.call_target)
        else:
            self._ack(req, resp, uri)
        return resp

    def _ack(self, req: SipRequest, resp: SipResponse, uri: str) -> None:
        h = Headers()
        for name in ("From", "Call-ID"):
            h.add(name, req.headers.get(name) or "")
        h.add("To", resp.headers.get("to") or "")
        h.add("CSeq", f"{req.cseq.number} ACK")
        h.add("Max-Forwards", "70")
        self.send(SipRequest("ACK", uri, h, b""))

    def in_dialog(self, method: str, body: bytes = b"", content_type: str = "") -> SipResponse:
        """A request in the call's dialog (INFO, BYE) and its final answer."""
        self.call_cseq += 1
        h = Headers()
        h.add("From", f"<sip:{self.user}@{self.domain}>;tag={self.call_tag}")
        h.add("To", self.call_to)
        h.add("Call-ID", self.call_call_id)
        h.add("CSeq", f"{self.call_cseq} {method}")
        h.add("Max-Forwards", "70")
        if content_type:
            h.add("Content-Type", content_type)
        return self.final(SipRequest(method, self.call_target, h, body))

    def wait_request(self, method: str, timeout: float) -> SipRequest | None:
        """The next ``method`` request from the edge (answered 200, as JsSIP answers an INFO
        it has a listener for); other requests are answered 200 too, responses skipped."""
        for msg in self.received:
            if isinstance(msg, SipRequest) and msg.method == method and msg not in self.seen:
                self.seen.append(msg)
                return msg
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            msg = self.next_message(left)
            if isinstance(msg, SipRequest):
                if msg.method != "ACK":
                    self.ws.send(make_response(msg, 200, "OK").to_bytes().decode())
                if msg.method == method:
                    self.seen.append(msg)
                    return msg
        return None
