"""The ingest's array machinery: NumPy WKB parsing (checked against Shapely) and binary COPY (against PostGIS)."""

from __future__ import annotations

import struct

import numpy as np
import psycopg2
import pyarrow as pa
import pytest
import shapely
from psycopg2 import sql

from geoservice.db import bulk
from geoservice.db.connection import connect_url
from geoservice.ingest.wkb import parse_polygonal

X, Y = 610_000.0, 2_710_000.0


def _ring_wkb(points: list[tuple[float, float]]) -> bytes:
    return struct.pack("<I", len(points)) + b"".join(struct.pack("<dd", *p) for p in points)


def _polygon_wkb(*rings: list[tuple[float, float]]) -> bytes:
    return b"\x01" + struct.pack("<II", 3, len(rings)) + b"".join(map(_ring_wkb, rings))


SQUARE = [(X, Y), (X + 10, Y), (X + 10, Y + 10), (X, Y + 10), (X, Y)]
PLAIN = [
    shapely.box(X, Y, X + 100, Y + 50),
    shapely.box(X, Y, X + 100, Y + 100).difference(shapely.box(X + 10, Y + 10, X + 20, Y + 20)),
    shapely.MultiPolygon([shapely.box(X, Y, X + 5, Y + 5),
                          shapely.box(X + 10, Y, X + 30, Y + 30).difference(shapely.box(X + 15, Y + 5, X + 20, Y + 10))]),
    shapely.Polygon([(X, Y), (X + 10, Y + 10), (X + 10, Y), (X, Y + 10), (X, Y)]),  # invalid, but plain: parsed
]
OTHER = [
    shapely.Polygon([(X, Y, 1), (X + 1, Y, 2), (X + 1, Y + 1, 3), (X, Y, 1)]),  # Z
    shapely.Polygon(), shapely.MultiPolygon(), shapely.Point(X, Y),
    shapely.GeometryCollection([shapely.box(X, Y, X + 1, Y + 1)]),
]


def _wkb_cases() -> tuple[list[bytes | None], list[bool]]:
    values: list[bytes | None] = []
    fast: list[bool] = []
    for index, geometry in enumerate(PLAIN):
        values.append(shapely.to_wkb(geometry, byte_order=1))
        fast.append(True)
        values.append(None if index % 2 else shapely.to_wkb(OTHER[index % len(OTHER)], byte_order=1))
        fast.append(False)
    values += [shapely.to_wkb(g, byte_order=1) for g in OTHER[4:]]
    fast += [False] * len(OTHER[4:])
    broken = [
        shapely.to_wkb(PLAIN[1], byte_order=0),  # big-endian: Shapely's way
        shapely.to_wkb(PLAIN[1], byte_order=1)[:-3],  # cut short
        shapely.to_wkb(PLAIN[1], byte_order=1) + b"\x00",  # trailing byte
        _polygon_wkb(SQUARE[:-1] + [(X + 1, Y)]),  # not closed
        _polygon_wkb(SQUARE[:2] + [SQUARE[0]]),  # three points
        _polygon_wkb([(X, Y), (float("nan"), Y), (X + 1, Y + 1), (X, Y)]),
        b"\x01\x03\x00",
    ]
    values += broken
    fast += [False] * len(broken)
    values.append(_polygon_wkb(SQUARE))
    fast.append(True)
    return values, fast


def test_parse_polygonal_takes_plain_polygons_and_matches_shapely() -> None:
    values, fast = _wkb_cases()
    parsed = parse_polygonal(pa.array(values, pa.binary()))
    assert parsed.fast.tolist() == fast
    plain = shapely.from_wkb(np.array([v for v, f in zip(values, fast) if f], dtype=object))
    kind, coords, offsets = shapely.to_ragged_array(plain)
    assert kind == shapely.GeometryType.MULTIPOLYGON
    assert np.array_equal(parsed.coords, coords)
    for mine, theirs in zip((parsed.ring_offsets, parsed.part_offsets, parsed.row_offsets), offsets):
        assert np.array_equal(mine, theirs)
    assert parsed.multi[parsed.fast].tolist() == [shapely.get_type_id(g) == shapely.GeometryType.MULTIPOLYGON for g in plain]
    assert np.array_equal(parsed.shell_bounds(), shapely.bounds(plain))
    rebuilt = shapely.from_ragged_array(shapely.GeometryType.MULTIPOLYGON, parsed.coords,
                                        (parsed.ring_offsets, parsed.part_offsets, parsed.row_offsets))
    assert shapely.equals_exact(rebuilt, shapely.multipolygons(shapely.get_parts(plain), indices=np.repeat(
        np.arange(len(plain)), shapely.get_num_geometries(plain))), tolerance=0).all()

    patched = parsed.patched(parsed.coords * 2 + 1)  # the same bytes, new coordinates
    rows = np.flatnonzero(parsed.fast)
    moved = shapely.from_wkb([bytes(patched[parsed.offsets[i]:parsed.offsets[i + 1]]) for i in rows])
    assert shapely.equals_exact(moved, shapely.transform(plain, lambda xy: xy * 2 + 1), tolerance=0).all()
    assert shapely.get_type_id(moved).tolist() == shapely.get_type_id(plain).tolist()


