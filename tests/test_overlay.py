"""The vectorized overlay engine: hand-built cases with known answers, random coverages against PostGIS and GeoPandas."""

from __future__ import annotations

import ast
import subprocess
import sys

import numpy as np
import pytest
import shapely
from shapely import MultiPolygon, Point, Polygon, box

from geoservice import db
from geoservice.overlay import candidate_pairs, intersection_areas, overlay, polygonal, subdivide, union_groups
from geoservice.overlay.engine import HOWS
from geoservice.overlay.pieces import ROBUST_GRID, robust

EXTENT = (500_000.0, 2_700_000.0, 540_000.0, 2_740_000.0)  # EPSG:4548-like, 40 km × 40 km
RTOL = 1e-9


def voronoi_coverage(n: int, seed: int, extent: tuple[float, float, float, float] = EXTENT) -> np.ndarray:
    """n Voronoi cells of seeded random points, clipped to `extent` (a coverage of it)."""
    xmin, ymin, xmax, ymax = extent
    rng = np.random.default_rng(seed)
    points = shapely.multipoints(np.column_stack([rng.uniform(xmin, xmax, n), rng.uniform(ymin, ymax, n)]))
    frame = box(*extent)
    return shapely.intersection(shapely.get_parts(shapely.voronoi_polygons(points, extend_to=frame)), frame)


def arr(*geoms) -> np.ndarray:
    out = np.empty(len(geoms), dtype=object)
    out[:] = list(geoms)
    return out


def as_table(result) -> list[tuple[int, int, float]]:
    li, ri, pieces = result
    return [(int(a), int(b), round(float(g.area), 9)) for a, b, g in zip(li, ri, pieces)]


def check_output(result, n: int, m: int) -> None:
    """The invariants every result has: aligned, typed, sorted, only non-empty polygonal pieces with area."""
    li, ri, pieces = result
    assert li.dtype == np.int64 and ri.dtype == np.int64 and pieces.dtype == object
    assert len(li) == len(ri) == len(pieces)
    assert set(shapely.get_type_id(pieces).tolist()) <= {3, 6}
    assert not shapely.is_empty(pieces).any()
    assert (shapely.area(pieces) > 0).all()
    assert ((li >= -1) & (li < n)).all() and ((ri >= -1) & (ri < m)).all()
    assert not ((li == -1) & (ri == -1)).any()
    key = np.where(li < 0, n, li) * (m + 1) + np.where(ri < 0, m, ri)
    assert (np.diff(key) > 0).all(), "sorted by (left, right), -1 last, no pair twice"


# --- hand-built cases --------------------------------------------------------------------------------------


def test_nested_squares_take_the_inner_geometry_itself():
    outer, inner = box(0, 0, 10, 10), box(2, 2, 4, 4)
    li, ri, pieces = overlay(arr(outer), arr(inner))
    assert (li.tolist(), ri.tolist()) == ([0], [0])
    assert pieces[0] is inner  # the containment shortcut: no GEOS intersection ran
    _, _, pieces = overlay(arr(inner), arr(outer))
    assert pieces[0] is inner

    result = overlay(arr(outer), arr(inner), how="union")
    check_output(result, 1, 1)
    assert as_table(result) == [(0, 0, 4.0), (0, -1, 96.0)]
    rest = result[2][1]
    assert len(rest.interiors) == 1 and rest.equals(outer.difference(inner))


def test_holes():
    ring = Polygon(box(0, 0, 10, 10).exterior.coords, [box(2, 2, 8, 8).exterior.coords])
    in_hole = box(4, 4, 6, 6)
    assert overlay(arr(ring), arr(in_hole))[0].size == 0
    assert as_table(overlay(arr(ring), arr(in_hole), how="union")) == [(0, -1, 64.0), (-1, 0, 4.0)]

    cover = box(0, 0, 10, 10)
    result = overlay(arr(ring), arr(cover), how="union")
    check_output(result, 1, 1)
    assert as_table(result) == [(0, 0, 64.0), (-1, 0, 36.0)]
    assert result[2][0].equals(ring)
    assert result[2][1].equals(box(2, 2, 8, 8))


