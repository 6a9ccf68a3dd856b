"""A browser's media, terminated by aiortc: ICE, DTLS-SRTP, RTP/RTCP, OPUS or G.711.

The edge anchors every call's media; a browser leg (the web phone, over SIP on WebSocket)
speaks WebRTC: ICE with DTLS-SRTP, max-bundle and rtcp-mux, which plain RTP sessions cannot
answer. aiortc does that whole stack (it is the well-kept implementation, and PyAV, which the
codecs already use, is its media layer); this module joins it to the edge's media:

- ``WebRtcEndpoint`` owns one ``RTCPeerConnection`` with one audio transceiver. Its ICE host
  candidate takes its port from the edge's RTP allocator (``softphone.media.ice_ports``): one
  ``PortPair`` per browser leg, reserved by ``CallMedia.reserve`` like any leg, released when
  the leg ends. No ICE server is configured (aiortc would otherwise ask Google's STUN server),
  and the browser's candidates are filtered before aioice sees them: no mDNS ``.local`` name
  (it would send multicast), none outside the media address's scope (a loopback edge pairs
  only loopback candidates), none of another address family. Codecs are offered or accepted
  in the edge's order (OPUS, PCMA, PCMU); aiortc encodes and decodes.
- ``WebRtcSession`` is the bridge's view of that leg: an ``RtpSession`` whose frames are PCM.
  What aiortc decodes (any rate, any layout) is resampled to 48 kHz mono by PyAV and queued
  in 20-ms frames (at most ``MAX_QUEUED`` frames: a late bridge drops the oldest, it never
  grows); ``jitter.get`` hands the bridge one per tick. What the bridge sends goes as PCM to
  the outgoing track, whose queue is bounded the same way; aiortc paces and encodes it. The
  remote track is always read, from the moment it exists, so aiortc's own buffers never grow.
  Such a leg is never relayed packet by packet (``relayable`` False): it joins the call's
  bridge, with its mixing, transcoding to desk phones, notices and recording. Its loss, jitter
  and round-trip time are aiortc's (read every ``STATS_EVERY_S``: ``BrowserReception``), so
  the call log and the status show them as for a desk phone.
"""

from __future__ import annotations

import array
import asyncio
import collections
import contextlib
import fractions
import ipaddress
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.exceptions import InvalidStateError, OperationError
from aiortc.mediastreams import MediaStreamError

from softphone.media.ice_ports import pin_host_candidates
from softphone.media.ports import PortAllocator, PortPair
from softphone.media.rtcp import ReceptionStats
from softphone.media.session import RtpSession

__all__ = ["PCM_RATE", "PcmCodec", "WebRtcEndpoint", "WebRtcError", "WebRtcSession",
           "is_webrtc_offer"]

log = logging.getLogger(__name__)
# aioice logs every ICE check and aiortc every state change at INFO: one line each per call
for _name in ("aioice", "aiortc"):
    logging.getLogger(_name).setLevel(logging.WARNING)

PCM_RATE = 48000
FRAME_SAMPLES = PCM_RATE // 50  # 20 ms
FRAME_BYTES = 2 * FRAME_SAMPLES
MAX_QUEUED = 10  # 200 ms each way: beyond that the oldest frame goes
STATS_EVERY_S = 1.0  # how often a browser leg's loss, jitter and RTT are read from aiortc
_FRAME, _EMPTY = 0, 2  # the jitter buffer's GetResult values the bridge reads
_CODEC_ORDER = {"opus": "audio/opus", "pcma": "audio/PCMA", "pcmu": "audio/PCMU"}


class WebRtcError(Exception):
    """The browser's description cannot be used (no audio, no common codec, bad SDP)."""


def is_webrtc_offer(sdp: bytes | str) -> bool:
    """A description with DTLS-SRTP audio (``UDP/TLS/RTP/SAVPF``): a browser's."""
    text = sdp.decode("utf-8", "replace") if isinstance(sdp, bytes) else sdp
    return re.search(r"^m=audio \d+ UDP/TLS/RTP/SAVPF? ", text, re.M) is not None


