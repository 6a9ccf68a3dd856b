"""ICE host candidates on ports of the edge's RTP allocator (20000-22000, terms, Annex 2).

aioice binds each host candidate with ``local_addr=(address, 0)``: an ephemeral port outside
the range the provider's firewall opens, and on every interface but loopback. It has no
option for a port range upstream, so this one small module replaces, for one
``aioice.Connection`` only (never globally), its ``get_component_candidates``: one host
candidate per component, on the RTP socket of a ``PortPair`` the allocator already bound (the
same pool the SIP legs draw from, so the two never collide, and the same per-user and
emergency shares), at the media address. No STUN or TURN server is asked (the peer connection
is built with no ICE servers) and no mDNS name is made. aioice and aiortc are pinned in
pyproject.toml because this reaches into aioice's ``Connection`` (``_protocols``); the
``tests/media/test_ice_ports.py`` checks catch a change of that shape. Drop this module when
aioice gains a port-range option.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

from aioice import Candidate, Connection
from aioice.candidate import candidate_foundation, candidate_priority
from aioice.ice import StunProtocol

from softphone.media.ports import PortPair

__all__ = ["pin_host_candidates"]

RECEIVE_BUFFER = 1 << 20  # as aioice sets on its own sockets


def pin_host_candidates(connection: Connection, pairs: Callable[[int], PortPair]) -> None:
    """Make ``connection`` gather exactly one host candidate per component, on the RTP socket
    of ``pairs(component)`` (bound by the allocator; the ICE transport adopts it)."""

    async def get_component_candidates(component: int, addresses: list[str],
                                       timeout: int = 5) -> list[Candidate]:
        del addresses, timeout  # every interface but ours is ignored, no server is asked
        pair = pairs(component)
        loop = asyncio.get_running_loop()
        sock = pair.rtp_sock
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        _transport, protocol = await loop.create_datagram_endpoint(
            lambda: StunProtocol(connection), sock=sock)
        host, port = pair.host, pair.rtp
        protocol.local_candidate = Candidate(
            foundation=candidate_foundation("host", "udp", host), component=component,
            transport="udp", priority=candidate_priority(component, "host"), host=host,
            port=port, type="host")
        protocols: list[Any] = connection._protocols
        protocols.append(protocol)
        return [protocol.local_candidate]

    connection.get_component_candidates = get_component_candidates  # type: ignore[method-assign]
