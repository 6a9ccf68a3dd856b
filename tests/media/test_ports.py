"""The port allocator: real binds on loopback, pairs inside the range, exhaustion, no leaks."""

from __future__ import annotations

import socket

import pytest

from softphone.media.ports import (
    PortAllocator,
    PortRangeError,
    PortsExhausted,
    UserPortsExhausted,
)


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
        # the pick is random: the pair with the held port is tried at most once per call
        got = {alloc.allocate("call").rtp, alloc.allocate("call2").rtp}
        assert got == {21922, 21924}
        with pytest.raises(PortsExhausted) as info:
            alloc.allocate("call3")
        assert info.value.skipped == 1 and 1 <= alloc.skipped_foreign <= 3
        alloc.close()
        assert alloc.in_use == 0
    finally:
        blocker.close()


def test_no_leak_after_many_cycles(allocator: PortAllocator) -> None:
    for i in range(600):  # more than the sub-range's 500 pairs
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


def test_pairs_are_chosen_at_random_and_a_freed_pair_is_not_reused_at_once(
        allocator: PortAllocator) -> None:
    """RTPbleed: ports handed out in order let an attacker aim at the next call's ports."""
    pairs = [allocator.allocate(f"call-{i}") for i in range(20)]
    order = [p.rtp for p in pairs]
    assert order != sorted(order)  # in order by chance: 1 in 20!
    steps = {(b - a) for a, b in zip(order, order[1:], strict=False)}
    assert len(steps) > 5, order  # no fixed stride either
    firsts = set()
    for _ in range(5):  # a fresh allocator does not start at the same place either
        fresh = PortAllocator(41000, 41999, "127.0.0.1")
        firsts.add(fresh.allocate("first").rtp)
        fresh.close()
    assert len(firsts) > 1, firsts
    for p in pairs:
        allocator.release(p)


def test_a_freed_pair_waits_while_others_are_free() -> None:
    """Late packets of an ended call must not land in the next one: the pair released last
    is taken again only when nothing else is free."""
    alloc = PortAllocator(41200, 41215, "127.0.0.1")  # 8 pairs
    try:
        held = [alloc.allocate(f"c{i}") for i in range(7)]
        for round_ in range(10):  # one free pair and one just freed: never the freed one
            freed = held.pop(round_ % len(held))
            alloc.release(freed)
            pair = alloc.allocate(f"r{round_}")
            assert pair.rtp != freed.rtp, round_
            held.append(pair)
        last = alloc.allocate("last")  # nothing else free: the quarantined pair is used
        assert alloc.in_use == 8 and last.rtp not in {p.rtp for p in held}
    finally:
        alloc.close()


def test_emergency_share_and_per_user_cap() -> None:
    # 6 pairs, 2 of them for emergency calls only, 6 ports (3 pairs) per user
    alloc = PortAllocator(41100, 41111, "127.0.0.1", emergency_reserved=2, per_user_max_ports=6)
    try:
        mine = [alloc.allocate(f"u/{i}", user="1001") for i in range(3)]
        with pytest.raises(UserPortsExhausted) as capped:
            alloc.allocate("u/4", user="1001")
        assert capped.value.user == "1001" and capped.value.held_ports == 6
        assert alloc.user_ports("1001") == 6 and alloc.refused_user == 1
        assert alloc.allocate("v/1", user="1002").user == "1002"  # others still get theirs
        with pytest.raises(PortsExhausted, match="2 kept for emergency"):
            alloc.allocate("v/2", user="1002")  # 4 of 6 in use: the rest is for 112
        assert alloc.refused_reserve == 1
        alloc.release(mine[0])
        assert alloc.allocate("v/2", user="1002").user == "1002"
        # an emergency call in a range full for ordinary calls: the cap does not apply
        sos = [alloc.allocate(f"sos/{leg}", user="1001", emergency=True) for leg in "ab"]
        assert all(p.emergency for p in sos) and alloc.in_use == 6
        assert alloc.users() == {"1001": 8, "1002": 4}
        with pytest.raises(PortsExhausted):
            alloc.allocate("sos2", user="1003", emergency=True)  # the range itself is full
    finally:
        alloc.close()
    assert alloc.in_use == 0 and alloc.users() == {}


@pytest.mark.parametrize("kwargs", [{"emergency_reserved": 6}, {"emergency_reserved": -1},
                                    {"per_user_max_ports": -2}, {"emergency_reserved": True}])
def test_bad_shares_are_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(PortRangeError):
        PortAllocator(41100, 41111, "127.0.0.1", **kwargs)


def test_the_pick_is_uniform_over_the_free_pairs_whatever_is_held() -> None:
    """Half the range held, at random: 3000 calls, each allocated and released at once, use
    every free pair about as often (the first random draws and the pass over the range that
    follows them pick the same way), and never a held one."""
    alloc = PortAllocator(41400, 41599, "127.0.0.1")  # 100 pairs
    try:
        everything = [alloc.allocate(f"h{i}") for i in range(100)]
        kept = everything[::2]
        for pair in everything[1::2]:
            alloc.release(pair)
        held = {p.rtp for p in kept}
        counts = dict.fromkeys((p.rtp for p in everything[1::2]), 0)
        for i in range(3000):
            pair = alloc.allocate(f"c{i}")
            assert pair.rtp not in held
            counts[pair.rtp] += 1
            alloc.release(pair)
        # 60 per pair expected; a sequential or biased pick puts hundreds on a few
        assert 25 < min(counts.values()) and max(counts.values()) < 110, sorted(counts.values())
    finally:
        alloc.close()


def test_the_pick_is_uniform_when_the_range_is_almost_full() -> None:
    """4 pairs free of 200 (none quarantined): most random draws hit a held pair, so the
    pick often comes from the pass over the range; it is uniform all the same."""
    alloc = PortAllocator(41600, 41999, "127.0.0.1")  # 200 pairs
    try:
        everything = [alloc.allocate(f"h{i}") for i in range(200)]
        free = everything[10:200:50]
        for pair in free:
            alloc.release(pair)
        counts = dict.fromkeys((p.rtp for p in free), 0)
        for i in range(2000):
            alloc._quarantine.clear()  # the quarantine's own order is another test's
            pair = alloc.allocate(f"c{i}")
            counts[pair.rtp] += 1
            alloc.release(pair)
        assert 380 < min(counts.values()) and max(counts.values()) < 620, counts
    finally:
        alloc.close()
