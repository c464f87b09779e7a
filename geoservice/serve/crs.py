"""The CRSs offered to OGC API clients: URIs, PostGIS SRIDs and axis order (OGC API Features Part 2).

Inside geoservice x is always easting/longitude. A response or a `bbox`/`filter` in a `crs` follows that
CRS's own axis order: EPSG:4326 and 4490 are latitude-first, the CGCS2000 Gauss-Kruger CRSs (4491–4554)
northing-first, CRS84 and 3857 x-first. `yx` says when coordinates must be swapped at the boundary.

GCJ-02 and BD-09 (geoservice/gcj02.py) are served too, under geoservice's own URIs: a ServingCrs with `system` set
computes in WGS84 (SRID 4326, longitude first) and is shifted at the boundary — request geometries back to WGS84 in
Python, responses forward by PostGIS (`geoservice.gcj02_shift`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from pyproj import CRS

from geoservice import gcj02

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
_URI = re.compile(r"^https?://www\.opengis\.net/def/crs/(?P<authority>[A-Za-z]+)/(?P<version>[^/]+)/(?P<code>[A-Za-z0-9]+)$")
_URN = re.compile(r"^urn:ogc:def:crs:(?P<authority>[A-Za-z]+):(?P<version>[^:]*):(?P<code>[A-Za-z0-9]+)$")
_CURIE = re.compile(r"^\[?(?P<authority>[A-Za-z]+):(?P<code>[A-Za-z0-9]+)\]?$")


@dataclass(frozen=True)
class ServingCrs:
    """One CRS as the API names it and as PostGIS computes in it."""

    uri: str
    srid: int          # PostGIS SRID; PostGIS keeps x = easting/longitude for every SRID
    yx: bool           # the CRS's first axis is northing/latitude: swap coordinates at the API boundary
    geographic: bool
    system: str | None = None  # gcj02 or bd09: WGS84 (SRID 4326) shifted by that system's algorithm

    @property
    def digits(self) -> int:
        """Decimal digits written in GeoJSON: about a millimetre in either degrees or metres."""
        return 8 if self.geographic else 3


def uri_of(authority: str, code: str) -> str:
    """The canonical OGC URI of an authority code (OGC:CRS84 -> .../OGC/1.3/CRS84)."""
    if authority.upper() == "OGC":
        return f"http://www.opengis.net/def/crs/OGC/1.3/{code.upper()}"
    return f"http://www.opengis.net/def/crs/{authority.upper()}/0/{code}"


def canonical_uri(text: str) -> str | None:
    """A CRS given as URI, URN or [EPSG:4326] as the canonical URI; None when it is not a CRS reference. GCJ-02 and
    BD-09 by their URIs or names (GCJ02, BD-09 …)."""
    text = text.strip()
    system = gcj02.system_of(text)
    if system is not None:
        return gcj02.URIS[system]
    for pattern in (_URI, _URN, _CURIE):
        match = pattern.match(text)
        if match:
            return uri_of(match["authority"], match["code"])
    return None


@lru_cache(maxsize=64)
def serving_crs(name: str) -> ServingCrs:
    """A configured CRS name (OGC:CRS84, EPSG:4548, or a URI) as a ServingCrs."""
    uri = canonical_uri(name)
    if uri is None:
        raise ValueError(f"not a CRS reference: {name!r}")
    if uri in (CRS84, uri_of("OGC", "CRS84h")):
        return ServingCrs(CRS84, 4326, yx=False, geographic=True)
    system = gcj02.system_of(uri)
    if system is not None:
        return ServingCrs(uri, 4326, yx=False, geographic=True, system=system)
    authority, code = uri.rsplit("/", 3)[1], uri.rsplit("/", 1)[1]
    if authority != "EPSG" or not code.isdigit():
        raise ValueError(f"only OGC:CRS84, EPSG codes, GCJ02 and BD09 can be served: {name!r}")
    crs = CRS.from_epsg(int(code))
    first_axis = crs.axis_info[0].direction.lower()
    return ServingCrs(uri, int(code), yx=first_axis in ("north", "south"), geographic=crs.is_geographic)


class CrsCatalog:
    """The CRSs offered to clients (the first is the default) and the working (storage) CRS."""

    def __init__(self, offered: list[str], working: str) -> None:
        self.offered = [serving_crs(name) for name in offered]
        self.working = serving_crs(working)
        self.by_uri = {crs.uri: crs for crs in self.offered}

    @property
    def uris(self) -> list[str]:
        return [crs.uri for crs in self.offered]

    @property
    def default(self) -> ServingCrs:
        return self.by_uri.get(CRS84, self.offered[0])

    def lookup(self, text: str) -> ServingCrs | None:
        """The offered CRS a request names (URI, URN or safe CURIE), or None when it is not offered."""
        uri = canonical_uri(text)
        return self.by_uri.get(uri) if uri else None
