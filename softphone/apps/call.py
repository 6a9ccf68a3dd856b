"""``softphone call``: a one-shot UA for scripts and smoke tests.

``softphone call sip:600@127.0.0.1:5060 --duration 3 [--user 1001 --password ... --register]``
optionally registers, places one call (OPUS, PCMA, PCMU offered in that order), keeps it up
for ``--duration`` seconds and hangs up. Exit status: 0 when the call was answered and the BYE
was accepted, 1 when the call failed or was not answered in time, 2 on bad arguments or
local errors (a port already in use, say).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from softphone.sip.errors import SipError
from softphone.sip.transport import ListenSpec
from softphone.sip.ua import CallState, RegState, UserAgent, parse_listen, uri_destination
from softphone.sip.uri import SipUri


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", help="SIP URI to call, e.g. sip:600@127.0.0.1:5060")
    p.add_argument("--duration", type=float, default=3.0,
                   help="seconds to stay in the call once answered (default 3)")
    p.add_argument("--answer-timeout", type=float, default=30.0,
                   help="give up (CANCEL) when not answered within this many seconds")
    p.add_argument("--user", default=None, help="our user part and digest username")
    p.add_argument("--password", default=None, help="digest password (401/407 answered)")
    p.add_argument("--register", action="store_true",
                   help="REGISTER at the target's host first (digest if challenged)")
    p.add_argument("--registrar", default=None, help="registrar URI (default: target's host)")
    p.add_argument("--listen", action="append", default=[],
                   help="transport:host:port to bind, repeatable (default: an ephemeral port "
                        "on 127.0.0.1 with the target's transport)")
    p.add_argument("--rtp-ports", default="20000-22000", help="RTP port range (default 20000-22000)")
    p.add_argument("-v", "--verbose", action="store_true")


def _listen_for(target: str, listen: Sequence[str]) -> list[ListenSpec]:
    if listen:
        return [parse_listen(x) for x in listen]
    dest = uri_destination(target)
    host = "::1" if ":" in dest.host else "127.0.0.1"
    return [ListenSpec(dest.transport, host, 0)]


async def run_call(args: argparse.Namespace) -> int:
    first, _, last = str(args.rtp_ports).partition("-")
    ua = UserAgent(listen=_listen_for(args.target, args.listen), user=args.user or "softphone",
                   username=args.user, password=args.password,
                   rtp_ports=(int(first), int(last)))
    await ua.start()
    try:
        if args.register:
            target = SipUri.parse(args.target)
            registrar = args.registrar or str(SipUri(scheme=target.scheme, host=target.host,
                                                     port=target.port, params={
                                                         k: v for k, v in target.params.items()
                                                         if k == "transport"}))
            reg = await ua.register(registrar, expires=300, wait=10)
            if reg.state is not RegState.REGISTERED:
                print(f"register failed: {reg.status}", file=sys.stderr)
                return 1
            print(f"registered {reg.aor} for {reg.granted} s")
        call = await ua.call(args.target)
        if not await call.wait_answered(args.answer_timeout):
            if not call.ended:
                await call.hangup_and_wait(10)
            print(f"call not answered: {call.status} {call.reason or call.end_reason}".rstrip(),
                  file=sys.stderr)
            return 1
        neg = call.negotiated
        if neg is not None:
            print(f"answered: {neg.codec.rtpmap} (PT {neg.codec.payload_type}) "
                  f"remote {neg.remote_address}:{neg.remote_port} local port {call.rtp_port}")
        try:
            await call.wait_state(CallState.TERMINATED, timeout=args.duration)
        except TimeoutError:
            pass
        if call.ended:
            print(f"call ended by the peer after less than {args.duration} s: {call.end_reason}",
                  file=sys.stderr)
            return 1
        await call.hangup_and_wait(35)
        if call.bye_status != 200:
            print(f"BYE not accepted: {call.bye_status}", file=sys.stderr)
            return 1
        print("hung up")
        return 0
    finally:
        await ua.close()


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    try:
        return asyncio.run(run_call(args))
    except (SipError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
