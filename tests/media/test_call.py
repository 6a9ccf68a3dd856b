"""CallMedia, the edge's handle on a call's media: relay when it can, bridge when it must,
every port back and no live call object left however the call ends."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from softphone.codecs.offer_answer import Negotiated, answer_offer, build_offer
from softphone.codecs.registry import OPUS, PCMA, Codec
from softphone.native.g711 import alaw_decode, alaw_encode

from softphone.media.bridge import TickScheduler
from softphone.media.call import CallMedia
from softphone.media.dtmf import DtmfSender
from softphone.media.echo import ToneSource
from softphone.media.ports import PortAllocator, PortsExhausted
from softphone.media.rtp import build_header, parse_rtp
from softphone.media.tone import ToneGenerator, detect_tone

pytestmark = pytest.mark.timeout(30)


def negotiate(phone_port: int, our_port: int, codec: Codec) -> Negotiated:
    """The phone offers ``codec`` from ``phone_port``; the edge answers on ``our_port``."""
    offer = build_offer(address="127.0.0.1", port=phone_port, order=[codec])
    return answer_offer(offer, address="127.0.0.1", port=our_port, order=[OPUS, PCMA])


@pytest.fixture
async def scheduler() -> Any:
    s = TickScheduler()
    yield s
    s.stop()


async def test_same_codec_relays_then_a_prompt_switches_to_the_bridge(
        allocator: PortAllocator, udp_peer: Any, scheduler: TickScheduler) -> None:
    phone_a, phone_b = await udp_peer(), await udp_peer()
    digits: list[tuple[str, str]] = []
    call = CallMedia("call-1", allocator, scheduler,
                     on_dtmf=lambda _c, leg, ev: digits.append((leg, ev.kind.value)))
    try:
        for leg, phone in (("a", phone_a), ("b", phone_b)):
            pair = call.reserve(leg)
            await call.attach(leg, negotiate(phone.address[1], pair.rtp, PCMA))
        call.connect()
        assert call.relaying and call.bridge is None
        # a relayed leg never decodes: no jitter buffer is made for it (until a bridge needs it)
        assert all(s.jitter is None for s in call.sessions.values())
        phone_a.send(build_header(8, 1, 160, 9) + b"relayed!", call.pairs["a"].rtp_sock
                     .getsockname())
        await phone_b.wait_for(1)
        assert parse_rtp(phone_b.received[0][0]).payload == b"relayed!"
        te_pt = call.sessions["a"].dtmf_payload_type
        assert te_pt is not None
        for k, p in enumerate(DtmfSender().packets("1", 480, 60)):
            phone_a.send(build_header(te_pt, 2 + k, p.timestamp, 9, p.marker) + p.payload,
                         ("127.0.0.1", call.pairs["a"].rtp))
        await phone_b.wait_for(6)  # relayed as they came: 2 + 3 end packets
        assert digits == [("a", "start"), ("a", "end")]
        assert {parse_rtp(d).payload_type for d, _ in phone_b.received[1:]} == {
            call.sessions["b"].dtmf_payload_type}
        phone_b.received.clear()
        call.inject("b", ToneSource(425, 8000, duration_ms=600))
        assert not call.relaying and call.bridge is not None
        assert all(s.jitter is not None for s in call.sessions.values())
        scheduler.start()
        await asyncio.sleep(0.8)
        pcm = b"".join(alaw_decode(parse_rtp(d).payload) for d, _ in phone_b.received)
        assert detect_tone(pcm[:8000], 8000, 425), "B hears the prompt"
        heard_a = b"".join(alaw_decode(parse_rtp(d).payload) for d, _ in phone_a.received)
        assert not detect_tone(heard_a, 8000, 425, min_ratio=0.2), "A does not"
    finally:
        call.close()
        call.close()
    assert allocator.in_use == 0 and allocator.media_objects == 0


async def test_transcoding_call_is_bridged(allocator: PortAllocator, udp_peer: Any,
                                           scheduler: TickScheduler) -> None:
    phone_a, phone_b = await udp_peer(), await udp_peer()
    call = CallMedia("call-2", allocator, scheduler, bridge_rate=16000)
    try:
        pa, pb = call.reserve("a"), call.reserve("b")
        await call.attach("a", negotiate(phone_a.address[1], pa.rtp, PCMA))
        await call.attach("b", negotiate(phone_b.address[1], pb.rtp, OPUS))
        call.connect()
        assert call.bridge is not None and not call.relaying
        scheduler.start()
        gen = ToneGenerator(1000, 8000)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for k in range(50):
            await asyncio.sleep(max(0.0, t0 + 0.02 * k - loop.time()))
            phone_a.send(build_header(8, k, 160 * k, 5) + alaw_encode(gen.frame(160)),
                         ("127.0.0.1", pa.rtp))
        await asyncio.sleep(0.3)
        opus = [parse_rtp(d) for d, _ in phone_b.received]
        assert opus and {p.payload_type for p in opus} == {call.sessions["b"].send_payload_type}
        from softphone.codecs.opus import OpusDecoder

        dec = OpusDecoder(48000, 1)
        pcm = b"".join(dec.decode(p.payload) for p in sorted(opus, key=lambda p: p.sequence))
        assert detect_tone(pcm[-48000 * 2 // 2:-19200], 48000, 1000)
        stats = call.stats()
        assert stats["a"].packets_received == 50 and stats["a"].lost == 0
        assert stats["b"].packets_sent > 0 and stats["b"].latched is None  # b never spoke
    finally:
        call.close()
    assert allocator.in_use == 0


async def test_rtp_timeout_ends_the_call_and_frees_its_ports(
        allocator: PortAllocator, udp_peer: Any, scheduler: TickScheduler) -> None:
    phone_a, phone_b = await udp_peer(), await udp_peer()
    ended: list[str] = []
    call = CallMedia("call-3", allocator, scheduler, rtp_timeout=0.3,
                     on_timeout=lambda c, leg: (ended.append(leg), c.close()))
    for leg, phone in (("a", phone_a), ("b", phone_b)):
        pair = call.reserve(leg)
        await call.attach(leg, negotiate(phone.address[1], pair.rtp, PCMA))
    call.connect()
    assert allocator.in_use == 2
    for _ in range(50):
        if call.closed:
            break
        await asyncio.sleep(0.05)
    assert call.closed and ended and allocator.in_use == 0 and allocator.media_objects == 0


async def test_exhaustion_mid_setup_leaves_nothing_behind(udp_peer: Any,
                                                          scheduler: TickScheduler) -> None:
    small = PortAllocator(21950, 21955, "127.0.0.1")  # three pairs: a call and a half
    first = CallMedia("ok", small, scheduler)
    first.reserve("a")
    first.reserve("b")
    second = CallMedia("refused", small, scheduler)
    second.reserve("a")
    with pytest.raises(PortsExhausted):
        second.reserve("b")
    second.close()  # the edge answers 503 and closes: the half-made call frees its leg
    first.close()
    assert small.in_use == 0 and small.media_objects == 0


async def test_reinvite_to_another_codec_moves_the_call_to_the_bridge(
        allocator: PortAllocator, udp_peer: Any, scheduler: TickScheduler) -> None:
    from softphone.codecs.registry import PCMU
    from softphone.native.g711 import ulaw_encode

    phone_a, phone_b = await udp_peer(), await udp_peer()
    call = CallMedia("call-5", allocator, scheduler)
    try:
        for leg, phone in (("a", phone_a), ("b", phone_b)):
            pair = call.reserve(leg)
            await call.attach(leg, negotiate(phone.address[1], pair.rtp, PCMA))
        call.connect()
        assert call.relaying
        # b re-INVITEs offering only PCMU: same clock, another law -> transcoding
        offer = build_offer(address="127.0.0.1", port=phone_b.address[1], order=[PCMU])
        neg = answer_offer(offer, address="127.0.0.1", port=call.pairs["b"].rtp,
                           order=[PCMA, PCMU])
        call.update("b", neg)
        assert not call.relaying and call.bridge is not None
        assert call.sessions["b"].payload_types == {0}
        scheduler.start()
        gen = ToneGenerator(1000, 8000)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for k in range(50):
            await asyncio.sleep(max(0.0, t0 + 0.02 * k - loop.time()))
            phone_b.send(build_header(0, k, 160 * k, 3) + ulaw_encode(gen.frame(160)),
                         ("127.0.0.1", call.pairs["b"].rtp))
        await asyncio.sleep(0.2)
        heard = b"".join(alaw_decode(parse_rtp(d).payload) for d, _ in phone_a.received
                         if parse_rtp(d).payload_type == 8)
        assert detect_tone(heard[-12800:-3200], 8000, 1000)
        assert call.sessions["b"].unknown_payload_type == 0
    finally:
        call.close()
    assert allocator.in_use == 0


async def test_hold_stops_media_towards_the_held_side(
        allocator: PortAllocator, udp_peer: Any, scheduler: TickScheduler) -> None:
    phone_a, phone_b = await udp_peer(), await udp_peer()
    call = CallMedia("call-6", allocator, scheduler)
    try:
        for leg, phone in (("a", phone_a), ("b", phone_b)):
            pair = call.reserve(leg)
            await call.attach(leg, negotiate(phone.address[1], pair.rtp, PCMA))
        call.connect()
        # b puts the call on hold: its offer is sendonly, so we only receive from b
        offer = build_offer(address="127.0.0.1", port=phone_b.address[1], order=[PCMA],
                            direction="sendonly")
        neg = answer_offer(offer, address="127.0.0.1", port=call.pairs["b"].rtp,
                           order=[PCMA])
        assert not neg.sends and neg.receives
        call.update("b", neg)
        for k in range(5):
            phone_a.send(build_header(8, k, 160 * k, 1) + b"\xd5" * 160,
                         ("127.0.0.1", call.pairs["a"].rtp))
            phone_b.send(build_header(8, k, 160 * k, 2) + b"\xd5" * 160,
                         ("127.0.0.1", call.pairs["b"].rtp))  # music on hold goes on
        await phone_a.wait_for(5)
        await asyncio.sleep(0.1)
        assert phone_b.received == [] and call.sessions["a"].packets_received == 5
        # resume: sendrecv again, media flows to b
        resume = build_offer(address="127.0.0.1", port=phone_b.address[1], order=[PCMA])
        call.update("b", answer_offer(resume, address="127.0.0.1", port=call.pairs["b"].rtp,
                                      order=[PCMA]))
        phone_a.send(build_header(8, 5, 800, 1) + b"\xd5" * 160,
                     ("127.0.0.1", call.pairs["a"].rtp))
        await phone_b.wait_for(1)
    finally:
        call.close()
    assert allocator.in_use == 0


async def test_ports_in_the_users_name_and_sources_reach_the_sessions(
        allocator: PortAllocator, udp_peer: Any, scheduler: TickScheduler) -> None:
    """What the edge passes: whose ports (per-user cap), emergency or not, and where each
    leg's signalling comes from (that address may latch, another may not)."""
    phone = await udp_peer(host="127.0.0.2")  # its SIP came from here, its SDP says .3
    call = CallMedia("call-src", allocator, scheduler, user="1001", latch="address-only")
    try:
        call.allow_sources("a", ["127.0.0.2"])
        pair = call.reserve("a")
        sos = call.reserve("b", emergency=True)
        assert (pair.user, pair.emergency, sos.user, sos.emergency) == \
            ("1001", False, "1001", True)
        assert allocator.user_ports("1001") == 4
        offer = build_offer(address="127.0.0.3", port=4000, order=[PCMA])
        session = await call.attach("a", answer_offer(offer, address="127.0.0.1",
                                                      port=pair.rtp, order=[PCMA]))
        assert session.allowed_hosts == {"127.0.0.2"} and session.latch == "address-only"
        phone.send(build_header(8, 1, 160, 9) + b"x" * 160, ("127.0.0.1", pair.rtp))
        for _ in range(100):
            if session.packets_received:
                break
            await asyncio.sleep(0.02)
        assert session.stats.latched == phone.address
        call.allow_sources("a", [])  # set later (re-INVITE from elsewhere): reaches the session
        assert session.allowed_hosts == frozenset()
    finally:
        call.close()
    assert allocator.user_ports("1001") == 0


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_call_ended_while_its_media_starts_keeps_no_socket(loop_kind: str) -> None:
    """A BYE between the answer and the media's start closes the call while ``attach`` is
    making its transports: the attach fails with CallMediaError (the edge drops it quietly)
    and every descriptor and port comes back. On uvloop the transport owns the descriptor,
    so one made for an ended call used to stay open, its port bound, for the process's life."""
    import os

    from softphone.media.call import CallMediaError

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    async def main() -> None:
        allocator = PortAllocator(21000, 21999, "127.0.0.1")
        scheduler = TickScheduler()
        await asyncio.sleep(0)
        baseline = open_fds()
        ended = 0
        for i in range(40):
            call = CallMedia(f"race-{i}", allocator, scheduler)
            pair = call.reserve("a")
            attach = asyncio.ensure_future(call.attach("a", negotiate(9, pair.rtp, PCMA)))
            for _ in range(i % 4):  # the BYE lands at every step of the start
                await asyncio.sleep(0)
            call.close()
            try:
                await attach
            except CallMediaError:
                ended += 1
        await asyncio.sleep(0.05)  # transports close on the next loop turn
        assert ended >= 10, "the race was not reached"
        assert allocator.in_use == 0
        assert open_fds() == baseline, f"{open_fds() - baseline} descriptors kept"
        scheduler.stop()

    if loop_kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        uvloop.run(main())
    else:
        asyncio.run(main())
