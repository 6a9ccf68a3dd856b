"""RtpSession over real loopback sockets: latching, discards, jitter buffer feed, DTMF both ways,
RTCP reports with RTT, the inactivity timeout and the relay fast path."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from softphone.native.jitter import GetResult

from softphone.media.dtmf import DtmfEvent, DtmfKind, DtmfSender, TelephoneEvent
from softphone.media.ports import PortAllocator
from softphone.media.rtp import RtpPacket, build_header, build_rtp, parse_rtp
from softphone.media.session import RtpSession

pytestmark = pytest.mark.timeout(30)


def rtp(seq: int, ts: int, pt: int = 8, ssrc: int = 0xABCD, payload: bytes = b"\xd5" * 160,
        marker: bool = False) -> bytes:
    return build_rtp(RtpPacket(pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc, payload, marker))


async def settle(condition: Any, timeout: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def test_latches_to_the_source_the_peer_really_sends_from(
        allocator: PortAllocator, udp_peer: Any) -> None:
    sdp_addr = await udp_peer()  # what the SDP said
    real = await udp_peer()  # where the peer's packets really come from (NAT)
    intruder = await udp_peer()
    s = RtpSession(allocator.allocate("latch"), allocator=allocator, remote=sdp_addr.address,
                   rtcp_interval=0)
    await s.start()
    try:
        s.send_frame(b"\xd5" * 160)
        await sdp_addr.wait_for(1)
        assert parse_rtp(sdp_addr.received[0][0]).ssrc == s.ssrc
        real.send(rtp(1, 160), s.local)
        await settle(lambda: s.packets_received == 1)
        s.send_frame(b"\xd5" * 160)
        await real.wait_for(1)
        assert real.received[0][1] == s.local and len(sdp_addr.received) == 1
        intruder.send(rtp(2, 320), s.local)  # a third source while the peer is live: dropped
        await settle(lambda: s.foreign_source == 1)
        assert s.stats.latched == real.address and s.packets_received == 1
        two = [parse_rtp(d) for d, _ in sdp_addr.received + real.received]
        assert (two[1].sequence - two[0].sequence) & 0xFFFF == 1
        assert (two[1].timestamp - two[0].timestamp) & 0xFFFFFFFF == 160
        assert two[0].marker and not two[1].marker
    finally:
        s.close()
    assert allocator.in_use == 0


async def test_silence_never_reopens_the_latch(allocator: PortAllocator, udp_peer: Any) -> None:
    """RTPbleed's second act: the peer pauses (hold, silence suppression) for longer than the
    2 s after which the edge used to re-latch, and another source speaks."""
    a, b = await udp_peer(), await udp_peer()
    s = RtpSession(allocator.allocate("silent"), allocator=allocator, remote=a.address,
                   rtcp_interval=0)
    await s.start()
    try:
        a.send(rtp(1, 160), s.local)
        await settle(lambda: s.packets_received == 1)
        await asyncio.sleep(2.3)
        b.send(rtp(500, 320, ssrc=0xBAD), s.local)  # one packet after the silence
        await settle(lambda: s.foreign_source == 1)
        s.send_frame(b"\xd5" * 160)
        await a.wait_for(1)
        assert s.stats.latched == a.address and s.packets_received == 1 and not b.received
    finally:
        s.close()


async def test_nat_rebinding_is_followed_after_probation_in_sequence(
        allocator: PortAllocator, udp_peer: Any) -> None:
    """Same address, new port (a NAT rebinding): taken after ``probation`` consecutive
    in-sequence packets, not before; a gap in the sequence starts the count again."""
    a, b = await udp_peer(), await udp_peer()
    s = RtpSession(allocator.allocate("rebind"), allocator=allocator, remote=a.address,
                   rtcp_interval=0, probation=4)
    await s.start()
    try:
        a.send(rtp(1, 160), s.local)
        await settle(lambda: s.packets_received == 1)
        for seq in (10, 11, 13, 14, 15):  # 11 -> 13: a gap, the count restarts at 13
            b.send(rtp(seq, 160 * seq), s.local)
        await settle(lambda: s.foreign_source == 5)
        assert s.stats.latched == a.address and s.source_switches == 0
        b.send(rtp(16, 160 * 16), s.local)  # the 4th in a row: the latch moves
        await settle(lambda: s.packets_received == 2)
        assert s.stats.latched == b.address and s.stats.source_switches == 1
        a.send(rtp(2, 320), s.local)  # the old binding is now the stranger
        await settle(lambda: s.foreign_source == 6)
    finally:
        s.close()


async def test_another_address_never_latches_however_well_it_behaves(
        allocator: PortAllocator, udp_peer: Any) -> None:
    """RTP from 127.0.0.2 while the SDP and the signalling say 127.0.0.1: dropped before the
    latch and after it, in sequence or not; nothing is sent to it. The signalling address,
    when given (``allowed_hosts``), may latch."""
    peer = await udp_peer()
    attacker = await udp_peer(host="127.0.0.2")
    s = RtpSession(allocator.allocate("spray"), allocator=allocator, remote=peer.address,
                   rtcp_interval=0)
    await s.start()
    try:
        for seq in range(20):
            attacker.send(rtp(seq, 160 * seq, ssrc=0xBAD), s.local)
        await settle(lambda: s.foreign_source == 20)
        assert s.stats.latched is None and s.packets_received == 0
        peer.send(rtp(1, 160), s.local)
        await settle(lambda: s.packets_received == 1)
        for seq in range(20, 40):
            attacker.send(rtp(seq, 160 * seq, ssrc=0xBAD), s.local)
        await settle(lambda: s.foreign_source == 40)
        s.send_frame(b"\xd5" * 160)
        await peer.wait_for(1)
        assert s.stats.latched == peer.address and s.source_switches == 0
        assert not attacker.received
    finally:
        s.close()
    # the peer's SIP came from 127.0.0.2 (its SDP names another address): that one may latch
    t = RtpSession(allocator.allocate("nat"), allocator=allocator, remote=("127.0.0.3", 4000),
                   rtcp_interval=0, allowed_hosts=["127.0.0.2"])
    await t.start()
    try:
        attacker.send(rtp(1, 160), t.local)
        await settle(lambda: t.packets_received == 1)
        assert t.stats.latched == attacker.address
    finally:
        t.close()


async def test_what_arrived_before_the_answer_is_flushed_and_nothing_latches_before_sdp(
        allocator: PortAllocator, udp_peer: Any) -> None:
    """Packets waiting in the socket since the offer (the port was open, nobody read it) are
    dropped unread at start; a session without the peer's SDP uses nothing."""
    peer = await udp_peer()
    pair = allocator.allocate("early")
    for seq in range(5):  # from the peer's own address, even: too early is too early
        peer.send(rtp(seq, 160 * seq), (pair.host, pair.rtp))
    peer.send(build_header(200, 0, 0, 0xBAD, False)[:4] + bytes(24), (pair.host, pair.rtcp))
    await asyncio.sleep(0.1)
    # the signalling address is known (the INVITE came from it), the SDP is not yet
    s = RtpSession(pair, allocator=allocator, remote=None, rtcp_interval=0,
                   allowed_hosts=["127.0.0.1"])
    await s.start()
    try:
        assert s.stats.flushed == 6 and s.packets_received == 0
        peer.send(rtp(5, 800), s.local)
        await settle(lambda: s.foreign_source == 1)
        assert s.stats.latched is None
        s.set_remote(peer.address)
        peer.send(rtp(6, 960), s.local)
        await settle(lambda: s.packets_received == 1)
        assert s.stats.latched == peer.address
    finally:
        s.close()


