"""A layer's active version exported for a sensitivity grade: refused above the caller's grade, personal attributes
masked (脱敏) below theirs by the same SQL function the server uses; GeoPackage or CSV, UTF-8."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyogrio.raw
from psycopg2 import sql

from geoservice.db import transaction
from geoservice.db.read import active_versions, masked_attribute, qualified
from geoservice.errors import GeoserviceError
from geoservice.settings import GRADES, Settings

FORMATS = {".gpkg": "GPKG", ".csv": "CSV"}


class LayerExportError(GeoserviceError):
    """The export cannot be made: no such layer, a grade too low for it, an unknown format."""


@dataclass(frozen=True)
class LayerExport:
    """What was written: where, how many features, which attributes were masked."""

    path: Path
    features: int
    masked: tuple[str, ...]


def export_layer(settings: Settings, layer: str, path: Path, grade: str) -> LayerExport:
    """Write the active version of `layer` as a caller of `grade` would see it."""
    driver = FORMATS.get(path.suffix.lower())
    if driver is None:
        raise LayerExportError(f"{path}: export to {' or '.join(FORMATS)}")
    with transaction(settings) as conn, conn.cursor() as cur:
        active = next((v for v in active_versions(cur) if v.name == layer), None)
        if active is None:
            raise LayerExportError(f"layer {layer!r}: no such layer with an active version (see `geoservice layers`)")
        definition = active.definition
        access = definition.get("access", "internal")
        if GRADES.index(grade) < GRADES.index(access):
            raise LayerExportError(f"layer {layer!r} is graded {access}: an export for grade {grade} cannot include it")
        masks = {m["attribute"]: m["method"] for m in definition.get("masks", [])
                 if GRADES.index(grade) < GRADES.index(m.get("unless", "restricted"))}
        fixed = ("feature_id", "source_id", "name", "class_code")
        attributes = [a for a in definition.get("attributes") or [] if a.lower() not in fixed]  # a column wins
        values = [masked_attribute(a, masks[a]) if a in masks else sql.SQL("attributes ->> {}").format(sql.Literal(a))
                  for a in attributes]
        cur.execute(sql.SQL("SELECT id, source_id, name, class_code, {} ST_AsBinary(geom) FROM {} "
                            "WHERE version_id = %s ORDER BY id").format(
            sql.SQL("").join(sql.SQL("{}, ").format(v) for v in values), qualified("feature")), (active.version_id,))
        rows = cur.fetchall()
    columns = list(zip(*rows)) if rows else [()] * (5 + len(attributes))
    names = [*fixed, *attributes]
    fields = [np.array(column, dtype=np.int64 if i == 0 else object) for i, column in enumerate(columns[:-1])]
    geometry = np.array([bytes(w) for w in columns[-1]], dtype=object)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    options = {"layer": layer, "encoding": "UTF-8"} if driver == "GPKG" else {"layer_options": {"GEOMETRY": "AS_WKT"}}
    pyogrio.raw.write(path, geometry, fields, names, driver=driver, crs=f"EPSG:{settings.working_srid}",
                      geometry_type="MultiPolygon", **options)
    return LayerExport(path, len(rows), tuple(masks))
