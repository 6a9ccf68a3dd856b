"""Fuzzing the parser and a running UDP listener: only SipParseError, bounded memory, alive.

Parser level (hypothesis): random bytes, mutations of valid messages (the RFC 4475/5118
vectors and a typical INVITE) and messages assembled from SIP-ish pieces. Properties: nothing
but SipParseError escapes parse_message or StreamFramer; the last-resort conversion of an
unexpected exception (reason "Malformed message (...)") never runs; whatever parses has
accessors that work or raise SipParseError, and serialises to bytes that parse again to the
same header fields.

Listener level: a seeded mutation fuzzer sends thousands of datagrams to (1) the product UA's
UDP listener (softphone.phone.UserAgent, which answers OPTIONS with 200) and (2) a minimal
reference listener built here from parse_message/make_response/error_response, and checks that
each still answers OPTIONS afterwards and that memory stays bounded. The atheris harness for
long runs is tests/sip/fuzz_atheris.py.
"""

from __future__ import annotations

import asyncio
import random
import socket
import tracemalloc
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from softphone.sip.errors import SipParseError
from softphone.sip.message import (
    SipRequest,
    SipResponse,
    StreamFramer,
    error_response,
    make_response,
    parse_message,
)

DATA = Path(__file__).parent / "data"
SEEDS: list[bytes] = [p.read_bytes() for p in sorted(DATA.glob("*/*.dat"))]
SDP = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8\r\n"
SEEDS.append(
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\nTo: Bob <sip:bob@example.com>\r\n"
    b'From: "Alice" <sip:alice@example.com>;tag=1928301774\r\n'
    b"Call-ID: a84b4c76e66710@192.0.2.1\r\nCSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@192.0.2.1:5060;transport=udp>\r\nContent-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n\r\n" + SDP
)

FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

TOKENS = [b"\r\n", b"\n", b" ", b"\t", b":", b";", b",", b"<", b">", b'"', b"\\", b"@", b"=",
          b"%", b"%00", b"[", b"]", b"[::1]", b"?", b"/", b"SIP/2.0", b"SIP/2.0/UDP ", b"v: ",
          b"l: ", b"Content-Length: ", b"Via: ", b"CSeq: 1 ", b"\x00", b"\xff", b"\xc3\xa9",
          b"\r\n ", b"\r\n\r\n", b"sip:", b"sips:", b"tel:", b"tag=", b"branch=", b"99999999999"]