async def test_strict_wants_the_sdp_port_and_any_wants_probation(
        allocator: PortAllocator, udp_peer: Any) -> None:
    sdp, other_port = await udp_peer(), await udp_peer()
    stranger = await udp_peer(host="127.0.0.2")
    s = RtpSession(allocator.allocate("strict"), allocator=allocator, remote=sdp.address,
                   rtcp_interval=0, latch="strict")
    a = RtpSession(allocator.allocate("any"), allocator=allocator, remote=sdp.address,
                   rtcp_interval=0, latch="any", probation=3)
    await s.start()
    await a.start()
    try:
        other_port.send(rtp(1, 160), s.local)  # right address, wrong port
        await settle(lambda: s.foreign_source == 1)
        sdp.send(rtp(2, 320), s.local)
        await settle(lambda: s.packets_received == 1)
        for seq in range(3, 13):  # no rebinding at all in strict
            other_port.send(rtp(seq, 160 * seq), s.local)
        await settle(lambda: s.foreign_source == 11)
        assert s.stats.latched == sdp.address
        for seq in (1, 2, 3):  # "any": a stranger too, but only after 3 in sequence
            stranger.send(rtp(seq, 160 * seq), a.local)
        await settle(lambda: a.packets_received == 1)
        assert a.foreign_source == 2 and a.stats.latched == stranger.address
    finally:
        s.close()
        a.close()
    with pytest.raises(ValueError, match="latch must be one of"):
        RtpSession(allocator.allocate("bad"), allocator=allocator, latch="loose")
    allocator.release_owner("bad")


