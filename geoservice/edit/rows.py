"""A GeoJSON feature sent by a client as the row ingest would store for the same feature of the layer's file.

The feature's properties are the layer's source fields (its id, name and code fields and kept attributes, as the file
has them) or their served names (`source_id`, `name`, `original_code`); the served properties a row derives
(`class_code`, `status`, `area_m2`, `source_row`, `revision`) are read-only and ignored, so a client may send back what
it read. The geometry is taken to the working CRS and cleaned by ingest's own repair (make_valid keeping polygonal
parts, Z/M dropped); ids are trimmed, codes classified by the layer's crosswalk and the row encoded by ingest's COPY
writer, so both paths store the same bytes for the same feature.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from geoservice.db import bulk
from geoservice.edit.errors import InvalidFeature
from geoservice.ingest import LayerDefinition
from geoservice.ingest.classify import Crosswalk, load_crosswalk
from geoservice.ingest.load import NewVersion, copy_binary
from geoservice.ingest.repair import KEPT, REJECTED, REPAIRED, clean
from geoservice.queries.check import project_from_geojson
from geoservice.queries.points import InputCrs, QueryError, to_working
from geoservice.settings import Settings

#: served properties a row derives: ignored when a client sends them back
READ_ONLY = frozenset({"id", "source_row", "class_code", "status", "area_m2", "revision"})
#: served name -> the definition's field it stands for
ALIASES = {"source_id": "id_field", "name": "name_field", "original_code": "code_field"}


@dataclass(frozen=True)
class Row:
    """One feature ready to store: its source fields' values and its cleaned geometry in the working CRS."""

    values: dict[str, Any]
    geometry: shapely.Geometry
    repaired: str                    # why repair changed it ('' when kept)


def writable_fields(definition: LayerDefinition) -> list[str]:
    """The layer's source fields a client writes, in the definition's order."""
    named = [definition.id_field, definition.name_field, definition.code_field, *definition.attributes]
    return [name for name in dict.fromkeys(named) if name]


def source_values(definition: LayerDefinition, properties: Any, where: str) -> dict[str, Any]:
    """A feature's properties as {source field: value}; InvalidFeature naming an unknown property, a non-scalar value
    or two names of one field that disagree."""
    if properties is None:
        properties = {}
    if not isinstance(properties, dict):
        raise InvalidFeature(f"{where}: \"properties\" must be an object")
    fields = writable_fields(definition)
    values: dict[str, Any] = {}
    for name, value in properties.items():
        field = getattr(definition, ALIASES[name]) if name in ALIASES else name
        if name in READ_ONLY or (name in ALIASES and field is None):
            continue
        if field not in fields:
            raise InvalidFeature(f"{where}: unknown property {name[:60]!r} (the layer's properties: {', '.join(fields)})")
        if isinstance(value, dict | list):
            raise InvalidFeature(f"{where}: property {name!r} must be a string, number, boolean or null")
        if field in values and values[field] != value:
            raise InvalidFeature(f"{where}: {name!r} and {field!r} name the same field with different values")
        values[field] = value
    return values


def stored_values(definition: LayerDefinition, row: dict[str, Any]) -> dict[str, Any]:
    """A stored row (source_id, name, original_code, attributes) as {source field: value}: what a patch is merged into."""
    values = dict(row["attributes"])
    for served, role in ALIASES.items():
        field = getattr(definition, role)
        if field:
            values[field] = row[served]
    return {name: values.get(name) for name in writable_fields(definition)}


def working_geometry(settings: Settings, value: Any, source: InputCrs, where: str,
                     yx: bool = False) -> tuple[shapely.Geometry, str]:
    """A GeoJSON (Multi)Polygon in `source` (`yx`: in that CRS's latitude/northing-first axis order) taken to the working
    CRS and cleaned as ingest cleans a row: (geometry, what repair did); InvalidFeature when it is not polygonal, empty,
    outside the working CRS's zone or has no area."""
    if value is None:
        raise InvalidFeature(f"{where}: no geometry (a project is a Polygon or MultiPolygon)")
    try:
        parsed = project_from_geojson(value)
        if yx:
            parsed = shapely.transform(parsed, lambda coords: coords[:, ::-1])
        moved = to_working(settings, np.array([parsed]), source, where)[0] if not parsed.is_empty else parsed
    except QueryError as exc:
        raise InvalidFeature(f"{where}: {exc}") from exc
    return cleaned_geometry(np.array([moved], dtype=object), where)


