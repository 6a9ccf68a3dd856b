"""PIDF-LO (RFC 4119/5491/5139) and Geolocation headers (RFC 6442) for emergency calls."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from softphone.policy import CivicAddress, GeoPoint, Location
from softphone.policy.location import LocationError, conveyance, pidf_lo

NS = {
    "p": "urn:ietf:params:xml:ns:pidf",
    "gp": "urn:ietf:params:xml:ns:pidf:geopriv10",
    "ca": "urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr",
    "gml": "http://www.opengis.net/gml",
    "gs": "http://www.opengis.net/pidflo/1.0",
    "dm": "urn:ietf:params:xml:ns:pidf:data-model",
    "gbp": "urn:ietf:params:xml:ns:pidf:geopriv10:basicPolicy",
}
T0 = 1_768_989_600.0


def test_civic_address_body() -> None:
    loc = Location("FR", civic=CivicAddress("FR", a1="IDF", a3="Paris", rd="Rue de Rivoli",
                                            hno="1", pc="75001", flr="2", nam="Café <&> Co"))
    root = ET.fromstring(pidf_lo(loc, "pres:alice@example.com", "desk-1", T0))
    assert root.get("entity") == "pres:alice@example.com"
    device = root.find("dm:device", NS)
    assert device is not None and device.get("id") == "desk-1"
    civic = device.find("gp:geopriv/gp:location-info/ca:civicAddress", NS)
    assert [c.tag.split("}")[1] for c in civic] == ["country", "A1", "A3", "RD", "HNO", "FLR",
                                                   "NAM", "PC"]
    assert civic.find("ca:NAM", NS).text == "Café <&> Co"  # escaped on the wire, intact here
    assert device.find("gp:geopriv/gp:usage-rules/gbp:retransmission-allowed", NS).text == "yes"
    assert device.find("gp:geopriv/gp:method", NS).text == "Manual"
    assert device.find("dm:timestamp", NS).text == "2026-01-21T10:00:00Z"


def test_point_and_circle() -> None:
    point = ET.fromstring(pidf_lo(Location("FR", point=GeoPoint(48.8566, 2.3522)), "pres:a@b",
                                  "d", T0))
    pos = point.find(".//gml:Point/gml:pos", NS)
    assert pos.text == "48.856600 2.352200"  # latitude first (EPSG:4326)
    assert point.find(".//gml:Point", NS).get("srsName") == "urn:ogc:def:crs:EPSG::4326"
    circle = ET.fromstring(pidf_lo(Location("FR", point=GeoPoint(48.8566, 2.3522, 50)),
                                   "pres:a@b", "d", T0))
    assert circle.find(".//gs:Circle/gs:radius", NS).text == "50"
    assert circle.find(".//gs:Circle/gs:radius", NS).get("uom") == "urn:ogc:def:uom:EPSG::9001"


def test_conveyance_headers_reference_the_body() -> None:
    loc = Location("FR", civic=CivicAddress("FR", a3="Paris"))
    p = conveyance(loc, "alice", "desk", "a84b4c76e66710@pc33", "example.com", T0)
    assert p.geolocation == "<cid:a84b4c76e66710-pc33.loc@example.com>"
    assert p.content_id == "<a84b4c76e66710-pc33.loc@example.com>"
    assert p.geolocation_routing == "yes" and p.content_type == "application/pidf+xml"
    assert ET.fromstring(p.body).get("entity") == "pres:alice@example.com"


@pytest.mark.parametrize("loc", [
    Location("FR"),
    Location("FR", point=GeoPoint(91.0, 0.0)),
    Location("FR", point=GeoPoint(float("nan"), 0.0)),
    Location("FR", point=GeoPoint(10.0, 10.0, -5)),
    Location("FR", civic=CivicAddress("France")),
])
def test_unusable_locations_raise_location_error(loc) -> None:
    with pytest.raises(LocationError):
        pidf_lo(loc, "pres:a@b", "d", T0)


def test_bad_domain_is_refused() -> None:
    with pytest.raises(LocationError):
        conveyance(Location("FR", civic=CivicAddress("FR")), "a", "d", "c", "bad domain>", T0)