def test_multipolygons():
    two = MultiPolygon([box(0, 0, 1, 1), box(3, 0, 4, 1)])
    band = box(0.5, 0, 3.5, 1)
    result = overlay(arr(two), arr(band), how="union")
    check_output(result, 1, 1)
    assert as_table(result) == [(0, 0, 1.0), (0, -1, 1.0), (-1, 0, 2.0)]
    both_halves, left_rest, middle = result[2]
    assert both_halves.geom_type == "MultiPolygon" and len(both_halves.geoms) == 2
    assert left_rest.geom_type == "MultiPolygon"
    assert middle.equals(box(1, 0, 3, 1))


def test_touching_edges_and_corners_give_no_pieces():
    square = box(0, 0, 1, 1)
    neighbours = arr(box(1, 0, 2, 1), box(1, 1, 2, 2), box(-1, -1, 0, 0.5))  # edge, corner, partial edge
    li, _, pieces = overlay(arr(square), neighbours)
    assert li.size == 0 and pieces.size == 0
    result = overlay(arr(square), neighbours, how="union")
    check_output(result, 1, 3)
    assert as_table(result) == [(0, -1, 1.0), (-1, 0, 1.0), (-1, 1, 1.0), (-1, 2, 1.5)]
    assert result[2][0] is square  # untouched features are their own pieces


def test_polygon_meeting_in_area_and_point_keeps_only_the_polygon():
    square = box(0, 0, 2, 2)
    other = MultiPolygon([box(1, 1, 3, 3), box(2, -1, 3, 0)])  # overlaps, and touches at (2, 0)
    raw = shapely.intersection(square, other)
    assert raw.geom_type == "GeometryCollection"
    _, _, pieces = overlay(arr(square), arr(other))
    assert pieces[0].geom_type == "Polygon" and pieces[0].equals(box(1, 1, 2, 2))


def test_slivers_are_kept():
    width = 1e-7
    result = overlay(arr(box(0, 0, 1, 1)), arr(box(1 - width, 0, 2, 1)), how="union")
    check_output(result, 1, 1)
    (li, ri, pieces) = result
    assert (li.tolist(), ri.tolist()) == ([0, 0, -1], [0, -1, 0])
    assert pieces[0].area == pytest.approx(width, rel=1e-6)
    assert pieces[1].area + pieces[0].area == pytest.approx(1.0, rel=1e-12)


def test_disjoint_inputs():
    left = arr(box(0, 0, 1, 1), box(5, 5, 6, 7))
    right = arr(box(10, 10, 13, 11))
    assert overlay(left, right)[0].size == 0
    result = overlay(left, right, how="union")
    check_output(result, 2, 1)
    assert as_table(result) == [(0, -1, 1.0), (1, -1, 2.0), (-1, 0, 3.0)]


@pytest.mark.parametrize("how", HOWS)
def test_empty_inputs(how):
    empty = np.empty(0, dtype=object)
    for left, right in [(empty, empty), (empty, arr(box(0, 0, 1, 1))), (arr(box(0, 0, 1, 1)), empty)]:
        li, ri, pieces = overlay(left, right, how=how)
        check_output((li, ri, pieces), len(left), len(right))
        expected = {"intersection": 0, "union": len(left) + len(right)}.get(how, len(left))
        assert len(pieces) == expected


def test_identity_and_difference_keep_the_left_side_only():
    left = arr(box(0, 0, 10, 10), box(20, 0, 21, 1))
    right = arr(box(2, 2, 4, 4), box(8, 8, 12, 12), box(30, 30, 31, 31))
    identity = overlay(left, right, how="identity")
    check_output(identity, 2, 3)
    assert as_table(identity) == [(0, 0, 4.0), (0, 1, 4.0), (0, -1, 92.0), (1, -1, 1.0)]
    assert identity[2][3] is left[1]  # untouched: the feature itself
    difference = overlay(left, right, how="difference")
    assert as_table(difference) == [(0, -1, 92.0), (1, -1, 1.0)]
    assert difference[2][0].equals(identity[2][2])


def test_missing_and_empty_geometries_yield_nothing():
    left = arr(None, Polygon(), box(0, 0, 1, 1))
    right = arr(box(0, 0, 2, 1), None)
    result = overlay(left, right, how="union")
    check_output(result, 3, 2)
    assert as_table(result) == [(2, 0, 1.0), (-1, 0, 1.0)]


def test_union_of_overlapping_squares_has_exact_areas():
    left = arr(box(0, 0, 2, 2), box(10, 10, 11, 11))
    right = arr(box(1, 1, 3, 3), box(1.5, -1, 4, 0.5))
    result = overlay(left, right, how="union")
    check_output(result, 2, 2)
    assert as_table(result) == [
        (0, 0, 1.0), (0, 1, 0.25), (0, -1, 2.75), (1, -1, 1.0), (-1, 0, 3.0), (-1, 1, 3.5)
    ]


