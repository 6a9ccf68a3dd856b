"""The lab UAS: a phone that answers every call, for tests against real peers.

``python -m softphone.phone.uas --listen udp:127.0.0.1:5070 --ring [--answer-delay S]
[--duration S]`` prints ``listening ...`` once bound and its stats on exit; exit status 2 on a
bad listen spec.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import ssl
import sys
from collections.abc import Sequence

from softphone.phone.account import UaError
from softphone.phone.ua import UserAgent
from softphone.sip.errors import SipError
from softphone.sip.transport import ListenSpec


def parse_listen(text: str, ssl_context: ssl.SSLContext | None = None) -> ListenSpec:
    """``udp:127.0.0.1:5060`` / ``tcp:[::1]:5060`` -> :class:`ListenSpec`."""
    transport, _, hostport = text.partition(":")
    if not hostport:
        raise UaError(f"listen spec must look like udp:127.0.0.1:5060, got {text!r}")
    if hostport.startswith("["):
        host, _, port = hostport[1:].partition("]:")
    else:
        host, _, port = hostport.rpartition(":")
    if not port.isdigit():
        raise UaError(f"bad port in listen spec {text!r}")
    return ListenSpec(transport.lower(), host, int(port), ssl=ssl_context)


async def run_uas(listen: Sequence[ListenSpec], *, ring: bool, answer_delay: float,
                  duration: float | None, user: str = "uas") -> int:
    ua = UserAgent(listen=listen, user=user, auto_answer=True, ring=ring,
                   answer_delay=answer_delay)
    local = await ua.start()
    print("listening " + " ".join(f"{a.transport}:{a.host}:{a.port}" for a in local.values()),
          flush=True)
    try:
        if duration is None:
            await asyncio.Event().wait()
        else:
            await asyncio.sleep(duration)
    finally:
        print(f"stats {ua.stats}", flush=True)
        await ua.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m softphone.phone.uas",
                                description="auto-answering SIP UAS for lab tests")
    p.add_argument("--listen", action="append", default=[],
                   help="transport:host:port, repeatable (default udp:127.0.0.1:5070)")
    p.add_argument("--ring", action="store_true", help="send 180 Ringing before answering")
    p.add_argument("--answer-delay", type=float, default=0.0)
    p.add_argument("--duration", type=float, default=None, help="exit after N seconds")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        specs = [parse_listen(x) for x in (args.listen or ["udp:127.0.0.1:5070"])]
        return asyncio.run(run_uas(specs, ring=args.ring, answer_delay=args.answer_delay,
                                   duration=args.duration))
    except SipError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
