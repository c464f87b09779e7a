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


def read_with_geometry(cur: psycopg2.extensions.cursor, columns: dict[str, pa.DataType], rows: sql.Composable,
                       params: tuple[object, ...] | dict[str, object]) -> tuple[pa.Table, np.ndarray]:
    """`columns` (names -> Arrow types) and `geom` of `rows` ("FROM … WHERE … ORDER BY …", its values in `params`).

    Two COPYs of the same rows, parsed by Arrow with no loop over rows: the columns and each geometry's WKB length as
    CSV, then the WKB alone in binary (each row a 6-byte prefix and the WKB, so the lengths give every offset).
    """
    if cur.connection.encoding != "UTF8":  # Arrow reads the CSV as UTF-8
        cur.connection.set_client_encoding("UTF8")

    def copy(select: sql.Composable, form: str) -> io.BytesIO:
        query = sql.SQL("SELECT {} {}").format(select, rows)
        out = io.BytesIO()
        cur.copy_expert(sql.SQL("COPY ({}) TO STDOUT (FORMAT {})").format(
            sql.SQL(cur.mogrify(query, params).decode()), sql.SQL(form)), out)
        out.seek(0)
        return out

    names = (*columns, "wkb_length")
    attributes = copy(sql.SQL(", ").join([*map(sql.Identifier, columns), sql.SQL("octet_length(ST_AsBinary(geom))")]),
                      "csv")
    if not attributes.getbuffer().nbytes:
        return pa.table({name: pa.array([], kind) for name, kind in columns.items()}), np.empty(0, dtype=object)
    table = pa_csv.read_csv(
        attributes, read_options=pa_csv.ReadOptions(column_names=names),
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),
        convert_options=pa_csv.ConvertOptions(column_types={**columns, "wkb_length": pa.int64()},
                                              strings_can_be_null=True, quoted_strings_can_be_null=False))
    lengths = table["wkb_length"].to_numpy()
    offsets = COPY_HEADER + np.concatenate([[0], np.cumsum(lengths + COPY_ROW_PREFIX)])
    data = copy(sql.SQL("ST_AsBinary(geom)"), "binary").getbuffer()
    if len(data) != offsets[-1] + COPY_TRAILER:
        raise GeoserviceError("the rows changed while they were read")
    wkb = pa.BinaryArray.from_buffers(pa.large_binary(), len(lengths), [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    wkb = pc.binary_slice(wkb, COPY_ROW_PREFIX, COPY_ROW_PREFIX + int(lengths.max(initial=0)))
    return table.drop_columns(["wkb_length"]), shapely.from_wkb(wkb.to_numpy(zero_copy_only=False))


def texts(table: pa.Table, name: str) -> np.ndarray:
    """A text column as an object array (None for NULL)."""
    return table[name].to_numpy(zero_copy_only=False).astype(object)


def read_features(cur: psycopg2.extensions.cursor, layer: LayerVersion,
                  envelope: tuple[float, float, float, float, int] | None = None) -> FeatureArrays:
    """The features of a layer version (those whose box meets `envelope` (xmin, ymin, xmax, ymax, srid)), by id."""
    where = "version_id = %s" + (" AND geom && ST_MakeEnvelope(%s, %s, %s, %s, %s)" if envelope else "")
    table, geometries = read_with_geometry(
        cur, {"id": pa.int64(), "class_code": pa.string(), "name": pa.string(), "source_id": pa.string()},
        sql.SQL("FROM {} WHERE {} ORDER BY id").format(qualified("feature"), sql.SQL(where)),
        (layer.version_id, *(envelope or ())))
    return FeatureArrays(layer.name, table["id"].to_numpy().astype(np.int64), texts(table, "class_code"),
                         texts(table, "name"), texts(table, "source_id"), geometries)


#: a binary COPY row of `feature_envelopes`: the field count, then five float8 fields, each with its length
ENVELOPE_ROW = np.dtype([("fields", ">i2"), *((name, kind) for i in range(5) for name, kind in
                                              ((f"length{i}", ">i4"), (f"value{i}", ">f8")))])


def feature_envelopes(cur: psycopg2.extensions.cursor, layers: list[LayerVersion]) -> tuple[np.ndarray, np.ndarray]:
    """(bounds (n, 4), vertex counts) of the features of `layers`: what a spatial partition balances, no geometry.
    One binary COPY of fixed-width rows, read by NumPy as it is (half the time of CSV at 1.8M features)."""
    out = io.BytesIO()
    cur.copy_expert(cur.mogrify(
        "COPY (SELECT ST_XMin(b), ST_YMin(b), ST_XMax(b), ST_YMax(b), ST_NPoints(geom)::float8 "
        "FROM (SELECT geom, geom::box2d AS b FROM geoservice.feature WHERE version_id = ANY(%s)) f) TO STDOUT "
        "(FORMAT binary)", ([layer.version_id for layer in layers],)).decode(), out)
    data = out.getbuffer()
    rows = np.frombuffer(data[COPY_HEADER:len(data) - COPY_TRAILER], dtype=ENVELOPE_ROW)
    values = np.column_stack([rows[f"value{i}"] for i in range(5)]).astype(np.float64)
    return values[:, :4], values[:, 4]


def box_relation(box: tuple[float, float, float, float], srid: int) -> sql.Composed:
    """One box (xmin, ymin, xmax, ymax) as a relation with a column `box`, for `read_features_meeting`."""
    return sql.SQL("(SELECT ST_MakeEnvelope({}, {}, {}, {}, {}) AS box)").format(*map(sql.Literal, (*box, srid)))


def read_features_meeting(cur: psycopg2.extensions.cursor, layer: LayerVersion, region: sql.Composable,
                          halo_of: list[LayerVersion] = ()) -> FeatureArrays:
    """The features of a layer version whose box meets a box of `region` (a relation with a column `box`: a tile's
    `box_relation`, a table of boxes), and those whose box meets the box of a feature of one of `halo_of` that meets
    `region` (the partners a feature of the region needs for its differences), by id.

    Box tests are PostGIS's `&&` (boxes rounded outwards: a few more features, never fewer). Only the `halo_of`
    features crossing a region box's edge are looked up: the partners of one inside the box meet the box themselves (a
    tenth of the probes, and at 1M features a thirtieth of the time).
    """
    query = [sql.SQL("SELECT f.id FROM {} r JOIN {} f ON f.geom && r.box WHERE f.version_id = %s").format(
        region, qualified("feature"))]
    params: list[object] = [layer.version_id]
    for other in halo_of:
        query.append(sql.SQL("SELECT f.id FROM {region} r JOIN {feature} o ON o.geom && r.box AND NOT o.geom @ r.box "
                             "JOIN {feature} f ON f.geom && o.geom WHERE o.version_id = %s AND f.version_id = %s").format(
            region=region, feature=qualified("feature")))
        params += [other.version_id, layer.version_id]
    cur.execute(sql.SQL(" UNION ").join(query), params)
    ids = sorted(row[0] for row in cur.fetchall())
    table, geometries = read_with_geometry(
        cur, {"id": pa.int64(), "class_code": pa.string(), "name": pa.string(), "source_id": pa.string()},
        sql.SQL("FROM {} WHERE version_id = %s AND id = ANY(%s) ORDER BY id").format(qualified("feature")),
        (layer.version_id, ids))
    return FeatureArrays(layer.name, table["id"].to_numpy().astype(np.int64), texts(table, "class_code"),
                         texts(table, "name"), texts(table, "source_id"), geometries)


def layer_codes(cur: psycopg2.extensions.cursor, version_id: int) -> np.ndarray:
    """The distinct unified class codes of a layer version (a skip scan of its class index), sorted."""
    cur.execute("""
        WITH RECURSIVE c (code) AS (
            SELECT min(class_code) FROM geoservice.feature WHERE version_id = %(key)s
            UNION ALL
            SELECT (SELECT min(class_code) FROM geoservice.feature WHERE version_id = %(key)s AND class_code > c.code)
            FROM c WHERE c.code IS NOT NULL)
        SELECT code FROM c WHERE code IS NOT NULL""", {"key": version_id})
    return np.asarray([row[0] for row in cur.fetchall()], dtype=object)
