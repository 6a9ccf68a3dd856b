"""A phone written in plain SIP over a UDP socket, for what sipp cannot say.

sipp 3.6 signs its digest for "sip:" + -auth_uri whatever the Request-URI is, so its
credentials for a service URN never match (RFC 3261 §22.4 wants the Request-URI); its scenarios
also cannot easily send a multipart body with a location by value, an INVITE without SDP whose
answer goes in the ACK, or a retry on the same Call-ID. This phone does each of those; the
edge's 407 is answered by the project's digest client. Its media is whatever socket the caller
names in its SDP (``media_port``, e.g. an ``RtpPhone``).
"""

from __future__ import annotations

import re
import socket
import time
import uuid

from lab.rtp_phone import RtpPhone

from softphone.sip.auth import DigestClient
from softphone.sip.message import Headers, SipRequest, SipResponse, parse_message


def media_address(sdp: bytes) -> tuple[str, int]:
    """The connection address and first audio port of an SDP body."""
    text = sdp.decode()
    host = re.search(r"^c=IN IP[46] (\S+)", text, re.M)
    port = re.search(r"^m=audio (\d+)", text, re.M)
    assert host and port, text
    return host.group(1), int(port.group(1))


def pcma_sdp(port: int) -> bytes:
    """A PCMA offer or answer for media on 127.0.0.1:``port``."""
    return (f"v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n").encode()


class SipPhone:
    def __init__(self, edge_port: int, user: str, password: str, *,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.sock.settimeout(0.5)
        self.host = host
        self.port: int = self.sock.getsockname()[1]
        self.edge = ("127.0.0.1", edge_port)
        self.user = user
        self.digest = DigestClient(user, password)
        self.sent: list[SipRequest] = []
        self.answer_sdp: bytes = b""  # the body of the last 200 OK to an INVITE

    def close(self) -> None:
        self.sock.close()

    def _via(self, req: SipRequest) -> None:
        req.headers.insert_first("Via", f"SIP/2.0/UDP {self.host}:{self.port};rport;"
                                        f"branch=z9hG4bK{uuid.uuid4().hex[:16]}")

    def _send(self, req: SipRequest) -> None:
        self.sent.append(req)
        self.sock.sendto(req.to_bytes(), self.edge)

    def final(self, req: SipRequest, wait: float = 20.0) -> SipResponse:
        """Send ``req`` (again every 0.5 s until something answers) and return its final."""
        self._send(req)
        heard = False
        end = time.monotonic() + wait
        while time.monotonic() < end:
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                if not heard:
                    self.sock.sendto(req.to_bytes(), self.edge)
                continue
            msg = parse_message(data)
            if not isinstance(msg, SipResponse) or msg.cseq.number != req.cseq.number \
                    or msg.call_id != req.call_id:
                continue
            heard = True
            if msg.status >= 200:
                return msg
        raise AssertionError(f"no final answer to {req!r}")

    def _ack(self, req: SipRequest, resp: SipResponse, uri: str, new_branch: bool,
             body: bytes = b"") -> None:
        h = Headers()
        h.add("Via", req.headers.values("via")[0])
        for name in ("From", "Call-ID"):
            h.add(name, req.headers.get(name) or "")
        h.add("To", resp.headers.get("to") or "")
        h.add("CSeq", f"{req.cseq.number} ACK")
        h.add("Max-Forwards", "70")
        if body:
            h.add("Content-Type", "application/sdp")
        ack = SipRequest("ACK", uri, h, body)
        if new_branch:  # the ACK of a 2xx is a transaction of its own (§13.2.2.4)
            ack.headers.remove("Via")
            self._via(ack)
        self._send(ack)

    def dial(self, uri: str, hold_s: float, *, body: bytes | None = None,
             content_type: str = "application/sdp", media_port: int | None = None,
             extra: list[tuple[str, str]] | None = None, call_id: str | None = None,
             cseq: int = 1, ack_body: bytes = b"",
             talker: RtpPhone | None = None) -> SipResponse:
        """Call ``uri``, hang up after ``hold_s`` once answered; the INVITE's final answer.

        ``body`` None: a PCMA offer for ``media_port`` (default: the socket's port + 2);
        ``b""``: no body at all (a delayed offer: ``ack_body`` answers the 200 OK's offer).
        ``talker``: an RtpPhone that starts sending to the edge's media address of the 200 OK
        at once (a phone that talks first, as sipp's rtp_stream does)."""
        h = Headers()
        h.add("From", f"<sip:{self.user}@127.0.0.1>;tag={uuid.uuid4().hex[:8]}")
        h.add("To", f"<{uri}>")
        h.add("Call-ID", call_id or f"{uuid.uuid4().hex}@127.0.0.1")
        h.add("CSeq", f"{cseq} INVITE")
        h.add("Contact", f"<sip:{self.user}@{self.host}:{self.port}>")
        h.add("Max-Forwards", "70")
        for name, value in extra or []:
            h.add(name, value)
        if body is None:
            body = pcma_sdp(media_port or self.port + 2)
        if body:
            h.add("Content-Type", content_type)
        invite = SipRequest("INVITE", uri, h, body)
        self._via(invite)
        resp = self.final(invite)
        if resp.status == 407:
            self._ack(invite, resp, uri, new_branch=False)
            invite = self.digest.authorize(invite, resp)
            self._via(invite)
            resp = self.final(invite)
        if resp.status != 200:
            self._ack(invite, resp, uri, new_branch=False)
            return resp
        self.answer_sdp = resp.body
        target = str(resp.contacts[0].uri)
        self._ack(invite, resp, target, new_branch=True, body=ack_body)
        if talker is not None and talker.remote is None:
            talker.remote = media_address(resp.body)
        time.sleep(hold_s)
        bye = SipRequest("BYE", target, Headers([
            ("From", invite.headers.get("from") or ""), ("To", resp.headers.get("to") or ""),
            ("Call-ID", invite.call_id), ("CSeq", f"{invite.cseq.number + 1} BYE"),
            ("Max-Forwards", "70")]))
        self._via(bye)
        assert self.final(bye).status == 200
        return resp