async def test_rtcp_from_a_stranger_is_not_even_parsed(
        allocator: PortAllocator, udp_peer: Any) -> None:
    from softphone.media.rtcp import Bye, build_rtcp

    peer = await udp_peer()
    attacker = await udp_peer(host="127.0.0.2")
    s = RtpSession(allocator.allocate("rtcp"), allocator=allocator, remote=peer.address,
                   rtcp_interval=0)
    await s.start()
    try:
        bye = build_rtcp([Bye((0xBAD,), b"")])
        attacker.send(bye, (s.pair.host, s.pair.rtcp))
        await settle(lambda: s.rtcp_foreign == 1)
        assert not s.bye_received and s.rtcp_received == 0
        peer.send(bye, (s.pair.host, s.pair.rtcp))
        await settle(lambda: s.bye_received)
        assert s.stats.rtcp_received == 1 and s.stats.rtcp_foreign == 1
    finally:
        s.close()


async def test_bad_packets_are_counted_discards(allocator: PortAllocator, udp_peer: Any) -> None:
    p = await udp_peer()
    s = RtpSession(allocator.allocate("bad"), allocator=allocator, remote=p.address,
                   rtcp_interval=0)
    await s.start()
    try:
        for junk in (b"\x80", b"\x40" + bytes(20), b"\x8f\x08" + bytes(14)):
            p.send(junk, s.local)
        p.send(rtp(1, 160, pt=13), s.local)  # comfort noise: not negotiated
        p.send(rtp(2, 320), s.local)
        await settle(lambda: s.packets_received == 1)
        st = s.stats
        assert st.malformed == 3 and st.unknown_payload_type == 1 and st.errors == 0
    finally:
        s.close()


async def test_audio_goes_into_the_native_jitter_buffer(
        allocator: PortAllocator, udp_peer: Any) -> None:
    p = await udp_peer()
    s = RtpSession(allocator.allocate("jb"), allocator=allocator, remote=p.address,
                   rtcp_interval=0, jitter_min_ms=20, jitter_max_ms=100)
    await s.start()
    try:
        for i in range(10):
            p.send(rtp(100 + i, 1600 * 0 + 160 * i, payload=bytes([i]) * 160, marker=i == 0),
                   s.local)
        await settle(lambda: s.packets_received == 10)
        assert s.jitter is not None
        loop = asyncio.get_running_loop()
        frames = []
        now = loop.time() * 1000
        for k in range(40):
            result, payload = s.jitter.get(now + 20 * k)
            if result is GetResult.FRAME:
                assert payload is not None
                frames.append(payload[0])
        # a burst arrives at once: the buffer may drop a frame to bring its delay down
        jb = s.jitter.stats
        assert frames == sorted(set(frames)) and len(frames) >= 6
        assert jb.received == 10 and jb.late_discarded == 0
        assert s.stats.lost == 0 and s.stats.expected == 10
    finally:
        s.close()


