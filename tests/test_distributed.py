"""Integration and detection as spatial tiles on Dask distributed (a real LocalCluster of 2 worker processes): the
same base map and conflicts as in process — with KD tiles, a grid with an empty tile and features crossing many
tiles, and tiles so small that most pieces touch a tile edge —, a worker killed mid-run, a tile failing for good."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import shapely
from city_helpers import ingested_city
from conftest import demo_database
from sql_helpers import query

from geoservice import db
from geoservice.basemap import integrate
from geoservice.basemap.tiled import integrate_tiled, plan_tiles
from geoservice.compute.tiles import Tile, check_cover, grid_tiles, kd_tiles, owned
from geoservice.db import transaction
from geoservice.db.read import active_versions
from geoservice.errors import GeoserviceError

RTOL = 1e-9
PATCH_COLUMNS = ("land_code", "plan_code", "difference", "area_m2", "piece_m2", "red_line_m2", "farmland_m2",
                 "dev_boundary_m2", "in_red_line", "in_farmland", "in_dev_boundary")


# --- tiles and ownership (no cluster) ------------------------------------------------------------------------------


def test_kd_tiles_cover_the_plane_once_and_balance_the_weight() -> None:
    rng = np.random.default_rng(7)
    lower = np.concatenate([rng.normal(0, 100, (3000, 2)), rng.normal(5000, 10, (3000, 2))])  # a sparse and a dense spot
    bounds = np.column_stack([lower, lower + rng.uniform(1, 50, (6000, 2))])
    vertices = rng.integers(5, 400, 6000)
    tiles = kd_tiles(bounds, vertices, target=500)
    check_cover(tiles)
    weights = [t.weight for t in tiles]
    assert 10 <= len(tiles) <= 40 and max(weights) <= 500 and min(weights) >= 120, weights
    assert math.isclose(sum(weights), 6000, rel_tol=1e-6) and sum(t.features for t in tiles) == 6000
    # every point of the plane, tile edges and corners included, lies in exactly one tile
    cuts = np.array([[t.x0, t.y0] for t in tiles] + [[t.x1, t.y1] for t in tiles])
    cuts = cuts[np.isfinite(cuts).all(axis=1)]
    points = np.concatenate([cuts, rng.normal(0, 3000, (2000, 2)), [[-1e300, 1e300], [1e300, -1e300]]])
    counts = sum(t.owns(points[:, 0], points[:, 1]).astype(int) for t in tiles)
    assert (counts == 1).all()


def test_a_piece_is_owned_by_the_tile_of_its_lower_left_corner() -> None:
    tiles = grid_tiles([0.0, 10.0], [0.0])
    check_cover(tiles)
    pieces = np.array([shapely.box(0, 0, 20, 5), shapely.box(-5, -5, 1, 1), shapely.box(10, -1, 11, 0)], dtype=object)
    owners = np.array([[owned(t, pieces)[i] for t in tiles] for i in range(3)])
    assert (owners.sum(axis=1) == 1).all()
    assert [tiles[int(np.argmax(row))].index for row in owners] == [4, 0, 2]
    with pytest.raises(ValueError, match="cover the plane"):
        check_cover(tiles[:-1] + [Tile(5, 0, 0, 10, 10)])


class FakeClient:
    """What check_workers asks of a Dask client, with workers answering `identities`."""

    def __init__(self, identities):
        self.identities = identities

    def wait_for_workers(self, n, timeout):
        if not self.identities:
            raise TimeoutError

    def run(self, fn):
        if isinstance(self.identities, Exception):
            raise self.identities
        return self.identities

    def nthreads(self):
        return {worker: 2 for worker in self.identities}


def test_workers_must_run_this_geoservice_on_this_geos() -> None:
    from geoservice.compute.dask_run import check_workers, identity

    mine = identity()
    assert check_workers(FakeClient({"tcp://a:1": mine, "tcp://b:1": mine}), "tcp://s:8786") == 4
    other = {**mine, "code": "0123456789abcdef"}
    with pytest.raises(GeoserviceError, match=r"Dask worker tcp://b:1 runs another geoservice: code 0123456789abcdef "
                                              rf"\(here {mine['code']}\)"):
        check_workers(FakeClient({"tcp://a:1": mine, "tcp://b:1": other}), "tcp://s:8786")
    with pytest.raises(GeoserviceError, match=r"cannot run geoservice \(ModuleNotFoundError"):
        check_workers(FakeClient(ModuleNotFoundError("No module named 'geoservice'")), "tcp://s:8786")
    with pytest.raises(GeoserviceError, match=r"no Dask worker joined the scheduler at tcp://s:8786 within 1 s"):
        check_workers(FakeClient({}), "tcp://s:8786", wait_seconds=1)


# --- against the in-process runs ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scheduler():
    """A LocalCluster of 2 worker processes with one thread each: its address."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0") as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def demo(base_settings):
    """A demo database of this module's own (its runs are made current here), integrated and detected in process."""
    with demo_database(base_settings, f"geoservice_dask_demo_{os.getpid()}") as settings:
        yield settings


