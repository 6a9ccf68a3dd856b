"""SIP digest authentication (RFC 3261 §22, RFC 2617, RFC 7616 algorithms as RFC 8760 puts
them into SIP): a client that answers 401/407 challenges and a server that issues and checks
them. Pure functions of their inputs and an explicit clock.

Our own because the pieces a SIP edge needs are not in a library: SIP request digests
(method and Request-URI as digest-uri), the SIP retry rules (new CSeq, one credential per
realm, both Authorization and Proxy-Authorization), stateless nonces that expire, and
nonce-count replay refusal with bounded memory.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from softphone.sip.errors import SipError, SipParseError
from softphone.sip.message import Headers, SipRequest, SipResponse, make_response
from softphone.sip.uri import SipUri

#: Hash per algorithm token (RFC 7616 §6.1, RFC 8760 §2.1), strongest first.
_HASHES: dict[str, str] = {"SHA-512-256": "sha512_256", "SHA-256": "sha256", "MD5": "md5"}
_STRENGTH = {name: rank for rank, name in enumerate(reversed(list(_HASHES)))}
#: :meth:`DigestServer.verify`'s reason when the request carries no credentials for our realm
#: (a first request, to be challenged: no authentication failure).
NO_CREDENTIALS = "no credentials for this realm"


class AuthError(SipError):
    """No usable challenge, or the credentials were refused (a repeated non-stale challenge)."""


def _hash(algorithm: str, text: str) -> str:
    base = algorithm.upper().removesuffix("-SESS")
    name = _HASHES.get(base)
    if name is None:
        raise AuthError(f"unsupported digest algorithm {algorithm!r}")
    return hashlib.new(name, text.encode("utf-8")).hexdigest()


def digest_response(*, algorithm: str, username: str, realm: str, password: str, method: str,
                    uri: str, nonce: str, qop: str | None = None, nc: str | None = None,
                    cnonce: str | None = None, body: bytes = b"") -> str:
    """The ``response`` value of RFC 2617 §3.2.2.1 / RFC 7616 §3.4.1.

    ``qop`` None is the RFC 2069 form; "auth-int" hashes the body into A2; a "-sess" algorithm
    folds nonce and cnonce into A1.
    """
    ha1 = _hash(algorithm, f"{username}:{realm}:{password}")
    if algorithm.upper().endswith("-SESS"):
        ha1 = _hash(algorithm, f"{ha1}:{nonce}:{cnonce or ''}")
    if qop == "auth-int":
        body_hash = hashlib.new(_HASHES[algorithm.upper().removesuffix("-SESS")],
                                body).hexdigest()
        ha2 = _hash(algorithm, f"{method}:{uri}:{body_hash}")
    else:
        ha2 = _hash(algorithm, f"{method}:{uri}")
    if qop:
        return _hash(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _hash(algorithm, f"{ha1}:{nonce}:{ha2}")


def parse_auth_params(value: str) -> tuple[str, dict[str, str]]:
    """Split ``Digest k=v, k="v"`` into the scheme and lower-cased parameter names.

    Raises :class:`AuthError` on an unterminated quoted string or a parameter without "=".
    """
    value = value.strip()
    scheme, _, rest = value.partition(" ")
    params: dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n:
        while i < n and rest[i] in " \t,\r\n":
            i += 1
        if i >= n:
            break
        eq = rest.find("=", i)
        if eq < 0:
            raise AuthError("auth parameter without '='")
        name = rest[i:eq].strip().lower()
        i = eq + 1
        while i < n and rest[i] in " \t":
            i += 1
        if i < n and rest[i] == '"':
            i += 1
            out = []
            while i < n and rest[i] != '"':
                if rest[i] == "\\" and i + 1 < n:
                    i += 1
                out.append(rest[i])
                i += 1
            if i >= n:
                raise AuthError("unterminated quoted string in auth parameters")
            i += 1
            params[name] = "".join(out)
        else:
            end = rest.find(",", i)
            end = n if end < 0 else end
            params[name] = rest[i:end].strip()
            i = end
    return scheme, params


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class Challenge:
    """One parsed WWW-Authenticate / Proxy-Authenticate Digest challenge."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False
    proxy: bool = False

    @classmethod
    def parse(cls, value: str, *, proxy: bool = False) -> Challenge:
        scheme, p = parse_auth_params(value)
        if scheme.lower() != "digest":
            raise AuthError(f"not a Digest challenge: {scheme[:20]!r}")
        if "realm" not in p or "nonce" not in p:
            raise AuthError("Digest challenge without realm or nonce")
        qop = tuple(q.strip().lower() for q in p.get("qop", "").split(",") if q.strip())
        return cls(realm=p["realm"], nonce=p["nonce"], algorithm=p.get("algorithm", "MD5"),
                   qop=qop, opaque=p.get("opaque"),
                   stale=p.get("stale", "").lower() == "true", proxy=proxy)

    @property
    def supported(self) -> bool:
        return self.algorithm.upper().removesuffix("-SESS") in _HASHES and (
            not self.qop or "auth" in self.qop or "auth-int" in self.qop)

    @property
    def strength(self) -> tuple[int, int]:
        alg = self.algorithm.upper()
        return (_STRENGTH.get(alg.removesuffix("-SESS"), -1), 0 if alg.endswith("-SESS") else 1)