def test_union_where_the_other_side_overlaps_itself():
    left = arr(box(0, 0, 4, 1))
    short = arr(box(0, 0, 2, 1), box(1, 0, 2.5, 1))  # overlapping, pieces sum to 3.5: [2.5, 4] stays open
    result = overlay(left, short, how="union")
    check_output(result, 1, 2)
    assert as_table(result) == [(0, 0, 2.0), (0, 1, 1.5), (0, -1, 1.5)]
    assert result[2][2].equals(box(2.5, 0, 4, 1))
    long = arr(box(0, 0, 3, 1), box(1, 0, 4, 1))  # overlapping, pieces sum to 6 > 4: covered after all
    assert as_table(overlay(left, long, how="union")) == [(0, 0, 3.0), (0, 1, 3.0)]


def test_invalid_and_non_polygonal_inputs_name_side_and_index():
    good = box(0, 0, 1, 1)
    with pytest.raises(ValueError, match=r"^left\[1\]: not polygonal \(LineString\)"):
        overlay(arr(good, shapely.LineString([(0, 0), (1, 1)])), arr(good))
    with pytest.raises(ValueError, match=r"^right\[0\]: not polygonal \(GeometryCollection\)"):
        overlay(arr(good), arr(shapely.GeometryCollection([good])))
    bowtie = Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])
    with pytest.raises(ValueError, match=r"^right\[2\]: invalid Polygon \(Self-intersection.*make_valid"):
        overlay(arr(good), arr(good, good, bowtie))
    with pytest.raises(ValueError, match=r"^left\[0\]: not a geometry \(str\)"):
        overlay(np.array(["POLYGON EMPTY"], dtype=object), arr(good))
    with pytest.raises(ValueError, match="how must be"):
        overlay(arr(good), arr(good), how="symmetric_difference")


def test_accepts_lists_and_point_free_duplicates():
    square = box(0, 0, 1, 1)
    li, ri, pieces = overlay([square, square], [square])
    assert (li.tolist(), ri.tolist()) == ([0, 1], [0, 0])
    assert all(p is square for p in pieces)  # exact duplicates are their own piece


def test_inputs_are_left_as_they_were_and_prepared_ones_are_fine():
    left, right = voronoi_coverage(120, 21), voronoi_coverage(80, 22)
    expected = overlay(left, right, how="union", threads=2)
    assert not shapely.is_prepared(left).any() and not shapely.is_prepared(right).any()
    shapely.prepare(left)
    shapely.prepare(right)
    try:
        again = overlay(left, right, how="union", threads=2)
        assert shapely.is_prepared(left).all() and shapely.is_prepared(right).all()
    finally:
        shapely.destroy_prepared(left)
        shapely.destroy_prepared(right)
    assert as_table(again) == as_table(expected)


def test_shared_boundaries_skip_touching_pairs_with_the_same_result(monkeypatch):
    from geoservice.overlay import pieces as pieces_module

    parcels = voronoi_coverage(300, 31)
    centre = shapely.centroid(parcels)
    b = shapely.bounds(parcels)
    lower = shapely.box(b[:, 0] - 1, b[:, 1] - 1, b[:, 2] + 1, shapely.get_y(centre))
    halves = shapely.get_parts(np.concatenate([shapely.intersection(parcels, lower), shapely.difference(parcels, lower)]))
    li, ri = candidate_pairs(parcels, halves)
    touching = shapely.touches(parcels[li], halves[ri]).mean()
    assert touching > pieces_module.TOUCH_SHARE  # most pairs are neighbours sharing an edge: filtered

    filtered = overlay(parcels, halves, how="union")
    monkeypatch.setattr(pieces_module, "TOUCH_SHARE", 2.0)  # never filter
    plain = overlay(parcels, halves, how="union")
    assert as_table(filtered) == as_table(plain)
    assert (shapely.to_wkb(filtered[2]) == shapely.to_wkb(plain[2])).all()
    check_output(filtered, len(parcels), len(halves))
    assert len(filtered[2]) == len(halves) and (filtered[1] >= 0).all()