class PcmCodec:
    """The bridge's codec for a browser leg: aiortc decodes and encodes, so the bridge sees
    16-bit mono PCM at 48 kHz; ``name`` says what is on the wire (the call log's codec)."""

    payload_type = 0
    clock_rate = PCM_RATE
    rtp_clock_rate = PCM_RATE

    def __init__(self, name: str = "opus") -> None:
        self.name = name

    def frame_samples(self, ptime_ms: int = 20) -> int:
        return PCM_RATE * ptime_ms // 1000

    def rtp_samples(self, ptime_ms: int = 20) -> int:
        return PCM_RATE * ptime_ms // 1000

    def encode(self, pcm: bytes) -> bytes:
        return pcm

    def decode(self, payload: bytes | None) -> bytes:
        return payload if payload is not None else bytes(FRAME_BYTES)


class _Frames:
    """The jitter slot of a browser leg: 20-ms PCM frames already decoded by aiortc."""

    def __init__(self) -> None:
        self.frames: collections.deque[bytes] = collections.deque(maxlen=MAX_QUEUED)
        self.dropped = 0
        self._partial = b""

    def put(self, pcm: bytes) -> int:
        """Queue ``pcm`` (any length) in whole frames; how many frames it completed."""
        data = self._partial + pcm
        n = 0
        while len(data) >= FRAME_BYTES:
            if len(self.frames) == MAX_QUEUED:
                self.dropped += 1
            self.frames.append(data[:FRAME_BYTES])
            data = data[FRAME_BYTES:]
            n += 1
        self._partial = data
        return n

    def get(self, now_ms: float) -> tuple[int, bytes | None]:
        if self.frames:
            return _FRAME, self.frames.popleft()
        return _EMPTY, None


