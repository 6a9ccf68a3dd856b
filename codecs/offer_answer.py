"""SDP offer/answer (RFC 3264) for one audio stream, sans-I/O: descriptions in, descriptions out.

Our offers list the codecs in our order (OPUS/48000/2 with ``useinbandfec=1``, PCMA, PCMU by
default), then telephone-event/8000 (RFC 4733). When we answer we pick the first codec of OUR
order that the offer contains, keep the offerer's payload type numbers (RFC 3264 §6.1), answer
exactly one codec (no mid-call codec switching to handle) plus telephone-event when offered, and
reject every other m-line with port 0, keeping the count and order of m-lines. Nothing in common
raises :class:`NoCommonCodec`, which carries the 488 status and a Warning header value.

Hold and resume are new offers with the direction changed (RFC 3264 §8.4); the ``o=`` version
goes up by one on every new description of the session (RFC 3264 §8). A ``c=`` of ``0.0.0.0``
(RFC 2543 hold, still sent by old phones) is read as "do not send to me".

Only RTP/AVP and RTP/AVPF streams are accepted: SRTP and DTLS (browsers) terminate in the WebRTC
gateway, which speaks plain RTP to this core.
"""

from __future__ import annotations

import copy
import ipaddress
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from softphone.codecs.registry import (
    DEFAULT_ORDER,
    STATIC_PAYLOAD_TYPES,
    TELEPHONE_EVENT,
    Codec,
    codec_by_name,
)
from softphone.codecs.sdp import (
    DIRECTIONS,
    Attribute,
    Connection,
    MediaDescription,
    Origin,
    SdpError,
    SessionDescription,
)

__all__ = [
    "ACCEPTED_PROTOS",
    "Negotiated",
    "NoCommonCodec",
    "OfferAnswerError",
    "answer_offer",
    "build_offer",
    "hold_offer",
    "next_version",
    "process_answer",
    "resume_offer",
]

ACCEPTED_PROTOS = ("RTP/AVP", "RTP/AVPF")
DEFAULT_PTIME = 20

# direction name <-> (we/they send, we/they receive) from the describing party's point of view
_FLAGS: dict[str, tuple[bool, bool]] = {
    "sendrecv": (True, True),
    "sendonly": (True, False),
    "recvonly": (False, True),
    "inactive": (False, False),
}
_NAMES = {flags: name for name, flags in _FLAGS.items()}

# RFC 3261 §20.43 warning codes used for a 488.
WARN_TRANSPORT = 302
WARN_MEDIA_TYPE = 304
WARN_MEDIA_FORMAT = 305
_WARN_TEXT = {
    WARN_TRANSPORT: "Incompatible transport protocol",
    WARN_MEDIA_TYPE: "Media type not available",
    WARN_MEDIA_FORMAT: "Incompatible media format",
}


class OfferAnswerError(ValueError):
    """An offer or answer that breaks RFC 3264, or arguments that cannot make one."""


