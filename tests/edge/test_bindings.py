"""Registrar location service: bindings, expiry, refusal without side effects."""

from __future__ import annotations

import pytest

from softphone.edge.bindings import LocationService, RegistrationError

SRC = ("udp", "127.0.0.1", 5062, None)


def reg(loc: LocationService, uri: str, expires: int | None, *, now: float = 0.0,
        cseq: int = 1, call_id: str = "c1", default: int | None = None) -> int:
    return len(loc.register("1001", [(uri, expires)], default_expires=default, source=SRC,
                            call_id=call_id, cseq=cseq, now=now))


def test_register_lookup_expire() -> None:
    loc = LocationService()
    assert reg(loc, "sip:1001@127.0.0.1:5062", 120) == 1
    assert [b.contact for b in loc.lookup("1001", 10)] == ["sip:1001@127.0.0.1:5062"]
    assert loc.lookup("1001", 10)[0].remaining(10) == 110
    assert loc.lookup("1001", 121) == []
    assert loc.expire(121) == 1 and len(loc) == 0


def test_two_devices_one_user_and_unregister() -> None:
    loc = LocationService()
    reg(loc, "sip:1001@127.0.0.1:5062", 300)
    reg(loc, "sip:1001@127.0.0.1:5064", 300, call_id="c2")
    assert len(loc.lookup("1001", 1)) == 2
    reg(loc, "sip:1001@127.0.0.1:5062", 0, cseq=2)
    assert [b.contact for b in loc.lookup("1001", 1)] == ["sip:1001@127.0.0.1:5064"]


def test_too_brief_and_out_of_order_change_nothing() -> None:
    loc = LocationService(min_expires=60)
    reg(loc, "sip:a@h", 300, cseq=5)
    with pytest.raises(RegistrationError) as err:
        reg(loc, "sip:b@h", 10, cseq=6)
    assert err.value.status == 423 and err.value.min_expires == 60
    with pytest.raises(RegistrationError) as err:
        reg(loc, "sip:a@h", 300, cseq=4)
    assert err.value.status == 400
    assert [b.contact for b in loc.lookup("1001", 1)] == ["sip:a@h"]


def test_binding_limit() -> None:
    loc = LocationService(max_bindings=2)
    reg(loc, "sip:a@h", 300)
    reg(loc, "sip:b@h", 300, call_id="x")
    with pytest.raises(RegistrationError) as err:
        reg(loc, "sip:c@h", 300, call_id="y")
    assert err.value.status == 403
    assert len(loc) == 2


def test_max_expires_capped_and_default() -> None:
    loc = LocationService(max_expires=600)
    reg(loc, "sip:a@h", 99999)
    assert loc.lookup("1001", 0)[0].remaining(0) == 600
    reg(loc, "sip:b@h", None, default=120, call_id="z")
    assert {b.remaining(0) for b in loc.lookup("1001", 0)} == {600, 120}


def test_path_is_kept_with_the_binding_and_routes_requests_to_its_first_hop() -> None:
    """RFC 3327 §5.3: the Path of a REGISTER is stored per binding; requests to that contact
    go to its first hop (a TCP hop that is where the REGISTER came from reuses that
    connection); a refresh without Path drops it."""
    from softphone.edge.registrar import binding_destination, path_echo
    from softphone.sip.core import Address
    from softphone.sip.message import Headers, SipRequest

    loc = LocationService()
    path = ("<sip:127.0.0.1:15070;lr>", "<sip:10.0.0.1;lr>")
    (b,) = loc.register("1001", [("sip:1001@192.0.2.7:5062", 300)], default_expires=None,
                        source=("udp", "127.0.0.1", 15070, None), call_id="c1", cseq=1, now=0,
                        path=path)
    assert b.path == path
    assert binding_destination(b) == Address("udp", "127.0.0.1", 15070)
    (tcp,) = loc.register("1002", [("sip:1002@192.0.2.8", 300)], default_expires=None,
                          source=("tcp", "127.0.0.1", 15071, 7), call_id="c2", cseq=1, now=0,
                          path=("<sip:127.0.0.1:15071;transport=tcp;lr>",))
    assert binding_destination(tcp) == Address("tcp", "127.0.0.1", 15071, 7)
    (plain,) = loc.register("1001", [("sip:1001@192.0.2.7:5062", 300)], default_expires=None,
                            source=("udp", "192.0.2.7", 5062, None), call_id="c1", cseq=2,
                            now=1)
    assert plain.path == () and binding_destination(plain) == Address("udp", "192.0.2.7", 5062)
    req = SipRequest("REGISTER", "sip:127.0.0.1", Headers([("Path", path[0]),
                                                          ("Path", path[1])]))
    assert path_echo(req) == []
    req.headers.add("Supported", "outbound, path")
    assert path_echo(req) == [("Path", path[0]), ("Path", path[1])]
