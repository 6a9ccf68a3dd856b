"""Offer/answer against real peers on loopback (baresip, sipp), checked on the wire and the audio.

1. baresip calls us: its real offer goes through ``answer_offer``, our 200 OK carries the
   answer, and the RTP it then sends uses the payload type we kept and decodes (Opus) to its
   440 Hz tone.
2. We call baresip: our offer (OPUS first) goes out, its 200 OK answer goes through
   ``process_answer`` and the RTP it sends matches what was agreed.
3. sipp's ``uac_pcap`` calls us: we answer its ``8 101`` offer, it completes the call (exit 0)
   and replays its PCMA and RFC 4733 packets to the address and payload types we answered.
The SIP here is the bare minimum a UAS/UAC needs (no retransmissions: loopback), written inline
so this test depends only on the codecs package.
"""

from __future__ import annotations

import os
import random
import re
import select
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lab.baresip_peer import write_config
from lab.netutil import free_port
from softphone.codecs.frame import codec_for
from softphone.codecs.g711 import G711Codec
from softphone.codecs.offer_answer import Negotiated, answer_offer, build_offer, process_answer
from softphone.codecs.registry import PCMA, codec_order_from_names
from softphone.codecs.sdp import parse_sdp

pytestmark = pytest.mark.lab
needs_baresip = pytest.mark.skipif(
    shutil.which("baresip") is None or not Path("/usr/lib/baresip/modules/opus.so").exists(),
    reason="baresip with its opus module not installed",
)
needs_sipp = pytest.mark.skipif(
    shutil.which("sipp") is None or not Path("/usr/share/sip-tester/g711a.pcap").exists(),
    reason="sipp (sip-tester) with its pcaps not installed",
)


def udp_socket(port: int = 0) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))
    s.settimeout(0.5)
    return s


def rtp_socket_pair() -> tuple[socket.socket, int]:
    for _ in range(50):
        port = random.randrange(30000, 39998, 2)
        try:
            return udp_socket(port), port
        except OSError:
            continue
    raise RuntimeError("no free RTP port")


class Baresip:
    def __init__(self, workdir: Path, account: str, command: str | None = None) -> None:
        self.sip_port = free_port()
        rtp = random.randrange(40000, 44000, 100)
        workdir.mkdir(parents=True, exist_ok=True)
        tag = f"{os.getpid()}_{self.sip_port}"
        write_config(workdir, sip_port=self.sip_port, account=account.format(sip=self.sip_port),
                     rtp_ports=(rtp, rtp + 99), player=tag)
        args = ["baresip", "-f", str(workdir), "-t", "20"]
        if command:
            args += ["-e", command]
        self.log = open(workdir / "baresip.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT
        )

    def wait_listening(self, timeout: float = 5.0) -> None:
        end = time.monotonic() + timeout
        needle = f"127.0.0.1:{self.sip_port:d}".encode()
        while time.monotonic() < end:
            out = subprocess.run(["ss", "-uln"], capture_output=True, check=False).stdout
            if needle in out:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("baresip did not start listening")

    def stop(self) -> None:
        # One SIGTERM only starts baresip's graceful stop (it may wait for a BYE); a second forces it.
        for _ in range(2):
            if self.proc.poll() is not None:
                break
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                continue
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.log.close()


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[list[Baresip]]:
    started: list[Baresip] = []
    yield started
    for b in started:
        b.stop()


# -- minimal SIP ----------------------------------------------------------------------------------


