"""What our RTP sessions put on the wire, read back by tshark (a real, independent dissector):
RTP headers, RFC 4733 events, and RTCP SR/RR + SDES CNAME + BYE with report blocks."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from softphone.media.ports import PortAllocator
from softphone.media.session import RtpSession

pytestmark = [
    pytest.mark.lab,
    pytest.mark.timeout(60),
    pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed"),
]


def fields(capture: Path, decode: list[str], display: str, names: list[str]) -> list[list[str]]:
    cmd = ["tshark", "-r", str(capture)]
    for d in decode:
        cmd += ["-d", d]
    cmd += ["-Y", display, "-T", "fields", "-E", "separator=|"]
    for n in names:
        cmd += ["-e", n]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True).stdout
    return [line.split("|") for line in out.splitlines() if line]


async def test_rtp_dtmf_and_rtcp_as_tshark_sees_them(allocator: PortAllocator,
                                                     tmp_path: Path) -> None:
    pa, pb = allocator.allocate("wire/a"), allocator.allocate("wire/b")
    capture = tmp_path / "media.pcapng"
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    probe_port = probe.getsockname()[1]
    ports = (f"udp and (portrange {pa.rtp}-{pa.rtcp} or portrange {pb.rtp}-{pb.rtcp} "
             f"or port {probe_port})")
    tshark = await asyncio.create_subprocess_exec(
        "tshark", "-i", "lo", "-f", ports, "-w", str(capture), "-P", "-l", "-a", "duration:20",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    a = RtpSession(pa, allocator=allocator, remote=("127.0.0.1", pb.rtp), rtcp_interval=0.2,
                   cname="alice@edge")
    b = RtpSession(pb, allocator=allocator, remote=("127.0.0.1", pa.rtp), rtcp_interval=0.2,
                   cname="bob@edge")
    try:
        assert tshark.stdout is not None
        # "Capturing on" comes before the filter is live: wait until a probe is really seen
        for _ in range(100):
            probe.sendto(b"probe", ("127.0.0.1", probe_port))
            try:
                if await asyncio.wait_for(tshark.stdout.readline(), 0.2):
                    break
            except TimeoutError:
                continue
        else:
            raise AssertionError("tshark never saw the probe")
        await a.start()
        await b.start()
        a.send_digit("5", 100)
        for k in range(40):
            a.send_frame(bytes([0xD5]) * 160)
            if k != 20:  # one lost packet on b's side: its loss must show in a's reports
                b.send_frame(bytes([0xD5]) * 160)
            else:
                b.skip_frame()
                b.seq = (b.seq + 1) & 0xFFFF
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)
        a.close("bye")
        b.close("bye")
        await asyncio.sleep(0.3)
    finally:
        a.close()
        b.close()
        if tshark.returncode is None:
            tshark.terminate()  # only the capture this test started
        await asyncio.wait_for(tshark.wait(), 10)
        probe.close()
    decode = [f"udp.port=={pa.rtp},rtp", f"udp.port=={pb.rtp},rtp",
              f"udp.port=={pa.rtcp},rtcp", f"udp.port=={pb.rtcp},rtcp"]

    rtp = fields(capture, decode, f"rtp && udp.srcport=={pa.rtp}",
                 ["rtp.p_type", "rtp.seq", "rtp.timestamp", "rtp.ssrc", "rtp.marker"])
    assert len(rtp) == 40
    assert {int(r[3], 16) for r in rtp} == {a.ssrc}
    seqs = [int(r[1]) for r in rtp]
    assert all((y - x) & 0xFFFF == 1 for x, y in zip(seqs, seqs[1:], strict=False))
    pts = [int(r[0]) for r in rtp]
    assert pts[:7] == [101] * 7 and set(pts[7:]) == {8}  # the digit first, then audio
    stamps = [int(r[2]) for r in rtp]
    assert len(set(stamps[:7])) == 1  # one event, one timestamp (its start)
    assert (stamps[7] - stamps[0]) & 0xFFFFFFFF == 7 * 160  # the timeline kept running
    assert all((y - x) & 0xFFFFFFFF == 160 for x, y in zip(stamps[7:], stamps[8:], strict=False))
    assert [r[4] for r in rtp][:8] == ["1", "0", "0", "0", "0", "0", "0", "1"]  # talkspurts

    events = fields(capture, decode, f"rtpevent && udp.srcport=={pa.rtp}",
                    ["rtpevent.event_id", "rtpevent.end_of_event", "rtpevent.duration"])
    assert [int(e[0]) for e in events] == [5] * 7
    assert [int(e[2]) for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert sum(e[1] in ("1", "True") for e in events) == 3

    rtcp = fields(capture, decode, f"rtcp && udp.srcport=={pa.rtcp}",
                  ["rtcp.pt", "rtcp.senderssrc", "rtcp.ssrc.identifier", "rtcp.ssrc.cum_nr",
                   "rtcp.sdes.text"])
    assert rtcp, "a sent RTCP"
    kinds = {pt for row in rtcp for pt in row[0].split(",")}
    assert {"200", "202", "203"} <= kinds  # SR, SDES, BYE
    assert any("alice@edge" in row[4] for row in rtcp)
    # a's report blocks are about b's stream and, at the end, count the one lost packet
    blocks = [row for row in rtcp if row[3]]
    assert blocks and all(b.ssrc in {int(x, 16) for x in row[2].split(",")} for row in blocks)
    assert int(blocks[-1][3].split(",")[0]) == 1
    bad = fields(capture, decode, "_ws.malformed || _ws.expert.severity >= error",
                 ["frame.number"])
    assert bad == [], f"tshark flags frames {bad}"