def cleaned_geometry(geometries: np.ndarray, where: str) -> tuple[shapely.Geometry, str]:
    """Ingest's repair of one geometry (working CRS): (the polygonal result, the repair's reason or '')."""
    cleaned = clean(geometries)
    if cleaned.status[0] == REJECTED:
        raise InvalidFeature(f"{where}: {cleaned.reasons[0]}")
    return cleaned.geometries[0], "" if cleaned.status[0] == KEPT else str(cleaned.reasons[0])


@lru_cache(maxsize=16)
def _crosswalk(folder: Path, name: str, mtime: float) -> Crosswalk:
    return load_crosswalk(folder, name)


def crosswalk_of(settings: Settings, definition: LayerDefinition) -> Crosswalk | None:
    """The layer's crosswalk (cached until its file changes); None for a layer without codes."""
    if not definition.code_field:
        return None
    folder = settings.path(settings.paths.classification)
    path = folder / f"{definition.crosswalk}.csv"
    return _crosswalk(folder, definition.crosswalk or "", path.stat().st_mtime if path.exists() else 0.0)


@dataclass(frozen=True)
class Encoded:
    """Rows as ingest stores them: binary COPY rows (load.COPY_COLUMNS; `source_row` their 1-based place in the
    request), their trimmed source ids and unified class codes."""

    copy: bytes
    source_ids: list[str | None]
    class_codes: list[str | None]


def encode(settings: Settings, definition: LayerDefinition, rows: list[Row]) -> Encoded:
    """The rows encoded by ingest's own COPY writer; InvalidFeature for a blank id or a code the crosswalk does not
    know."""
    count = len(rows)
    column = {name: np.array([row.values.get(name) for row in rows], dtype=object) for name in writable_fields(definition)}
    ids = None
    if definition.id_field:
        ids = pc.utf8_trim(bulk.arrow_text(column[definition.id_field], count), bulk.PYTHON_WHITESPACE)
        blank = pc.or_kleene(ids.is_null(), pc.equal(ids, "")).fill_null(True).to_numpy(zero_copy_only=False)
        if blank.any():
            raise InvalidFeature(f"feature {int(np.flatnonzero(blank)[0]) + 1}: no value in id field {definition.id_field!r}")
    unified = original = None
    crosswalk = crosswalk_of(settings, definition)
    if crosswalk is not None:
        unified, original, unknown = crosswalk.classify(column[definition.code_field])
        if definition.unknown_codes == "error" and unknown.any():
            first = int(np.flatnonzero(unknown)[0])
            raise InvalidFeature(f"feature {first + 1}: {definition.code_field} {original[first].as_py()!r} is not in "
                                 f"crosswalk {definition.crosswalk!r}")
    geometries = np.array([row.geometry for row in rows], dtype=object)
    wkb = pa.array(shapely.to_wkb(geometries, byte_order=1, output_dimension=2).tolist(), pa.large_binary())
    multi = shapely.get_type_id(geometries) == shapely.GeometryType.MULTIPOLYGON
    status = np.array([REPAIRED if row.repaired else KEPT for row in rows], dtype=np.int8)
    names = column[definition.name_field] if definition.name_field else None
    attributes = {name: column[name] for name in definition.attributes}
    copy = copy_binary(NewVersion(0, definition.name, 0), settings.working_srid, np.arange(1, count + 1), wkb, multi,
                       ids, names, unified, original, status, attributes)
    return Encoded(copy, ids.to_pylist() if ids is not None else [None] * count,
                   unified.to_pylist() if unified is not None else [None] * count)