class DigestClient:
    """Answers digest challenges for one account.

    ``authorize(request, response)`` returns the request to resend: a copy without Via (the
    core adds a fresh one), CSeq incremented, one Authorization or Proxy-Authorization per
    challenged realm, each answering that realm's strongest supported challenge.
    """

    def __init__(self, username: str, password: str, *,
                 cnonce_factory: Callable[[], str] | None = None) -> None:
        self.username = username
        self.password = password
        self._cnonce = cnonce_factory or (lambda: secrets.token_hex(8))
        self._nc: dict[str, int] = {}
        self._answered: set[tuple[str, str]] = set()
        #: The last challenge per (realm, proxy): reused by ``sign`` for later requests.
        self.challenges: dict[tuple[str, bool], Challenge] = {}

    def authorization(self, challenge: Challenge, method: str, uri: str,
                      body: bytes = b"") -> str:
        """The credentials header value answering ``challenge`` (nc incremented)."""
        if not challenge.supported:
            raise AuthError(f"unsupported challenge (algorithm {challenge.algorithm!r}, "
                            f"qop {','.join(challenge.qop)!r})")
        parts = [f"username={_quote(self.username)}", f"realm={_quote(challenge.realm)}",
                 f"nonce={_quote(challenge.nonce)}", f"uri={_quote(uri)}"]
        qop: str | None = None
        nc = cnonce = None
        if challenge.qop:
            qop = "auth" if "auth" in challenge.qop else "auth-int"
            count = self._nc.get(challenge.nonce, 0) + 1
            self._nc[challenge.nonce] = count
            nc = f"{count:08x}"
            cnonce = self._cnonce()
        elif challenge.algorithm.upper().endswith("-SESS"):
            cnonce = self._cnonce()
        response = digest_response(
            algorithm=challenge.algorithm, username=self.username, realm=challenge.realm,
            password=self.password, method=method, uri=uri, nonce=challenge.nonce, qop=qop,
            nc=nc, cnonce=cnonce, body=body)
        parts.append(f"response={_quote(response)}")
        parts.append(f"algorithm={challenge.algorithm}")
        if cnonce is not None:
            parts.append(f"cnonce={_quote(cnonce)}")
        if challenge.opaque is not None:
            parts.append(f"opaque={_quote(challenge.opaque)}")
        if qop is not None:
            parts.append(f"qop={qop}")
            parts.append(f"nc={nc}")
        return "Digest " + ", ".join(parts)

    @staticmethod
    def challenges_in(response: SipResponse) -> list[Challenge]:
        """The Digest challenges of a 401 (WWW-Authenticate) or 407 (Proxy-Authenticate)."""
        if response.status == 401:
            name, proxy = "www-authenticate", False
        elif response.status == 407:
            name, proxy = "proxy-authenticate", True
        else:
            raise AuthError(f"a {response.status} is not a challenge")
        out: list[Challenge] = []
        for value in response.headers.get_all(name):
            try:
                out.append(Challenge.parse(value, proxy=proxy))
            except AuthError:
                continue  # another scheme (Basic, Bearer...) or a broken one
        return out

    def authorize(self, request: SipRequest, response: SipResponse) -> SipRequest:
        """The retry of ``request`` answering the 401/407 ``response`` (§22.2, §22.3).

        Raises :class:`AuthError` when nothing usable was offered, or when the server
        challenges again with a nonce we already answered and no ``stale=true`` (the
        password is wrong: retrying would loop).
        """
        best: dict[str, Challenge] = {}
        for ch in self.challenges_in(response):
            if not ch.supported:
                continue
            cur = best.get(ch.realm)
            if cur is None or ch.strength > cur.strength:
                best[ch.realm] = ch
        if not best:
            raise AuthError(f"no supported Digest challenge in the {response.status}")
        for ch in best.values():
            if (ch.realm, ch.nonce) in self._answered and not ch.stale:
                raise AuthError(f"credentials for realm {ch.realm!r} refused")
        header = "Proxy-Authorization" if response.status == 407 else "Authorization"
        headers = Headers()
        cseq = request.cseq
        for name, value in request.headers:
            low = name.lower()
            if low in ("via", "v"):
                continue
            if low == "cseq":
                value = f"{cseq.number + 1} {cseq.method}"
            if low == header.lower() and _realm_of(value) in best:
                continue  # replaced below
            headers.add(name, value)
        for ch in best.values():
            self._answered.add((ch.realm, ch.nonce))
            self.challenges[(ch.realm, ch.proxy)] = ch
            headers.add(header, self.authorization(ch, request.method, request.uri,
                                                   request.body))
        return SipRequest(request.method, request.uri, headers, request.body)

    def sign(self, request: SipRequest) -> bool:
        """Add credentials from the challenges already seen (nc incremented), e.g. to a
        REGISTER refresh, so that it need not be challenged again. False if none known."""
        for (realm, proxy), ch in self.challenges.items():
            header = "Proxy-Authorization" if proxy else "Authorization"
            kept = [v for v in request.headers.get_all(header) if _realm_of(v) != realm]
            request.headers.remove(header)
            for value in kept:
                request.headers.add(header, value)
            request.headers.add(header, self.authorization(ch, request.method, request.uri,
                                                           request.body))
        return bool(self.challenges)