@pytest.fixture(scope="module")
def city(base_settings, tmp_path_factory):
    name = f"geoservice_dask_city_{os.getpid()}"
    settings = ingested_city(base_settings, name, tmp_path_factory.mktemp("city"))
    try:
        integrate(settings)
        yield settings
    finally:
        db.drop_database(settings.database.url, name)


def current_run(settings, kind: str = "integration") -> int:
    return query(settings, f"SELECT id FROM geoservice.{kind}_run WHERE is_current")[0][0]


def patches(settings, run_id: int) -> dict[tuple, tuple]:
    """(land feature, plan feature, district) -> the patch's columns and its geometry's WKB digest."""
    rows = query(settings, f"SELECT land_feature_id, plan_feature_id, district_code, {', '.join(PATCH_COLUMNS)}, "
                           "md5(ST_AsBinary(geom)) FROM geoservice.basemap_patch WHERE run_id = %s", run_id)
    out = {tuple(row[:3]): tuple(row[3:]) for row in rows}
    assert len(out) == len(rows)
    return out


def assert_same_patches(settings, want_run: int, got_run: int) -> dict[tuple, tuple]:
    want, got = patches(settings, want_run), patches(settings, got_run)
    assert got.keys() == want.keys()
    for key, values in want.items():
        other = got[key]
        assert other[:3] == values[:3], key  # both codes and the difference class
        area = values[3]
        assert other[3] == pytest.approx(area, rel=RTOL) and other[4] == pytest.approx(values[4], rel=RTOL), key
        for a, b in zip(other[5:8], values[5:8]):  # line overlaps (m²)
            assert a == pytest.approx(b, rel=RTOL, abs=RTOL * area), key
        assert other[8:11] == values[8:11], key  # in the lines
        assert other[11] == values[11], key  # the same piece, bit for bit
    return want


def test_demo_base_map_on_dask_equals_in_process(demo, scheduler) -> None:
    want_run = current_run(demo)
    summary = integrate(demo, scheduler=scheduler)
    assert summary.run_id == current_run(demo) != want_run
    assert summary.distributed["tiles"] >= 4 and summary.distributed["worker_threads"] == 2
    want = assert_same_patches(demo, want_run, summary.run_id)
    assert summary.patches == len(want) > 5000


def _tiles_of(settings, target: int, workers: int = 2) -> list[Tile]:
    small = settings.model_copy(update={"compute": settings.compute.model_copy(update={"tile_features": target})})
    with transaction(settings) as conn, conn.cursor() as cur:
        layers = [v for v in active_versions(cur) if v.kind in ("land_use", "urban_plan")]
        return plan_tiles(small, cur, layers, workers)


def _envelopes(settings, run_id: int) -> np.ndarray:
    return np.array(query(settings, "SELECT ST_XMin(geom), ST_YMin(geom), ST_XMax(geom), ST_YMax(geom) "
                                    "FROM geoservice.basemap_patch WHERE run_id = %s", run_id))


def _tiles_met(tiles: list[Tile], boxes: np.ndarray) -> np.ndarray:
    """How many tiles each box (closed) meets."""
    return sum(((t.x0 <= boxes[:, 2]) & (boxes[:, 0] <= t.x1) & (t.y0 <= boxes[:, 3]) & (boxes[:, 1] <= t.y1))
               .astype(int) for t in tiles)


def test_tiles_so_small_that_most_pieces_touch_an_edge(city, scheduler) -> None:
    want_run = current_run(city)
    tiles = _tiles_of(city, target=6)
    check_cover(tiles)
    assert len(tiles) > 400
    summary = integrate_tiled(city, scheduler, tiles=tiles)
    assert_same_patches(city, want_run, summary.run_id)
    met = _tiles_met(tiles, _envelopes(city, summary.run_id))
    assert (met > 1).mean() > 0.5, (met > 1).mean()  # most patches' envelopes cross a tile edge


