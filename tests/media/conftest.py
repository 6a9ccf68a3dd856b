"""Shared helpers for the media tests: a port allocator on a sub-range of 20000-22000 that
other test suites leave alone, and a loopback UDP peer that records what it receives."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from softphone.media.ports import PortAllocator

TEST_FIRST, TEST_LAST = 21000, 21999


@pytest.fixture
def allocator() -> Iterator[PortAllocator]:
    alloc = PortAllocator(TEST_FIRST, TEST_LAST, "127.0.0.1")
    yield alloc
    leaked = alloc.owners()
    alloc.close()
    assert not leaked, f"ports leaked by the test: {leaked}"


class UdpPeer(asyncio.DatagramProtocol):
    """A bare loopback socket standing in for a phone: records (data, addr), sends freely."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, tuple[str, int]]] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.event = asyncio.Event()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.append((data, (addr[0], addr[1])))
        self.event.set()

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        async def loop() -> None:
            while len(self.received) < count:
                self.event.clear()
                await self.event.wait()
        await asyncio.wait_for(loop(), timeout)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


@pytest.fixture
async def udp_peer() -> AsyncIterator[Any]:
    """``peer = await udp_peer()``: a loopback UdpPeer closed when the test ends;
    ``udp_peer(host="127.0.0.2")`` for a stranger on another loopback address."""
    made: list[UdpPeer] = []

    async def make(port: int = 0, host: str = "127.0.0.1") -> UdpPeer:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_datagram_endpoint(UdpPeer, local_addr=(host, port))
        made.append(proto)
        return proto

    yield make
    for p in made:
        p.close()
