"""The RTP/RTCP port pairs the phone holds for its calls (``softphone.media.ports``).

Call control only: the phone negotiates the media and holds the bound pair for each call
(an app such as ``softphone call`` sends and receives on ``call.port_pair``); a full range is
answered 503 with Retry-After, never a crash.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from softphone.media.ports import PortAllocator

if TYPE_CHECKING:
    from softphone.phone.call import Call


class CallPorts:
    """One allocator over ``first``-``last`` on ``host``; a pair per call, by Call-ID."""

    def __init__(self, first: int, last: int, host: str) -> None:
        self.allocator = PortAllocator(first, last, host)

    @property
    def in_use(self) -> int:
        return self.allocator.in_use

    def allocate(self, call: Call) -> int:
        """Bind a pair for ``call`` (raises ``PortsExhausted``); its RTP port."""
        pair = self.allocator.allocate(call.call_id)
        call.port_pair = pair
        call.rtp_port = int(pair.rtp)
        return int(pair.rtp)

    def release(self, call: Call) -> None:
        if call.port_pair is not None:
            with contextlib.suppress(Exception):
                self.allocator.release(call.port_pair)
            call.port_pair = None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.allocator.close()