async def test_dtmf_in_surfaces_once_per_event_and_digits_go_out(
        allocator: PortAllocator, udp_peer: Any) -> None:
    p = await udp_peer()
    got: list[DtmfEvent] = []
    s = RtpSession(allocator.allocate("dtmf"), allocator=allocator, remote=p.address,
                   rtcp_interval=0, on_dtmf=lambda _s, ev: got.append(ev))
    await s.start()
    try:
        for i, pkt in enumerate(DtmfSender().packets("9", 8000, 100)):
            p.send(build_header(101, 50 + i, pkt.timestamp, 77, pkt.marker) + pkt.payload,
                   s.local)
        await settle(lambda: len(got) == 2)
        assert [(e.kind, e.digit, e.duration) for e in got] == [
            (DtmfKind.START, "9", 160), (DtmfKind.END, "9", 800)]
        s.send_digit("#", 60)
        for _ in range(8):
            s.send_frame(b"\xd5" * 160)
        await p.wait_for(8)
        pkts = [parse_rtp(d) for d, _ in p.received]
        te = [TelephoneEvent.decode(x.payload) for x in pkts if x.payload_type == 101]
        assert [e.event for e in te] == [11] * 5 and [e.end for e in te] == [False] * 2 + [True] * 3
        assert [x.payload_type for x in pkts] == [101] * 5 + [8] * 3
        seqs = [x.sequence for x in pkts]
        assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False))
        assert pkts[5].marker  # audio resumes as a new talkspurt
    finally:
        s.close()


async def test_inactivity_timeout_fires_once_and_the_owner_frees_the_ports(
        allocator: PortAllocator, udp_peer: Any) -> None:
    p = await udp_peer()
    fired: list[float] = []
    loop = asyncio.get_running_loop()

    def on_timeout(sess: RtpSession) -> None:
        fired.append(loop.time())
        sess.close("rtp timeout")

    s = RtpSession(allocator.allocate("dead-peer"), allocator=allocator, remote=p.address,
                   rtcp_interval=0, inactivity_timeout=0.4, on_timeout=on_timeout)
    t0 = loop.time()
    await s.start()
    for i in range(5):  # alive for a while, then the peer dies
        p.send(rtp(i, 160 * i), s.local)
        await asyncio.sleep(0.1)
    assert not fired and allocator.in_use == 1
    await settle(lambda: bool(fired), timeout=3)
    assert fired[0] - t0 >= 0.4 + 0.4
    assert allocator.in_use == 0 and s.closed
    # the BYE went out on RTCP (RTP port + 1 of the peer is not bound: ICMP is ignored)
    await asyncio.sleep(0.3)
    assert len(fired) == 1


async def test_rtcp_reports_give_rtt_loss_and_jitter_per_leg(allocator: PortAllocator) -> None:
    pa, pb = allocator.allocate("a"), allocator.allocate("b")
    a = RtpSession(pa, allocator=allocator, remote=("127.0.0.1", pb.rtp), rtcp_interval=0.1)
    b = RtpSession(pb, allocator=allocator, remote=("127.0.0.1", pa.rtp), rtcp_interval=0.1)
    await a.start()
    await b.start()
    try:
        for i in range(30):
            a.send_frame(b"\xd5" * 160)
            if i % 10 != 5:  # b drops 3 of its 30 frames on the floor: a sees loss
                b.send_frame(b"\xd5" * 160)
            else:
                b.skip_frame()
                b.seq = (b.seq + 1) & 0xFFFF  # a sequence gap, as a lost packet leaves
            await asyncio.sleep(0.02)
        # reports go every 0.1 s (+-50 %): wait for the one written after the last gap
        await settle(lambda: a.rtt is not None and b.rtt is not None
                     and a.remote_report is not None and b.remote_report is not None
                     and b.remote_report[1] == 3)
        sa, sb = a.stats, b.stats
        assert sa.rtt_ms is not None and 0 <= sa.rtt_ms < 50
        assert sa.lost == 3 and sb.lost == 0
        assert sb.remote_cumulative_lost == 3  # a's report about b's stream
        assert sa.remote_cumulative_lost == 0
        assert sa.jitter_ms < 20 and sa.rtcp_received > 0 and sa.rtcp_malformed == 0
    finally:
        a.close()
        b.close()
    await asyncio.sleep(0.05)
    assert allocator.in_use == 0