def test_large_containers_keep_contained_features_whole():
    districts = shapely.segmentize(voronoi_coverage(6, 41), 50.0)
    parcels = voronoi_coverage(800, 42)
    li, ri, pieces = result = overlay(parcels, districts, how="union", threads=2)
    check_output(result, len(parcels), len(districts))
    assert (li >= 0).all() and (ri >= 0).all()
    whole = np.array([p is parcels[i] for i, p in zip(li, pieces)])
    inside = shapely.contains(districts[ri], parcels[li])
    assert np.array_equal(whole, inside) and whole.sum() > 600
    assert shapely.area(pieces).sum() == pytest.approx(1.6e9, rel=RTOL)


def test_overlay_is_pure_geometry():
    """overlay/ imports no database and no stage: anyone can use it on arrays."""
    code = "import sys, geoservice.overlay; print(sorted(m for m in sys.modules if m.startswith('geoservice')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert all(m == "geoservice" or m.startswith("geoservice.overlay") for m in ast.literal_eval(out))


# --- subdivided operands ----------------------------------------------------------------------------------


def coastline(vertices: int, seed: int, centre: tuple[float, float] = (520_000.0, 2_720_000.0),
              radius: float = 8_000.0) -> Polygon:
    """A large star-shaped polygon with a ragged edge of `vertices` points and a round hole at its centre."""
    rng = np.random.default_rng(seed)
    angles = np.linspace(0, 2 * np.pi, vertices, endpoint=False)
    r = radius * (0.8 + 0.2 * rng.random(vertices))
    shell = np.column_stack([centre[0] + r * np.cos(angles), centre[1] + r * np.sin(angles)])
    return Polygon(shell, [Point(centre).buffer(radius / 4).exterior.coords])


def large_polygons() -> np.ndarray:
    """Large polygons (a coastline with a hole, a segmentized cell, a multipolygon), a small one, None, an empty one."""
    cell = shapely.segmentize(voronoi_coverage(4, 51)[0], 20.0)
    two = MultiPolygon([coastline(1200, 52, (545_000.0, 2_720_000.0), 3_000.0), box(552_000, 2_700_000, 553_000, 2_701_000)])
    return arr(coastline(3000, 53), cell, two, box(0, 0, 1, 1), None, Polygon())


def test_subdivide_cuts_only_large_polygons_into_bounded_parts_that_tile_them():
    geoms = large_polygons()
    assert (shapely.get_num_coordinates(geoms[:3]) > 1000).all()
    parts = subdivide(geoms, max_vertices=64, threads=2)
    assert parts.whole is geoms or (parts.whole == geoms).all()
    assert (shapely.get_num_coordinates(parts.geoms) <= 64).all()
    assert set(shapely.get_type_id(parts.geoms).tolist()) == {3} and shapely.is_valid(parts.geoms).all()
    assert (np.diff(parts.source) >= 0).all()
    counts = np.bincount(parts.source, minlength=len(geoms))
    assert (counts[:3] > 20).all() and counts[3:].tolist() == [1, 0, 0]
    assert parts.geoms[parts.source == 3][0] is geoms[3]  # small enough: itself, not a copy
    area = np.bincount(parts.source, weights=shapely.area(parts.geoms), minlength=len(geoms))
    np.testing.assert_allclose(area[:4], shapely.area(geoms[:4]), rtol=1e-12)
    ids, unions = union_groups(parts.geoms, parts.source)
    assert (shapely.area(shapely.symmetric_difference(unions, geoms[ids])) <= 1e-9 * shapely.area(geoms[ids])).all()
    li, ri = candidate_pairs(parts.geoms, parts.geoms)  # the parts of one polygon do not overlap
    same = (li < ri) & (parts.source[li] == parts.source[ri])
    assert shapely.area(shapely.intersection(parts.geoms[li[same]], parts.geoms[ri[same]])).max() < 1e-6
    again = subdivide(geoms, max_vertices=64, threads=1)
    assert (shapely.to_wkb(again.geoms) == shapely.to_wkb(parts.geoms)).all()  # threads do not change it
    uncut = subdivide(geoms, max_vertices=None)
    assert uncut.source.tolist() == [0, 1, 2, 3] and all(a is b for a, b in zip(uncut.geoms, geoms[:4]))


def test_subdivide_refuses_what_it_cannot_cut():
    with pytest.raises(ValueError, match="max_vertices must be at least 5"):
        subdivide(arr(box(0, 0, 1, 1)), max_vertices=4)
    with pytest.raises(ValueError, match=r"^geoms\[0\]: invalid Polygon"):
        subdivide(arr(Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])))


