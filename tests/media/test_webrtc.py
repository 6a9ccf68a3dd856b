"""The browser leg's media (``softphone.media.webrtc``, ``softphone.media.ice_ports``) between
two aiortc peer connections in one process, over loopback: ICE on ports of the allocator, the
codec order, the bounded queues, the candidates filtered, the ports given back."""

from __future__ import annotations

import array
import asyncio
import math

import pytest
from aioice import Connection
from softphone.codecs.offer_answer import answer_offer, build_offer, outcome_of
from softphone.codecs.sdp import parse_sdp

from softphone.media.bridge import TickScheduler
from softphone.media.call import CallMedia
from softphone.media.ice_ports import pin_host_candidates
from softphone.media.ports import PortAllocator
from softphone.media.webrtc import (
    FRAME_BYTES,
    FRAME_SAMPLES,
    MAX_QUEUED,
    WebRtcEndpoint,
    WebRtcError,
    _Frames,
    is_webrtc_offer,
)

pytestmark = pytest.mark.timeout(30)

RANGE = (21960, 21999)


def tone(hz: float, start: int) -> bytes:
    return array.array("h", (int(8000 * math.sin(2 * math.pi * hz * (start + i) / 48000))
                             for i in range(FRAME_SAMPLES))).tobytes()


async def test_a_pinned_ice_connection_gathers_one_host_candidate_on_the_pair() -> None:
    allocator = PortAllocator(*RANGE, host="127.0.0.1")
    pair = allocator.allocate("ice")
    pinned = Connection(ice_controlling=True)
    pin_host_candidates(pinned, lambda _component: pair)
    free = Connection(ice_controlling=True)
    try:
        await pinned.gather_candidates()
        await free.gather_candidates()
        got = [(c.host, c.port, c.type) for c in pinned.local_candidates]
        assert got == [("127.0.0.1", pair.rtp, "host")]
        # another connection of the process is not touched: aioice's own choice
        assert all(c.port != pair.rtp and c.host != "127.0.0.1" for c in free.local_candidates)
    finally:
        await pinned.close()
        await free.close()
        allocator.release(pair)


async def test_two_endpoints_agree_on_the_edge_order_and_carry_audio_both_ways() -> None:
    allocator = PortAllocator(*RANGE, host="127.0.0.1")
    a = WebRtcEndpoint(allocator.allocate("a"), allocator=allocator, name="a")
    b = WebRtcEndpoint(allocator.allocate("b"), allocator=allocator, name="b",
                       codecs=("PCMU", "opus"))
    try:
        offer = await a.offer()
        assert is_webrtc_offer(offer)
        lines = offer.decode().splitlines()
        m = next(line for line in lines if line.startswith("m=audio"))
        assert m.split()[3:6] == ["96", "8", "0"], m  # OPUS, PCMA, PCMU: the edge's order
        cands = [line.split() for line in lines if line.startswith("a=candidate:")]
        assert [(c[4], int(c[5]), c[7]) for c in cands] == [("127.0.0.1", a.pair.rtp, "host")]
        answer = await b.answer(offer)
        await a.accept(answer)
        # the answer lists the answerer's order: it sends its first, PCMU (each side sends
        # the first of the answer's formats its own order prefers: both decode both)
        assert b.codec == "PCMU" and a.codec in ("opus", "PCMU")
        m_answer = next(x for x in answer.decode().splitlines() if x.startswith("m=audio"))
        assert m_answer.split()[3] == "0", m_answer
        await a.session.start()
        await b.session.start()
        for i in range(100):
            a.session.send_frame(tone(1000, i * FRAME_SAMPLES))
            b.session.send_frame(tone(500, i * FRAME_SAMPLES))
            await asyncio.sleep(0.02)
        assert a.pc.connectionState == "connected"
        assert b.session.packets_received > 50 and a.session.packets_received > 50
        assert b.session.jitter.get(0)[0] == 0  # a frame for the bridge
    finally:
        a.close()
        b.close()
    for _ in range(50):
        if allocator.in_use == 0:
            break
        await asyncio.sleep(0.05)
    assert allocator.in_use == 0, "a browser leg kept its port"