def test_a_grid_with_an_empty_tile_and_features_across_many_tiles(city, scheduler) -> None:
    want_run = current_run(city)
    xmin, ymin, xmax, ymax = query(city, "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                                         "(SELECT ST_Extent(geom) e FROM geoservice.basemap_patch WHERE run_id = %s) x",
                                   want_run)[0]
    xs = list(np.linspace(xmin, xmax, 42)[1:-1]) + [xmax + 5000.0]  # [xmax + 5 km, ∞) × … holds nothing
    tiles = grid_tiles(xs, list(np.linspace(ymin, ymax, 5)[1:-1]))
    summary = integrate_tiled(city, scheduler, tiles=tiles)
    assert_same_patches(city, want_run, summary.run_id)
    features = np.array(query(city, "SELECT ST_XMin(geom), ST_YMin(geom), ST_XMax(geom), ST_YMax(geom) "
                                    "FROM geoservice.feature f JOIN geoservice.layer_version v ON v.id = f.version_id "
                                    "JOIN geoservice.layer l ON l.name = v.layer "
                                    "WHERE v.is_active AND l.kind IN ('land_use', 'urban_plan')"))
    assert _tiles_met(tiles, features).max() >= 6  # some plan features cross many tiles
    rows = query(city, "SELECT tile FROM geoservice.run_tile WHERE run_id = %s", summary.run_id)
    assert rows == []  # the tiles' records are gone once the run is attached


def sabotaged(scheduler: str, sabotage) -> None:
    """Run `sabotage` in every worker process (it replaces some of geoservice's functions there). The client is closed
    before the run: two clients in one process can trip over each other's event loops when a worker dies."""
    from distributed import Client

    with Client(scheduler) as client:
        client.run(sabotage)


def restart(scheduler: str) -> None:
    """Fresh worker processes (the sabotage gone)."""
    from distributed import Client

    with Client(scheduler) as client:
        client.restart()


def test_a_worker_killed_mid_run_leaves_the_same_base_map(city, scheduler, tmp_path) -> None:
    """One worker dies after sending a tile's rows, before their commit; another after committing a tile, before
    reporting it: the tiles are run again (the first from scratch, the second finding its committed rows), and the base
    map is the in-process one, no patch missing or doubled."""
    want_run = current_run(city)
    tiles = _tiles_of(city, target=200)
    marks = [str(tmp_path / "killed-before-commit"), str(tmp_path / "killed-after-commit")]

    def sabotage() -> None:  # runs in each worker process
        import signal

        from geoservice.basemap import tiled
        from geoservice.compute import dask_run

        def once(mark: str) -> bool:
            try:
                os.close(os.open(mark, os.O_CREAT | os.O_EXCL))
                return True
            except FileExistsError:
                return False

        work, task = tiled.integrate_tile, dask_run.tile_task

        def integrate_tile(cur, settings, run_id, tile, *args):
            result = work(cur, settings, run_id, tile, *args)
            if tile.index == 3 and once(marks[0]):
                from geoservice.db import transaction

                with transaction(settings) as conn, conn.cursor() as other:  # what readers see mid-run
                    other.execute("SELECT id FROM geoservice.integration_run WHERE is_current")
                    with open(marks[0], "w") as mark:
                        mark.write(str(other.fetchone()[0]))
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        def tile_task(work_, settings, stage, run_id, args, tile):
            result = task(work_, settings, stage, run_id, args, tile)
            if tile.index == 5 and once(marks[1]):
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        tiled.integrate_tile, dask_run.tile_task = integrate_tile, tile_task

    sabotaged(scheduler, sabotage)
    try:
        summary = integrate_tiled(city, scheduler, tiles=tiles)
    finally:
        restart(scheduler)
    assert all(os.path.exists(mark) for mark in marks)
    with open(marks[0]) as mark:
        assert int(mark.read()) == want_run  # mid-run, readers were served the previous run
    assert_same_patches(city, want_run, summary.run_id)