def own_uri_check(hosts: Iterable[str], ports: Iterable[int]) -> Callable[[str], bool]:
    """A digest-uri test for :class:`DigestServer`: true for a SIP(S) URI without a user part
    whose host is one of ``hosts`` (our domain or address, case-insensitive) and whose port,
    if given, is one of ``ports``.

    Why: stock sipp (no ``-auth_uri``) signs every request with ``uri="sip:<server
    host:port>"``, and Kamailio, Asterisk and FreeSWITCH accept a digest-uri naming the server
    as well as the Request-URI. The response is still computed over the uri the client sent,
    and nonce, nc, realm and algorithm are checked as strictly as ever.
    """
    names = {h.strip("[]").lower() for h in hosts if h}
    numbers = set(ports)

    def check(uri: str) -> bool:
        try:
            parsed = SipUri.parse(uri)
        except SipParseError:
            return False
        if parsed.scheme not in ("sip", "sips") or parsed.user \
                or parsed.host_no_brackets.lower() not in names:
            return False
        return parsed.port is None or parsed.port in numbers

    return check


def _realm_of(value: str) -> str | None:
    try:
        return parse_auth_params(value)[1].get("realm")
    except AuthError:
        return None


@dataclass(frozen=True, slots=True)
class AuthResult:
    """The outcome of :meth:`DigestServer.verify`: ``user`` when accepted, else ``reason``.

    ``stale`` asks for a new challenge with stale=true (the credentials were right but the
    nonce has expired or is no longer tracked): the client retries without asking its user.
    """

    user: str | None
    reason: str = ""
    stale: bool = False

    @property
    def ok(self) -> bool:
        return self.user is not None


