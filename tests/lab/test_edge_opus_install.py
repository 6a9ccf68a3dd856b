"""OPUS from the package install alone, and never a codec the edge cannot run.

The Opus codec loads the libopus that PyAV's wheel bundles, so an edge on a machine without the
system's libopus still carries OPUS calls: proved with the system library hidden from the edge
(a private mount namespace with an empty file bound over it) while baresip calls the echo
extension with OPUS. And an edge whose Opus cannot load says so at start and leaves OPUS out of
every offer and answer: a caller offering only OPUS gets 488, our own offer has no OPUS.
"""

from __future__ import annotations

import ctypes.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from lab.audio import best_tone_ratio
from lab.baresip_peer import available, echo_call
from lab.edge_proc import EdgeProcess
from lab.rtp_phone import RtpPhone
from lab.sip_phone import SipPhone, pcma_sdp

pytestmark = pytest.mark.lab

RTP = (20000, 20999)
HIDE = 'mount --bind /dev/null "$0" && exec "$@"'


def system_libopus() -> str | None:
    name = ctypes.util.find_library("opus")
    if name is None:
        return None
    for folder in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib",
                   "/lib/x86_64-linux-gnu"):
        path = Path(folder) / name
        if path.exists():
            return str(path.resolve())
    return None


def can_hide() -> str:
    """Why the system libopus cannot be hidden here ("" when it can)."""
    if os.geteuid() != 0:
        return "needs root for a private mount namespace"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) missing"
    if system_libopus() is None:
        return "no system libopus to hide: the install-alone case is the normal one here"
    return ""


@pytest.mark.timeout(90)
@pytest.mark.skipif(bool(can_hide()), reason=can_hide() or "-")
@pytest.mark.skipif(not available(), reason="baresip not installed")
def test_echo_with_opus_when_the_system_libopus_is_hidden(tmp_path: Path, lab: Any) -> None:
    hidden = system_libopus()
    assert hidden is not None
    wrap = ["unshare", "-m", "sh", "-c", HIDE, hidden]
    # the hiding itself works: in that namespace the system library does not load
    probe = subprocess.run([*wrap, sys.executable, "-c",
                            f"import ctypes; ctypes.CDLL({hidden!r})"],
                           capture_output=True, text=True, timeout=30)
    assert probe.returncode != 0 and "too short" in probe.stderr, probe.stderr
    (sip,) = lab.take_ports(1)
    edge = EdgeProcess(tmp_path / "edge", sip, RTP, wrap=wrap).start()
    a = echo_call(tmp_path, lab, edge, 34300)
    calls = edge.wait_calls(1)
    edge.stop()
    assert "not offered" not in edge.log(), edge.log()
    assert calls and calls[0]["callee"] == "600" and calls[0]["end_cause"] != "media-error", calls
    assert calls[0]["legs"][0]["codec"].lower() == "opus", calls
    assert best_tone_ratio(a.decoded_wavs(), 1000) > 0.5, a.decoded_wavs()


OPUS_ONLY = (b"v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
             b"m=audio 4000 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\n")


@pytest.mark.timeout(60)
def test_an_edge_that_cannot_run_opus_does_not_offer_it(tmp_path: Path, lab: Any) -> None:
    (sip,) = lab.take_ports(1)
    edge = EdgeProcess(tmp_path / "edge", sip, RTP,
                       wrap=["env", "SOFTPHONE_LIBOPUS=/dev/null"]).start()
    phone = SipPhone(sip, "1001", "demo-1001")
    media = RtpPhone(700, seconds=2)
    try:
        refused = phone.dial("sip:600@127.0.0.1", 0, body=OPUS_ONLY)
        ours = phone.dial("sip:600@127.0.0.1", 1.0, body=b"", ack_body=pcma_sdp(media.port),
                          talker=media)
        offer = phone.answer_sdp.decode()
        edge.wait_idle()
    finally:
        phone.close()
        media.close()
        edge.stop()
    assert "codec opus is not offered" in edge.log(), edge.log()
    assert re.search(r"codecs PCMA, PCMU;", edge.log()), edge.log()
    assert refused.status == 488, (refused.status, refused.reason)
    assert ours.status == 200
    m = re.search(r"^m=audio \d+ RTP/AVP ([0-9 ]+)", offer, re.M)
    assert m and m.group(1).split()[:2] == ["8", "0"] and "opus" not in offer.lower(), offer
