"""Writes the parser test vectors (``*.dat``) of RFC 4475 and RFC 5118 as exact bytes.

Each message is written after the RFC's description of the case (same name, same fault);
hosts, tags and numbers are our own. Lines are joined with CRLF unless a case is about line
endings; ``{cl}`` is replaced by the body length so that framing is exact unless a case is
about framing. Control and non-UTF-8 bytes are written as Python escapes here, never typed.

Run ``python tests/sip/data/make_vectors.py`` after editing; the .dat files are committed.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent
CRLF = b"\r\n"


def msg(head: list[str] | list[bytes], body: bytes = b"", *, sep: bytes = CRLF) -> bytes:
    lines = [h.encode() if isinstance(h, str) else h for h in head]
    text = sep.join(lines) + sep + sep
    return text.replace(b"{cl}", str(len(body)).encode()) + body


def sdp(addr: str = "192.0.2.10", *, ip: str = "IP4") -> bytes:
    return (
        "v=0\r\n"
        f"o=torture 20060501 20060501 IN {ip} {addr}\r\n"
        "s=-\r\n"
        f"c=IN {ip} {addr}\r\n"
        "t=0 0\r\n"
        "m=audio 49170 RTP/AVP 0 8\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
    ).encode()


V: dict[str, bytes] = {}

# ---------------------------------------------------------------- RFC 4475 §3.1.1 valid
V["rfc4475/wsinv"] = msg(  # §3.1.1.1 short tortuous INVITE: LWS and folding everywhere
    [
        "INVITE sip:ringo@drums.example.com;unknownparam SIP/2.0",
        "TO :",
        " sip:ringo@drums.example.com ;   tag    = 8321234356n",
        'from   : "R Starkey \\\\\\""       <sip:rstarkey@example.com>',
        "  ;",
        "  tag = 77asjd9",
        "MaX-fOrWaRdS: 0069",
        "Call-ID: wsinv.kdksdj@192.0.2.1",
        "Content-Length   : {cl}",
        "cseq: 0013",
        "  INVITE",
        "Via  : SIP  /   2.0",
        " /UDP",
        "    192.0.2.2;branch=390skdjuw",
        "s :",
        "NewFangledHeader:   newfangled value",
        " continued newfangled value",
        "UnknownHeaderWithUnusualValue: ;;,,;;,;",
        "Content-Type: application/sdp",
        "Route:",
        " <sip:services.example.com;lr;unknownwith=value;unknown-no-value>",
        "v:  SIP  / 2.0  / TCP     spindle.example.com   ;",
        "  branch  =   z9hG4bK9ikj8  ,",
        " SIP  /    2.0   / UDP  192.168.255.111   ; branch=",
        " z9hG4bK30239",
        'm:"Quoted string \\"\\"" <sip:rstarkey@example.com> ; newparam =',
        "      newvalue ;",
        "  secondparam ; q = 0.33",
    ],
    sdp("192.0.2.4"),
)
V["rfc4475/intmeth"] = msg(  # §3.1.1.2 the whole token and word alphabets, NUL in quoted-pair
    [
        "!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$"
        "/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0",
        "Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~",
        b'To: "BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f" <sip:1_unusual.URI~(to-be!sure)&isn\'t+it$/crazy'
        b"?,/;;*@example.com>",
        "From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%="
        '"\u0440\u0430\u0431\u043e\u0442\u0430\u044e\u0449\u0438\u0439";tag=_token~1\'+`*%!-.',
        "Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{",
        "CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~",
        "Max-Forwards: 255",
        "extensionHeader-!.%*+_`'~:\ufeff\u5927\u505c\u96fb",
        "Content-Length: 0",
    ]
)
V["rfc4475/esc01"] = msg(  # §3.1.1.3 valid % escapes in user parts and URI parameters
    [
        "INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0",
        "To: sip:%75se%72@example.com",
        "From: <sip:I%20have%20spaces@example.net>;tag=938",
        "Max-Forwards: 87",
        "i: esc01.239409asdfakjkn23onasd0-3234",
        "CSeq: 234234 INVITE",
        "Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw",
        "C: application/sdp",
        "Contact:",
        "  <sip:cal%6Cer@192.168.0.2:5060;%6C%72;n%61me=v%61lue%25%34%31>",
        "Content-Length: {cl}",
    ],
    sdp("192.0.2.1"),
)
V["rfc4475/escnull"] = msg(  # §3.1.1.4 escaped NULs in URIs
    [
        "REGISTER sip:example.com SIP/2.0",
        "To: sip:null-%00-null@example.com",
        "From: sip:null-%00-null@example.com;tag=839923423",
        "Max-Forwards: 70",
        "Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd",
        "CSeq: 14398234 REGISTER",
        "Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw",
        "Contact: <sip:%00@host5.example.com>",
        "Contact: <sip:%00%00@host5.example.com>",
        "L:0",
    ]
)
V["rfc4475/esc02"] = msg(  # §3.1.1.5 "%" where it is not an escape: method, Call-ID, names
    [
        "RE%47IST%45R sip:registrar.example.com SIP/2.0",
        'To: "%Z%45" <sip:resource@example.com>',
        'From: "%Z%45" <sip:resource@example.com>;tag=f232jadfj23',
        "Call-ID: esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf",
        "Via: SIP/2.0/TCP host.example.com;branch=z9hG4bK209%fzsnel234",
        "CSeq: 29344 RE%47IST%45R",
        "Max-Forwards: 70",
        "Contact: <sip:alias1@host1.example.com>",
        "C%6Fntact: <sip:alias2@host2.example.com>",
        "Contact: <sip:alias3@host3.example.com>",
        "l: 0",
    ]
)
V["rfc4475/lwsdisp"] = msg(  # §3.1.1.6 no LWS between display name and "<"
    [
        "OPTIONS sip:user@example.com SIP/2.0",
        "To: sip:user@example.com",
        "From: caller<sip:caller@example.com>;tag=323",
        "Max-Forwards: 70",
        "Call-ID: lwsdisp.1234abcd@funky.example.com",
        "CSeq: 60 OPTIONS",
        "Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw",
        "l: 0",
    ]
)
_LONG = "longvalue" * 30
V["rfc4475/longreq"] = msg(  # §3.1.1.7 long values: display name, tag, Call-ID, many Vias
    [
        "INVITE sip:user@example.com SIP/2.0",
        f'To: "I have a user name of {"extreme" * 10} proportion"<sip:user@example.com:6000;'
        f"unknownparam1=very{'long' * 20}value;longparam{'name' * 25}=shortvalue;"
        f"very{'long' * 25}ParameterNameWithNoValue>",
        f"F: sip:{'amazinglylongcallername' * 5}@example.net;tag=12{'982' * 50}424;"
        f"unknownheaderparam{'name' * 20}=unknowheaderparamvalue{'long' * 15};"
        f"unknownValueless{'paramname' * 10}",
        f"Call-ID: longreq.one{'really' * 30}longcallid",
        "CSeq: 3882340 INVITE",
        f"Unknown-{'Long' * 20}-Name: unknown-{'long' * 20}-value; unknown-{'long' * 20}"
        f"-parameter-name = unknown-{'long' * 20}-parameter-value",
        "Via: SIP/2.0/TCP sip33.example.com",
        "v: SIP/2.0/TCP sip32.example.com",
        *[f"V: SIP/2.0/TCP sip{n}.example.com" for n in range(31, 0, -1)],
        "Max-Forwards: 67",
        f"X-{_LONG}: {_LONG}",
        f"Contact: <sip:amazinglylongcallername@host5.example.net;{_LONG}>",
        "Content-Type: application/sdp",
        "l: {cl}",
    ],
    sdp("192.0.2.1"),
)
V["rfc4475/dblreq"] = msg(  # §3.1.1.8 a second message after Content-Length in one datagram
    [
        "REGISTER sip:example.com SIP/2.0",
        "To: sip:j.user@example.com",
        "From: sip:j.user@example.com;tag=43251j3j324",
        "Max-Forwards: 8",
        "I: dblreq.0ha0isndaksdj99sdfafnl3lk233412",
        "Contact: sip:j.user@host.example.com",
        "CSeq: 8 REGISTER",
        "Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492",
        "Content-Length: 0",
    ]
) + msg(
    [
        "INVITE sip:joe@example.com SIP/2.0",
        "t: sip:joe@example.com",
        "From: sip:caller@example.net;tag=141334",
        "Max-Forwards: 8",
        "Call-ID: dblreq.0ha0isnda977644900765@192.0.2.15",
        "CSeq: 8 INVITE",
        "Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw380234",
        "Content-Type: application/sdp",
        "Content-Length: {cl}",
    ],
    sdp("192.0.2.15"),
)
V["rfc4475/semiuri"] = msg(  # §3.1.1.9 ";" inside the user part of a URI
    [
        "OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0",
        "To: sip:j_user@example.com",
        "From: sip:caller@example.org;tag=33242",
        "Max-Forwards: 3",
        "Call-ID: semiuri.0ha0isndaksdj",
        "CSeq: 8 OPTIONS",
        "Accept: application/sdp, application/pkcs7-mime,",
        "        multipart/mixed, multipart/signed,",
        "        message/sip, message/sipfrag",
        "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw",
        "l: 0",
    ]
)
V["rfc4475/transports"] = msg(  # §3.1.1.10 all kinds of transport tokens in Via
    [
        "OPTIONS sip:user@example.com SIP/2.0",
        "To: sip:user@example.com",
        "From: <sip:caller@example.com>;tag=323",
        "Max-Forwards: 70",
        "Call-ID:  transports.kijh4akdnaqjkwendsasfdj",
        "Accept: application/sdp",
        "CSeq: 60 OPTIONS",
        "Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw",
        "Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf",
        "Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj",
        "Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en",
        "Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee",
        "l: 0",
    ]
)
_BOUNDARY = b"7a9cbec02ceef655"
_MPART = (
    b"--" + _BOUNDARY + b"\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Transfer-Encoding: binary\r\n\r\n"
    b"Hello\r\n"
    b"--" + _BOUNDARY + b"\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: binary\r\n\r\n"
    + bytes(range(256)) + b"\r\n\r\n\xff\xfe\x00\r\n"
    b"--" + _BOUNDARY + b"--\r\n"
)
V["rfc4475/mpart01"] = msg(  # §3.1.1.11 multipart body with binary (non-UTF-8) parts
    [
        "MESSAGE sip:kumiko@example.org SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-;rport",
        "Max-Forwards: 70",
        "Route: <sip:127.0.0.1:5080>",
        "Identity: r5mwreLuyDRYBi/0TiPwEsY3rEVsk/G2WxhgTV1PF7hHuLIK0YWVKZhKv9Mj8UeXqkMVbnVq37CD+813gvYjcBUaZngQmXc9WNZSDNGCzA+fWl9MEUHWIZo1CeJebdY/XlgKeTa0Olvq0rt70Q5jiSfbqMJmQFteeivUhkMWYUA=",
        "Contact: <sip:fluffy@127.0.0.1:5070>",
        "To: <sip:kumiko@example.org>",
        "From: <sip:fluffy@example.com>;tag=2fb0dcc9",
        "Call-ID: 3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..",
        "CSeq: 1 MESSAGE",
        "Content-Transfer-Encoding: binary",
        "Content-Type: multipart/mixed;boundary=" + _BOUNDARY.decode(),
        "Date: Thu, 18 Sep 2008 03:10:21 GMT",
        "User-Agent: Torture Agent",
        "Content-Length: {cl}",
    ],
    _MPART,
)
V["rfc4475/unreason"] = msg(  # §3.1.1.12 UTF-8 reason phrase with odd characters
    [
        "SIP/2.0 200 = 2**3 * 5**2 \u043d\u043e \u0441\u0442\u043e \u0434\u0435\u0432\u044f"
        "\u043d\u043e\u0441\u0442\u043e \u0434\u0435\u0432\u044f\u0442\u044c - "
        "\u043f\u0440\u043e\u0441\u0442\u043e\u0435",
        "Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923",
        "Call-ID: unreason.1234ksdfak3j2erwedfsASdf",
        "CSeq: 35 INVITE",
        "From: sip:user@example.com;tag=11141343",
        "To: sip:user@example.edu;tag=2229",
        "Content-Length: {cl}",
        "Content-Type: application/sdp",
        "Contact: <sip:user@host198.example.com>",
    ],
    sdp("192.0.2.198"),
)
V["rfc4475/noreason"] = msg(  # §3.1.1.13 empty reason phrase (the SP before it is kept)
    [
        "SIP/2.0 100 ",
        "Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe",
        "Call-ID: noreason.asndj203insdf99223ndf",
        "CSeq: 35 INVITE",
        "From: <sip:user@example.com>;tag=39ansfi3",
        "To: <sip:user@example.edu>;tag=902jndnke3",
        "Content-Length: 0",
        "Contact: <sip:user@host105.example.com>",
    ]
)

# ------------------------------------------------------------- RFC 4475 §3.1.2 invalid
V["rfc4475/badinv01"] = msg(  # §3.1.2.1 extraneous header field separators
    [
        "INVITE sip:user@example.com SIP/2.0",
        "To: sip:j.user@example.com",
        "From: sip:caller@example.net;tag=134161461246",
        "Max-Forwards: 7",
        "Call-ID: badinv01.0ha0isndaksdjasdf3234nas",
        "CSeq: 8 INVITE",
        "Via: SIP/2.0/UDP 192.0.2.15;;,;,,",
        'Contact: "Joe" <sip:joe@example.org>;;;;',
        "Content-Length: {cl}",
        "Content-Type: application/sdp",
    ],
    sdp("192.0.2.15"),
)
V["rfc4475/clerr"] = msg(  # §3.1.2.2 Content-Length larger than the message
    [
        "INVITE sip:user@example.com SIP/2.0",
        "Max-Forwards: 80",
        "To: sip:j.user@example.com",
        "From: sip:caller@example.net;tag=93942939o2",
        "Contact: <sip:caller@hungry.example.net>",
        "Call-ID: clerr.0ha0isndaksdjweiafasdk3",
        "CSeq: 8 INVITE",
        "Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bK-39234-23523",
        "Content-Type: application/sdp",
        "Content-Length: 9999",
    ],
    sdp("192.0.2.155"),
)
V["rfc4475/ncl"] = msg(  # §3.1.2.3 negative Content-Length
    [
        "INVITE sip:user@example.com SIP/2.0",
        "Max-Forwards: 254",
        "To: sip:j.user@example.com",
        "From: sip:caller@example.net;tag=32394234",
        "Call-ID: ncl.0ha0isndaksdj2193423r542w35",
        "CSeq: 0 INVITE",
        "Via: SIP/2.0/UDP 192.0.2.53;branch=z9hG4bKkdjuw",
        "Contact: <sip:caller@example53.example.net>",
        "Content-Type: application/sdp",
        "Content-Length: -999",
    ],
    sdp("192.0.2.53"),
)
V["rfc4475/scalar02"] = msg(  # §3.1.2.4 request scalars out of range (CSeq > 2**32)
    [
        "REGISTER sip:example.com SIP/2.0",
        "Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bK342sdfoi3",
        "To: <sip:user@example.com>",
        "From: <sip:user@example.com>;tag=239232jh3",
        "CSeq: 36893488147419103232 REGISTER",
        "Call-ID: scalar02.23o0pd9vanlq3wnrlnewofjas9ui32",
        "Max-Forwards: 300",
        "Expires: 1" + "0" * 40,
        "Contact: <sip:user@host129.example.com>",
        "  ;expires=280297596632815",
        "Content-Length: 0",
    ]
)
V["rfc4475/scalarlg"] = msg(  # §3.1.2.5 response scalars out of range: dropped
    [
        "SIP/2.0 503 Service Unavailable",
        "Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bKzzxdiwo34sw;received=192.0.2.129",
        "To: <sip:user@example.com>",
        "From: <sip:other@example.net>;tag=2easdjfejw",
        "CSeq: 9292394834772304023312 OPTIONS",
        "Call-ID: scalarlg.noase0of0234hn2qofoaf0232aewf2394r",
        "Retry-After: 949302838503028349304023988",
        "Warning: 1812 overture \"In Progress\"",
        "Content-Length: 0",
    ]
)
V["rfc4475/quotbal"] = msg(  # §3.1.2.6 unterminated quoted string in a display name
    [
        "INVITE sip:user@example.com SIP/2.0",
        'To: "Mr. J. User <sip:j.user@example.com>',
        "From: sip:caller@example.net;tag=93334",
        "Max-Forwards: 10",
        "Call-ID: quotbal.aksdj",
        "Contact: <sip:caller@host59.example.net>",
        "CSeq: 8 INVITE",
        "Via: SIP/2.0/UDP 192.0.2.59:5050;branch=z9hG4bKkdjuw39234",
        "Content-Type: application/sdp",
        "Content-Length: {cl}",
    ],
    sdp("192.0.2.15"),
)
V["rfc4475/ltgtruri"] = msg(  # §3.1.2.7 Request-URI enclosed in <>
    [
        "INVITE <sip:user@example.com> SIP/2.0",
        "To: sip:user@example.com",
        "From: sip:caller@example.net;tag=39291",
        "Max-Forwards: 23",
        "Call-ID: ltgtruri.1@192.0.2.5",
        "CSeq: 1 INVITE",
        "Via: SIP/2.0/UDP 192.0.2.5",
        "Contact: <sip:caller@host5.example.net>",
        "Content-Type: application/sdp",
        "Content-Length: {cl}",
    ],
    sdp("192.0.2.5"),
)
V["rfc4475/lwsruri"] = msg(  # §3.1.2.8 LWS inside the Request-URI
    [
        "INVITE sip:user@example.com; lr SIP/2.0",
        "To: sip:user@example.com;tag=3xfe-9921883-z9f",
        "From: sip:caller@example.net;tag=231413434",
        "Max-Forwards: 5",
        "Call-ID: lwsruri.asdfasdoeoi2323-asdfwrn23-asd834rk423",
        "CSeq: 2130706432 INVITE",
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKkdjuw2395",
        "Contact: <sip:caller@host1.example.net>",
        "Content-Type: application/sdp",
        "Content-Length: {cl}",
    ],
    sdp("192.0.2.1"),
)
V["rfc4475/lwsstart"] = msg(  # §3.1.2.9 several SP between request-line elements
    [
        "INVITE  sip:user@example.com  SIP/2.0",
        "Max-Forwards: 8",
        "To: sip:user@example.com",
        "From: sip:caller@example.net;tag=8814",
        "Call-ID: lwsstart.dfknq234oi243099adsdfnawe3@example.com",
        "CSeq: 1893884 INVITE",
        "Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw3923",
        "Contact: <sip:caller@host1.example.net>",
        "Content-Type: application/sdp",
        "Content-Length: {cl}",
    ],
    sdp("192.0.2.1"),
)
V["rfc4475/trws"] = msg(  # §3.1.2.10 SP after SIP-Version on the request line
    [
        "OPTIONS sip:remote-target@example.com SIP/2.0  ",
        "Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK299342093",
        "To: <sip:remote-target@example.com>",
        "From: <sip:local-resource@example.com>;tag=329429089",
        "Call-ID: trws.oicu34958239neffasdhr2345r",
        "Accept: application/sdp",
        "CSeq: 238923 OPTIONS",
        "Max-Forwards: 70",
        "Content-Length: 0",
    ]
)
V["rfc4475/escruri"] = msg(  # §3.1.2.11 escaped headers in the Request-URI
    [
        "INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0",
        "To: sip:user@example.com",
        "From: sip:caller@example.net;tag=341518",
        "Max-Forwards: 7",
        "Contact: <sip:caller@host39923.example.net>",
        "Call-ID: escruri.23940-asdfhj-aje3br-234q098",
        "CSeq: 149209342 INVITE",
        "Via: SIP/2.0/UDP host-of-the-hour.example.com;branch=z9hG4bKkdjuw",
        "Content-Type: application/sdp",
        "Content-Length: {cl}",
    ],
    sdp("192.0.2.1"),
)
V["rfc4475/baddate"] = msg(  # §3.1.2.12 Date with a time zone other than GMT
    [
        "INVITE sip:user@example.com SIP/2.0",
        "To: sip:user@example.com",
        "From: sip:caller@example.net;tag=2234923",
        "Max-Forwards: 70",
        "Call-ID: baddate.239423mnsadf3j23lj42--sedfnm234",
        "CSeq: 1392934 INVITE",
        "Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw",
        "Date: Fri, 01 Jan 2010 16:00:00 EST",
        "Contact: <sip:caller@host5.example.net>",
        "Content-Type: application/sdp",
        "Content-Length: {cl}",
    ],
    sdp("192.0.2.5"),
)
V["rfc4475/regbadct"] = msg(  # §3.1.2.13 URI with escaped headers not enclosed in <>
    [
        "REGISTER sip:example.com SIP/2.0",
        "To: sip:user@example.com",
        "From: sip:user@example.com;tag=998332",
        "Max-Forwards: 70",
        "Call-ID: regbadct.k345asrl3fdbv@10.0.0.1",
        "CSeq: 1 REGISTER",
        "Via: SIP/2.0/UDP 135.180.130.133:5060;branch=z9hG4bKkdjuw",
        "Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E",
        "l: 0",
    ]
)
V["rfc4475/badaspec"] = msg(  # §3.1.2.14 SP inside <addr-spec>
    [
        "OPTIONS sip:user@example.org SIP/2.0",
        "Via: SIP/2.0/UDP host4.example.com:5060;branch=z9hG4bKkdju43234",
        "Max-Forwards: 70",
        'From: "Bell, Alexander" <sip:a.g.bell@example.com>;tag=433423',
        'To: "Watson, Thomas" < sip:t.watson@example.org >',
        "Call-ID: badaspec.sdf0234n2nds0a099u23h3hnnw009cdkne3",
        "Accept: application/sdp",
        "CSeq: 3923239 OPTIONS",
        "l: 0",
    ]
)
V["rfc4475/baddn"] = msg(  # §3.1.2.15 display names with non-token characters, unquoted
    [
        "OPTIONS sip:t.watson@example.org SIP/2.0",
        "Via:     SIP/2.0/UDP c.example.com:5060;branch=z9hG4bKkdjuw",
        "Max-Forwards:      70",
        "From:    Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
        "To:      Watson, Thomas <sip:t.watson@example.org>",
        "Call-ID: baddn.31415@c.example.com",
        "Accept: application/sdp",
        "CSeq:    3923239 OPTIONS",
        "l: 0",
    ]
)
V["rfc4475/badvers"] = msg(  # §3.1.2.16 unknown SIP version: 505
    [
        "OPTIONS sip:t.watson@example.org SIP/7.0",
        "Via:     SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw",
        "Max-Forwards:     70",
        "From:    A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe",
        "To:      T. Watson <sip:t.watson@example.org>",
        "Call-ID: badvers.31417@c.example.com",
        "CSeq:    1 OPTIONS",
        "l: 0",
    ]
)
V["rfc4475/mismatch01"] = msg(  # §3.1.2.17 request method differs from the CSeq method
    [
        "OPTIONS sip:user@example.com SIP/2.0",
        "To: sip:j.user@example.com",
        "From: sip:caller@example.net;tag=34525",
        "Max-Forwards: 6",
        "Call-ID: mismatch01.dj0234sxdfl3",
        "CSeq: 8 INVITE",
        "Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw",
        "l: 0",
    ]
)
V["rfc4475/mismatch02"] = msg(  # §3.1.2.18 unknown method differing from the CSeq method
    [
        "NEWMETHOD sip:user@example.com SIP/2.0",
        "To: sip:j.user@example.com",
        "From: sip:caller@example.net;tag=34525",
        "Max-Forwards: 6",
        "Call-ID: mismatch02.dj0234sxdfl3",
        "CSeq: 8 INVITE",
        "Contact: <sip:caller@host.example.net>",
        "Via: SIP/2.0/UDP host.example.net;branch=z9hG4bKkdjuw",
        "Content-Type: application/sdp",
        "l: {cl}",
    ],
    sdp("192.0.2.1"),
)
V["rfc4475/bigcode"] = msg(  # §3.1.2.19 overlarge response code: dropped
    [
        "SIP/2.0 4294967301 better not break the receiver",
        "Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe",
        "Call-ID: bigcode.asdof3uj203asdnf3429uasdhfas3ehjasdfas9i",
        "CSeq: 353494 INVITE",
        "From: <sip:user@example.com>;tag=39ansfi3",
        "To: <sip:user@example.edu>;tag=902jndnke3",
        "Content-Length: 0",
        "Contact: <sip:user@host105.example.com>",
    ]
)

# ------------------------------------------------- RFC 4475 §3.2-§3.4 (semantics, compat)
V["rfc4475/badbranch"] = msg(  # §3.2.1 branch that is only the magic cookie: parses
    [
        "OPTIONS sip:user@example.com SIP/2.0",
        "To: sip:user@example.com",
        "From: sip:caller@example.org;tag=33242",
        "Max-Forwards: 3",
        "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK",
        "Accept: application/sdp",
        "Call-ID: badbranch.sadonfo23i420jv0as0derf3j3n",
        "CSeq: 8 OPTIONS",
        "l: 0",
    ]
)
V["rfc4475/insuf"] = msg(  # §3.3.1 no Call-ID, From or To
    [
        "INVITE sip:user@example.com SIP/2.0",
        "CSeq: 193942 INVITE",
        "Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf",
        "Content-Type: application/sdp",
        "l: {cl}",
    ],
    sdp("192.0.2.95"),
)
V["rfc4475/unkscm"] = msg(  # §3.3.2 Request-URI of an unknown scheme: 416
    [
        "OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0",
        "To: sip:user@example.com",
        "From: sip:caller@example.net;tag=384",
        "Max-Forwards: 3",
        "Call-ID: unkscm.nasdfasser0q239nwsdfasdkl34",
        "CSeq: 3923423 OPTIONS",
        "Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234",
        "Content-Length: 0",
    ]
)
V["rfc4475/novelsc"] = msg(  # §3.3.3 Request-URI of a known but atypical scheme: 416 here
    [
        "OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0",
        "To: sip:user@example.com",
        "From: sip:caller@example.net;tag=384",
        "Max-Forwards: 3",
        "Call-ID: novelsc.asdfasser0q239nwsdfasdkl34",
        "CSeq: 3923423 OPTIONS",
        "Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234",
        "Content-Length: 0",
    ]
)
V["rfc4475/unksm2"] = msg(  # §3.3.4 other schemes in To/From/Contact: syntactically valid
    [
        "REGISTER sip:example.com SIP/2.0",
        "To: isbn:2983792873",
        "From: <http://www.example.com>;tag=3234233",
        "Call-ID: unksm2.daksdj@hyphenated-host.example.com",
        "CSeq: 234902 REGISTER",
        "Max-Forwards: 70",
        "Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKkdjuw",
        "Contact: <name:John_Smith>",
        "l: 0",
    ]
)
V["rfc4475/bext01"] = msg(  # §3.3.5 unknown Require/Proxy-Require: a 420 is for the UA
    [
        "OPTIONS sip:user@example.com SIP/2.0",
        "To: sip:j_user@example.com",
        "From: sip:caller@example.net;tag=242etr",
        "Max-Forwards: 6",
        "Call-ID: bext01.0ha0isndaksdj",
        "Require: nothingSupportsThis, nothingSupportsThisEither",
        "Proxy-Require: noProxiesSupportThis, norDoAnyProxiesSupportThis",
        "CSeq: 8 OPTIONS",
        "Via: SIP/2.0/TLS fold-and-staple.example.com;branch=z9hG4bKkdjuw",
        "Content-Length: 0",
    ]
)
V["rfc4475/invut"] = msg(  # §3.3.6 unknown Content-Type: a 415 is for the UA
    [
        "INVITE sip:user@example.com SIP/2.0",
        "Contact: <sip:caller@host5.example.net>",
        "To: sip:j.user@example.com",
        "From: sip:caller@example.net;tag=8392034",
        "Max-Forwards: 70",
        "Call-ID: invut.0ha0isndaksdjadsfij34n23d",
        "CSeq: 235448 INVITE",
        "Via: SIP/2.0/UDP somehost.example.com;branch=z9hG4bKkdjuw",
        "Content-Type: application/unknownformat",
        "Content-Length: {cl}",
    ],
    b"<audio>\r\n <pcmu port=\"443\"/>\r\n</audio>\r\n",
)
V["rfc4475/regaut01"] = msg(  # §3.3.7 unknown authorization scheme: a 401 is for the registrar
    [
        "REGISTER sip:example.com SIP/2.0",
        "To: sip:j.user@example.com",
        "From: sip:j.user@example.com;tag=87321hj23128",
        "Max-Forwards: 8",
        "Call-ID: regaut01.0ha0isndaksdj",
        "CSeq: 9338 REGISTER",
        "Via: SIP/2.0/TCP 192.0.2.253;branch=z9hG4bKkdjuw",
        "Authorization: NoOneKnowsThisScheme opaque-data=here",
        "Content-Length:0",
    ]
)
V["rfc4475/multi01"] = msg(  # §3.3.8 several values in single-value required fields
    [
        "INVITE sip:user@company.com SIP/2.0",
        "Contact: <sip:caller@host25.example.net>",
        "Via: SIP/2.0/UDP 192.0.2.25;branch=z9hG4bKkdjuw",
        "Max-Forwards: 70",
        "CSeq: 5 INVITE",
        "Call-ID: multi01.98asdh@192.0.2.1",
        "CSeq: 59 INVITE",
        "Call-ID: multi01.98asdh@192.0.2.2",
        "From: sip:caller@example.com;tag=3413415",
        "To: sip:user@example.com",
        "To: sip:other@example.net",
        "From: sip:caller@example.net;tag=2923420123",
        "Content-Type: application/sdp",
        "l: {cl}",
        "Contact: <sip:caller@host36.example.net>",
        "Max-Forwards: 5",
    ],
    sdp("192.0.2.25"),
)
V["rfc4475/mcl01"] = msg(  # §3.3.9 several conflicting Content-Length values
    [
        "OPTIONS sip:user@example.com SIP/2.0",
        "Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bK293423",
        "To: sip:user@example.com",
        "From: sip:other@example.net;tag=3923942",
        "Call-ID: mcl01.fhn2323orihawfdoa3o4r52o3irsdf",
        "CSeq: 15932 OPTIONS",
        "Content-Length: 13",
        "Max-Forwards: 60",
        "Content-Length: 5",
        "Content-Type: text/plain",
    ],
    b"There's no way to know how many octets are supposed to be here.\r\n",
)
V["rfc4475/bcast"] = msg(  # §3.3.10 response with a broadcast sent-by: parses
    [
        "SIP/2.0 200 OK",
        "Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923",
        "Via: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK1saber23",
        "Call-ID: bcast.0384840201234ksdfak3j2erwedfsASdf",
        "CSeq: 35 INVITE",
        "From: sip:user@example.com;tag=11141343",
        "To: sip:user@example.edu;tag=2229",
        "Content-Length: {cl}",
        "Content-Type: application/sdp",
        "Contact: <sip:user@host28.example.com>",
    ],
    sdp("192.0.2.198"),
)
V["rfc4475/zeromf"] = msg(  # §3.3.11 Max-Forwards of zero: parses (483 or answer is above us)
    [
        "OPTIONS sip:user@example.com SIP/2.0",
        "To: sip:user@example.com",
        "From: sip:caller@example.net;tag=3ghsd41",
        "Call-ID: zeromf.jfasdlfnm2o2l43r5u0asdfas",
        "CSeq: 39234321 OPTIONS",
        "Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw2349i",
        "Max-Forwards: 0",
        "Content-Length: 0",
    ]
)
V["rfc4475/cparam01"] = msg(  # §3.3.12 addr-spec Contact: its parameter is a header param
    [
        "REGISTER sip:example.com SIP/2.0",
        "Via: SIP/2.0/UDP saturn.example.com:5060;branch=z9hG4bKkdjuw",
        "Max-Forwards: 70",
        "From: sip:watson@example.com;tag=DkfVgjkrtMwaerKKpe",
        "To: sip:watson@example.com",
        "Call-ID: cparam01.70710@saturn.example.com",
        "CSeq: 2 REGISTER",
        "Contact: sip:+19725552222@gw1.example.net;unknownparam",
        "l: 0",
    ]
)
V["rfc4475/cparam02"] = msg(  # §3.3.13 name-addr Contact: the parameter stays in the URI
    [
        "REGISTER sip:example.com SIP/2.0",
        "Via: SIP/2.0/UDP saturn.example.com:5060;branch=z9hG4bKkdjuw",
        "Max-Forwards: 70",
        "From: sip:watson@example.com;tag=838293",
        "To: sip:watson@example.com",
        "Call-ID: cparam02.70710@saturn.example.com",
        "CSeq: 3 REGISTER",
        "Contact: <sip:+19725552222@gw1.example.net;unknownparam>",
        "l: 0",
    ]
)
V["rfc4475/regescrt"] = msg(  # §3.3.14 escaped headers in a <Contact> URI are fine
    [
        "REGISTER sip:example.com SIP/2.0",
        "To: sip:user@example.com",
        "From: sip:user@example.com;tag=8",
        "Max-Forwards: 70",
        "Call-ID: regescrt.k345asrl3fdbv@192.0.2.1",
        "CSeq: 14398234 REGISTER",
        "Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw",
        "M: <sip:user@example.com?Route=%3Csip:sip.example.com%3E>",
        "L:0",
    ]
)
V["rfc4475/sdp01"] = msg(  # §3.3.15 Accept that excludes the offered body: 415 for the UA
    [
        "INVITE sip:user@example.com SIP/2.0",
        "To: sip:j_user@example.com",
        "Contact: <sip:caller@host15.example.net>",
        "From: sip:caller@example.net;tag=234",
        "Max-Forwards: 5",
        "Call-ID: sdp01.ndaksdj9342dasdd",
        "Accept: text/nobodyKnowsThis",
        "CSeq: 8 INVITE",
        "Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw",
        "Content-Length: {cl}",
        "Content-Type: application/sdp",
    ],
    sdp("192.0.2.5"),
)
V["rfc4475/inv2543"] = msg(  # §3.4.1 RFC 2543 style: no branch, no Max-Forwards, no tag
    [
        "INVITE sip:UserB@example.com SIP/2.0",
        "Via: SIP/2.0/UDP iftgw.example.com",
        "From: <sip:+13035551111@ift.client.example.net;user=phone>",
        "Record-Route: <sip:UserB@example.com;maddr=ss1.example.com>",
        "To: sip:+16505552222@ss1.example.net;user=phone",
        "Call-ID: inv2543.1717@ift.client.example.com",
        "CSeq: 56 INVITE",
        "Content-Type: application/sdp",
        "Content-Length: {cl}",
    ],
    sdp("192.0.2.1"),
)

# ------------------------------------------------------------------- RFC 5118 (IPv6)
def _v6(name: str, ruri: str, via: str, extra: list[str] | None = None,
        body: bytes = b"") -> None:
    head = [
        f"REGISTER {ruri} SIP/2.0",
        f"Via: {via}",
        "Max-Forwards: 70",
        "From: <sip:user@example.com>;tag=81x2",
        "To: <sip:user@example.com>",
        f"Call-ID: {name}.SSG9559905523997077@hlau_4100",
        "CSeq: 1 REGISTER",
        *(extra or []),
        "Content-Length: {cl}",
    ]
    if body:
        head.insert(-1, "Content-Type: application/sdp")
    V[f"rfc5118/{name}"] = msg(head, body)


_VIA6 = "SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111"
_v6("ipv6-good", "sip:[2001:db8::10]", _VIA6,  # §4.1
    ['Contact: "Caller" <sip:caller@[2001:db8::1]>'])
_v6("ipv6-bad", "sip:user@2001:db8::10", _VIA6)  # §4.2 no brackets: 400
_v6("port-ambiguous", "sip:[2001:db8::10:5070]", _VIA6)  # §4.3 all of it is the address
_v6("port-unambiguous", "sip:[2001:db8::10]:5070", _VIA6)  # §4.3 port 5070
_v6("via-received-param-with-delim", "sip:[2001:db8::10]",  # §4.4
    "SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111;received=[2001:db8::9:255]")
_v6("via-received-param-no-delim", "sip:[2001:db8::10]",  # §4.4
    "SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111;received=2001:db8::9:255")
_v6("ipv6-in-sdp", "sip:[2001:db8::10]", _VIA6, body=sdp("2001:db8::1", ip="IP6"))  # §4.5
_v6("mult-ip-in-header", "sip:[2001:db8::10]",  # §4.6
    "SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111",
    ["Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKjhja8781hjuaij65144",
     'Contact: "Caller" <sip:caller@[2001:db8::9:1]>, <sip:caller@192.0.2.1>'])
_v6("ipv4-mapped-ipv6", "sip:[::ffff:192.0.2.10]",  # §4.8
    "SIP/2.0/UDP [::ffff:192.0.2.10]:5060;branch=z9hG4bKas3-111",
    ["Contact: <sip:caller@[::ffff:192.0.2.10]>"])
_v6("ipv6-bug-abnf-3-colons", "sip:[2001:db8:::192.0.2.1]", _VIA6)  # §4.9 invalid
_v6("ipv6-correct-abnf-2-colons", "sip:[2001:db8::192.0.2.1]", _VIA6)  # §4.9 valid
_v6("ipv6-via-no-brackets", "sip:[2001:db8::10]",  # §4.2 again, in a Via sent-by
    "SIP/2.0/UDP 2001:db8::9:1;branch=z9hG4bKas3-111")


def main() -> None:
    for name, data in V.items():
        path = HERE / f"{name}.dat"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    print(f"wrote {len(V)} vectors under {HERE}")


if __name__ == "__main__":
    main()
