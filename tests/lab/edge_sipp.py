"""sipp phones around the edge: a callee registered with digest, callers that authenticate.

The scenarios are in tests/lab/scenarios (edge_*.xml); every process comes from the ``sipp``
fixture, so it is bounded in time and stopped by its PID.
"""

from __future__ import annotations

from typing import Any


def start_callee(sipp: Any, lab: Any, name: str, scenario: str, port: int, *,
                 wall: float = 60, extra: list[str] | None = None) -> Any:
    """A sipp UAS on ``port`` running ``scenario``, ready when the call returns."""
    proc = sipp.start(name, ["-sf", str(lab.scenarios / scenario), "-i", "127.0.0.1",
                             "-p", str(port), "-mi", "127.0.0.1", *(extra or [])], wall=wall)
    lab.wait_udp_listening(port)
    return proc


def register(sipp: Any, lab: Any, target: str, user: str, contact_port: int,
             port: int) -> None:
    """Register ``user`` (password demo-USER) at the edge with Contact on ``contact_port``."""
    reg = sipp.start(f"reg{user}", [target, "-sf", str(lab.scenarios / "edge_register.xml"),
                                    "-i", "127.0.0.1", "-p", str(port), "-au", user,
                                    "-ap", f"demo-{user}", "-set", "user", user,
                                    "-set", "cport", str(contact_port), "-m", "1",
                                    "-timeout_error"], wall=20)
    assert reg.wait(20) == 0, reg.errors()


def call(sipp: Any, lab: Any, name: str, scenario: str, target: str, caller: str, callee: str,
         port: int, *, calls: int = 1, rate: int | None = None, limit: int | None = None,
         media: int | None = None, wall: float = 40, trace_msg: bool = False,
         trace_logs: bool = False) -> Any:
    """``caller`` (password demo-CALLER) calls ``callee`` through the edge at ``target``."""
    args = [target, "-sf", str(lab.scenarios / scenario), "-s", callee, "-i", "127.0.0.1",
            "-p", str(port), "-au", caller, "-ap", f"demo-{caller}", "-set", "user", caller,
            "-auth_uri", f"{callee}@{target}", "-m", str(calls), "-timeout_error"]
    if rate is not None:
        args += ["-r", str(rate)]
    if limit is not None:
        args += ["-l", str(limit)]
    if media is not None:
        args += ["-mi", "127.0.0.1", "-mp", str(media)]
    return sipp.start(name, args, wall=wall, trace_msg=trace_msg, trace_logs=trace_logs)


def media_call(sipp: Any, lab: Any, target: str, caller: str, callee: str, ports: list[int],
               caller_phone: Any, callee_phone: Any, *, name: str = "c",
               during: Any = None, scenario: str = "recording_uac.xml",
               uac_extra: list[str] | None = None) -> tuple[Any, Any]:
    """``caller`` calls ``callee`` (registered afresh as a sipp UAS); 12 s of talk, then BYE.
    Each phone's SDP names its test-owned RTP socket (``lab.rtp_phone.RtpPhone``);
    ``during()`` runs while the call is up; ``uac_extra``: more sipp options for the caller.
    Returns the (UAS, UAC) sipp processes."""
    uas_port, reg_port, uac_port = ports
    uas = start_callee(sipp, lab, f"{name}uas", "recording_uas.xml", uas_port,
                       extra=["-set", "mport", str(callee_phone.port), "-m", "1"], wall=60)
    register(sipp, lab, target, callee, uas_port, reg_port)
    uac = sipp.start(f"{name}uac", [
        target, "-sf", str(lab.scenarios / scenario), "-s", callee,
        "-i", "127.0.0.1", "-p", str(uac_port), "-au", caller, "-ap", f"demo-{caller}",
        "-set", "user", caller, "-set", "mport", str(caller_phone.port),
        "-auth_uri", f"{callee}@{target}", "-m", "1", "-timeout_error", *(uac_extra or [])],
        trace_msg=True, wall=60)
    if during is not None:
        during()
    return uas, uac


def finish(calls: list[tuple[Any, Any]], edge: Any) -> None:
    """Every (UAS, UAC) of ``media_call`` ended cleanly."""
    for uas, uac in calls:
        assert uac.wait(60) == 0, uac.errors() + edge.log()
        assert uas.wait(10) == 0, uas.errors()