async def test_an_offer_without_a_common_codec_or_without_dtls_is_refused() -> None:
    allocator = PortAllocator(*RANGE, host="127.0.0.1")
    a = WebRtcEndpoint(allocator.allocate("a"), allocator=allocator, name="a",
                       codecs=("opus",))
    b = WebRtcEndpoint(allocator.allocate("b"), allocator=allocator, name="b",
                       codecs=("PCMA",))
    plain = WebRtcEndpoint(allocator.allocate("c"), allocator=allocator, name="c")
    try:
        offer = await a.offer()
        with pytest.raises(WebRtcError):
            await b.answer(offer)
        with pytest.raises(WebRtcError):
            await plain.answer(b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
                               b"m=audio 4000 RTP/AVP 0\r\nc=IN IP4 127.0.0.1\r\n")
    finally:
        for e in (a, b, plain):
            e.close()
        await asyncio.sleep(0.2)


def test_the_browser_candidates_we_must_not_try_are_filtered() -> None:
    allocator = PortAllocator(*RANGE, host="127.0.0.1")
    pair = allocator.allocate("x")
    endpoint = WebRtcEndpoint.__new__(WebRtcEndpoint)
    endpoint.pair = pair
    sdp = ("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
           "a=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host\r\n"
           "a=candidate:2 1 udp 2122260223 192.0.2.2 50001 typ host\r\n"
           "a=candidate:3 1 udp 2122260223 f0e1d2c3.local 50002 typ host\r\n"
           "a=candidate:4 1 udp 2122260223 ::1 50003 typ host\r\n"
           "a=candidate:5 1 tcp 2122260223 127.0.0.1 9 typ host tcptype active\r\n")
    kept = [line for line in endpoint._filtered(sdp.encode()).splitlines()
            if line.startswith("a=candidate")]
    allocator.release(pair)
    assert kept == ["a=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host"]


def test_the_frame_queue_is_bounded_and_cuts_whole_frames() -> None:
    frames = _Frames()
    assert frames.put(bytes(FRAME_BYTES // 2)) == 0  # half a frame waits for the rest
    assert frames.put(bytes(FRAME_BYTES // 2)) == 1
    frames.put(bytes(FRAME_BYTES * (MAX_QUEUED + 5)))
    assert len(frames.frames) == MAX_QUEUED and frames.dropped == 6
    assert frames.get(0) == (0, bytes(FRAME_BYTES))
    empty = _Frames()
    assert empty.get(0) == (2, None)


async def test_a_call_with_a_browser_leg_is_bridged_never_relayed() -> None:
    allocator = PortAllocator(*RANGE, host="127.0.0.1")
    media = CallMedia("c1", allocator, TickScheduler(), bridge_rate=16000)
    peer = WebRtcEndpoint(allocator.allocate("peer"), allocator=allocator, name="peer")
    try:
        media.reserve("a")
        media.reserve("b")
        endpoint = media.webrtc("a", ["opus", "PCMA"])
        offer = await peer.offer()
        answer = await endpoint.answer(offer)
        a_neg = outcome_of(parse_sdp(answer), parse_sdp(offer), we_answered=True)
        assert a_neg.codec.name.lower() == "opus" and a_neg.sends and a_neg.receives
        b_offer = build_offer(address="127.0.0.1", port=40000)
        b_neg = answer_offer(b_offer, address="127.0.0.1", port=media.pairs["b"].rtp)
        await media.attach("a", a_neg)
        await media.attach("b", b_neg)
        media.connect()
        assert media.bridge is not None and not media.relaying
        with pytest.raises(ValueError):
            media.sessions["a"].relay_to(media.sessions["b"])
    finally:
        media.close()
        peer.close()
    for _ in range(50):
        if allocator.in_use == 0:
            break
        await asyncio.sleep(0.05)
    assert allocator.in_use == 0 and allocator.media_objects == 0
