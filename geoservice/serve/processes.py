"""OGC API – Processes: point lookup, project check on submit and hazard exposure as pygeoapi processors.

Each processor reads through the server's read-only connection pool and answers JSON; a caller's mistake
(QueryError) becomes a 400 with the message through `Manager`, anything else stays a server error. An uploaded raster
is written alone into a private folder and opened as an untrusted GeoTIFF (geoservice.raster); an uploaded project file
is opened only as the format its media type claims (geoservice.queries.project_file).
"""

from __future__ import annotations

import base64
import binascii
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import shapely
import shapely.geometry
from pygeoapi.process.base import BaseProcessor, ProcessorExecuteError
from pygeoapi.process.manager.dummy import DummyManager
from pygeoapi.util import JobStatus, RequestedResponse
from pyproj import CRS

from geoservice.conflicts import current_rules
from geoservice.queries import check_project, hazard_exposure, lookup_point, read_project_upload
from geoservice.queries.check import project_from_geojson, project_geometry
from geoservice.queries.points import QueryError, input_crs
from geoservice.serve.pool import pool_for
from geoservice.settings import Settings

LOOKUP, CHECK, EXPOSURE = "point-lookup", "project-check", "hazard-exposure"
#: the processes whose executions wait in the bounded process queue (a lookup is one prepared statement)
QUEUED = (CHECK, EXPOSURE)
#: the input of a process that uploads a file (run by an anonymous caller only if access.processes allows it)
UPLOAD_INPUTS = {EXPOSURE: "raster_file", CHECK: "project_file"}
UPLOAD_NAME = "upload.tif"
_JSON = {"type": "object", "contentMediaType": "application/json"}
_CRS_INPUT = {"title": "CRS", "description": "The CRS of the coordinates (x = easting or longitude): OGC:CRS84 (default), "
              "EPSG:4326, EPSG:4490, EPSG:4548, EPSG:4549, EPSG:4550, or GCJ-02 (urn:geoservice:def:crs:GCJ02, AMap "
              "and Tencent) and BD-09 (urn:geoservice:def:crs:BD09, Baidu), longitude first, within China.",
              "schema": {"type": "string"},
              "minOccurs": 0, "maxOccurs": 1}


def _metadata(process_id: str, title: str, description: str, inputs: dict[str, Any], output: str,
              example: dict[str, Any]) -> dict[str, Any]:
    return {"version": "1.0.0", "id": process_id, "title": {"en": title}, "description": {"en": description},
            "jobControlOptions": ["sync-execute"], "keywords": ["多规合一", "geoservice"], "links": [],
            "inputs": inputs, "outputs": {"result": {"title": output, "schema": _JSON}},
            "example": {"inputs": example}}


LOOKUP_METADATA = _metadata(
    LOOKUP, "Point lookup (what every plan says here)",
    "The base-map patch at a point with both plans' codes and names, the protection lines it lies in, its district "
    "and the open conflicts there. Also a plain GET: /lookup?x=…&y=…&crs=….",
    {"x": {"title": "x", "description": "Easting or longitude.", "schema": {"type": "number"}, "minOccurs": 1, "maxOccurs": 1},
     "y": {"title": "y", "description": "Northing or latitude.", "schema": {"type": "number"}, "minOccurs": 1, "maxOccurs": 1},
     "crs": _CRS_INPUT},
    "What the plans say at the point", {"x": 118.09, "y": 24.48})
CHECK_METADATA = _metadata(
    CHECK, "Project check on submit",
    "Every conflict a proposed construction project would create under the current rules (rule, area m², codes, "
    "district), computed like `geoservice detect` with the project added; nothing is stored.",
    {"geometry": {"title": "Project geometry", "description": "A GeoJSON Polygon or MultiPolygon (or a Feature); "
                  "give this or project_file.",
                  "schema": {"type": "object", "contentMediaType": "application/geo+json"}, "minOccurs": 0, "maxOccurs": 1},
     "project_file": {"title": "Project file", "description": "The project's polygons as an uploaded file, instead of "
                      "geometry: {\"value\": <base64>, \"mediaType\": …} with mediaType application/geo+json (GeoJSON), "
                      "application/zip (a zipped Shapefile: .shp, .shx, .dbf, .prj) or application/geopackage+sqlite3 "
                      "(a GeoPackage with one layer); the file says its CRS, and crs is then the answer's. At most "
                      "server.max_upload_mb; needs a token unless the server allows anonymous uploads.",
                      "schema": {"type": "string", "contentEncoding": "base64"}, "minOccurs": 0, "maxOccurs": 1},
     "crs": {**_CRS_INPUT, "description": _CRS_INPUT["description"] + " With project_file: the CRS of the answer."},
     "code": {"title": "Land class", "description": "The project's 用地用海 2023 code (optional).",
              "schema": {"type": "string"}, "minOccurs": 0, "maxOccurs": 1}},
    "The conflicts (a GeoJSON FeatureCollection in the input CRS)",
    {"geometry": {"type": "Polygon", "coordinates": [[[118.08, 24.47], [118.09, 24.47], [118.09, 24.48], [118.08, 24.47]]]}})