def test_a_tile_failing_for_good_fails_the_run_and_keeps_the_previous_one(city, scheduler) -> None:
    want_run = current_run(city)
    runs_before = query(city, "SELECT count(*) FROM geoservice.integration_run")[0][0]

    def sabotage() -> None:
        from geoservice.basemap import tiled

        work = tiled.integrate_tile

        def integrate_tile(cur, settings, run_id, tile, *args):
            if tile.index == 1:
                raise RuntimeError("disk on fire")
            return work(cur, settings, run_id, tile, *args)

        tiled.integrate_tile = integrate_tile

    sabotaged(scheduler, sabotage)
    try:
        with pytest.raises(GeoserviceError, match=r"integrate: tile 1 \[.*failed after 3 attempts "
                                                  r"\(RuntimeError: disk on fire\)"):
            integrate_tiled(city, scheduler, tiles=_tiles_of(city, target=400))
    finally:
        restart(scheduler)
    assert current_run(city) == want_run
    assert query(city, "SELECT count(*) FROM geoservice.integration_run")[0][0] == runs_before
    assert query(city, "SELECT count(*) FROM geoservice.run_tile")[0][0] == 0
    left = query(city, "SELECT count(*) FROM pg_tables WHERE schemaname = 'geoservice' AND tablename LIKE %s "
                       "AND tablename NOT IN (SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid)",
                 "basemap_patch_p%")[0][0]
    assert left == 0  # no unattached run table left behind


