"""Location conveyance for emergency calls: the PIDF-LO body (RFC 4119, profiled by RFC 5491,
civic elements of RFC 5139) and the Geolocation / Geolocation-Routing header values of RFC 6442.

Built with ElementTree so the XML is always well formed and escaped; a few dozen lines do not
justify a dependency. The body goes into the INVITE as a multipart/mixed part with a Content-ID
that the Geolocation header references by ``cid:`` URI (RFC 6442 section 4.1).
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

from softphone.policy.decision import LocationPayload
from softphone.policy.facts import CivicAddress, GeoPoint, Location

NS_PIDF = "urn:ietf:params:xml:ns:pidf"
NS_GP = "urn:ietf:params:xml:ns:pidf:geopriv10"
NS_CA = "urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr"
NS_GML = "http://www.opengis.net/gml"
NS_GS = "http://www.opengis.net/pidflo/1.0"
NS_DM = "urn:ietf:params:xml:ns:pidf:data-model"
NS_GBP = "urn:ietf:params:xml:ns:pidf:geopriv10:basicPolicy"
CONTENT_TYPE = "application/pidf+xml"

for _prefix, _uri in (("", NS_PIDF), ("gp", NS_GP), ("ca", NS_CA), ("gml", NS_GML),
                      ("gs", NS_GS), ("dm", NS_DM), ("gbp", NS_GBP)):
    ET.register_namespace(_prefix, _uri)


class LocationError(ValueError):
    """A location that cannot be conveyed (no civic address nor point, bad coordinates)."""


_CIVIC_ORDER = (("country", "country"), ("a1", "A1"), ("a3", "A3"), ("rd", "RD"),
                ("hno", "HNO"), ("hns", "HNS"), ("loc", "LOC"), ("flr", "FLR"),
                ("nam", "NAM"), ("pc", "PC"), ("room", "ROOM"))
_TOKEN = re.compile(r"[A-Za-z0-9._~-]+")


def _civic(parent: ET.Element, civic: CivicAddress) -> None:
    if not re.fullmatch(r"[A-Z]{2}", civic.country):
        raise LocationError(f"civic country must be ISO 3166 alpha-2, got {civic.country!r}")
    ca = ET.SubElement(parent, f"{{{NS_CA}}}civicAddress")
    for attr, element in _CIVIC_ORDER:
        value = getattr(civic, attr)
        if value:
            ET.SubElement(ca, f"{{{NS_CA}}}{element}").text = value


def _point(parent: ET.Element, point: GeoPoint) -> None:
    lat, lon = point.latitude, point.longitude
    if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
        raise LocationError(f"coordinates out of range: {lat}, {lon}")
    crs = "urn:ogc:def:crs:EPSG::4326"
    pos = f"{lat:.6f} {lon:.6f}"  # EPSG 4326 axis order: latitude then longitude
    if point.radius_m is None:
        p = ET.SubElement(parent, f"{{{NS_GML}}}Point", {"srsName": crs})
        ET.SubElement(p, f"{{{NS_GML}}}pos").text = pos
        return
    if not (math.isfinite(point.radius_m) and point.radius_m > 0):
        raise LocationError(f"uncertainty radius must be positive, got {point.radius_m}")
    c = ET.SubElement(parent, f"{{{NS_GS}}}Circle", {"srsName": crs})  # RFC 5491 section 5.2.3
    ET.SubElement(c, f"{{{NS_GML}}}pos").text = pos
    ET.SubElement(c, f"{{{NS_GS}}}radius", {"uom": "urn:ogc:def:uom:EPSG::9001"}).text = (
        f"{point.radius_m:g}")


def location_line(location: Location) -> str:
    """The recorded location in one line, as a person reads it back ("2 Rue de Rivoli, floor
    2, 75001 Paris, FR"; a point as "48.85660, 2.35220 ±30 m"): what a phone shows next to
    "emergency calls: available" so the user can check the address the PSAP will get."""
    parts: list[str] = []
    civic = location.civic
    if civic is not None:
        street = " ".join(x for x in (civic.hno + civic.hns, civic.rd) if x)
        town = " ".join(x for x in (civic.pc, civic.a3) if x)
        parts += [x for x in (civic.nam, street) if x]
        parts += [f"floor {civic.flr}"] if civic.flr else []
        parts += [f"room {civic.room}"] if civic.room else []
        parts += [x for x in (civic.loc, town, civic.a1, civic.country) if x]
    text = ", ".join(parts)
    point = location.point
    if point is not None:
        where = f"{point.latitude:.5f}, {point.longitude:.5f}"
        if point.radius_m is not None:
            where += f" ±{point.radius_m:g} m"
        text = f"{text} ({where})" if text else where
    return text or location.country


def pidf_lo(location: Location, entity: str, device_id: str, now: float) -> str:
    """The PIDF-LO document: one <dm:device> (RFC 5491 section 3.4, the device is what is
    located), with civic and/or geodetic location and the usage rules."""
    if location.civic is None and location.point is None:
        raise LocationError("a location needs a civic address or a point")
    if not entity.startswith("pres:"):
        raise LocationError(f"the presentity must be a pres: URI, got {entity!r}")
    root = ET.Element(f"{{{NS_PIDF}}}presence", {"entity": entity})
    device = ET.SubElement(root, f"{{{NS_DM}}}device", {"id": _token(device_id)})
    geopriv = ET.SubElement(device, f"{{{NS_GP}}}geopriv")
    loc = ET.SubElement(geopriv, f"{{{NS_GP}}}location-info")
    if location.civic is not None:
        _civic(loc, location.civic)
    if location.point is not None:
        _point(loc, location.point)
    rules = ET.SubElement(geopriv, f"{{{NS_GP}}}usage-rules")
    # The emergency services may pass it on to responders (RFC 4119 default would be "no").
    ET.SubElement(rules, f"{{{NS_GBP}}}retransmission-allowed").text = "yes"
    ET.SubElement(geopriv, f"{{{NS_GP}}}method").text = location.method
    ET.SubElement(device, f"{{{NS_DM}}}timestamp").text = (
        datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")


def _token(value: str) -> str:
    out = "".join(ch if _TOKEN.fullmatch(ch) else "-" for ch in value)
    return out if out and not out[0].isdigit() else f"d{out}"


def conveyance(location: Location, user_id: str, device_id: str, call_id: str, domain: str,
               now: float) -> LocationPayload:
    """What an emergency INVITE carries: ``Geolocation: <cid:...>``, ``Geolocation-Routing:
    yes`` (the location may be used to route the call, RFC 6442 section 4.2) and the body part."""
    if not re.fullmatch(r"[A-Za-z0-9.-]+", domain):
        raise LocationError(f"not a domain: {domain!r}")
    cid = f"{_token(call_id)}.loc@{domain}"
    body = pidf_lo(location, f"pres:{_token(user_id)}@{domain}", device_id, now)
    return LocationPayload(geolocation=f"<cid:{cid}>", geolocation_routing="yes",
                           content_id=f"<{cid}>", content_type=CONTENT_TYPE, body=body)