def mutate(data: bytes, rng: random.Random, rounds: int = 3) -> bytes:
    """Byte flips, token insertions, deletions, duplicated and swapped lines."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, rounds)):
        op = rng.randrange(7)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        elif op == 1:
            buf[pos:pos] = rng.choice(TOKENS)
        elif op == 2:
            del buf[pos : pos + rng.randint(1, 16)]
        elif op == 3:
            lines = bytes(buf).split(b"\r\n")
            i = rng.randrange(len(lines))
            lines.insert(rng.randrange(len(lines) + 1), lines[i])
            buf = bytearray(b"\r\n".join(lines))
        elif op == 4:
            lines = bytes(buf).split(b"\r\n")
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
            buf = bytearray(b"\r\n".join(lines))
        elif op == 5:
            buf[pos:pos] = rng.choice(TOKENS) * rng.randint(2, 200)
        else:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(buf)


def check_parse(data: bytes) -> SipRequest | SipResponse | None:
    """The fuzz oracle: parse, use, serialise, parse again."""
    try:
        msg = parse_message(data)
    except SipParseError as err:
        assert not err.reason.startswith("Malformed message ("), err.reason
        assert "\r" not in err.reason and "\n" not in err.reason
        resp = error_response(err)
        if resp is not None:
            resp.to_bytes()
        return None
    for name in ("vias", "top_via", "from_", "to", "cseq", "contacts", "content_type"):
        try:
            getattr(msg, name)
        except SipParseError:
            pass
    if isinstance(msg, SipRequest):
        try:
            assert msg.request_uri.scheme in ("sip", "sips", "tel")
        except SipParseError:
            pass
    again = parse_message(msg.to_bytes())
    assert type(again) is type(msg)
    assert [h for h in again.headers if h[0] != "Content-Length"] == [
        h for h in msg.headers if h[0] != "Content-Length"]
    assert again.body == msg.body
    return msg


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes(data: bytes) -> None:
    check_parse(data)


@FUZZ
@given(st.sampled_from(SEEDS), st.randoms(use_true_random=False), st.integers(1, 8))
def test_mutated_valid_messages(seed: bytes, rng: random.Random, rounds: int) -> None:
    check_parse(mutate(seed, rng, rounds))


HEADER_NAMES = st.sampled_from(
    ["Via", "v", "From", "f", "To", "t", "Call-ID", "i", "CSeq", "Contact", "m", "Max-Forwards",
     "Content-Length", "l", "Date", "Route", "X-Odd", "Subject", "s"])
VALUE_BITS = st.sampled_from(
    ["SIP/2.0/UDP", " ", "host.example.com", "[2001:db8::1]", ":5060", ";branch=z9hG4bK1",
     ";rport", ";received=192.0.2.1", "<sip:a@b>", '"A \\" B"', "sip:x@y", ";tag=1", ",",
     "1 OPTIONS", "70", "0", "Fri, 01 Jan 2010 16:00:00 GMT", "%41", "?h=v", "\t", "tel:+1"])


@FUZZ
@given(
    st.sampled_from(["OPTIONS sip:a@b SIP/2.0", "INVITE sip:[::1]:5060 SIP/2.0",
                     "SIP/2.0 200 OK", "REGISTER tel:+123 SIP/2.0", "X  sip:a SIP/2.0"]),
    st.lists(st.tuples(HEADER_NAMES, st.lists(VALUE_BITS, max_size=8)), max_size=14),
    st.binary(max_size=64),
)
def test_assembled_messages(start: str, fields: list[tuple[str, list[str]]], body: bytes) -> None:
    head = "\r\n".join([start] + [f"{n}: {''.join(v)}" for n, v in fields])
    check_parse(head.encode() + b"\r\n\r\n" + body)


@FUZZ
@given(st.lists(st.sampled_from(SEEDS), min_size=1, max_size=4), st.randoms(use_true_random=False))
def test_stream_framer_only_raises_parse_errors(seeds: list[bytes], rng: random.Random) -> None:
    stream = b"\r\n\r\n".join(mutate(s, rng, 1) if rng.random() < 0.5 else s for s in seeds)
    framer = StreamFramer()
    pos = 0
    try:
        while pos < len(stream):
            step = rng.randint(1, 700)
            for frame in framer.feed(stream[pos : pos + step]):
                if frame != b"\r\n\r\n":
                    check_parse(frame)
            pos += step
    except SipParseError as err:
        assert not err.reason.startswith("Malformed stream ("), err.reason


# ----------------------------------------------------------------- listener-level fuzzing
OPTIONS = (
    "OPTIONS sip:softphone@127.0.0.1:{port} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:{cport};branch=z9hG4bK-probe-{n};rport\r\n"
    "Max-Forwards: 70\r\nTo: <sip:softphone@127.0.0.1:{port}>\r\n"
    "From: <sip:fuzzer@127.0.0.1>;tag=probe{n}\r\nCall-ID: probe-{n}@127.0.0.1\r\n"
    "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)


class ReferenceListener(asyncio.DatagramProtocol):
    """Stateless: OPTIONS -> 200, other requests -> 501, parse errors -> error_response."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.unexpected: list[BaseException] = []
        self.counts = {"ok": 0, "rejected": 0, "dropped": 0}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        assert self.transport is not None
        try:
            try:
                msg = parse_message(data)
            except SipParseError as err:
                resp = error_response(err)
                if resp is None:
                    self.counts["dropped"] += 1
                    return
                self.counts["rejected"] += 1
                self.transport.sendto(resp.to_bytes(), addr)
                return
            if isinstance(msg, SipResponse):
                return
            if msg.method == "OPTIONS":
                self.counts["ok"] += 1
                out = make_response(msg, 200, "OK", to_tag="ref")
            elif msg.method == "ACK":
                return
            else:
                out = make_response(msg, 501, "Not Implemented", to_tag="ref")
            self.transport.sendto(out.to_bytes(), addr)
        except Exception as exc:  # the test fails on any of these
            self.unexpected.append(exc)


class Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.queue.put_nowait(data)


async def ask_options(client: Client, transport: asyncio.DatagramTransport, port: int,
                      n: int) -> SipResponse:
    cport = transport.get_extra_info("sockname")[1]
    probe = OPTIONS.format(port=port, cport=cport, n=n).encode()
    deadline = asyncio.get_running_loop().time() + 5.0
    transport.sendto(probe, ("127.0.0.1", port))
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        data = await asyncio.wait_for(client.queue.get(), max(remaining, 0.01))
        try:
            resp = parse_message(data)
        except SipParseError:
            continue
        if isinstance(resp, SipResponse) and resp.call_id == f"probe-{n}@127.0.0.1":
            return resp