def test_a_scheduler_nobody_listens_on_is_a_clear_error(city) -> None:
    with pytest.raises(GeoserviceError, match=r"cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        integrate(city, scheduler="tcp://127.0.0.1:9")


# --- detection ------------------------------------------------------------------------------------------------------


def conflicts(settings, run_id: int) -> dict[tuple, tuple]:
    """(rule, feature A, feature B, district, difference) -> area, case, status, codes and geometry's WKB digest."""
    rows = query(settings, "SELECT rule_id, feature_a, feature_b, district_code, details->>'difference', area_m2, "
                           "case_id, status, code_a, code_b, district_name, details::text, md5(ST_AsBinary(geom)) "
                           "FROM geoservice.conflict WHERE run_id = %s", run_id)
    out = {tuple(row[:5]): tuple(row[5:]) for row in rows}
    assert len(out) == len(rows)
    return out


def assert_same_conflicts(settings, want, got, linked: bool = True) -> dict[tuple, tuple]:
    expected, found = conflicts(settings, want.run_id), conflicts(settings, got.run_id)
    assert found.keys() == expected.keys()
    for key, (area, *rest, digest) in expected.items():
        got_area, *got_rest, got_digest = found[key]
        assert got_area == pytest.approx(area, rel=RTOL), key
        assert (got_rest if linked else got_rest[2:]) == (rest if linked else rest[2:]), key
        assert got_digest == digest, key
    assert {k: v["count"] for k, v in got.by_rule.items()} == {k: v["count"] for k, v in want.by_rule.items()}
    for a, b in zip(got.by_rule_district, want.by_rule_district, strict=True):
        assert (a["rule"], a["district"], a["count"]) == (b["rule"], b["district"], b["count"])
        assert a["ha"] == pytest.approx(b["ha"], abs=1e-4)
    assert got.layer_versions == want.layer_versions and got.plan_differences_from == want.plan_differences_from
    return expected


def test_demo_conflicts_on_dask_equal_in_process(demo, scheduler) -> None:
    from geoservice.review import detect

    want = detect(demo)
    got = detect(demo, scheduler=scheduler)
    assert current_run(demo, "detection") == got.run_id and got.distributed["worker_threads"] == 2
    expected = assert_same_conflicts(demo, want, got)
    assert len({key[0] for key in expected}) >= 8 and len(expected) > 2000  # (nearly) every rule found conflicts


@pytest.mark.parametrize("basemap", [True, False], ids=["plan differences from the base map", "plans overlaid"])
def test_city_conflicts_on_tiny_tiles_equal_in_process(city, scheduler, basemap) -> None:
    from geoservice.conflicts import detect
    from geoservice.conflicts.tiled import detect_tiled
    from geoservice.review import linking

    want = detect(city, link=linking(), basemap=basemap)
    tiles = _tiles_of(city, target=12)
    got = detect_tiled(city, scheduler, link=linking(), basemap=basemap, tiles=tiles)
    assert (got.plan_differences_from is not None) == basemap
    expected = assert_same_conflicts(city, want, got)
    assert len(expected) > 500
    boxes = np.array(query(city, "SELECT ST_XMin(geom), ST_YMin(geom), ST_XMax(geom), ST_YMax(geom) "
                                 "FROM geoservice.conflict WHERE run_id = %s", got.run_id))
    assert (_tiles_met(tiles, boxes) > 1).mean() > 0.3  # many conflicts cross a tile edge


def test_a_review_while_the_tiles_run_is_on_the_new_rows(city, scheduler, tmp_path) -> None:
    """The tiles link their conflicts to the cases as they go, reading each case's status; a reviewer who confirms a
    case after its tile read it (while other tiles may still run) finds the confirmation on the new run's rows."""
    from geoservice.review import detect, set_status

    previous = detect(city).run_id  # in process: every case exists
    settings, mark = city, tmp_path / "reviewed-case"

    def sabotage() -> None:
        from psycopg2 import sql

        from geoservice.conflicts import tiled
        from geoservice.db import partitions

        work = tiled.detect_tile

        def detect_tile(cur, tile_settings, run_id, tile, *args):
            result = work(cur, tile_settings, run_id, tile, *args)  # linked: its cases' statuses read
            if tile.index == 0:  # one of its open cases is confirmed before the tile commits
                cur.execute(sql.SQL("SELECT o.id, o.case_id FROM {} t JOIN geoservice.conflict o ON o.case_id = t.case_id "
                                    "AND o.run_id = %s WHERE t.status = 'open' ORDER BY o.id LIMIT 1").format(
                    partitions.partition_table("conflict", run_id)), (previous,))
                conflict_id, case_id = cur.fetchone()
                set_status(settings, conflict_id, "confirmed", "checked on site", "reviewer-1")
                mark.write_text(str(case_id))
            return result

        tiled.detect_tile = detect_tile

    sabotaged(scheduler, sabotage)
    try:
        run_id = detect(city, scheduler=scheduler).run_id
    finally:
        restart(scheduler)
    case_id = int(mark.read_text())
    assert query(city, "SELECT DISTINCT status FROM geoservice.conflict WHERE run_id = %s AND case_id = %s",
                 run_id, case_id) == [("confirmed",)]
    assert query(city, "SELECT count(*) FROM geoservice.conflict c JOIN geoservice.conflict_case k ON k.id = c.case_id "
                       "WHERE c.run_id = %s AND c.status <> k.status", run_id) == [(0,)]


def test_a_detection_tile_failing_for_good_keeps_the_previous_run(city, scheduler) -> None:
    from geoservice.review import detect

    want = detect(city).run_id  # in process

    def sabotage() -> None:
        from geoservice.conflicts import tiled

        work = tiled.detect_tile

        def detect_tile(cur, settings, run_id, tile, *args):
            result = work(cur, settings, run_id, tile, *args)  # its rows are sent, then it fails: they are rolled back
            if tile.index == 0:
                raise RuntimeError("network cable cut")
            return result

        tiled.detect_tile = detect_tile

    sabotaged(scheduler, sabotage)
    try:
        with pytest.raises(GeoserviceError, match=r"detect: tile 0 .*failed after 3 attempts"):
            detect(city, scheduler=scheduler)
    finally:
        restart(scheduler)
    assert current_run(city, "detection") == want
    assert query(city, "SELECT count(*) FROM geoservice.detection_run WHERE finished_at IS NULL")[0][0] == 0


# --- the command line -----------------------------------------------------------------------------------------------


def test_the_command_line_runs_on_a_local_cluster_with_progress(demo) -> None:
    import subprocess
    import sys

    env = {**os.environ, "GEOSERVICE_DATABASE_URL": demo.database.url, "COLUMNS": "200"}
    env.pop("GEOSERVICE_SCHEDULER", None)
    before = current_run(demo)
    result = subprocess.run([sys.executable, "-m", "geoservice", "integrate", "--scheduler", "local:2"], env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert current_run(demo) != before
    assert "Dask dashboard: http://" in result.stderr and "slowest tiles: tile " in result.stderr, result.stderr
    assert "on Dask (local:2): " in result.stdout and "tiles on 2 worker threads" in result.stdout, result.stdout
    result = subprocess.run([sys.executable, "-m", "geoservice", "detect", "--scheduler", "local:0"], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0 and "local:N needs a number of worker processes N ≥ 1" in result.stderr, result.stderr
    env["GEOSERVICE_SCHEDULER"] = "nonsense"
    result = subprocess.run([sys.executable, "-m", "geoservice", "detect"], env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode != 0, result.stderr
    assert "environment variable GEOSERVICE_SCHEDULER: compute.scheduler: 'nonsense' is neither local:N nor a " \
           "scheduler address" in result.stderr, result.stderr
