"""Features of stored layer versions as arrays for the geometry stages, and choosing among the active versions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import psycopg2.extensions
import shapely
from psycopg2 import sql

from geoservice.db.read import LayerVersion, qualified
from geoservice.errors import GeoserviceError


@dataclass
class FeatureArrays:
    """Aligned arrays of one layer version: feature ids, unified class codes (None when unclassified), names, geometries."""

    layer: str
    ids: np.ndarray
    codes: np.ndarray
    names: np.ndarray
    source_ids: np.ndarray
    geometries: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, mask: np.ndarray) -> FeatureArrays:
        return FeatureArrays(self.layer, self.ids[mask], self.codes[mask], self.names[mask], self.source_ids[mask],
                             self.geometries[mask])


def layers_of_kind(layers: list[LayerVersion], kind: str, name: str | None = None, required: bool = True) -> list[LayerVersion]:
    """The active layers of a kind (or the named one); an error when a required one is missing."""
    found = [layer for layer in layers if layer.kind == kind and (name is None or layer.name == name)]
    if required and not found:
        what = f"layer {name!r} of kind {kind}" if name else f"no active layer of kind {kind}"
        raise GeoserviceError(f"{what} is stored: ingest it first (`geoservice ingest`)")
    return found


def one_layer_of_kind(layers: list[LayerVersion], kind: str, name: str | None) -> LayerVersion:
    """Exactly one active layer of a kind, or the configured one."""
    found = layers_of_kind(layers, kind, name)
    if len(found) > 1:
        raise GeoserviceError(f"several active layers of kind {kind} ({', '.join(l.name for l in found)}): "
                              f"name the one to use in config/geoservice.yaml")
    return found[0]


def read_features(cur: psycopg2.extensions.cursor, layer: LayerVersion,
                  envelope: tuple[float, float, float, float, int] | None = None) -> FeatureArrays:
    """The features of a layer version (those whose box meets `envelope` (xmin, ymin, xmax, ymax, srid)), by id."""
    where = "version_id = %s" + (" AND geom && ST_MakeEnvelope(%s, %s, %s, %s, %s)" if envelope else "")
    cur.execute(
        sql.SQL("SELECT id, class_code, name, source_id, ST_AsBinary(geom) FROM {} WHERE {} ORDER BY id").format(
            qualified("feature"), sql.SQL(where)),
        (layer.version_id, *(envelope or ())),
    )
    rows = cur.fetchall()
    if not rows:
        empty = np.empty(0, dtype=object)
        return FeatureArrays(layer.name, np.empty(0, dtype=np.int64), empty, empty, empty, empty)
    ids, codes, names, source_ids, wkb = zip(*rows)
    return FeatureArrays(
        layer.name, np.asarray(ids, dtype=np.int64), np.asarray(codes, dtype=object), np.asarray(names, dtype=object),
        np.asarray(source_ids, dtype=object), shapely.from_wkb(np.asarray([bytes(w) for w in wkb], dtype=object)),
    )