EXPOSURE_METADATA = _metadata(
    EXPOSURE, "Hazard exposure",
    "The base map's area under a hazard raster above a threshold (true cell areas), by district and by land class, "
    "and the exposed planned-construction patches. The raster is a registered name or a GeoTIFF uploaded with the "
    "request (base64).",
    {"raster": {"title": "Registered raster", "description": "A raster name from the server's configuration.",
                "schema": {"type": "string"}, "minOccurs": 0, "maxOccurs": 1},
     "raster_file": {"title": "Uploaded raster", "description": "A GeoTIFF (TIFF or BigTIFF; no VRT or other format): "
                     "{\"value\": <base64>, \"encoding\": \"base64\", \"mediaType\": \"image/tiff\"}. Needs a token "
                     "unless the server allows anonymous uploads; at most server.max_raster_cells cells.",
                     "schema": {"type": "string", "contentEncoding": "base64", "contentMediaType": "image/tiff"},
                     "minOccurs": 0, "maxOccurs": 1},
     "threshold": {"title": "Threshold", "description": "Cells with a value above this are exposed.",
                   "schema": {"type": "number"}, "minOccurs": 1, "maxOccurs": 1},
     "band": {"title": "Band", "description": "Default: the registered raster's band, else 1.",
              "schema": {"type": "integer", "minimum": 1}, "minOccurs": 0, "maxOccurs": 1}},
    "Exposed area by district and land class, exposed construction patches", {"raster": "flood_depth", "threshold": 0.5})


@lru_cache(maxsize=8)
def _settings(dump: bytes) -> Settings:
    return Settings.model_validate(orjson.loads(dump))