class _BridgeTrack(MediaStreamTrack):
    """What the bridge sends to the browser, for aiortc's sender to encode and pace."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=MAX_QUEUED)
        self.dropped = 0
        self.stereo = False  # frames in stereo (what aiortc's Opus encoder takes)
        self._pts = 0

    def push(self, pcm: bytes) -> None:
        if self.queue.full():
            self.dropped += 1
            self.queue.get_nowait()
        self.queue.put_nowait(pcm)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        pcm = await self.queue.get()
        if self.stereo:
            # the same sample on both channels: aiortc's own upmix (for Opus, which it sends
            # in stereo) is an equal-power one, 3 dB down, which the browser would hear
            mono = array.array("h", pcm)
            both = array.array("h", bytes(2 * len(pcm)))
            both[0::2] = mono
            both[1::2] = mono
            frame = av.AudioFrame(format="s16", layout="stereo", samples=FRAME_SAMPLES)
            frame.planes[0].update(both.tobytes())
        else:
            frame = av.AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
            frame.planes[0].update(pcm)
        frame.sample_rate = PCM_RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, PCM_RATE)
        self._pts += FRAME_SAMPLES
        return frame


class BrowserReception(ReceptionStats):
    """What the call log and status read of a browser leg's reception (loss, jitter), as
    aiortc counts it on the SRTP stream (``WebRtcEndpoint.refresh_stats``): the PCM frames this
    session sees carry no sequence numbers to count them from."""

    def __init__(self, clock_rate: int) -> None:
        super().__init__(clock_rate)
        self.aiortc_received = 0
        self.aiortc_lost = 0
        self.aiortc_jitter_ms = 0.0

    @property
    def expected(self) -> int:
        return self.aiortc_received + self.aiortc_lost

    @property
    def lost(self) -> int:
        return self.aiortc_lost

    @property
    def jitter_ms(self) -> float:
        return self.aiortc_jitter_ms


class WebRtcSession(RtpSession):
    """The bridge's view of a browser leg (see the module docstring)."""

    relayable = False

    def __init__(self, pair: PortPair, *, allocator: PortAllocator | None, name: str,
                 inactivity_timeout: float | None = 30.0,
                 on_timeout: Callable[[RtpSession], None] | None = None) -> None:
        super().__init__(pair, allocator=allocator, payload_types=(0,), dtmf_payload_type=None,
                         clock_rate=PCM_RATE, frame_samples=FRAME_SAMPLES, use_jitter=False,
                         inactivity_timeout=inactivity_timeout, on_timeout=on_timeout,
                         rtcp_interval=0, name=name)
        self.frames = _Frames()
        self.jitter = self.frames  # type: ignore[assignment]
        self.reception = BrowserReception(PCM_RATE)
        self.track = _BridgeTrack()
        self.endpoint: WebRtcEndpoint | None = None

    async def start(self) -> None:
        """The inactivity timer only: aiortc owns the sockets."""
        if self._loop is not None or self.closed:
            return
        self._loop = asyncio.get_running_loop()
        self._started_at = self._loop.time()
        self._schedule_idle_check()

    def received(self, pcm: bytes) -> None:
        """PCM decoded by aiortc (48 kHz mono)."""
        n = self.frames.put(pcm)
        if n:
            self.packets_received += n
            self.octets_received += len(pcm)
            if self._loop is not None:
                self._last_rx = self._loop.time()

    def send_frame(self, payload: bytes, *, samples: int | None = None,
                   marker: bool = False) -> bool:
        if not self.sending or self.closed:
            return False
        self.track.push(payload)
        self.packets_sent += 1
        self.octets_sent += len(payload)
        return True

    def skip_frame(self, samples: int | None = None) -> None:
        return None

    def relay_to(self, other: RtpSession | None, pt_map: dict[int, int] | None = None) -> None:
        if other is not None:
            raise ValueError(f"{self.name}: a browser leg is bridged, never relayed")

    def set_remote(self, remote: tuple[str, int], remote_rtcp: tuple[str, int] | None = None,
                   *, allowed_hosts: Iterable[str] | None = None) -> None:
        return None  # ICE chooses the path

    def ensure_jitter(self) -> Any:
        return self.frames

    def close(self, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self.track.stop()
        endpoint = self.endpoint
        if endpoint is not None:
            endpoint.close()
        elif self.allocator is not None:
            self.allocator.release(self.pair)


class WebRtcEndpoint:
    """One browser leg's peer connection, its ICE port from ``pair`` (see module docstring)."""

    def __init__(self, pair: PortPair, *, allocator: PortAllocator | None, name: str,
                 codecs: Iterable[str] = ("opus", "PCMA", "PCMU"),
                 inactivity_timeout: float | None = 30.0,
                 on_timeout: Callable[[RtpSession], None] | None = None) -> None:
        self.pair = pair
        self.allocator = allocator
        self.name = name
        self.codec_order = [c.lower() for c in codecs if c.lower() in _CODEC_ORDER]
        self.session = WebRtcSession(pair, allocator=allocator, name=name,
                                     inactivity_timeout=inactivity_timeout,
                                     on_timeout=on_timeout)
        self.session.endpoint = self
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.codec = ""  # the negotiated codec's name (opus, PCMA, PCMU)
        self.closed = False
        self._reader: asyncio.Task[None] | None = None
        self._stats: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=PCM_RATE)
        self._pinned: set[int] = set()  # the ICE connections already on our port
        self.pc.on("track", self._on_track)

    # ------------------------------------------------------------------ offer/answer

    async def answer(self, offer: bytes) -> bytes:
        """Our answer to the browser's offer (its ICE candidates gathered: host only)."""
        if not is_webrtc_offer(offer):
            raise WebRtcError("the offer has no DTLS-SRTP audio stream")
        # our transceiver first, with the edge's codec order: the offer's audio joins it
        transceiver = self.pc.addTransceiver(self.session.track, direction="sendrecv")
        self._prefer(transceiver)
        self._pin()
        try:
            await self.pc.setRemoteDescription(
                RTCSessionDescription(self._filtered(offer), "offer"))
        except (ValueError, InvalidStateError, OperationError) as exc:
            raise WebRtcError(f"the browser's offer cannot be used: {exc}") from exc
        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)
        return self._local()

    async def offer(self) -> bytes:
        """Our offer to a browser (host candidate gathered)."""
        transceiver = self.pc.addTransceiver(self.session.track, direction="sendrecv")
        self._prefer(transceiver)
        self._pin()
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self._local()

    async def accept(self, answer: bytes) -> None:
        """The browser's answer to our offer."""
        try:
            await self.pc.setRemoteDescription(
                RTCSessionDescription(self._filtered(answer), "answer"))
        except (ValueError, InvalidStateError, OperationError) as exc:
            raise WebRtcError(f"the browser's answer cannot be used: {exc}") from exc
        self._note_codec()

    async def renegotiate(self, offer: bytes) -> bytes:
        """The browser's new offer in the same session (hold, resume): our new answer."""
        try:
            await self.pc.setRemoteDescription(
                RTCSessionDescription(self._filtered(offer), "offer"))
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except (ValueError, InvalidStateError, OperationError) as exc:
            raise WebRtcError(f"the browser's new offer cannot be used: {exc}") from exc
        return self._local()

    def _prefer(self, transceiver: Any) -> None:
        caps = RTCRtpSender.getCapabilities("audio").codecs
        ordered = []
        for name in self.codec_order:
            ordered += [c for c in caps if c.mimeType.lower() == _CODEC_ORDER[name].lower()]
        if not ordered:
            raise WebRtcError("no codec of the edge's list is available to aiortc")
        transceiver.setCodecPreferences(ordered)

    def _pin(self) -> None:
        for transceiver in self.pc.getTransceivers():
            connection = transceiver.sender.transport.transport.iceGatherer._connection
            if id(connection) not in self._pinned:
                pin_host_candidates(connection, lambda _component: self.pair)
                self._pinned.add(id(connection))

    def _local(self) -> bytes:
        desc = self.pc.localDescription
        if desc is None:
            raise WebRtcError("no local description")
        self._note_codec()
        return desc.sdp.encode()

    def _note_codec(self) -> None:
        for transceiver in self.pc.getTransceivers():
            codecs = getattr(transceiver, "_codecs", None) or []
            if codecs and self.pc.remoteDescription is not None:
                self.codec = codecs[0].mimeType.split("/", 1)[1]
                self.session.track.stereo = self.codec.lower() == "opus"
                return

    def _filtered(self, sdp: bytes) -> str:
        """The browser's description without the candidates we must not try: mDNS names,
        another address family, outside our media address's scope (loopback pairs with
        loopback only)."""
        ours = ipaddress.ip_address(self.pair.host)
        keep = []
        for line in sdp.decode("utf-8", "replace").splitlines():
            if line.startswith("a=candidate:"):
                parts = line.split()
                if len(parts) < 8 or parts[2].lower() != "udp":
                    continue
                try:
                    addr = ipaddress.ip_address(parts[4])
                except ValueError:
                    continue  # an mDNS .local name, or garbage
                if addr.version != ours.version or addr.is_loopback != ours.is_loopback:
                    continue
            keep.append(line)
        return "\r\n".join(keep) + "\r\n"

    # ------------------------------------------------------------------ media

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind != "audio" or self._reader is not None:
            return
        self._reader = asyncio.ensure_future(self._read(track))
        self._stats = asyncio.ensure_future(self._poll_stats())

    async def _poll_stats(self) -> None:
        while not self.closed:
            await asyncio.sleep(STATS_EVERY_S)
            try:
                await self.refresh_stats()
            except Exception:  # the peer connection closing under it: the last figures stay
                log.debug("%s: stats not read", self.name, exc_info=True)

    async def refresh_stats(self) -> None:
        """Loss, jitter (inbound SRTP) and round-trip time (from the browser's RTCP receiver
        reports) as aiortc measured them, into the session's figures."""
        reception = self.session.reception
        assert isinstance(reception, BrowserReception)
        clock = 48000 if self.codec.lower() == "opus" else 8000
        for stats in (await self.pc.getStats()).values():
            if stats.type == "inbound-rtp":
                reception.aiortc_received = int(stats.packetsReceived)
                reception.aiortc_lost = max(0, int(stats.packetsLost))
                reception.aiortc_jitter_ms = 1000.0 * float(stats.jitter) / clock
            elif stats.type == "remote-inbound-rtp" and stats.roundTripTime is not None:
                self.session.rtt = float(stats.roundTripTime)

    async def _read(self, track: MediaStreamTrack) -> None:
        session = self.session
        while not self.closed:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if not isinstance(frame, av.AudioFrame):
                continue
            for out in self._resampler.resample(frame):
                session.received(bytes(out.planes[0])[:2 * out.samples])

    # ------------------------------------------------------------------ end

    def close(self) -> None:
        """Stop the peer connection, then give the port back; idempotent."""
        if self.closed:
            return
        self.closed = True
        self.session.close()
        if self._reader is not None:
            self._reader.cancel()
        if self._stats is not None:
            self._stats.cancel()
        with contextlib.suppress(RuntimeError):
            self._closing = asyncio.get_running_loop().create_task(self._close())
            return
        self._release()

    async def _close(self) -> None:
        try:
            await asyncio.wait_for(self.pc.close(), 5.0)
        except Exception:
            log.debug("%s: closing the peer connection failed", self.name, exc_info=True)
        finally:
            self._release()

    def _release(self) -> None:
        if self.allocator is not None:
            self.allocator.release(self.pair)
        else:
            self.pair.rtp_sock.close()
            self.pair.rtcp_sock.close()