def test_a_piece_across_several_parts_equals_the_unsplit_answer():
    coast = coastline(3000, 61)
    parts = subdivide(arr(coast), max_vertices=32)
    across = box(514_000, 2_714_000, 526_000, 2_726_000)  # over the ragged edge and the hole, many parts
    inside = box(520_000 + 3_000, 2_720_000 - 500, 520_000 + 5_000, 2_720_000 + 500)  # in the polygon, across a cut
    largest = parts.geoms[np.argmax(shapely.area(parts.geoms))]
    small = largest.representative_point().buffer(0.01)  # within one part
    assert shapely.contains_properly(largest, small)
    pieces = arr(across, inside, small)
    li, ri = candidate_pairs(pieces, parts.geoms)
    met = np.bincount(li, minlength=3)
    assert met[0] > 20 and met[1] >= 2 and met[2] == 1
    assert shapely.contains_properly(coast, inside) and shapely.contains_properly(coast, small)
    for how in HOWS:
        split = overlay(pieces, parts, how=how)
        whole = overlay(pieces, arr(coast), how=how)
        check_output(split, 3, 1)
        assert split[0].tolist() == whole[0].tolist() and split[1].tolist() == whole[1].tolist(), how
        np.testing.assert_allclose(shapely.area(split[2]), shapely.area(whole[2]), rtol=RTOL)
        gap = shapely.area(shapely.symmetric_difference(split[2], whole[2]))
        assert (gap <= RTOL * shapely.area(whole[2])).all(), how
    li, ri, got = overlay(pieces, parts)
    assert got[1] is inside and got[2] is small  # in the polygon: the piece itself, over two parts or in one
    np.testing.assert_allclose(intersection_areas(pieces, parts), shapely.area(shapely.intersection(pieces, coast)),
                               rtol=RTOL)


@pytest.mark.parametrize("how", HOWS)
def test_subdivided_operands_give_the_unsplit_overlay(how):
    parcels = voronoi_coverage(300, 71)
    districts = shapely.segmentize(voronoi_coverage(5, 72, (505_000.0, 2_705_000.0, 545_000.0, 2_745_000.0)), 100.0)
    lines = arr(coastline(800, 73), coastline(600, 74, (530_000.0, 2_730_000.0), 6_000.0))  # overlapping each other
    for left, right in [(parcels, districts), (parcels, lines), (districts, lines), (lines, parcels)]:
        want = overlay(left, right, how=how)
        for cut in [(subdivide(left, 48), right), (left, subdivide(right, 48)), (subdivide(left, 48), subdivide(right, 48))]:
            got = overlay(*cut, how=how, threads=2)
            check_output(got, len(left), len(right))
            assert got[0].tolist() == want[0].tolist() and got[1].tolist() == want[1].tolist()
            np.testing.assert_allclose(shapely.area(got[2]), shapely.area(want[2]), rtol=RTOL)
    np.testing.assert_allclose(intersection_areas(parcels, subdivide(lines, 48)), intersection_areas(parcels, lines),
                               rtol=RTOL, atol=1e-6)


# --- overlays GEOS cannot node in floating point ---------------------------------------------------------

#: A polygon with slivers and thin quadrilaterals along its edges, their free vertices 3e-10 … 5e-7 m off those
#: edges (from a seeded search of such shapes): GEOS 3.14's floating-point OverlayNG and its snapping retries fail
#: on their union ("found two shells in EdgeRing list"); snap rounding on a grid nodes it.
NEARLY_COINCIDENT = [
    "POLYGON ((523917.31163253967 2723832.432071418, 523912.20548993954 2723833.949601409, 523920.492851522 "
    "2723840.5839909925, 523904.37900966406 2723839.659184408, 523902.5828975871 2723845.155569523, 523890.82159116154 "
    "2723827.5924382703, 523917.1275070856 2723826.655071477, 523917.31163253967 2723832.432071418))",
    "POLYGON ((523912.20548993954 2723833.949601409, 523920.492851522 2723840.5839909925, 523912.961867296 "
    "2723834.5551145924, 523912.20548993954 2723833.949601409))",
    "POLYGON ((523913.0167569042 2723833.7084953436, 523913.13171155343 2723833.674331173, 523915.69824542885 "
    "2723842.3101327936, 523915.5501821475 2723842.2328939624, 523913.0167569042 2723833.7084953436))",
    "POLYGON ((523915.726439609 2723836.768272515, 523919.2018975406 2723839.5505274003, 523926.6002305053 "
    "2723830.30888435, 523922.6528767427 2723828.116099126, 523915.726439609 2723836.768272515))",
    "POLYGON ((523920.492851522 2723840.5839909925, 523904.37900966406 2723839.659184408, 523914.168231146 "
    "2723840.2210079804, 523920.492851522 2723840.5839909925))",
]


