"""Digest authentication: the RFC worked examples, the client's retry rules and the server's
nonce expiry and replay refusal."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softphone.sip.auth import (
    AuthError,
    Challenge,
    DigestClient,
    DigestServer,
    digest_response,
    own_uri_check,
    parse_auth_params,
)
from softphone.sip.message import Headers, SipRequest, SipResponse, make_response

RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC7616_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"


def test_rfc2617_section_3_5_example_with_qop_auth() -> None:
    assert digest_response(
        algorithm="MD5", username="Mufasa", realm="testrealm@host.com",
        password="Circle Of Life", method="GET", uri="/dir/index.html",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", qop="auth", nc="00000001",
        cnonce="0a4f113b") == "6629fae49393a05397450978507c4ef1"


def test_rfc2069_form_without_qop() -> None:
    assert digest_response(
        algorithm="MD5", username="Mufasa", realm="testrealm@host.com",
        password="Circle Of Life", method="GET", uri="/dir/index.html",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093") == "670fd8c2df070c60b045671b8b24ff02"


@pytest.mark.parametrize(("algorithm", "expected"), [
    ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
])
def test_rfc7616_section_3_9_1_examples_through_the_client(algorithm: str,
                                                          expected: str) -> None:
    client = DigestClient("Mufasa", "Circle of Life", cnonce_factory=lambda: RFC7616_CNONCE)
    ch = Challenge.parse(f'Digest realm="http-auth@example.org", qop="auth, auth-int", '
                         f'algorithm={algorithm}, nonce="{RFC7616_NONCE}", '
                         f'opaque="{RFC7616_OPAQUE}"')
    value = client.authorization(ch, "GET", "/dir/index.html")
    scheme, p = parse_auth_params(value)
    assert scheme == "Digest"
    assert p["response"] == expected
    assert p["qop"] == "auth" and p["nc"] == "00000001" and p["cnonce"] == RFC7616_CNONCE
    assert p["opaque"] == RFC7616_OPAQUE and p["algorithm"] == algorithm
    assert p["uri"] == "/dir/index.html" and p["username"] == "Mufasa"


def register() -> SipRequest:
    h = Headers([
        ("Via", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKold;rport"),
        ("From", "<sip:alice@example.com>;tag=r1"), ("To", "<sip:alice@example.com>"),
        ("Call-ID", "reg-1"), ("CSeq", "1 REGISTER"), ("Contact", "<sip:alice@192.0.2.10>"),
    ])
    return SipRequest("REGISTER", "sip:example.com", h)


def challenge(req: SipRequest, *values: str, status: int = 401) -> SipResponse:
    name = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
    return make_response(req, status, "Unauthorized", to_tag="reg",
                         extra=[(name, v) for v in values])


def test_client_retry_bumps_cseq_drops_via_and_picks_the_strongest_algorithm() -> None:
    req = register()
    md5 = 'Digest realm="example.com", nonce="n1", algorithm=MD5, qop="auth"'
    sha = 'Digest realm="example.com", nonce="n1", algorithm=SHA-256, qop="auth"'
    for order in ((md5, sha), (sha, md5)):
        retry = DigestClient("alice", "pw").authorize(req, challenge(req, *order))
        assert str(retry.cseq) == "2 REGISTER" and "via" not in retry.headers
        (auth,) = retry.headers.get_all("authorization")
        assert parse_auth_params(auth)[1]["algorithm"] == "SHA-256"


def test_client_nonce_count_increments_and_sign_reuses_the_challenge() -> None:
    client = DigestClient("alice", "pw")
    ch = Challenge.parse('Digest realm="r", nonce="n", qop="auth"')
    ncs = [parse_auth_params(client.authorization(ch, "REGISTER", "sip:r"))[1]["nc"]
           for _ in range(3)]
    assert ncs == ["00000001", "00000002", "00000003"]
    req = register()
    retry = client.authorize(req, challenge(req, 'Digest realm="r", nonce="m", qop="auth"'))
    refresh = register()
    assert client.sign(refresh)
    assert client.sign(refresh)  # signing again replaces, never piles up
    assert len(refresh.headers.get_all("authorization")) == 1
    first = parse_auth_params(retry.headers.get("authorization") or "")[1]
    later = parse_auth_params(refresh.headers.get("authorization") or "")[1]
    assert (first["nc"], later["nc"]) == ("00000001", "00000003")
    assert first["cnonce"] != later["cnonce"]


def test_client_without_qop_sends_the_rfc2069_form() -> None:
    client = DigestClient("Mufasa", "Circle Of Life")
    ch = Challenge.parse('Digest realm="testrealm@host.com", '
                         'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093"')
    p = parse_auth_params(client.authorization(ch, "GET", "/dir/index.html"))[1]
    assert p["response"] == "670fd8c2df070c60b045671b8b24ff02"
    assert "nc" not in p and "cnonce" not in p and "qop" not in p


def test_client_refuses_to_loop_on_a_repeated_nonce_but_follows_stale() -> None:
    client = DigestClient("alice", "wrong")
    req = register()
    ch = 'Digest realm="example.com", nonce="n1", qop="auth"'
    retry = client.authorize(req, challenge(req, ch))
    with pytest.raises(AuthError, match="refused"):
        client.authorize(retry, challenge(retry, ch))
    stale = client.authorize(retry, challenge(retry, ch + ", stale=true"))
    assert str(stale.cseq) == "3 REGISTER"
    assert len(stale.headers.get_all("authorization")) == 1  # replaced, not piled up


def test_client_answers_proxy_and_www_challenges_in_their_own_headers() -> None:
    client = DigestClient("alice", "pw")
    req = register()
    r1 = client.authorize(req, challenge(req, 'Digest realm="proxy", nonce="p", qop="auth"',
                                         status=407))
    r2 = client.authorize(r1, challenge(r1, 'Digest realm="example.com", nonce="w", qop="auth"'))
    assert parse_auth_params(r2.headers.get("proxy-authorization") or "")[1]["realm"] == "proxy"
    assert parse_auth_params(r2.headers.get("authorization") or "")[1]["realm"] == "example.com"


def test_client_rejects_unusable_challenges() -> None:
    client = DigestClient("alice", "pw")
    req = register()
    with pytest.raises(AuthError):
        client.authorize(req, challenge(req, 'Basic realm="x"'))
    with pytest.raises(AuthError):
        client.authorize(req, challenge(req, 'Digest realm="x", nonce="n", algorithm=SHA-1'))
    with pytest.raises(AuthError):
        client.authorize(req, make_response(req, 403, "Forbidden"))
    with pytest.raises(AuthError):
        parse_auth_params('Digest realm="unterminated')


USERS = {"alice": "s3cret", "bob": "hunter2"}


def server(**kw: object) -> DigestServer:
    return DigestServer("example.com", USERS.get, secret=b"k" * 32, **kw)  # type: ignore[arg-type]


def authorized(srv: DigestServer, now: float, client: DigestClient | None = None,
               req: SipRequest | None = None) -> tuple[SipRequest, DigestClient]:
    client = client or DigestClient("alice", "s3cret")
    req = req or register()
    retry = client.authorize(req, srv.challenge_response(req, now))
    return retry, client


@pytest.mark.parametrize("algorithms", [("SHA-256", "MD5"), ("MD5",), ("SHA-512-256",),
                                        ("SHA-256-sess",)])
def test_server_round_trip_accepts_the_right_password(algorithms: tuple[str, ...]) -> None:
    srv = server(algorithms=algorithms)
    retry, _ = authorized(srv, 100.0)
    result = srv.verify(retry, 101.0)
    assert result.ok and result.user == "alice", result
    alg = parse_auth_params(retry.headers.get("authorization") or "")[1]["algorithm"]
    assert alg == algorithms[0]


def test_server_challenge_lists_sha256_before_md5() -> None:
    values = server().challenge(0.0)
    assert [parse_auth_params(v)[1]["algorithm"] for v in values] == ["SHA-256", "MD5"]
    assert len({parse_auth_params(v)[1]["nonce"] for v in values}) == 1


def test_server_refuses_wrong_password_unknown_user_and_forged_nonce() -> None:
    srv = server()
    req = register()
    bad, _ = authorized(srv, 0.0, DigestClient("alice", "nope"), req)
    assert srv.verify(bad, 1.0).reason == "unknown user or wrong password"
    ghost, _ = authorized(srv, 0.0, DigestClient("mallory", "x"), req)
    assert not srv.verify(ghost, 1.0).ok
    other = DigestServer("example.com", USERS.get, secret=b"z" * 32)
    forged = DigestClient("alice", "s3cret").authorize(req, other.challenge_response(req, 0.0))
    result = srv.verify(forged, 1.0)
    assert not result.ok and result.reason == "nonce not issued by us" and not result.stale
    assert srv.verify(register(), 1.0).reason == "no credentials for this realm"


def test_an_unknown_user_costs_the_same_hash_as_a_wrong_password(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """No timing difference tells a scanner which users exist: the server hashes an unknown
    user's credentials (against a password that matches nothing) like a known user's."""
    import softphone.sip.auth as auth

    hashed: list[str] = []
    real = auth.digest_response

    def counting(**kw: str) -> str:
        hashed.append(kw["username"])
        return real(**kw)  # type: ignore[arg-type]

    monkeypatch.setattr(auth, "digest_response", counting)
    srv = server()
    req = register()
    bad, _ = authorized(srv, 0.0, DigestClient("alice", "nope"), req)
    ghost, _ = authorized(srv, 0.0, DigestClient("mallory", "nope"), req)
    hashed.clear()
    answers = [srv.verify(bad, 1.0), srv.verify(ghost, 1.0)]
    assert hashed == ["alice", "mallory"]
    assert [(r.user, r.reason, r.stale) for r in answers] == \
        [(None, "unknown user or wrong password", False)] * 2


def test_server_answers_stale_on_an_expired_nonce() -> None:
    srv = server(nonce_lifetime=60.0)
    retry, client = authorized(srv, 1000.0)
    assert srv.verify(retry, 1059.0).ok
    again = register()
    client.sign(again)
    result = srv.verify(again, 1061.0)
    assert not result.ok and result.stale and result.reason == "nonce expired"
    # The client follows stale=true without asking for the password again.
    resp = srv.challenge_response(again, 1061.0, stale=True)
    assert "stale=true" in (resp.headers.get("www-authenticate") or "")
    fresh = client.authorize(again, resp)
    assert srv.verify(fresh, 1062.0).ok


def test_server_refuses_a_replayed_nonce_count() -> None:
    srv = server()
    retry, client = authorized(srv, 0.0)
    assert srv.verify(retry, 1.0).ok
    replay = srv.verify(retry, 2.0)
    assert not replay.ok and replay.reason == "nonce count replayed"
    nxt = register()
    client.sign(nxt)
    assert srv.verify(nxt, 3.0).ok  # nc=2 on the same nonce is fine


def test_server_forgets_nonces_within_bounds_and_asks_for_a_fresh_one() -> None:
    srv = server(max_tracked_nonces=2)
    first, _ = authorized(srv, 0.0)
    assert srv.verify(first, 0.1).ok
    for t in (1.0, 2.0):
        r, _ = authorized(srv, t)
        assert srv.verify(r, t + 0.1).ok
    assert len(srv._seen) == 2
    result = srv.verify(first, 3.0)  # its nc history is gone: never accepted blind
    assert not result.ok and result.stale


def test_server_refuses_uri_mismatch_disallowed_algorithm_and_missing_qop() -> None:
    srv = server(algorithms=("SHA-256",))
    req = register()
    retry, _ = authorized(srv, 0.0, req=req)
    moved = SipRequest("REGISTER", "sip:elsewhere.example.com", retry.headers, retry.body)
    assert srv.verify(moved, 1.0).reason == "digest uri differs from the Request-URI"
    md5_client = DigestClient("alice", "s3cret")
    nonce = srv.new_nonce(0.0)
    md5 = md5_client.authorize(req, challenge(
        req, f'Digest realm="example.com", nonce="{nonce}", algorithm=MD5, qop="auth"'))
    assert "not allowed" in srv.verify(md5, 1.0).reason
    noqop = DigestClient("alice", "s3cret").authorize(req, challenge(
        req, f'Digest realm="example.com", nonce="{nonce}", algorithm=SHA-256'))
    assert "qop" in srv.verify(noqop, 1.0).reason


def signed_invite(srv: DigestServer, digest_uri: str, *, sign_uri: str | None = None,
                  realm: str = "example.com") -> SipRequest:
    """An INVITE for bob whose Proxy-Authorization carries ``digest_uri`` (the response is
    computed over ``sign_uri``, by default the same), as stock sipp sends one."""
    h = Headers([("From", "<sip:alice@example.com>;tag=i1"), ("To", "<sip:bob@example.com>"),
                 ("Call-ID", "inv-1"), ("CSeq", "2 INVITE")])
    req = SipRequest("INVITE", "sip:bob@example.com", h)
    nonce = srv.new_nonce(0.0)
    ch = Challenge.parse(f'Digest realm="{realm}", nonce="{nonce}", algorithm=MD5, '
                         f'qop="auth"', proxy=True)
    value = DigestClient("alice", "s3cret").authorization(ch, "INVITE", sign_uri or digest_uri)
    if sign_uri is not None:
        value = value.replace(f'uri="{sign_uri}"', f'uri="{digest_uri}"')
    h.add("Proxy-Authorization", value)
    return req


def test_server_accepts_a_digest_uri_naming_itself_and_nothing_else() -> None:
    """Stock sipp signs ``uri="sip:<server host:port>"``, not the Request-URI: accepted for
    our own domain or address with or without our port, as Kamailio and Asterisk do; any
    other host, port, a user part or another scheme is still refused."""
    own = own_uri_check(("example.com", "192.0.2.1", "[2001:db8::1]"), (5060, 5061))
    srv = server(algorithms=("MD5",), own_uri=own)
    for uri in ("sip:bob@example.com", "sip:example.com:5060", "sip:EXAMPLE.com",
                "sip:192.0.2.1:5061", "sips:192.0.2.1", "sip:[2001:db8::1]:5060"):
        assert srv.verify(signed_invite(srv, uri), 1.0, proxy=True).user == "alice", uri
    for uri in ("sip:elsewhere.example.com", "sip:example.com:5070", "sip:carol@example.com",
                "sip:bob@192.0.2.1", "tel:+33123", "sip:192.0.2.99:5060", "sip:", "x"):
        result = srv.verify(signed_invite(srv, uri), 1.0, proxy=True)
        assert result.reason == "digest uri differs from the Request-URI", (uri, result)
    # the response is checked over the uri sent: one signed for the Request-URI but claiming
    # our own URI fails, and the replay and nonce checks stay as they were
    swapped = signed_invite(srv, "sip:example.com:5060", sign_uri="sip:bob@example.com")
    assert srv.verify(swapped, 1.0, proxy=True).reason == "unknown user or wrong password"
    once = signed_invite(srv, "sip:example.com")
    assert srv.verify(once, 1.0, proxy=True).ok
    assert srv.verify(once, 2.0, proxy=True).reason == "nonce count replayed"
    # without the check (the default) only the Request-URI will do
    strict = server(algorithms=("MD5",))
    assert not strict.verify(signed_invite(strict, "sip:example.com:5060"), 1.0,
                             proxy=True).ok


def test_credentials_for_another_realm_next_to_ours_are_skipped() -> None:
    """A phone behind an outbound proxy sends that proxy's credentials too (RFC 3261
    §22.3): ours are found whichever comes first; another realm alone is no credentials."""
    srv = server(algorithms=("MD5",))
    theirs = ('Digest username="alice", realm="proxy.example", nonce="abc", '
              'uri="sip:bob@example.com", response="00000000000000000000000000000000", '
              'qop=auth, nc=00000001, cnonce="x"')
    for first in (True, False):
        req = signed_invite(srv, "sip:bob@example.com")
        ours = req.headers.get("proxy-authorization") or ""
        req.headers.remove("Proxy-Authorization")
        for value in ((theirs, ours) if first else (ours, theirs)):
            req.headers.add("Proxy-Authorization", value)
        assert srv.verify(req, 1.0, proxy=True).user == "alice", first
    alone = signed_invite(srv, "sip:bob@example.com")
    alone.headers.set("Proxy-Authorization", theirs)
    assert srv.verify(alone, 1.0, proxy=True).reason == "no credentials for this realm"
    # nor does another scheme's token, even one our parser cannot read, stop ours
    bearer = signed_invite(srv, "sip:bob@example.com")
    bearer.headers.insert_first("Proxy-Authorization", "Bearer eyJhbGciOi.x.y")
    assert srv.verify(bearer, 1.0, proxy=True).user == "alice"
    bearer.headers.remove("Proxy-Authorization")
    bearer.headers.add("Proxy-Authorization", "Bearer eyJhbGciOi.x.y")
    assert srv.verify(bearer, 2.0, proxy=True).reason == "malformed credentials"


def test_server_configuration_errors_are_auth_errors() -> None:
    with pytest.raises(AuthError):
        DigestServer("r", USERS.get, algorithms=("SHA-1",))
    with pytest.raises(AuthError):
        DigestServer("r", USERS.get, nonce_lifetime=0)


TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=0x24F, exclude_characters='"\\'),
               min_size=1, max_size=20)


@settings(max_examples=200, deadline=None)
@given(user=TEXT, password=TEXT, alg=st.sampled_from(["MD5", "SHA-256", "SHA-512-256",
                                                      "MD5-sess", "SHA-256-sess"]),
       flip=st.integers(0, 63))
def test_any_credentials_round_trip_and_any_altered_response_fails(
        user: str, password: str, alg: str, flip: int) -> None:
    srv = DigestServer("realm", {user: password}.get, algorithms=(alg,), secret=b"s" * 32)
    req = register()
    retry = DigestClient(user, password).authorize(req, srv.challenge_response(req, 0.0))
    assert srv.verify(retry, 1.0).user == user
    value = retry.headers.get("authorization") or ""
    p = parse_auth_params(value)[1]
    pos = flip % len(p["response"])
    bad_char = "0" if p["response"][pos] != "0" else "1"
    tampered = p["response"][:pos] + bad_char + p["response"][pos + 1:]
    retry.headers.set("Authorization", value.replace(p["response"], tampered))
    retry.headers.set("Authorization", (retry.headers.get("authorization") or "").replace(
        'nc=00000001', 'nc=00000002'))
    assert not srv.verify(retry, 2.0).ok


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(exclude_characters="\r\n"), max_size=200))
def test_credentials_parsing_raises_only_auth_error(text: str) -> None:
    srv = server()
    req = register()
    req.headers.add("Authorization", "Digest " + text)
    try:
        parse_auth_params("Digest " + text)
    except AuthError:
        pass
    assert not srv.verify(req, 0.0).ok


def test_the_offer_can_be_narrowed_per_peer_but_not_widened() -> None:
    srv = server()
    (only,) = srv.challenge(0.0, algorithms=("MD5",))
    assert parse_auth_params(only)[1]["algorithm"] == "MD5"
    with pytest.raises(AuthError):
        srv.challenge(0.0, algorithms=("SHA-512-256",))
    with pytest.raises(AuthError):
        srv.challenge(0.0, algorithms=())