def test_parse_polygonal_of_a_sliced_array_and_of_nothing() -> None:
    values = [shapely.to_wkb(g) for g in PLAIN] * 3
    parsed = parse_polygonal(pa.array(values, pa.binary()).slice(4, 5))
    assert parsed.fast.all() and len(parsed.row_offsets) == 6
    assert np.array_equal(parsed.coords, shapely.get_coordinates(shapely.from_wkb(values[4:9])))
    empty = parse_polygonal(pa.array([], pa.binary()))
    assert len(empty.fast) == 0 and empty.shell_bounds().shape == (0, 4)


def test_binary_rows_round_trip_through_postgis(settings) -> None:
    texts = ["制表\there", "换行\nhere", "反斜杠\\N", "", None, "quote \"'"]
    count = len(texts)
    geometries = shapely.box(X + np.arange(count) * 10, Y, X + np.arange(count) * 10 + 5, Y + 5)
    ewkb = shapely.to_wkb(shapely.multipolygons(geometries[:, None]), byte_order=1, include_srid=False)
    header = b"\x01" + struct.pack("<II", 0x20000006, 4548)
    attributes = {"DLMC": pa.array(texts), "N": pa.array([1, None, 3, 4, 5, 6]), "F": np.array([0.5, np.nan, 2, 3, 4, 5])}
    rows = bulk.binary_rows([
        bulk.int_field(7, count), bulk.int_field(np.arange(count), count, ">i4"), bulk.text_binary_field(pa.array(texts), count),
        bulk.text_binary_field(None, count), bulk.jsonb_field(attributes, count),
        bulk.BinaryField(parts=(pa.array([w[5:] for w in ewkb], pa.binary()),), prefix=header),
    ], count)
    conn = connect_url(settings.database.url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("CREATE TEMP TABLE t (a bigint, b integer, c text, d text, e jsonb, g geometry(MultiPolygon, 4548))")
            with bulk.BinaryCopyWriter(cur, sql.Identifier("t"), ["a", "b", "c", "d", "e", "g"], freeze=True) as writer:
                writer.put(rows)
                writer.put(lambda: bulk.binary_rows([bulk.int_field(8, 1), bulk.int_field(99, 1, ">i4"),
                                                     bulk.text_binary_field(["x"], 1), bulk.text_binary_field(["y"], 1),
                                                     bulk.jsonb_field({}, 1),
                                                     bulk.BinaryField(parts=(pa.array([ewkb[0][5:]]),), prefix=header)], 1))
            cur.execute("SELECT a, b, c, d, e, ST_AsBinary(g), ST_SRID(g) FROM t ORDER BY a, b")
            got = cur.fetchall()
    finally:
        conn.close()
    assert [r[:4] for r in got] == [(7, i, t, None) for i, t in enumerate(texts)] + [(8, 99, "x", "y")]
    assert [r[4] for r in got[:2]] == [{"DLMC": texts[0], "N": 1, "F": 0.5}, {"DLMC": texts[1], "N": None, "F": None}]
    assert got[-1][4] == {}
    stored = shapely.from_wkb([bytes(r[5]) for r in got])
    assert shapely.equals_exact(stored[:count], shapely.multipolygons(geometries[:, None]), tolerance=0).all()
    assert {r[6] for r in got} == {4548}


def test_binary_copy_writer_errors_and_aborts(settings) -> None:
    conn = connect_url(settings.database.url)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TEMP TABLE t (a bigint)")
            with pytest.raises(psycopg2.Error), bulk.BinaryCopyWriter(cur, sql.Identifier("t"), ["a"]) as writer:
                writer.put(bulk.binary_rows([bulk.int_field(1, 1, ">i4")], 1))  # int4 bytes for an int8 column
            conn.rollback()
            cur.execute("CREATE TEMP TABLE t (a bigint)")
            with pytest.raises(RuntimeError, match="stop"), bulk.BinaryCopyWriter(cur, sql.Identifier("t"), ["a"]) as writer:
                writer.put(bulk.binary_rows([bulk.int_field(np.arange(5), 5)], 5))
                raise RuntimeError("stop")
            conn.rollback()
            cur.execute("CREATE TEMP TABLE t (a bigint)")
            with bulk.BinaryCopyWriter(cur, sql.Identifier("t"), ["a"]) as writer:
                writer.put(bulk.binary_rows([bulk.int_field(np.arange(5), 5)], 5))
            cur.execute("SELECT sum(a) FROM t")
            assert cur.fetchone() == (10,)
    finally:
        conn.close()


def test_binary_rows_in_halves_are_the_same_bytes(monkeypatch) -> None:
    count = 101
    texts = pa.array([f"row {i}" if i % 7 else None for i in range(count)])
    fields = [bulk.int_field(np.arange(count), count), bulk.text_binary_field(texts, count),
              bulk.jsonb_field({"k": texts}, count), bulk.BinaryField(parts=(texts.cast(pa.binary()).fill_null(b""),), prefix=b"\x02")]
    whole = bulk.binary_rows(fields, count)
    monkeypatch.setattr(bulk, "MAX_PAYLOAD", 64)
    assert bulk.binary_rows(fields, count) == whole


def test_certainly_valid_never_vouches_for_an_invalid_polygon() -> None:
    """Random rings of every kind GEOS must judge (crossing, touching, collinear, repeated points, stars, slivers at
    large coordinates): where the NumPy test says valid, GEOS agrees; plain convex rings it proves valid itself."""
    from geoservice.ingest.wkb import MAX_SIMPLE_SEGMENTS, certainly_valid

    rng = np.random.default_rng(7)
    for trial in range(60):
        points, count = int(rng.integers(3, 18)), 2000
        kind = trial % 5
        if kind == 0:
            ring = rng.uniform(0, 1, (count, points, 2))
        elif kind == 1:  # on a coarse grid: collinear runs, touching vertices, repeated points
            ring = rng.integers(0, 4, (count, points, 2)).astype(float)
        elif kind == 2:  # star polygons {points/q}: turning the same way throughout, winding q times
            q = int(rng.integers(1, max(2, (points - 1) // 2 + 1)))
            angle = np.arange(points) * q * 2 * np.pi / points + rng.uniform(0, 6.3, (count, 1))
            ring = np.stack([np.cos(angle), np.sin(angle)], -1) * rng.uniform(1, 1e3, (count, 1, 1)) + [X, Y]
        elif kind == 3:  # slivers a hair wide at projected-coordinate magnitudes
            angle = np.sort(rng.uniform(0, 2 * np.pi, (count, points)), axis=1)
            ring = np.stack([np.cos(angle), np.sin(angle) * 1e-9], -1) + [X, Y]
        else:  # convex, with a vertex repeated now and then
            angle = np.sort(rng.uniform(0, 2 * np.pi, (count, points)), axis=1)
            ring = np.stack([np.cos(angle), np.sin(angle)], -1) * 100 + [X, Y]
            repeat = rng.uniform(size=count) < 0.2
            ring[repeat, 1] = ring[repeat, 0]
        closed = np.concatenate([ring, ring[:, :1]], axis=1).reshape(-1, 2)
        steps = np.arange(count + 1)
        sure = certainly_valid(closed, steps * (points + 1), steps, steps)
        polygons = shapely.polygons(shapely.linearrings(closed, indices=np.repeat(np.arange(count), points + 1)))
        valid = shapely.is_valid(polygons)
        assert not (sure & ~valid).any(), polygons[sure & ~valid][:3]
        if kind == 4:
            assert not sure[repeat].any()
            assert sure[~repeat].all() == (points <= MAX_SIMPLE_SEGMENTS)
