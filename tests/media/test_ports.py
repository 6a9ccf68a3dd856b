"""The port allocator: real binds on loopback, pairs inside the range, exhaustion, no leaks."""

from __future__ import annotations

import socket

import pytest

from softphone.media.ports import PortAllocator, PortRangeError, PortsExhausted


def test_pairs_are_even_odd_and_inside_the_range(allocator: PortAllocator) -> None:
    pairs = [allocator.allocate(f"call-{i}") for i in range(20)]
    try:
        for p in pairs:
            assert p.rtp % 2 == 0 and p.rtcp == p.rtp + 1
            assert allocator.first <= p.rtp and p.rtcp <= allocator.last
            assert p.rtp_sock.getsockname() == ("127.0.0.1", p.rtp)
            assert p.rtcp_sock.getsockname() == ("127.0.0.1", p.rtcp)
        assert len({p.rtp for p in pairs}) == 20
        assert allocator.in_use == 20
        assert allocator.owners() == {f"call-{i}": 1 for i in range(20)}
    finally:
        for p in pairs:
            allocator.release(p)
    assert allocator.in_use == 0


def test_exhaustion_raises_ports_exhausted_and_release_is_idempotent() -> None:
    alloc = PortAllocator(21900, 21905, "127.0.0.1")  # 3 pairs: 21900, 21902, 21904
    assert alloc.capacity == 3
    pairs = [alloc.allocate("a"), alloc.allocate("b"), alloc.allocate("c")]
    assert sorted(p.rtp for p in pairs) == [21900, 21902, 21904]
    with pytest.raises(PortsExhausted) as info:
        alloc.allocate("d")
    assert info.value.in_use == 3 and "21900-21905" in str(info.value)
    alloc.release(pairs[1])
    alloc.release(pairs[1])  # twice: nothing happens
    assert alloc.in_use == 2
    again = alloc.allocate("d")
    assert again.rtp == pairs[1].rtp
    for p in [*pairs, again]:
        alloc.release(p)
    assert alloc.in_use == 0 and alloc.owners() == {}
    # the ports really are free again: another socket can bind them
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 21902))


def test_last_odd_port_bounds_the_range() -> None:
    alloc = PortAllocator(21910, 21914, "127.0.0.1")  # 21914 has no 21915 inside: 2 pairs
    assert alloc.capacity == 2
    pairs = [alloc.allocate("x"), alloc.allocate("y")]
    with pytest.raises(PortsExhausted):
        alloc.allocate("z")
    assert max(p.rtcp for p in pairs) == 21913
    alloc.close()


def test_port_held_by_another_socket_is_skipped() -> None:
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind(("127.0.0.1", 21921))  # the RTCP port of the first pair
    try:
        alloc = PortAllocator(21920, 21925, "127.0.0.1")
        pair = alloc.allocate("call")
        assert pair.rtp == 21922
        assert alloc.skipped_foreign == 1
        assert alloc.allocate("call2").rtp == 21924
        with pytest.raises(PortsExhausted) as info:
            alloc.allocate("call3")
        assert info.value.skipped == 1
        alloc.close()
        assert alloc.in_use == 0
    finally:
        blocker.close()


def test_no_leak_after_many_cycles(allocator: PortAllocator) -> None:
    for i in range(600):  # more than the sub-range's 500 pairs: the cursor wraps around
        with allocator.lease(f"call-{i}") as pair:
            assert pair.rtp % 2 == 0
    assert allocator.in_use == 0
    owner_pairs = [allocator.allocate("leaky") for _ in range(5)]
    assert allocator.release_owner("leaky") == 5
    assert all(p.released for p in owner_pairs)
    assert allocator.in_use == 0


def test_lease_releases_on_error(allocator: PortAllocator) -> None:
    with pytest.raises(RuntimeError), allocator.lease("failing-call"):
        raise RuntimeError("call setup failed")
    assert allocator.in_use == 0


@pytest.mark.parametrize("first,last", [(21001, 21100), (80, 2000), (30000, 70000), (22000, 22000),
                                        (22000, 21000)])
def test_bad_ranges_are_refused(first: int, last: int) -> None:
    with pytest.raises(PortRangeError):
        PortAllocator(first, last)