class NoCommonCodec(OfferAnswerError):
    """Nothing in the offer (or answer) we can use: answer the INVITE with 488 and this Warning.

    ``warning`` is the Warning header value, e.g. ``305 192.0.2.1 "Incompatible media format"``;
    ``warn_code`` is its code (302, 304 or 305).
    """

    status = 488

    def __init__(self, reason: str, *, warn_code: int, agent: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.warn_code = warn_code
        self.warning = f'{warn_code} {agent} "{_WARN_TEXT[warn_code]}"'


@dataclass(frozen=True, slots=True)
class Negotiated:
    """The outcome of one offer/answer exchange for our audio stream.

    ``direction`` is the local view (``sendonly``: we send, we do not receive).
    ``codec`` carries the negotiated payload type. ``local_sdp`` is what we sent (the answer
    when we answered, the offer when we offered), ``remote_sdp`` what the peer sent.
    """

    codec: Codec
    telephone_event_pt: int | None
    telephone_event_rate: int | None
    remote_address: str
    remote_port: int
    remote_rtcp_address: str
    remote_rtcp_port: int
    direction: str
    ptime: int
    remote_fmtp: str | None
    media_index: int
    local_sdp: SessionDescription
    remote_sdp: SessionDescription

    @property
    def sends(self) -> bool:
        return _FLAGS[self.direction][0]

    @property
    def receives(self) -> bool:
        return _FLAGS[self.direction][1]

    @property
    def on_hold(self) -> bool:
        """Either side has stopped the flow in at least one direction."""
        return self.direction != "sendrecv"

    @property
    def sdp(self) -> bytes:
        """Our description as it goes in the SIP body."""
        return self.local_sdp.to_bytes()


# -- helpers ----------------------------------------------------------------------------------


def _check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise OfferAnswerError(f"unknown direction {direction!r} (one of {', '.join(DIRECTIONS)})")


def _check_port(port: int) -> None:
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise OfferAnswerError(f"RTP port {port!r} out of range 1..65535")


def _warn_agent(address: str) -> str:
    try:
        return f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
    except ValueError:
        return address


def _new_session_id() -> int:
    # RFC 8866 §5.2 suggests an NTP timestamp; any unique number will do, and 62 bits fits
    # every parser (some read it as a signed 64-bit integer).
    return secrets.randbits(62)


def _origin(
    address: str, session_id: int | None, session_version: int | None, username: str
) -> Origin:
    conn = Connection.for_address(address)
    sid = _new_session_id() if session_id is None else session_id
    version = sid if session_version is None else session_version
    if sid < 0 or version < 0:
        raise OfferAnswerError("o= session id and version are non-negative")
    return Origin(username, sid, version, conn.nettype, conn.addrtype, address)


def _codec_attributes(codec: Codec) -> list[Attribute]:
    attrs = [Attribute("rtpmap", f"{codec.payload_type} {codec.rtpmap}")]
    if codec.fmtp:
        attrs.append(Attribute("fmtp", f"{codec.payload_type} {codec.fmtp}"))
    return attrs


def _offered_formats(media: MediaDescription) -> list[tuple[int, str, int, int]]:
    """``(pt, encoding, rate, channels)`` per offered PT, rtpmap first, else RFC 3551 static."""
    # A malformed rtpmap only makes its payload type unknown: the rest of the offer may still
    # have a codec in common, which serves the caller better than a 400.
    maps = media.rtpmaps(skip_malformed=True)
    out: list[tuple[int, str, int, int]] = []
    for pt in media.payload_types:
        if pt in maps:
            m = maps[pt]
            out.append((pt, m.encoding, m.clock_rate, m.channels))
        elif pt in STATIC_PAYLOAD_TYPES:
            name, rate, channels = STATIC_PAYLOAD_TYPES[pt]
            out.append((pt, name, rate, channels))
        # a dynamic PT without rtpmap describes nothing we could use: skipped
    return out


def _sending_ptime(codec: Codec, media: MediaDescription) -> int:
    """The packet time to send with: the peer's a=ptime (RFC 8866 §6.4), kept within maxptime,
    and for Opus one of its frame durations; 20 ms when absent or unreadable."""
    try:
        ptime = media.ptime or DEFAULT_PTIME
        maxptime = media.maxptime
    except SdpError:
        return DEFAULT_PTIME
    if maxptime is not None:
        ptime = min(ptime, maxptime)
    if codec.name.lower() == "opus":
        return ptime if ptime in (10, 20, 40, 60) else DEFAULT_PTIME
    return ptime if 10 <= ptime <= 120 and ptime % 10 == 0 else DEFAULT_PTIME


def _pick_codec(
    formats: Sequence[tuple[int, str, int, int]], order: Sequence[Codec]
) -> Codec | None:
    for codec in order:
        for pt, encoding, rate, channels in formats:
            if codec.matches(encoding, rate, channels):
                return codec.with_payload_type(pt)
    return None


def _pick_telephone_event(
    formats: Sequence[tuple[int, str, int, int]], rate: int
) -> tuple[int, int] | None:
    """The telephone-event PT at the codec's clock rate (RFC 4733 §2.1); else one at 8000.

    The 8000 fallback is deliberate: baresip and many phones offer Opus with only
    telephone-event/8000, and refusing DTMF on those calls helps nobody.
    """
    events = [(pt, r) for pt, enc, r, _ in formats if enc.lower() == "telephone-event"]
    for pt, r in events:
        if r == rate:
            return pt, r
    for pt, r in events:
        if r == 8000:
            return pt, r
    return None


def _remote_endpoint(sd: SessionDescription, media: MediaDescription) -> tuple[str, int, str, int]:
    conn = sd.connection_for(media)
    if conn is None:
        raise OfferAnswerError(f"m={media.media} {media.port}: no connection address")
    address = conn.host
    if media.has_attribute("rtcp-mux"):
        return address, media.port, address, media.port
    rtcp = media.rtcp
    if rtcp is None:
        return address, media.port, address, media.port + 1  # RFC 3550 §11: next port up
    rtcp_address = rtcp.connection.host if rtcp.connection else address
    return address, media.port, rtcp_address, rtcp.port


def _flags(sd: SessionDescription, media: MediaDescription) -> tuple[bool, bool]:
    send, recv = _FLAGS[sd.effective_direction(media)]
    conn = sd.connection_for(media)
    if conn is not None and conn.is_hold_address:
        recv = False  # RFC 2543 hold: the describing side will not receive
    return send, recv


def _rejected(media: MediaDescription) -> MediaDescription:
    # RFC 3264 §6: a refused stream keeps its m-line with port 0 and at least one format.
    return MediaDescription(media.media, 0, media.proto, list(media.formats) or ["0"])


# -- offerer side -----------------------------------------------------------------------------


def _negotiated(codec: Codec, event: tuple[int, int] | None, remote: SessionDescription,
                media: MediaDescription, index: int, direction: str, *,
                local: SessionDescription) -> Negotiated:
    """The outcome for our stream, seen from our side, whichever side offered."""
    address, port, rtcp_address, rtcp_port = _remote_endpoint(remote, media)
    return Negotiated(
        codec=codec,
        telephone_event_pt=event[0] if event else None,
        telephone_event_rate=event[1] if event else None,
        remote_address=address,
        remote_port=port,
        remote_rtcp_address=rtcp_address,
        remote_rtcp_port=rtcp_port,
        direction=direction,
        ptime=_sending_ptime(codec, media),
        remote_fmtp=media.fmtp(codec.payload_type),
        media_index=index,
        local_sdp=local,
        remote_sdp=remote,
    )


def build_offer(
    *,
    address: str,
    port: int,
    order: Sequence[Codec] = DEFAULT_ORDER,
    direction: str = "sendrecv",
    session_id: int | None = None,
    session_version: int | None = None,
    dtmf: bool = True,
    ptime: int = DEFAULT_PTIME,
    username: str = "-",
    session_name: str = "-",
) -> SessionDescription:
    """An initial offer with one audio stream: our codecs in ``order``, then telephone-event.

    ``session_id`` defaults to a random number and ``session_version`` to the session id.
    """
    _check_port(port)
    _check_direction(direction)
    if not order:
        raise OfferAnswerError("codec order is empty")
    if not 1 <= ptime <= 200:
        raise OfferAnswerError(f"ptime {ptime} ms out of range 1..200")
    codecs = list(order) + ([TELEPHONE_EVENT] if dtmf else [])
    used: set[int] = set()
    assigned: list[Codec] = []
    for codec in codecs:
        pt = codec.payload_type
        if pt in used:
            if codec.is_static:
                raise OfferAnswerError(f"codec {codec.name} listed twice (payload type {pt})")
            pt = next((p for p in range(96, 128) if p not in used), -1)
            if pt < 0:
                raise OfferAnswerError("no free dynamic payload type left in 96..127")
        used.add(pt)
        assigned.append(codec.with_payload_type(pt))
    media = MediaDescription("audio", port, "RTP/AVP", [str(c.payload_type) for c in assigned])
    for codec in assigned:
        media.attributes.extend(_codec_attributes(codec))
    media.attributes.append(Attribute("ptime", str(ptime)))
    media.attributes.append(Attribute(direction))
    return SessionDescription(
        origin=_origin(address, session_id, session_version, username),
        session_name=session_name,
        connection=Connection.for_address(address),
        media=[media],
    )


def process_answer(offer: SessionDescription, answer: SessionDescription) -> Negotiated:
    """Check ``answer`` against the ``offer`` we sent and say what was agreed.

    Raises :class:`OfferAnswerError` when the answer breaks RFC 3264 §6 (other m-line count or
    media types, a codec we did not offer) and :class:`NoCommonCodec` when every stream was
    refused.
    """
    if len(answer.media) != len(offer.media):
        raise OfferAnswerError(
            f"answer has {len(answer.media)} m-lines, the offer had {len(offer.media)}"
        )
    for index, (o, a) in enumerate(zip(offer.media, answer.media, strict=True)):
        if o.media != a.media:
            raise OfferAnswerError(f"m-line {index}: answer has m={a.media}, offer had m={o.media}")
    for index, (o, a) in enumerate(zip(offer.media, answer.media, strict=True)):
        if o.media != "audio" or o.port == 0 or a.port == 0:
            continue
        if a.proto != o.proto:
            raise OfferAnswerError(f"m-line {index}: answer proto {a.proto}, offer had {o.proto}")
        answered = _offered_formats(a)
        # RFC 3264 §6.1: the answerer SHOULD reuse our numbers; a codec we offered that comes
        # back under another number is still the same codec, so match by rtpmap, not number.
        offered_codecs = _ours(o)
        codec: Codec | None = None
        for pt, enc, rate, ch in answered:
            if enc.lower() == "telephone-event":
                continue
            match = next((c for c in offered_codecs if c.matches(enc, rate, ch)), None)
            if match is None:
                raise OfferAnswerError(
                    f"m-line {index}: answer names {enc}/{rate} (PT {pt}), which we did not offer"
                )
            codec = match.with_payload_type(pt)
            break
        if codec is None:
            raise OfferAnswerError(f"m-line {index}: answer accepts the stream but names no codec")
        event = _pick_telephone_event(answered, codec.clock_rate)
        our_send, our_recv = _flags(offer, o)
        their_send, their_recv = _flags(answer, a)
        direction = _NAMES[(our_send and their_recv, our_recv and their_send)]
        return _negotiated(codec, event, answer, a, index, direction, local=offer)
    agent = _warn_agent(answer.origin.address)
    raise NoCommonCodec(
        "the answer refused every audio stream", warn_code=WARN_MEDIA_FORMAT, agent=agent
    )


def _ours(media: MediaDescription) -> list[Codec]:
    """The codecs our own offer described, with the PT numbers it used."""
    out: list[Codec] = []
    for pt, enc, rate, ch in _offered_formats(media):
        try:
            codec = codec_by_name(enc)
        except ValueError:
            continue
        if codec.matches(enc, rate, ch):
            out.append(codec.with_payload_type(pt))
    return out


# -- answerer side ----------------------------------------------------------------------------


def answer_offer(
    offer: SessionDescription,
    *,
    address: str,
    port: int,
    order: Sequence[Codec] = DEFAULT_ORDER,
    direction: str | None = None,
    previous: SessionDescription | None = None,
    session_id: int | None = None,
    session_version: int | None = None,
    dtmf: bool = True,
    ptime: int = DEFAULT_PTIME,
    username: str = "-",
) -> Negotiated:
    """Answer ``offer`` with the first codec of ``order`` it contains.

    ``direction`` is what we want (None: sendrecv); the answer is that intersected with what the
    offer allows (RFC 3264 §6.1). ``previous`` is our last description in this session (for a
    re-INVITE): its o= id is kept and the version bumped by one (RFC 3264 §8).
    Raises :class:`NoCommonCodec` (488 + Warning) when nothing can be accepted.
    """
    _check_port(port)
    wish = direction or "sendrecv"
    _check_direction(wish)
    if previous is not None:
        session_id = previous.origin.session_id
        session_version = previous.origin.session_version + 1
    agent = _warn_agent(address)
    answer = SessionDescription(
        origin=_origin(address, session_id, session_version, username),
        connection=Connection.for_address(address),
    )
    chosen: tuple[int, Codec, tuple[int, int] | None, MediaDescription] | None = None
    saw_audio = saw_proto = False
    for index, media in enumerate(offer.media):
        usable = media.media == "audio" and media.port != 0
        saw_audio = saw_audio or usable
        if chosen is None and usable and media.proto in ACCEPTED_PROTOS:
            saw_proto = True
            formats = _offered_formats(media)
            codec = _pick_codec(formats, order)
            if codec is not None:
                event = _pick_telephone_event(formats, codec.clock_rate) if dtmf else None
                chosen = (index, codec, event, media)
                answer.media.append(_answer_media(offer, media, codec, event, port, wish, ptime))
                continue
        answer.media.append(_rejected(media))
    if chosen is None:
        if not saw_audio:
            raise NoCommonCodec("the offer has no active audio stream", warn_code=304, agent=agent)
        if not saw_proto:
            protos = sorted({m.proto for m in offer.media if m.media == "audio" and m.port})
            raise NoCommonCodec(
                f"audio offered only over {', '.join(protos)}; we take {', '.join(ACCEPTED_PROTOS)}",
                warn_code=WARN_TRANSPORT,
                agent=agent,
            )
        names = ", ".join(c.name for c in order)
        raise NoCommonCodec(
            f"no codec in common (we take {names})", warn_code=WARN_MEDIA_FORMAT, agent=agent
        )
    index, codec, event, media = chosen
    local_direction = answer.media[index].direction or "sendrecv"
    return _negotiated(codec, event, offer, media, index, local_direction, local=answer)


def _answer_media(
    offer: SessionDescription,
    media: MediaDescription,
    codec: Codec,
    event: tuple[int, int] | None,
    port: int,
    wish: str,
    ptime: int,
) -> MediaDescription:
    formats = [codec.payload_type] + ([event[0]] if event else [])
    answer = MediaDescription("audio", port, media.proto, [str(pt) for pt in formats])
    answer.attributes.extend(_codec_attributes(codec))
    if event:
        pt, rate = event
        answer.attributes.append(Attribute("rtpmap", f"{pt} telephone-event/{rate}"))
        answer.attributes.append(Attribute("fmtp", f"{pt} {media.fmtp(pt) or '0-16'}"))
    answer.attributes.append(Attribute("ptime", str(ptime)))
    their_send, their_recv = _flags(offer, media)
    want_send, want_recv = _FLAGS[wish]
    answer.attributes.append(
        Attribute(_NAMES[(want_send and their_recv, want_recv and their_send)])
    )
    return answer


# -- later offers in the same session -------------------------------------------------------------


def next_version(previous: SessionDescription) -> SessionDescription:
    """A copy of our previous description with the o= version bumped (RFC 3264 §8)."""
    sd = copy.deepcopy(previous)
    sd.origin.session_version += 1
    return sd


def _redirect(previous: SessionDescription, hold: bool) -> SessionDescription:
    sd = next_version(previous)
    session_dir = sd.direction
    sd.attributes = [a for a in sd.attributes if not (a.name in DIRECTIONS and a.value is None)]
    changed = False
    for media in sd.media:
        if media.port == 0 or media.media != "audio":
            continue
        send, _ = _FLAGS[media.direction or session_dir or "sendrecv"]
        # RFC 3264 §8.4: hold keeps what we send (music on hold) and stops what we receive.
        media.set_direction(_NAMES[(send, False)] if hold else "sendrecv")
        changed = True
    if not changed:
        raise OfferAnswerError("no active audio stream to put on hold or resume")
    conn = sd.connection
    if not hold and conn is not None and conn.is_hold_address:
        raise OfferAnswerError("previous description has a 0.0.0.0 address: offer anew")
    return sd


def hold_offer(previous: SessionDescription) -> SessionDescription:
    """Our next offer putting the call on hold: sendrecv -> sendonly, recvonly -> inactive."""
    return _redirect(previous, hold=True)


def resume_offer(previous: SessionDescription) -> SessionDescription:
    """Our next offer taking the call off hold: the audio stream back to sendrecv."""
    return _redirect(previous, hold=False)


# -- an exchange made by another stack --------------------------------------------------------


def outcome_of(local: SessionDescription, remote: SessionDescription, *,
               we_answered: bool, agent: str = "-") -> Negotiated:
    """What an offer/answer made elsewhere agreed (a browser's, done by aiortc: DTLS-SRTP
    profiles this module does not answer itself), read from both descriptions: the answer's
    first audio format, the remote's address, our direction from the remote's."""
    answer = local if we_answered else remote
    index, media = next(((i, m) for i, m in enumerate(answer.media)
                         if m.media == "audio" and m.port), (-1, None))
    if media is None or not media.formats:
        raise NoCommonCodec("no audio stream was agreed", warn_code=WARN_MEDIA_TYPE,
                            agent=agent)
    pt = int(media.formats[0])
    rtpmap = media.rtpmaps(skip_malformed=True).get(pt)
    if rtpmap is None:
        raise OfferAnswerError(f"the answer's first format {pt} has no rtpmap")
    codec = Codec(rtpmap.encoding, rtpmap.clock_rate, rtpmap.channels, pt, media.fmtp(pt))
    theirs = remote.media[index] if index < len(remote.media) else media
    they_send, they_receive = _flags(remote, theirs)
    return _negotiated(codec, None, remote, theirs, index, _NAMES[(they_receive, they_send)],
                       local=local)