@pytest.fixture(scope="module")
def unnodable() -> dict[str, object]:
    """The five polygons; A and B (unions of two and of three of them) whose difference fails; C, the rest of a
    box around A once B is cut out of it (B's rings as they are), whose intersection with A fails."""
    near = shapely.from_wkt(NEARLY_COINCIDENT)
    a, b = shapely.union_all(near[[0, 3]]), shapely.union_all(near[[1, 2, 4]])
    frame = box(*a.buffer(10).bounds)
    c = MultiPolygon([Polygon(frame.exterior.coords, [b.exterior.coords]), Polygon(b.interiors[0].coords)])
    assert shapely.is_valid(near).all() and a.is_valid and b.is_valid and c.is_valid
    for fails in (lambda: shapely.union_all(near), lambda: shapely.difference(a, b), lambda: shapely.intersection(a, c)):
        with pytest.raises(shapely.errors.GEOSException):
            fails()
    return {"near": near, "a": a, "b": b, "c": c}


def test_a_union_geos_cannot_node_falls_back_to_snap_rounding(unnodable):
    near = unnodable["near"]
    cells = voronoi_coverage(40, 81)
    geoms = np.concatenate([cells, near])
    groups = np.concatenate([np.arange(40) // 5 + 1, np.zeros(5, np.int64)])  # groups of five: one matrix of rows
    ids, unions = union_groups(geoms, groups, threads=2)
    assert ids.tolist() == list(range(9))
    assert shapely.equals_exact(unions[0], shapely.union_all(near, grid_size=ROBUST_GRID), tolerance=0)
    assert unions[0].area == pytest.approx(343.6024, rel=1e-6)
    plain = shapely.union_all(cells.reshape(8, 5), axis=1)  # the other rows: computed as before, not snapped
    assert (shapely.to_wkb(unions[1:]) == shapely.to_wkb(plain)).all()


def test_a_difference_and_an_intersection_geos_cannot_node_fall_back_to_snap_rounding(unnodable):
    a, b, c = unnodable["a"], unnodable["b"], unnodable["c"]
    expected = shapely.difference(a, b, grid_size=ROBUST_GRID)
    for how in ("difference", "identity", "union"):
        li, ri, pieces = overlay(arr(a), arr(b), how=how)
        rest = pieces[(li == 0) & (ri == -1)]
        assert len(rest) == 1 and shapely.equals_exact(rest[0], expected, tolerance=0), how
    li, ri, pieces = overlay(arr(a), arr(c))
    assert (li.tolist(), ri.tolist()) == ([0], [0])
    assert shapely.equals_exact(pieces[0], shapely.intersection(a, c, grid_size=ROBUST_GRID), tolerance=0)
    assert pieces[0].area == pytest.approx(expected.area, rel=1e-6)  # a ∩ c is a − b


def test_the_fallback_snaps_only_what_fails(unnodable):
    left, right = voronoi_coverage(60, 82), voronoi_coverage(60, 83)
    left[17], right[17] = unnodable["a"], unnodable["b"]
    out = robust(shapely.difference, left, right)
    assert shapely.equals_exact(out[17], shapely.difference(left[17], right[17], grid_size=ROBUST_GRID), tolerance=0)
    others = np.arange(60) != 17
    assert (shapely.to_wkb(out[others]) == shapely.to_wkb(shapely.difference(left[others], right[others]))).all()


# --- helpers ----------------------------------------------------------------------------------------------


def test_polygonal_extracts_parts_and_drops_degenerate_results():
    square = box(0, 0, 1, 1)
    geoms = arr(
        square,
        shapely.LineString([(0, 0), (1, 0)]),
        None,
        Polygon(),
        shapely.GeometryCollection([square, Point(5, 5)]),
        shapely.GeometryCollection([box(0, 0, 1, 1), box(2, 0, 3, 1), shapely.LineString([(1, 0), (2, 0)])]),
        shapely.GeometryCollection([shapely.LineString([(1, 0), (2, 0)])]),
        MultiPolygon([box(0, 0, 1, 1), box(2, 2, 3, 3)]),
    )
    out, index = polygonal(geoms, return_index=True)
    assert index.tolist() == [0, 4, 5, 7]
    assert [g.geom_type for g in out] == ["Polygon", "Polygon", "MultiPolygon", "MultiPolygon"]
    assert out[0] is square and out[1].equals(square) and out[2].area == 2.0
    assert len(polygonal(geoms)) == 4


def test_candidate_pairs_are_sorted_and_thread_independent():
    left, right = voronoi_coverage(300, 11), voronoi_coverage(200, 12)
    li, ri = candidate_pairs(left, right, threads=1)
    assert (np.diff(li * len(right) + ri) > 0).all()
    tree_li, tree_ri = shapely.STRtree(right).query(left, predicate="intersects")
    assert sorted(zip(li.tolist(), ri.tolist())) == sorted(zip(tree_li.tolist(), tree_ri.tolist()))
    li2, ri2 = candidate_pairs(left, right, threads=2)
    assert np.array_equal(li, li2) and np.array_equal(ri, ri2)
    shapely.prepare(left)  # caller-prepared geometries take the one-thread path; same answer
    try:
        li3, ri3 = candidate_pairs(left, right, threads=2)
    finally:
        shapely.destroy_prepared(left)
    assert np.array_equal(li, li3) and np.array_equal(ri, ri3)
    for predicate in (None, "within", "touches"):
        tree_li, tree_ri = shapely.STRtree(right).query(left, predicate=predicate)
        expected = sorted(zip(tree_li.tolist(), tree_ri.tolist()))
        for prepare in (False, True):
            if prepare:
                shapely.prepare(left)
            try:
                got = candidate_pairs(left, right, predicate=predicate, threads=2)
            finally:
                shapely.destroy_prepared(left)
            assert list(zip(got[0].tolist(), got[1].tolist())) == expected, (predicate, prepare)


def test_union_groups():
    geoms = arr(box(0, 0, 1, 1), box(5, 5, 6, 6), box(1, 0, 2, 1), box(2, 0, 3, 1), box(9, 9, 10, 10))
    ids, unions = union_groups(geoms, np.array([7, 3, 7, 7, 1]))
    assert ids.tolist() == [1, 3, 7]
    assert unions[0] is geoms[4] and unions[1] is geoms[1]
    assert unions[2].equals(box(0, 0, 3, 1))
    many = voronoi_coverage(200, 5)
    ids, unions = union_groups(many, np.arange(200) % 3, threads=2)
    assert shapely.area(unions).sum() == pytest.approx(1.6e9, rel=RTOL)


# --- random coverages -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def coverages() -> tuple[np.ndarray, np.ndarray]:
    return voronoi_coverage(500, 1), voronoi_coverage(400, 2)


def test_random_union_tiles_the_extent(coverages):
    left, right = coverages
    result = overlay(left, right, how="union")
    check_output(result, len(left), len(right))
    li, ri, pieces = result
    assert (li >= 0).all() and (ri >= 0).all()  # both cover the same extent: no one-sided pieces
    area = shapely.area(pieces)
    assert area.sum() == pytest.approx(1.6e9, rel=RTOL)
    np.testing.assert_allclose(np.bincount(li, weights=area), shapely.area(left), rtol=RTOL)
    np.testing.assert_allclose(np.bincount(ri, weights=area), shapely.area(right), rtol=RTOL)


def test_random_union_with_partial_cover(coverages):
    left, _ = coverages
    shifted = (520_000.0, 2_690_000.0, 560_000.0, 2_720_000.0)  # overlaps the left extent in 20 km × 20 km
    right = voronoi_coverage(300, 3, shifted)
    li, ri, pieces = result = overlay(left, right, how="union")
    check_output(result, len(left), len(right))
    area = shapely.area(pieces)
    total = shapely.union_all([box(*EXTENT), box(*shifted)]).area
    assert area.sum() == pytest.approx(total, rel=RTOL)
    np.testing.assert_allclose(np.bincount(li[li >= 0], weights=area[li >= 0]), shapely.area(left), rtol=RTOL)
    np.testing.assert_allclose(np.bincount(ri[ri >= 0], weights=area[ri >= 0]), shapely.area(right), rtol=RTOL)
    overlap = (li >= 0) & (ri >= 0)
    assert area[overlap].sum() == pytest.approx(4e8, rel=RTOL)
    assert (li == -1).any() and (ri == -1).any()


def test_deterministic_across_runs_and_threads(coverages):
    left, right = coverages
    for how in HOWS:
        runs = [overlay(left, right, how=how, threads=t) for t in (1, 2, 2, None)]
        first = runs[0]
        for other in runs[1:]:
            assert np.array_equal(first[0], other[0]) and np.array_equal(first[1], other[1])
            assert (shapely.to_wkb(first[2]) == shapely.to_wkb(other[2])).all()


def test_intersection_matches_postgis(settings, coverages):
    left, right = coverages
    li, ri, pieces = overlay(left, right)
    conn = db.connect_url(settings.database.url)
    try:
        with conn.cursor() as cur:
            # Our pairs, one by one: ST_Area(ST_Intersection) on the same two geometries.
            cur.execute(
                "SELECT ST_Area(ST_Intersection(ST_GeomFromWKB(a, 4548), ST_GeomFromWKB(b, 4548)))"
                " FROM unnest(%s::bytea[], %s::bytea[]) WITH ORDINALITY AS t(a, b, i) ORDER BY i",
                (_wkb(left[li]), _wkb(right[ri])),
            )
            postgis_area = np.array([row[0] for row in cur.fetchall()])
            # PostGIS's own join finds the same pairs with area.
            cur.execute(
                "WITH l AS (SELECT i - 1 AS id, ST_GeomFromWKB(g, 4548) AS g FROM unnest(%s::bytea[]) WITH ORDINALITY AS t(g, i)),"
                " r AS (SELECT i - 1 AS id, ST_GeomFromWKB(g, 4548) AS g FROM unnest(%s::bytea[]) WITH ORDINALITY AS t(g, i))"
                " SELECT l.id, r.id FROM l JOIN r ON ST_Intersects(l.g, r.g)"
                " WHERE ST_Area(ST_Intersection(l.g, r.g)) > 0 ORDER BY 1, 2",
                (_wkb(left), _wkb(right)),
            )
            postgis_pairs = cur.fetchall()
    finally:
        conn.close()
    np.testing.assert_allclose(shapely.area(pieces), postgis_area, rtol=RTOL)
    assert postgis_pairs == list(zip(li.tolist(), ri.tolist()))


def _wkb(geoms: np.ndarray) -> list[bytes]:
    return [bytes(b) for b in shapely.to_wkb(geoms)]


@pytest.mark.parametrize("how", HOWS)
def test_matches_geopandas_overlay(coverages, how):
    geopandas = pytest.importorskip("geopandas")
    left, _ = coverages
    right = voronoi_coverage(300, 4, (510_000.0, 2_690_000.0, 550_000.0, 2_730_000.0))
    li, ri, pieces = overlay(left, right, how=how)
    ours = {(int(a), int(b)): float(g.area) for a, b, g in zip(li, ri, pieces)}

    gl = geopandas.GeoDataFrame({"li": np.arange(len(left))}, geometry=left, crs=4548)
    gr = geopandas.GeoDataFrame({"ri": np.arange(len(right))}, geometry=right, crs=4548)
    theirs_df = geopandas.overlay(gl, gr, how=how, keep_geom_type=True)
    their_ri = theirs_df["ri"] if "ri" in theirs_df else np.full(len(theirs_df), np.nan)  # difference: left only
    theirs = {
        (int(-1 if np.isnan(a) else a), int(-1 if np.isnan(b) else b)): float(g.area)
        for a, b, g in zip(theirs_df["li"], their_ri, theirs_df.geometry)
        if not g.is_empty and g.area > 0
    }
    # GeoPandas always computes difference(feature, union of partners); where the feature is covered that
    # leaves round-off slivers (1e-9 m² … 1e-7 m² here). We skip those differences (pieces sum to the
    # feature's area within 1e-9), so their slivers below that share of the feature are noise to ignore.
    source_area = {"left": shapely.area(left), "right": shapely.area(right)}
    theirs = {
        (a, b): area
        for (a, b), area in theirs.items()
        if not (b == -1 and area <= RTOL * source_area["left"][a])
        and not (a == -1 and area <= RTOL * source_area["right"][b])
    }
    assert ours.keys() == theirs.keys()
    for (a, b), area in ours.items():
        source = source_area["left"][a] if a >= 0 else source_area["right"][b]
        noise = RTOL * source if -1 in (a, b) else 0.0  # their one-sided pieces carry those slivers as parts
        assert area == pytest.approx(theirs[a, b], rel=RTOL, abs=noise), (a, b)
