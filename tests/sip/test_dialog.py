"""Dialogs (RFC 3261 §12, §13.2.2.4): creation on both sides, in-dialog requests with loose
and strict routing, CSeq rules, target refresh, forking."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softphone.sip.dialog import (
    Dialog,
    DialogError,
    DialogId,
    DialogState,
    DialogStore,
    ack_and_bye,
)
from softphone.sip.message import SipRequest, SipResponse, make_response, parse_message

INVITE = (
    b"INVITE sips:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/TLS client.atlanta.example.com:5061;branch=z9hG4bK74bf9\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: Alice <sips:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
    b"To: Bob <sips:bob@biloxi.example.com>\r\n"
    b"Call-ID: 3848276298220188511@atlanta.example.com\r\n"
    b"CSeq: 2 INVITE\r\n"
    b"Contact: <sips:alice@client.atlanta.example.com>\r\n"
    b"Record-Route: <sip:p2.example.com;lr>, <sip:p1.example.com;lr>\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def invite() -> SipRequest:
    msg = parse_message(INVITE)
    assert isinstance(msg, SipRequest)
    return msg


def response(req: SipRequest, status: int, tag: str, contact: str = "<sips:bob@client.biloxi>",
             rr: list[str] | None = None) -> SipResponse:
    extra = [("Contact", contact)] if contact else []
    resp = make_response(req, status, "R", to_tag=tag, extra=extra)  # copies Record-Route
    if rr is not None:  # what the proxies put in this response instead
        resp.headers.remove("record-route")
        for value in rr:
            resp.headers.add("Record-Route", value)
    return resp


def test_uac_dialog_from_2xx_reverses_the_record_route_and_takes_the_contact() -> None:
    req = invite()
    d = Dialog.from_uac(req, response(req, 200, "bobtag"))
    assert d.id == DialogId("3848276298220188511@atlanta.example.com", "9fxced76sl", "bobtag")
    assert d.state is DialogState.CONFIRMED and d.is_uac and d.secure
    assert d.route_set == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert d.remote_target == "sips:bob@client.biloxi"
    assert d.local_seq == 2 and d.remote_seq is None


def test_uas_dialog_keeps_the_record_route_order_and_mirrors_the_id() -> None:
    req = invite()
    resp = response(req, 180, "bobtag")
    d = Dialog.from_uas(req, resp, secure=True)
    assert d.id == DialogId(req.call_id, "bobtag", "9fxced76sl")
    assert d.state is DialogState.EARLY and not d.is_uac
    assert d.route_set == ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    assert d.remote_target == "sips:alice@client.atlanta.example.com"
    assert d.remote_seq == 2 and d.local_seq is None


def test_only_1xx_with_tag_and_2xx_create_dialogs() -> None:
    req = invite()
    with pytest.raises(DialogError):
        Dialog.from_uac(req, response(req, 486, "t"))
    with pytest.raises(DialogError):
        Dialog.from_uac(req, make_response(req, 180, "Ringing"))  # no To tag
    with pytest.raises(DialogError):
        Dialog.from_uac(req, response(req, 200, "t", contact=""))


def test_in_dialog_request_with_loose_routing() -> None:
    req = invite()
    d = Dialog.from_uac(req, response(req, 200, "bobtag"))
    bye = d.create_request("BYE")
    assert bye.uri == "sips:bob@client.biloxi"
    assert bye.headers.get_all("route") == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert str(bye.cseq) == "3 BYE"
    assert bye.from_.tag == "9fxced76sl" and bye.to.tag == "bobtag"
    assert bye.call_id == req.call_id and "via" not in bye.headers
    assert str(d.create_request("INFO").cseq) == "4 INFO"


def test_in_dialog_request_with_a_strict_router_first() -> None:
    req = invite()
    d = Dialog.from_uac(req, response(req, 200, "bobtag",
                                      rr=["<sip:p2.example.com;lr>", "<sip:p1.example.com>"]))
    bye = d.create_request("BYE")
    # §12.2.1.1: the strict router becomes the Request-URI, the remote target the last Route.
    assert bye.uri == "sip:p1.example.com"
    assert bye.headers.get_all("route") == ["<sip:p2.example.com;lr>",
                                            "<sips:bob@client.biloxi>"]


def test_ack_keeps_the_invite_cseq_and_reinvite_increments() -> None:
    req = invite()
    d = Dialog.from_uac(req, response(req, 200, "bobtag"))
    assert str(d.create_ack().cseq) == "2 ACK"
    reinvite = d.create_request("INVITE", body=b"v=0\r\n", content_type="application/sdp")
    assert str(reinvite.cseq) == "3 INVITE"
    assert reinvite.headers.get("contact") == "<sips:alice@client.atlanta.example.com>"
    assert str(d.create_ack().cseq) == "3 ACK"
    assert d.local_seq == 3
    with pytest.raises(DialogError):
        d.create_request("CANCEL")


def test_uas_refuses_a_lower_cseq_with_500_and_bye_ends_the_dialog() -> None:
    req = invite()
    d = Dialog.from_uas(req, response(req, 200, "bobtag"))
    info = SipRequest("INFO", "sips:bob@client.biloxi", req.headers.copy())
    info.headers.set("CSeq", "5 INFO")
    d.receive_request(info)
    assert d.remote_seq == 5
    old = SipRequest("INFO", "sips:bob@client.biloxi", req.headers.copy())
    old.headers.set("CSeq", "4 INFO")
    with pytest.raises(DialogError) as exc:
        d.receive_request(old)
    assert exc.value.status == 500
    ack = SipRequest("ACK", "sips:bob@client.biloxi", req.headers.copy())
    ack.headers.set("CSeq", "2 ACK")
    d.receive_request(ack)  # ACK carries its INVITE's CSeq: never out of order
    bye = SipRequest("BYE", "sips:bob@client.biloxi", req.headers.copy())
    bye.headers.set("CSeq", "6 BYE")
    d.receive_request(bye)
    assert d.state is DialogState.TERMINATED


def test_target_refresh_on_reinvite_and_update_2xx_only() -> None:
    req = invite()
    uac = Dialog.from_uac(req, response(req, 200, "bobtag"))
    reinvite = uac.create_request("INVITE")
    uac.receive_response(reinvite, response(reinvite, 491, "bobtag", contact="<sip:x@new>"))
    assert uac.remote_target == "sips:bob@client.biloxi"
    uac.receive_response(reinvite, response(reinvite, 200, "bobtag", contact="<sip:b@moved>"))
    assert uac.remote_target == "sip:b@moved"
    update = uac.create_request("UPDATE")
    uac.receive_response(update, response(update, 200, "bobtag", contact="<sip:b@again>"))
    assert uac.remote_target == "sip:b@again"
    # UAS side: the target changes when we accept the refresh (RFC 6141).
    uas = Dialog.from_uas(req, response(req, 200, "bobtag"))
    refresh = SipRequest("UPDATE", "sips:bob@client.biloxi", req.headers.copy())
    refresh.headers.set("CSeq", "3 UPDATE")
    refresh.headers.set("Contact", "<sip:alice@roaming>")
    uas.receive_request(refresh)
    assert uas.remote_target == "sips:alice@client.atlanta.example.com"
    uas.response_sent(refresh, make_response(refresh, 200, "OK"))
    assert uas.remote_target == "sip:alice@roaming"


def test_481_to_an_in_dialog_request_ends_the_dialog() -> None:
    req = invite()
    d = Dialog.from_uac(req, response(req, 200, "bobtag"))
    info = d.create_request("INFO")
    d.receive_response(info, make_response(info, 481, "Call/Transaction Does Not Exist"))
    assert d.state is DialogState.TERMINATED
    with pytest.raises(DialogError):
        d.create_request("BYE")


def test_forking_early_dialogs_then_second_2xx_is_acked_and_byed() -> None:
    store = DialogStore()
    req = invite()
    a = store.uac_response(req, response(req, 180, "forkA", contact="<sip:a@phone1>"))
    b = store.uac_response(req, response(req, 183, "forkB", contact="<sip:b@phone2>"))
    assert a.created and b.created and len(store) == 2
    assert {d.state for d in store} == {DialogState.EARLY}
    again = store.uac_response(req, response(req, 180, "forkA", contact="<sip:a@phone1>"))
    assert again.dialog is a.dialog and not again.created
    ok_a = response(req, 200, "forkA", contact="<sip:a@phone1>")
    confirmed = store.uac_response(req, ok_a)
    assert confirmed.dialog is a.dialog and not confirmed.redundant_fork
    assert a.dialog is not None and a.dialog.state is DialogState.CONFIRMED
    assert store.for_response(ok_a) is a.dialog
    ok_b = response(req, 200, "forkB", contact="<sip:b@phone2>")
    late = store.uac_response(req, ok_b)
    assert late.redundant_fork and store.for_response(ok_b) is None
    ack, bye = ack_and_bye(req, ok_b)
    assert ack.method == "ACK" and str(ack.cseq) == "2 ACK" and ack.to.tag == "forkB"
    assert bye.method == "BYE" and str(bye.cseq) == "3 BYE" and bye.to.tag == "forkB"
    assert ack.uri == bye.uri == "sip:b@phone2"


def test_a_2xx_from_a_fork_that_sent_no_1xx_and_a_failure_clears_early_dialogs() -> None:
    store = DialogStore()
    req = invite()
    store.uac_response(req, response(req, 180, "forkA"))
    fresh = store.uac_response(req, response(req, 200, "forkC"))
    assert fresh.created and fresh.dialog is not None
    assert fresh.dialog.state is DialogState.CONFIRMED
    req2 = invite()
    req2.headers.set("Call-ID", "other-call")
    store.uac_response(req2, response(req2, 180, "x"))
    store.uac_response(req2, response(req2, 183, "y"))
    assert len(store.dialog_set("other-call", "9fxced76sl")) == 2
    store.uac_response(req2, response(req2, 486, "x"))
    assert store.dialog_set("other-call", "9fxced76sl") == []


def test_store_finds_the_dialog_of_an_incoming_request() -> None:
    store = DialogStore()
    req = invite()
    d = Dialog.from_uas(req, response(req, 200, "bobtag"))
    store.add(d)
    bye = SipRequest("BYE", "sips:bob@client.biloxi", req.headers.copy())
    bye.headers.set("To", "Bob <sips:bob@biloxi.example.com>;tag=bobtag")
    bye.headers.set("CSeq", "3 BYE")
    assert store.for_request(bye) is d
    assert store.for_request(req) is None  # no To tag: not in a dialog
    store.remove(d)
    assert store.for_request(bye) is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["INVITE", "ACK", "BYE", "INFO", "UPDATE", "OPTIONS"]),
                min_size=1, max_size=30),
       st.lists(st.integers(0, 29), max_size=5))
def test_cseq_rules_hold_between_a_uac_and_a_uas_dialog(methods: list[str],
                                                        replays: list[int]) -> None:
    req = invite()
    ok = response(req, 200, "bobtag")
    uac, uas = Dialog.from_uac(req, ok), Dialog.from_uas(req, ok)
    sent: list[SipRequest] = []
    last_invite = req.cseq.number
    for method in methods:
        r = uac.create_request(method)
        if method == "ACK":
            assert r.cseq.number == last_invite
        else:
            assert r.cseq.number == max([last_invite] + [s.cseq.number for s in sent]) + 1
            if method == "INVITE":
                last_invite = r.cseq.number
        if uas.state is DialogState.TERMINATED and method != "ACK":
            with pytest.raises(DialogError) as ended:
                uas.receive_request(r)
            assert ended.value.status == 481  # after a BYE (§15.1.2)
            return
        uas.receive_request(r)  # in order: always accepted
        sent.append(r)
        assert uas.id == DialogId(uac.call_id, uac.remote_tag, uac.local_tag)
    for i in replays:  # an old request again: refused with 500 unless it is the newest
        old = sent[i % len(sent)]
        newest = max(s.cseq.number for s in sent if s.method != "ACK") if any(
            s.method != "ACK" for s in sent) else None
        if uas.state is DialogState.TERMINATED and old.method != "ACK":
            with pytest.raises(DialogError):
                uas.receive_request(old)
        elif old.method == "ACK" or newest is None or old.cseq.number >= newest:
            uas.receive_request(old)
        else:
            with pytest.raises(DialogError) as exc:
                uas.receive_request(old)
            assert exc.value.status == 500