async def fuzz_listener(port: int, packets: int) -> tuple[int, int]:
    """Send ``packets`` fuzzed datagrams in two halves; return traced memory after each."""
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(
        Client, local_addr=("127.0.0.1", 0), family=socket.AF_INET)
    try:
        first = await ask_options(client, transport, port, 0)
        assert first.status == 200
        rng = random.Random(4475)
        marks: list[int] = []
        for _half in range(2):
            for i in range(packets // 2):
                if rng.random() < 0.2:
                    data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))
                else:
                    data = mutate(rng.choice(SEEDS), rng, 4)
                transport.sendto(data[:65000], ("127.0.0.1", port))
                if i % 8 == 0:
                    await asyncio.sleep(0.001)  # let the listener keep up: drops are not the point
            await asyncio.sleep(0.2)
            while not client.queue.empty():
                client.queue.get_nowait()
            marks.append(tracemalloc.get_traced_memory()[0])
        after = await ask_options(client, transport, port, 1)
        assert after.status == 200
        return marks[0], marks[1]
    finally:
        transport.close()


@pytest.mark.timeout(180)
async def test_reference_listener_survives_fuzzing() -> None:
    # TODO: the product listener is covered by the next test; keep this stateless reference
    # so that a parser regression is told apart from a UA one.
    loop = asyncio.get_running_loop()
    tracemalloc.start()
    transport, server = await loop.create_datagram_endpoint(
        ReferenceListener, local_addr=("127.0.0.1", 15100), family=socket.AF_INET)
    try:
        warm, end = await fuzz_listener(15100, 4000)
    finally:
        transport.close()
        tracemalloc.stop()
    assert server.unexpected == []
    assert server.counts["rejected"] > 100 and server.counts["dropped"] > 100
    assert server.counts["ok"] >= 2
    assert end - warm < 512 * 1024, f"memory grew by {end - warm} bytes over 2000 packets"


@pytest.mark.timeout(180)
async def test_product_udp_listener_survives_fuzzing() -> None:
    try:
        from softphone.phone import UserAgent
        from softphone.sip.transport import ListenSpec
    except ImportError as exc:  # pragma: no cover - the UA ships with the package
        pytest.skip(f"product UA not importable: {exc}")
    ua = UserAgent(listen=[ListenSpec("udp", "127.0.0.1", 15101)], t1=0.05)
    await ua.start()
    tracemalloc.start()
    try:
        warm, end = await fuzz_listener(15101, 3000)
    finally:
        tracemalloc.stop()
        await ua.close()
    # Server transactions of the requests that still parse live for Timer J (64*T1 = 3.2 s
    # here), so this bounds the cost per packet rather than demanding zero growth.
    assert end - warm < 1500 * 4096, f"memory grew by {end - warm} bytes over 1500 packets"


# ----------------------------------------------------------- hostile, maximal values
FILLERS = [" ", "\t", ";", ",", "<", ">", '"', "\\", ":", "%", "[", "a ", " ;", "=", "@", "/ ",
           ";a", " \t", "\r\n "]


@pytest.mark.timeout(60)
def test_hostile_long_values_are_linear() -> None:
    """60 KB runs of separators in every checked field: a quadratic regex or scan would take
    minutes here (one such Via pattern once did), linear code takes milliseconds."""
    from softphone.sip.message import CSeq, Via
    from softphone.sip.uri import NameAddr, SipUri

    n = 60000
    for fill in FILLERS:
        run = fill * (n // len(fill))
        for parse in (Via.parse, NameAddr.parse, SipUri.parse, CSeq.parse):
            for text in (f"SIP/2.0/UDP h{run}x", f"sip:a@b{run}x", f"a{run}<sip:a@b>x", f"1{run}x"):
                try:
                    parse(text)
                except SipParseError:
                    pass
        for name in ("Via", "From", "To", "Contact", "CSeq", "Call-ID", "Date", "X-Any"):
            head = (
                "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
                "From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n"
            )
            data = f"{head}{name}: x{run[: n - len(head) - 64]}x\r\nContent-Length: 0\r\n\r\n"
            check_parse(data.encode())
        check_parse(f"OPTIONS{run[:n]}sip:a@b SIP/2.0\r\n\r\n".encode())