class DigestServer:
    """Challenges and verifies digest credentials for one realm.

    Nonces are stateless: a timestamp, 8 random bytes and an HMAC-SHA-256 of both under
    ``secret``, so any edge sharing the secret can check them and an old one is recognised
    as stale. Replays are refused by remembering the highest nc seen per nonce (at most
    ``max_tracked_nonces``; a nonce older than the newest forgotten one is answered as stale,
    never accepted without its history).
    """

    def __init__(self, realm: str, credentials: Callable[[str], str | None], *,
                 nonce_lifetime: float = 300.0,
                 algorithms: tuple[str, ...] = ("SHA-256", "MD5"),
                 secret: bytes | None = None, max_tracked_nonces: int = 10000,
                 own_uri: Callable[[str], bool] | None = None) -> None:
        for alg in algorithms:
            if alg.upper().removesuffix("-SESS") not in _HASHES:
                raise AuthError(f"unsupported digest algorithm {alg!r}")
        if not algorithms:
            raise AuthError("at least one algorithm is needed")
        if nonce_lifetime <= 0 or max_tracked_nonces <= 0:
            raise AuthError("nonce_lifetime and max_tracked_nonces must be positive")
        self.realm = realm
        self._credentials = credentials
        self.nonce_lifetime = nonce_lifetime
        self.algorithms = tuple(algorithms)
        self._secret = secret if secret is not None else secrets.token_bytes(32)
        self._decoy = secrets.token_hex(16)  # hashed for unknown users, matches nothing
        self._max = max_tracked_nonces
        self._seen: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._forgotten_before = float("-inf")
        #: Whether a digest-uri other than the Request-URI names this server itself (see
        #: :func:`own_uri_check`); None accepts the Request-URI alone.
        self._own_uri = own_uri

    # ------------------------------------------------------------------ nonces
    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, self.realm.encode() + payload, hashlib.sha256).digest()[:16]

    def new_nonce(self, now: float) -> str:
        payload = struct.pack(">d", now) + secrets.token_bytes(8)
        return base64.urlsafe_b64encode(payload + self._mac(payload)).decode().rstrip("=")

    def _nonce_time(self, nonce: str) -> float | None:
        """The nonce's issue time if we signed it, else None."""
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (ValueError, TypeError):
            return None
        if len(raw) != 32:
            return None
        payload, mac = raw[:16], raw[16:]
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        ts: float = struct.unpack(">d", payload[:8])[0]
        return ts

    # ------------------------------------------------------------------ challenge
    def challenge(self, now: float, *, stale: bool = False,
                  algorithms: tuple[str, ...] | None = None) -> list[str]:
        """Header values, one per algorithm in preference order (RFC 8760 §2.4).

        ``algorithms`` narrows the offer for one peer (a subset of ours): some clients give
        up on a 401 that offers anything they cannot compute instead of picking the
        challenge they can (baresip 1.0 / libre answers ENOSYS to an MD5 + SHA-256 offer),
        so a registrar may offer them MD5 alone, e.g. by User-Agent.
        """
        offered = self.algorithms if algorithms is None else algorithms
        unknown = [a for a in offered if a.upper() not in (x.upper() for x in self.algorithms)]
        if unknown or not offered:
            raise AuthError(f"cannot offer {unknown or 'nothing'}: allowed {self.algorithms}")
        nonce = self.new_nonce(now)
        out = []
        for alg in offered:
            value = (f'Digest realm={_quote(self.realm)}, nonce={_quote(nonce)}, '
                     f'algorithm={alg}, qop="auth"')
            if stale:
                value += ", stale=true"
            out.append(value)
        return out

    def challenge_response(self, request: SipRequest, now: float, *, proxy: bool = False,
                           stale: bool = False, to_tag: str | None = None,
                           algorithms: tuple[str, ...] | None = None) -> SipResponse:
        """A 401 (or 407 when ``proxy``) carrying :meth:`challenge`."""
        status, reason, name = ((407, "Proxy Authentication Required", "Proxy-Authenticate")
                                if proxy else (401, "Unauthorized", "WWW-Authenticate"))
        values = self.challenge(now, stale=stale, algorithms=algorithms)
        return make_response(request, status, reason, to_tag=to_tag,
                             extra=[(name, v) for v in values])

    # ------------------------------------------------------------------ verify
    def verify(self, request: SipRequest, now: float, *, proxy: bool = False) -> AuthResult:
        """Check the request's credentials for our realm."""
        name = "proxy-authorization" if proxy else "authorization"
        p: dict[str, str] | None = None
        malformed = False
        for value in request.headers.get_all(name):
            # another realm's or scheme's credentials (an outbound proxy's) are skipped
            try:
                scheme, params = parse_auth_params(value)
            except AuthError:
                malformed = True
                continue
            if scheme.lower() == "digest" and params.get("realm") == self.realm:
                p = params
                break
        if p is None:
            return AuthResult(None, "malformed credentials" if malformed else NO_CREDENTIALS)
        for key in ("username", "nonce", "uri", "response"):
            if key not in p:
                return AuthResult(None, f"credentials lack {key}")
        algorithm = p.get("algorithm", "MD5")
        if algorithm.upper() not in (a.upper() for a in self.algorithms):
            return AuthResult(None, f"algorithm {algorithm!r} not allowed")
        issued = self._nonce_time(p["nonce"])
        if issued is None or issued > now + 1.0:
            return AuthResult(None, "nonce not issued by us")
        if p["uri"] != request.uri and (self._own_uri is None or not self._own_uri(p["uri"])):
            return AuthResult(None, "digest uri differs from the Request-URI")
        qop = p.get("qop")
        nc_text = p.get("nc", "")
        if qop != "auth" or not p.get("cnonce") or len(nc_text) != 8:
            return AuthResult(None, "qop=auth with nc and cnonce required")
        try:
            nc = int(nc_text, 16)
        except ValueError:
            return AuthResult(None, "bad nonce count")
        if nc == 0:
            return AuthResult(None, "bad nonce count")
        password = self._credentials(p["username"])
        # an unknown user costs the same hash as a known one: no timing tells them apart
        expected = digest_response(
            algorithm=algorithm, username=p["username"], realm=self.realm,
            password=password if password is not None else self._decoy,
            method=request.method, uri=p["uri"], nonce=p["nonce"], qop=qop, nc=nc_text,
            cnonce=p["cnonce"], body=request.body)
        if not hmac.compare_digest(expected.encode(), p["response"].lower().encode()) \
                or password is None:
            return AuthResult(None, "unknown user or wrong password")
        # The credentials are right: now freshness and replay.
        if now - issued > self.nonce_lifetime:
            return AuthResult(None, "nonce expired", stale=True)
        seen = self._seen.get(p["nonce"])
        if seen is None:
            if issued <= self._forgotten_before:
                return AuthResult(None, "nonce no longer tracked", stale=True)
        elif nc <= seen[1]:
            return AuthResult(None, "nonce count replayed")
        self._seen[p["nonce"]] = (issued, nc)
        self._seen.move_to_end(p["nonce"])
        while len(self._seen) > self._max:
            _, (old_issued, _) = self._seen.popitem(last=False)
            self._forgotten_before = max(self._forgotten_before, old_issued)
        return AuthResult(p["username"])