def split_message(data: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    return lines[0], headers, body


def recv_sip(
    sock: socket.socket, want: str, timeout: float = 8.0
) -> tuple[str, dict[str, str], bytes]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            data, _ = sock.recvfrom(65535)
        except TimeoutError:
            continue
        start, headers, body = split_message(data)
        if re.match(want, start):
            return start, headers, body
    raise AssertionError(f"no SIP message matching {want!r} within {timeout} s")


def parse_rtp(data: bytes) -> tuple[int, bytes] | None:
    """(payload type, payload) of an RTP packet (RFC 3550 §5.1), None if it is not one."""
    if len(data) < 12 or data[0] >> 6 != 2:
        return None
    first, second = data[0], data[1]
    header = 12 + 4 * (first & 0x0F)
    if first & 0x10:  # header extension
        (words,) = struct.unpack_from("!H", data, header + 2)
        header += 4 + 4 * words
    payload = data[header:]
    if first & 0x20 and payload:  # padding
        payload = payload[: -payload[-1]]
    return second & 0x7F, payload


def rtp_packets(sock: socket.socket, seconds: float) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            data, _ = sock.recvfrom(2048)
        except TimeoutError:
            continue
        packet = parse_rtp(data)
        if packet is not None:
            out.append(packet)
    return out


def audio_of(negotiated: Negotiated, packets: list[tuple[int, bytes]], rate: int) -> bytes:
    codec = codec_for(negotiated, opus_rate=rate)
    pcm = [codec.decode(p) for pt, p in packets if pt == negotiated.codec.payload_type]
    return b"".join(pcm[10:])  # past the start-up of the sender


@needs_baresip
@pytest.mark.timeout(40)
def test_baresip_offer_is_answered_with_opus_and_its_audio_decodes(
    peers: list[Baresip], tmp_path: Path, audio: Any
) -> None:
    sip = udp_socket()
    us = sip.getsockname()[1]
    rtp, rtp_port = rtp_socket_pair()
    try:
        caller = Baresip(
            tmp_path / "alice",
            "<sip:alice@127.0.0.1:{sip}>;regint=0;audio_codecs=opus/48000/2,PCMA/8000/1,PCMU/8000/1",
            command=f"/dial sip:bob@127.0.0.1:{us}",
        )
        peers.append(caller)
        start, h, body = recv_sip(sip, "INVITE ")
        offer = parse_sdp(body)
        assert offer.media[0].payload_types == [96, 8, 0, 101]
        negotiated = answer_offer(offer, address="127.0.0.1", port=rtp_port)
        assert (negotiated.codec.name, negotiated.codec.payload_type) == ("opus", 96)
        assert negotiated.telephone_event_pt == 101
        sdp = negotiated.sdp
        ok = (
            "SIP/2.0 200 OK\r\n"
            f"Via: {h['via']}\r\nFrom: {h['from']}\r\nTo: {h['to']};tag=codecs1\r\n"
            f"Call-ID: {h['call-id']}\r\nCSeq: {h['cseq']}\r\n"
            f"Contact: <sip:bob@127.0.0.1:{us}>\r\nContent-Type: application/sdp\r\n"
            f"Content-Length: {len(sdp)}\r\n\r\n"
        ).encode() + sdp
        sip.sendto(ok, ("127.0.0.1", caller.sip_port))
        recv_sip(sip, "ACK ")
        packets = rtp_packets(rtp, 1.5)
        assert len(packets) > 40
        assert {pt for pt, _ in packets} <= {96, 101}
        pcm = audio_of(negotiated, packets, 48000)
        assert audio.tone_ratio(pcm, 48000, 440) > 0.8
        assert audio.tone_ratio(pcm, 48000, 1000) < 0.01
    finally:
        sip.close()
        rtp.close()


@needs_baresip
@pytest.mark.timeout(40)
@pytest.mark.parametrize(("order", "expected"), [(None, "opus"), (["PCMA", "PCMU"], "PCMA")])
def test_our_offer_is_answered_by_baresip(
    peers: list[Baresip], tmp_path: Path, audio: Any, order: list[str] | None, expected: str
) -> None:
    sip = udp_socket()
    us = sip.getsockname()[1]
    rtp, rtp_port = rtp_socket_pair()
    callee = Baresip(
        tmp_path / "bob",
        "<sip:bob@127.0.0.1:{sip}>;regint=0;answermode=auto;"
        "audio_codecs=PCMU/8000/1,PCMA/8000/1,opus/48000/2",
    )
    peers.append(callee)
    try:
        callee.wait_listening()
        kwargs = {"order": codec_order_from_names(order)} if order else {}
        offer = build_offer(address="127.0.0.1", port=rtp_port, **kwargs)  # type: ignore[arg-type]
        sdp = offer.to_bytes()
        target = f"sip:bob@127.0.0.1:{callee.sip_port}"
        common = (
            f"From: <sip:us@127.0.0.1:{us}>;tag=codecs2\r\nTo: <{target}>\r\n"
            f"Call-ID: codecs-{os.getpid()}-{rtp_port}@127.0.0.1\r\n"
        )
        via = f"Via: SIP/2.0/UDP 127.0.0.1:{us};branch=z9hG4bK-codecs-{rtp_port}\r\n"
        invite = (
            f"INVITE {target} SIP/2.0\r\n{via}{common}CSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
            f"Contact: <sip:us@127.0.0.1:{us}>\r\nContent-Type: application/sdp\r\n"
            f"Content-Length: {len(sdp)}\r\n\r\n"
        ).encode() + sdp
        sip.sendto(invite, ("127.0.0.1", callee.sip_port))
        _, h, body = recv_sip(sip, r"SIP/2.0 200 ")
        negotiated = process_answer(offer, parse_sdp(body))
        # baresip lists PCMU first in its own account, but the answer follows OUR offer order
        assert negotiated.codec.name == expected
        assert negotiated.codec.payload_type == (96 if expected == "opus" else PCMA.payload_type)
        assert negotiated.direction == "sendrecv"
        ack = (
            f"ACK {target} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{us};branch=z9hG4bK-codecs-ack-{rtp_port}\r\n"
            f"From: <sip:us@127.0.0.1:{us}>;tag=codecs2\r\nTo: {h['to']}\r\n"
            f"Call-ID: {h['call-id']}\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        sip.sendto(ack, ("127.0.0.1", callee.sip_port))
        packets = rtp_packets(rtp, 1.5)
        assert len(packets) > 40
        assert {pt for pt, _ in packets} <= {negotiated.codec.payload_type, 101}
        rate = 48000 if expected == "opus" else 8000
        assert audio.tone_ratio(audio_of(negotiated, packets, rate), rate, 440) > 0.8
        bye = ack.replace(b"ACK ", b"BYE ", 1).replace(b"CSeq: 1 ACK", b"CSeq: 2 BYE")
        sip.sendto(bye.replace(b"-ack-", b"-bye-"), ("127.0.0.1", callee.sip_port))
        recv_sip(sip, r"SIP/2.0 200 ")
    finally:
        sip.close()
        rtp.close()


def reply(
    request_headers: dict[str, str], status: str, tag: str, extra: str = "", body: bytes = b""
) -> bytes:
    h = request_headers
    to = h["to"] if ";tag=" in h["to"] else f"{h['to']};tag={tag}"
    return (
        f"SIP/2.0 {status}\r\nVia: {h['via']}\r\nFrom: {h['from']}\r\nTo: {to}\r\n"
        f"Call-ID: {h['call-id']}\r\nCSeq: {h['cseq']}\r\n{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


@needs_sipp
@pytest.mark.timeout(60)
def test_sipp_pcap_call_uses_what_we_answered(tmp_path: Path, audio: Any) -> None:
    sip = udp_socket()
    us = sip.getsockname()[1]
    rtp, rtp_port = rtp_socket_pair()
    (tmp_path / "pcap").symlink_to("/usr/share/sip-tester")
    sipp_port = free_port()
    media_port = random.randrange(46000, 49000, 4)
    proc = subprocess.Popen(
        ["sipp", f"127.0.0.1:{us}", "-sn", "uac_pcap", "-s", "bob", "-i", "127.0.0.1",
         "-p", str(sipp_port), "-mi", "127.0.0.1", "-mp", str(media_port), "-m", "1",
         "-nostdin", "-timeout", "40", "-timeout_error"],
        cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        _, h, body = recv_sip(sip, "INVITE ")
        negotiated = answer_offer(parse_sdp(body), address="127.0.0.1", port=rtp_port)
        assert (negotiated.codec.name, negotiated.codec.payload_type) == ("PCMA", 8)
        assert negotiated.telephone_event_pt == 101
        assert negotiated.local_sdp.media[0].fmtp(101) == "0-11,16"  # their events echoed
        contact = f"Contact: <sip:bob@127.0.0.1:{us}>\r\nContent-Type: application/sdp\r\n"
        sip.sendto(reply(h, "200 OK", "codecs3", contact, negotiated.sdp), ("127.0.0.1", sipp_port))
        payloads: dict[int, list[bytes]] = {}
        deadline = time.monotonic() + 30
        bye = False
        while not bye and time.monotonic() < deadline:
            ready, _, _ = select.select([sip, rtp], [], [], 0.5)
            if rtp in ready:
                packet = parse_rtp(rtp.recv(2048))
                if packet is not None:
                    payloads.setdefault(packet[0], []).append(packet[1])
            if sip in ready:
                start, bh, _ = split_message(sip.recv(65535))
                if start.startswith("BYE "):
                    sip.sendto(reply(bh, "200 OK", "codecs3"), ("127.0.0.1", sipp_port))
                    bye = True
        assert bye, "sipp never hung up"
        assert proc.wait(timeout=15) == 0, proc.stderr.read().decode() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        sip.close()
        rtp.close()
    assert set(payloads) == {8, 101}  # only what we answered reaches our port
    assert len(payloads[8]) > 200  # g711a.pcap holds 236 packets of 30 ms
    pcm = b"".join(G711Codec("PCMA").decode(p) for p in payloads[8])
    assert audio.rms(pcm) > 100
    # dtmf_2833_1.pcap: RFC 4733 events for digit 1, the last ones with the end bit
    events = payloads[101]
    assert {p[0] for p in events} == {1} and any(p[1] & 0x80 for p in events)
