"""Features of stored layer versions as arrays for the geometry stages, and choosing among the active versions."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import psycopg2.extensions
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import shapely
from psycopg2 import sql

from geoservice.db.read import LayerVersion, qualified
from geoservice.errors import GeoserviceError

#: binary COPY framing: the header (signature, flags, extension length), each row's field count and field length,
#: the trailer
COPY_HEADER, COPY_ROW_PREFIX, COPY_TRAILER = 19, 6, 2


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
    """The features of a layer version (those whose box meets `envelope` (xmin, ymin, xmax, ymax, srid)), by id.

    Two COPYs of the same rows, parsed by Arrow with no loop over rows: the attributes and each geometry's WKB length as
    CSV, then the WKB alone in binary (each row a 6-byte prefix and the WKB, so the lengths give every offset).
    """
    where = sql.SQL("version_id = %s" + (" AND geom && ST_MakeEnvelope(%s, %s, %s, %s, %s)" if envelope else ""))
    params = (layer.version_id, *(envelope or ()))
    if cur.connection.encoding != "UTF8":  # Arrow reads the CSV as UTF-8
        cur.connection.set_client_encoding("UTF8")

    def copy(columns: str, form: str) -> io.BytesIO:
        query = sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY id").format(sql.SQL(columns), qualified("feature"), where)
        out = io.BytesIO()
        cur.copy_expert(sql.SQL("COPY ({}) TO STDOUT (FORMAT {})").format(
            sql.SQL(cur.mogrify(query, params).decode()), sql.SQL(form)), out)
        out.seek(0)
        return out

    names = ("id", "class_code", "name", "source_id", "wkb_length")
    attributes = copy("id, class_code, name, source_id, octet_length(ST_AsBinary(geom))", "csv")
    if not attributes.getbuffer().nbytes:
        empty = np.empty(0, dtype=object)
        return FeatureArrays(layer.name, np.empty(0, dtype=np.int64), empty, empty, empty, empty)
    table = pa_csv.read_csv(
        attributes, read_options=pa_csv.ReadOptions(column_names=names),
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),
        convert_options=pa_csv.ConvertOptions(
            column_types=dict(zip(names, (pa.int64(), pa.string(), pa.string(), pa.string(), pa.int64()))),
            strings_can_be_null=True, quoted_strings_can_be_null=False))
    lengths = table["wkb_length"].to_numpy()
    offsets = COPY_HEADER + np.concatenate([[0], np.cumsum(lengths + COPY_ROW_PREFIX)])
    data = copy("ST_AsBinary(geom)", "binary").getbuffer()
    if len(data) != offsets[-1] + COPY_TRAILER:
        raise GeoserviceError(f"layer {layer.name}: its features changed while they were read")
    rows = pa.BinaryArray.from_buffers(pa.large_binary(), len(lengths), [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    wkb = pc.binary_slice(rows, COPY_ROW_PREFIX, COPY_ROW_PREFIX + int(lengths.max(initial=0))).to_numpy(zero_copy_only=False)

    def text(name: str) -> np.ndarray:
        return table[name].to_numpy(zero_copy_only=False).astype(object)

    return FeatureArrays(layer.name, table["id"].to_numpy().astype(np.int64), text("class_code"), text("name"),
                         text("source_id"), shapely.from_wkb(wkb))