class _Processor(BaseProcessor):
    """A processor over the database the server serves; its settings travel in the pygeoapi configuration."""

    metadata_of: dict[str, Any]

    def __init__(self, processor_def: dict[str, Any]) -> None:
        super().__init__(processor_def, self.metadata_of)
        own = processor_def["geoservice"]
        self.settings = _settings(orjson.dumps(own["settings"]))
        self.pool = pool_for(own["database_url"], self.settings.server.pool_size)
        self.readable_layers: frozenset[str] = frozenset(own["readable_layers"])
        self.reads_conflicts: bool = own["reads_conflicts"]

    def execute(self, data: dict[str, Any], outputs: dict | None = None) -> tuple[str, Any]:
        with self.pool.connection() as conn, conn.cursor() as cur:
            return "application/json", self.run(cur, data)

    def run(self, cur: Any, data: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError


def _number(data: dict[str, Any], key: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        raise QueryError(f"input {key!r} must be a number" if key in data else f"input {key!r} is missing")
    return float(value)


def _optional_text(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise QueryError(f"input {key!r} must be a string")
    return value


class PointLookup(_Processor):
    """What every plan says at a point."""

    metadata_of = LOOKUP_METADATA

    def run(self, cur: Any, data: dict[str, Any]) -> dict[str, Any]:
        return lookup_point(cur, self.settings, _number(data, "x"), _number(data, "y"), _optional_text(data, "crs"),
                            readable_layers=self.readable_layers, with_conflicts=self.reads_conflicts)


class ProjectCheck(_Processor):
    """The conflicts a proposed project would create; stores nothing."""

    metadata_of = CHECK_METADATA

    def run(self, cur: Any, data: dict[str, Any]) -> dict[str, Any]:
        crs = _optional_text(data, "crs")
        target = input_crs(self.settings, crs)
        given, upload = data.get("geometry"), data.get("project_file")
        if (given is None) == (upload is None):
            raise QueryError("give exactly one of 'geometry' (GeoJSON) and 'project_file' (an uploaded file)")
        if upload is None:
            geometry, source = project_from_geojson(given), crs
        else:
            content, media_type = uploaded_file(upload, self.settings.server.max_upload_mb, "project_file", "file")
            geometry, source = read_project_upload(content, media_type, int(self.settings.server.max_upload_mb * 2**20))
        project = project_geometry(self.settings, geometry, source)
        found = check_project(cur, self.settings, current_rules(self.settings), project,
                              CRS.from_user_input(self.settings.working_crs), _optional_text(data, "code"))
        answered = target.from_working(self.settings, np.array([*(c.pop("geometry") for c in found), project],
                                                               dtype=object))
        features = [{"type": "Feature", "geometry": shapely.geometry.mapping(piece), "properties": conflict}
                    for piece, conflict in zip(answered[:-1], found, strict=True)]
        return {"type": "FeatureCollection", "crs": target.name, "numberReturned": len(features),
                "conflict_area_m2": sum(f["properties"]["area_m2"] for f in features),
                "project": {"geometry": shapely.geometry.mapping(answered[-1]), "area_m2": float(project.area)},
                "features": features}


class HazardExposure(_Processor):
    """Exposure of the base map to a registered or uploaded hazard raster."""

    metadata_of = EXPOSURE_METADATA

    def run(self, cur: Any, data: dict[str, Any]) -> dict[str, Any]:
        threshold = _number(data, "threshold")
        band = data.get("band")  # None: the registered raster's band, else 1 (as the CLI)
        if band is not None and (isinstance(band, bool) or not isinstance(band, int) or band < 1):
            raise QueryError("input 'band' must be a positive integer")
        name, upload = _optional_text(data, "raster"), data.get("raster_file")
        if (name is None) == (upload is None):
            raise QueryError("give exactly one of 'raster' (a registered name) and 'raster_file' (an upload)")
        if name is not None:
            if name not in self.settings.rasters:
                raise QueryError(f"no registered raster {name!r} (registered: {', '.join(self.settings.rasters) or 'none'})")
            return hazard_exposure(cur, self.settings, name, threshold, band)
        content, _ = uploaded_file(upload, self.settings.server.max_upload_mb, "raster_file", "raster")
        with tempfile.TemporaryDirectory(prefix="geoservice-upload-") as folder:
            path = Path(folder) / UPLOAD_NAME  # alone in its folder: nothing beside it for GDAL to find
            path.write_bytes(content)
            try:
                result = hazard_exposure(cur, self.settings, path, threshold, band)
            except QueryError as exc:
                raise QueryError(str(exc).replace(str(path), "upload").replace(UPLOAD_NAME, "the uploaded raster")) from exc
        result["raster"] = "upload"
        return result


def uploaded_file(upload: Any, max_mb: float, name: str, what: str) -> tuple[bytes, str | None]:
    """The bytes of the uploaded file in input `name` (base64, plain or as a qualified value) and the media type the
    qualified value claims; refused above `max_mb`."""
    text = upload.get("value") if isinstance(upload, dict) else upload
    if isinstance(upload, dict) and upload.get("encoding", "base64") != "base64":
        raise QueryError(f"input {name!r} must be base64-encoded")
    if not isinstance(text, str) or not text:
        raise QueryError(f"input {name!r} must be a base64 string or {{\"value\": <base64>}}")
    if len(text) * 3 / 4 > max_mb * 1024 * 1024:
        raise QueryError(f"the uploaded {what} is larger than the {max_mb:g} MB limit (server.max_upload_mb)")
    try:
        content = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise QueryError(f"input {name!r} is not valid base64") from exc
    return content, upload.get("mediaType") if isinstance(upload, dict) else None


class _ClientError(ProcessorExecuteError):
    """A process input the caller got wrong: 400 with the message."""

    http_status_code = 400
    ogc_exception_code = "InvalidParameterValue"


class Manager(DummyManager):
    """Synchronous execution, no job store (each answer is immediate); a caller's mistake is a 400 with its message,
    not pygeoapi's logged traceback."""

    def execute_process(self, process_id: str, data_dict: dict, execution_mode: Any = None,
                        requested_outputs: dict | None = None, subscriber: Any = None,
                        requested_response: str | None = RequestedResponse.raw.value) -> tuple:
        processor = self.get_processor(process_id)
        try:
            mime, outputs = processor.execute(data_dict, outputs=requested_outputs)
        except QueryError as exc:
            raise _ClientError(user_msg=str(exc)) from exc
        if requested_response == RequestedResponse.document.value:
            outputs = {"outputs": [outputs]}
        headers = {"Preference-Applied": "wait"} if execution_mode is not None else None
        return None, mime, outputs, JobStatus.successful, headers