async def test_relay_fast_path_rewrites_ssrc_seq_ts_and_pt(
        allocator: PortAllocator, udp_peer: Any) -> None:
    caller, callee = await udp_peer(), await udp_peer()
    a = RtpSession(allocator.allocate("call/a"), allocator=allocator, remote=caller.address,
                   payload_types=(96,), dtmf_payload_type=101, clock_rate=48000,
                   frame_samples=960, use_jitter=False, rtcp_interval=0)
    b = RtpSession(allocator.allocate("call/b"), allocator=allocator, remote=callee.address,
                   payload_types=(111,), dtmf_payload_type=100, clock_rate=48000,
                   frame_samples=960, use_jitter=False, rtcp_interval=0)
    digits: list[str] = []
    a.on_dtmf = lambda _s, ev: digits.append(ev.digit)
    await a.start()
    await b.start()
    a.relay_to(b)
    b.relay_to(a)
    try:
        b.send_frame(b"x" * 40)  # b had a timeline of its own before the relay started
        await callee.wait_for(1)
        first_b = parse_rtp(callee.received[0][0])
        for i in (0, 1, 3, 2):  # reordered on the way in: order and gaps are kept
            caller.send(rtp(5000 + i, 777 + 960 * i, pt=96, ssrc=42, payload=bytes([i]) * 40),
                        a.local)
        dtmf = DtmfSender(48000).packets("4", 777 + 960 * 4, 60)[0]
        caller.send(build_header(101, 5004, dtmf.timestamp, 42, True) + dtmf.payload, a.local)
        await callee.wait_for(6)
        out = [parse_rtp(d) for d, _ in callee.received[1:]]
        assert {p.ssrc for p in out} == {b.ssrc}
        assert [p.payload_type for p in out] == [111] * 4 + [100]
        assert [(p.sequence - first_b.sequence) & 0xFFFF for p in out] == [1, 2, 4, 3, 5]
        assert [(p.timestamp - first_b.timestamp) & 0xFFFFFFFF for p in out] == [
            960, 1920, 3840, 2880, 4800]
        assert [p.payload[0] for p in out[:4]] == [0, 1, 3, 2]
        assert digits == ["4"] and a.relayed == 5
        callee.send(rtp(9, 9, pt=111, ssrc=7, payload=b"back"), b.local)  # and the other way
        await caller.wait_for(1)
        back = parse_rtp(caller.received[0][0])
        assert back.payload == b"back" and back.payload_type == 96 and back.ssrc == a.ssrc
    finally:
        a.close()
        b.close()


async def test_random_datagrams_are_all_accounted_for(
        allocator: PortAllocator, udp_peer: Any) -> None:
    import random

    rnd = random.Random(4733)
    p = await udp_peer()
    s = RtpSession(allocator.allocate("fuzz"), allocator=allocator, remote=p.address,
                   rtcp_interval=0)
    await s.start()
    try:
        n = 400
        for i in range(n):
            kind = i % 4
            if kind == 0:  # pure noise
                data = bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(1, 60)))
            elif kind == 1:  # an RTP-looking header with random flags and a random tail
                data = bytes([0x80 | rnd.getrandbits(6), 8]) + bytes(
                    rnd.getrandbits(8) for _ in range(rnd.randrange(10, 40)))
            else:  # valid packets, some with CSRCs/extension/padding
                data = build_rtp(RtpPacket(8, i, 160 * i, 0xFEED, bytes([i % 256]) * 80,
                                           csrcs=(1, 2)[: i % 3], padding=4 * (i % 2),
                                           extension=None))
            p.send(data, s.local)
            if i % 50 == 0:
                await asyncio.sleep(0.01)  # let the loop drain: no socket buffer overrun
        await settle(lambda: sum((s.packets_received, s.malformed, s.unknown_payload_type,
                                  s.foreign_source)) == n)
        st = s.stats
        assert st.errors == 0 and st.packets_received >= n // 2
        assert s.jitter is not None and s.jitter.stats.received >= n // 2
    finally:
        s.close()
