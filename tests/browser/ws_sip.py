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
from softphone.sip.message import Headers, SipRequest, SipResponse, parse_message


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
