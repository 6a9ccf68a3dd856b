"""A browser-style phone without a browser: SIP over WebSocket (RFC 7118) and aiortc media.

It says what a web phone says (JsSIP's shape: a ``.invalid`` Via host and Contact, transport
``ws``, a DTLS-SRTP offer with ICE) so that the edge's WebRTC side is checked without Chromium:
``register()``, ``call(target)`` and ``answer_next()`` (a call to it). Its ICE candidate is on
loopback, on a port of its own ``PortAllocator`` (aioice offers no loopback candidate by itself).
The tone it sends and what it hears are 48 kHz mono PCM (``heard``), checked on the audio.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fractions
import math
import uuid
from typing import Any

import av
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from websockets.asyncio.client import ClientConnection, connect

from softphone.media.ice_ports import pin_host_candidates
from softphone.media.ports import PortAllocator
from softphone.sip.auth import AuthError, DigestClient
from softphone.sip.message import (
    Headers,
    SipRequest,
    SipResponse,
    make_response,
    parse_message,
)

RATE = 48000
FRAME = RATE // 50
AMPLITUDE = 8000  # the tone's peak: its RMS is AMPLITUDE / sqrt(2)


class ToneTrack(MediaStreamTrack):
    """A continuous sine at ``hz`` (0: silence), paced at real time."""

    kind = "audio"

    def __init__(self, hz: float) -> None:
        super().__init__()
        self.hz = hz
        self._n = 0
        self._start: float | None = None
        # a tone of a whole number of periods per frame (a multiple of 50 Hz) is the same
        # frame every time: computed once (many phones in one process cannot afford 960
        # sines per frame each)
        self._frame = self._stereo(0) if hz * FRAME % RATE == 0 else None

    async def recv(self) -> av.AudioFrame:
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        due = self._start + self._n / RATE
        if due > loop.time():
            await asyncio.sleep(due - loop.time())
        pcm = self._frame if self._frame is not None else self._stereo(self._n)
        frame = av.AudioFrame(format="s16", layout="stereo", samples=FRAME)
        frame.planes[0].update(pcm)
        frame.sample_rate = RATE
        frame.pts = self._n
        frame.time_base = fractions.Fraction(1, RATE)
        self._n += FRAME
        return frame

    def _stereo(self, start: int) -> bytes:
        """20 ms of the tone from sample ``start``, in stereo, as a browser sends Opus
        (aiortc would upmix mono 3 dB down)."""
        samples = array.array("h", (
            int(AMPLITUDE * math.sin(2 * math.pi * self.hz * (start + i) / RATE))
            if self.hz else 0 for i in range(FRAME)))
        both = array.array("h", bytes(4 * FRAME))
        both[0::2] = samples
        both[1::2] = samples
        return both.tobytes()


class WebRtcPhone:
    def __init__(self, ws_url: str, user: str, password: str, *, domain: str = "127.0.0.1",
                 rtp: tuple[int, int] = (21880, 21899), tone_hz: float = 1000.0) -> None:
        self.url = ws_url
        self.user = user
        self.domain = domain
        self.digest = DigestClient(user, password)
        self.allocator = PortAllocator(rtp[0], rtp[1], host="127.0.0.1")
        self.tone_hz = tone_hz
        self.instance = uuid.uuid4().hex[:12]
        self.ws: ClientConnection | None = None
        self.inbox: asyncio.Queue[SipRequest | SipResponse] = asyncio.Queue()
        self.pc: RTCPeerConnection | None = None
        self.heard = bytearray()  # what the far end sent us, 48 kHz mono s16
        self.answer_sdp = b""
        self.offer_sdp = b""
        self._reader: asyncio.Task[None] | None = None
        self._cseq = 0
        self.reg_call_id = uuid.uuid4().hex
        self._ringing: tuple[SipRequest, str] | None = None  # an INVITE rung, not answered
        self.early: SipResponse | None = None  # an 18x that brought early media
        self.last_request: SipRequest | None = None  # the last one sent (after a challenge)
        self._pairs: list[Any] = []

    # ------------------------------------------------------------------ transport

    async def __aenter__(self) -> WebRtcPhone:
        self.ws = await connect(self.url, subprotocols=["sip"])  # type: ignore[list-item]
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self.pc is not None:
            await self.pc.close()
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        for pair in self._pairs:
            self.allocator.release(pair)

    async def _read(self) -> None:
        assert self.ws is not None
        async for data in self.ws:
            raw = data.encode() if isinstance(data, str) else bytes(data)
            msg = parse_message(raw)
            if isinstance(msg, SipRequest | SipResponse):
                await self.inbox.put(msg)

    async def send(self, msg: SipRequest | SipResponse) -> None:
        assert self.ws is not None
        await self.ws.send(msg.to_bytes().decode())

    def _request(self, method: str, uri: str, *, to: str, from_tag: str, call_id: str,
                 body: bytes = b"", cseq: int | None = None) -> SipRequest:
        if cseq is None:
            self._cseq += 1
            cseq = self._cseq
        h = Headers()
        h.add("Via", f"SIP/2.0/WS {self.instance}.invalid;branch=z9hG4bK{uuid.uuid4().hex[:16]}")
        h.add("Max-Forwards", "70")
        h.add("To", to)
        h.add("From", f"<sip:{self.user}@{self.domain}>;tag={from_tag}")
        h.add("Call-ID", call_id)
        h.add("CSeq", f"{cseq} {method}")
        h.add("Contact", f"<sip:{self.user}@{self.instance}.invalid;transport=ws>")
        h.add("User-Agent", "webrtc-lab-phone")
        if body:
            h.add("Content-Type", "application/sdp")
        return SipRequest(method, uri, h, body)

    async def final(self, req: SipRequest, wait: float = 15.0) -> SipResponse:
        """Send ``req``; its final answer. An 18x with an SDP answer to our INVITE's offer
        starts early media (``early`` keeps it)."""
        await self.send(req)
        async with asyncio.timeout(wait):
            while True:
                msg = await self.inbox.get()
                if not isinstance(msg, SipResponse) or msg.call_id != req.call_id \
                        or msg.cseq.number != req.cseq.number:
                    continue
                if msg.status >= 200:
                    return msg
                if msg.body and req.method == "INVITE" and self.pc is not None \
                        and self.pc.remoteDescription is None:
                    self.early = msg
                    await self.pc.setRemoteDescription(
                        RTCSessionDescription(msg.body.decode(), "answer"))

    async def _authorized(self, req: SipRequest) -> SipResponse:
        resp = await self.final(req)
        for _ in range(2):  # a wrong password is challenged again: that answer is returned
            if resp.status not in (401, 407):
                break
            if req.method == "INVITE":
                await self._ack(req, resp)
            try:
                req = self.digest.authorize(req, resp)  # next CSeq, no Via
            except AuthError:
                break
            self._cseq = req.cseq.number
            req.headers.insert_first("Via", f"SIP/2.0/WS {self.instance}.invalid;"
                                            f"branch=z9hG4bK{uuid.uuid4().hex[:16]}")
            resp = await self.final(req)
        self.last_request = req
        return resp

    async def _ack(self, req: SipRequest, resp: SipResponse, uri: str | None = None) -> None:
        h = Headers()
        h.add("Via", req.headers.values("via")[0] if resp.status >= 300 else
              f"SIP/2.0/WS {self.instance}.invalid;branch=z9hG4bK{uuid.uuid4().hex[:16]}")
        h.add("Max-Forwards", "70")
        for name in ("From", "Call-ID"):
            h.add(name, req.headers.get(name) or "")
        h.add("To", resp.headers.get("to") or "")
        h.add("CSeq", f"{req.cseq.number} ACK")
        await self.send(SipRequest("ACK", uri or req.uri, h, b""))

    # ------------------------------------------------------------------ SIP

    async def register(self, expires: int = 300) -> SipResponse:
        """REGISTER (``expires=0``: the binding taken away), on one Call-ID per phone."""
        req = self._request("REGISTER", f"sip:{self.domain}", to=f"<sip:{self.user}@{self.domain}>",
                            from_tag=uuid.uuid4().hex[:8], call_id=self.reg_call_id)
        req.headers.add("Expires", str(expires))
        return await self._authorized(req)

    def _new_pc(self) -> RTCPeerConnection:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pair = self.allocator.allocate(f"pc{len(self._pairs)}")
        self._pairs.append(pair)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            asyncio.ensure_future(self._listen(track))

        self.pc = pc
        return pc

    def _pin(self, pc: RTCPeerConnection) -> None:
        pair = self._pairs[-1]
        for t in pc.getTransceivers():
            pin_host_candidates(t.sender.transport.transport.iceGatherer._connection,
                                lambda _c: pair)

    async def _listen(self, track: MediaStreamTrack) -> None:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if isinstance(frame, av.AudioFrame):
                for out in resampler.resample(frame):
                    self.heard += bytes(out.planes[0])[:2 * out.samples]

    async def call(self, target: str) -> tuple[SipResponse, SipRequest]:
        """INVITE ``target`` with a DTLS-SRTP offer; the final answer and the INVITE sent."""
        pc = self._new_pc()
        pc.addTransceiver(ToneTrack(self.tone_hz), direction="sendrecv")
        self._pin(pc)
        await pc.setLocalDescription(await pc.createOffer())
        self.offer_sdp = pc.localDescription.sdp.encode()
        uri = f"sip:{target}@{self.domain}"
        invite = self._request("INVITE", uri, to=f"<{uri}>", from_tag=uuid.uuid4().hex[:8],
                               call_id=uuid.uuid4().hex, body=self.offer_sdp)
        resp = await self._authorized(invite)
        assert self.last_request is not None
        invite = self.last_request
        if resp.status != 200:
            if resp.status > 200:
                await self._ack(invite, resp)
            return resp, invite
        self.answer_sdp = resp.body
        await self._ack(invite, resp, str(resp.contacts[0].uri))
        if pc.remoteDescription is None:
            await pc.setRemoteDescription(RTCSessionDescription(resp.body.decode(), "answer"))
        return resp, invite

    def _in_dialog(self, method: str, invite: SipRequest, resp: SipResponse,
                   body: bytes = b"", content_type: str = "") -> SipRequest:
        self._dialog_cseq = max(getattr(self, "_dialog_cseq", 0), invite.cseq.number) + 1
        h = Headers()
        h.add("Via", f"SIP/2.0/WS {self.instance}.invalid;branch=z9hG4bK{uuid.uuid4().hex[:16]}")
        h.add("Max-Forwards", "70")
        h.add("From", invite.headers.get("from") or "")
        h.add("To", resp.headers.get("to") or "")
        h.add("Call-ID", invite.call_id)
        h.add("CSeq", f"{self._dialog_cseq} {method}")
        if content_type:
            h.add("Content-Type", content_type)
        return SipRequest(method, str(resp.contacts[0].uri), h, body)

    async def reinvite(self, invite: SipRequest, resp: SipResponse,
                       direction: str) -> SipResponse:
        """A new offer in the call (``sendonly``: hold, ``sendrecv``: resume), as JsSIP's
        hold() sends it; the answer applied."""
        assert self.pc is not None
        self.pc.getTransceivers()[0].direction = direction
        await self.pc.setLocalDescription(await self.pc.createOffer())
        req = self._in_dialog("INVITE", invite, resp, self.pc.localDescription.sdp.encode(),
                              "application/sdp")
        answer = await self.final(req)
        if answer.status == 200:
            await self._ack(req, answer, str(resp.contacts[0].uri))
            await self.pc.setRemoteDescription(
                RTCSessionDescription(answer.body.decode(), "answer"))
        return answer

    async def hang_up(self, invite: SipRequest, resp: SipResponse) -> SipResponse:
        return await self.final(self._in_dialog("BYE", invite, resp))

    async def press(self, invite: SipRequest, resp: SipResponse, key: str) -> SipResponse:
        """A key as JsSIP sends it by default: SIP INFO, application/dtmf-relay."""
        body = f"Signal={key}\r\nDuration=160\r\n".encode()
        return await self.final(self._in_dialog("INFO", invite, resp, body,
                                                "application/dtmf-relay"))

    async def answer_next(self, wait: float = 15.0) -> SipRequest:
        """Answer the next INVITE to us (ringing first) with aiortc; the INVITE."""
        async with asyncio.timeout(wait):
            while True:
                msg = await self.inbox.get()
                if isinstance(msg, SipRequest) and msg.method == "INVITE":
                    break
        invite = msg
        self.offer_sdp = invite.body
        tag = uuid.uuid4().hex[:8]
        await self.send(self._response(invite, 180, "Ringing", tag))
        pc = self._new_pc()
        pc.addTransceiver(ToneTrack(self.tone_hz), direction="sendrecv")
        self._pin(pc)
        await pc.setRemoteDescription(RTCSessionDescription(invite.body.decode(), "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        self.answer_sdp = pc.localDescription.sdp.encode()
        await self.send(self._response(invite, 200, "OK", tag, self.answer_sdp))
        return invite

    async def wait_request(self, method: str, timeout: float) -> SipRequest | None:
        """The next ``method`` request from the edge, answered as a phone that does not pick
        up: an INVITE rings (180), a CANCEL ends that ringing (200, then 487 to the INVITE),
        anything else gets 200 (as JsSIP answers an INFO it listens for)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    msg = await self.inbox.get()
                    if not isinstance(msg, SipRequest) or msg.method == "ACK":
                        continue
                    if msg.method == "INVITE":
                        self._ringing = (msg, uuid.uuid4().hex[:8])
                        await self.send(self._response(msg, 180, "Ringing", self._ringing[1]))
                    else:
                        await self.send(make_response(msg, 200, "OK"))
                    if msg.method == "CANCEL" and self._ringing is not None:
                        invite, tag = self._ringing
                        self._ringing = None
                        await self.send(self._response(invite, 487, "Request Terminated", tag))
                    if msg.method == method:
                        return msg
        except TimeoutError:
            return None

    def _response(self, req: SipRequest, status: int, reason: str, tag: str,
                  body: bytes = b"") -> SipResponse:
        h = Headers()
        for v in req.headers.values("via"):
            h.add("Via", v)
        h.add("From", req.headers.get("from") or "")
        h.add("To", f"{req.headers.get('to')};tag={tag}")
        h.add("Call-ID", req.call_id)
        h.add("CSeq", req.headers.get("cseq") or "")
        h.add("Contact", f"<sip:{self.user}@{self.instance}.invalid;transport=ws>")
        if body:
            h.add("Content-Type", "application/sdp")
        return SipResponse(status, reason, h, body)
