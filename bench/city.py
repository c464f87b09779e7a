"""Integration and detection at city scale, and against what a user would write instead.

    .venv/bin/python -m bench.city                                  # 100k, 300k and 1M land-use patches
    .venv/bin/python -m bench.city --patches 2000                   # a smoke run

For each size, the generator's city (`python -m geoservice.datagen city`: N land-use patches, 0.8·N urban-plan
patches, the red line, basic farmland, development boundary and projects over Xiamen's real districts) is generated,
or reused from .geoservice/bench/city-N, and ingested into a fresh database geoservice_bench_city_N, integrated and
detected. Per step it prints seconds, peak RSS (the process's high-water mark, reset before each step) and the
growth against the smallest size. Targets (issue 13): 1M patches integrate ≤ 150 s, detect ≤ 60 s, peak RSS ≤ 6 GB;
growth from 100k to 1M ≤ 11× per step.

On the smallest size, the same job — the plans' union, the district split, each protection line's overlap area per
patch, the plan-difference rules (城建土非, 土建城非) — is also done the ways a user would do it instead, on the same
stored layers:

- GeoPandas: `geopandas.overlay` union of the plans, identity with the districts, intersection with each dissolved
  line (areas summed per patch), and each rule as an intersection of the selected features split by district;
- PostGIS SQL on the stored layers: the same in SQL, with `ST_Subdivide` for the districts and the dissolved lines
  and `ST_Within` before `ST_Intersection`, as a good PostGIS user writes it.

Both must give geoservice's patch count, total area, line overlap totals and conflict counts and areas (asserted), so
the times compare the same work; geoservice's time is `geoservice integrate` plus `geoservice detect` of those rules
(reading and storing included), GeoPandas' does not include writing its result. Target: geoservice ≤ 0.3× each.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from psycopg2 import sql

from geoservice import db
from geoservice.basemap import integrate
from geoservice.conflicts import load_rules
from geoservice.review import detect
from geoservice.conflicts.rules import PlanDifference
from geoservice.datagen.build import generate_city
from geoservice.db.connection import connect_url, with_database
from geoservice.db.read import current_rows_sql, current_run
from geoservice.ingest import ingest_layer, load_definition
from geoservice.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".geoservice" / "bench"
DATABASE = "geoservice_bench_city_{patches}"
LINE_KINDS = ("red_line", "basic_farmland", "dev_boundary")
#: what the alternatives must match: counts exactly, areas to this (relative; PostGIS runs another GEOS version)
AREA_RTOL = 1e-7
#: plan-difference class -> (land-use plan feature is construction, urban plan feature is construction)
CONSTRUCTION = {"urban_only": (False, True), "land_only": (True, False), "both_construction": (True, True),
                "both_non_construction": (False, False)}
T = TypeVar("T")


@dataclass
class Step:
    """One measured step."""

    seconds: float
    peak_mb: float | None


@dataclass
class Job:
    """What one way of doing the job produced, and what it cost."""

    method: str
    step: Step
    patches: int
    area_m2: float
    line_m2: dict[str, float]
    conflicts: dict[str, tuple[int, float]]


def reset_peak() -> None:
    """Reset this process's peak resident set size (Linux: VmHWM) to the current one."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_mb() -> float:
    """This process's peak resident set size since the last reset, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def measured(work: Callable[[], T], in_process: bool = True) -> tuple[T, Step]:
    """work()'s result, its seconds and (for work done in this process) its peak RSS."""
    reset_peak()
    started = time.perf_counter()
    result = work()
    return result, Step(time.perf_counter() - started, peak_mb() if in_process else None)


def city_settings(base: Settings, patches: int, seed: int, work: Path) -> tuple[Settings, list[Path]]:
    """A fresh database for the city of `patches` land-use patches, and its layer definitions (generated into
    `work`/city-N unless there)."""
    folder = work / f"city-{patches}"
    if not (folder / "landuse.yaml").exists():
        generate_city(folder, n_patches=patches, seed=seed)
    settings = db.create_scratch_database(base, DATABASE.format(patches=patches), lambda _: None)
    return settings, [ROOT / "layers" / "districts.yaml", *sorted(folder.glob("*.yaml"))]


def run_city(settings: Settings, definitions: list[Path]) -> dict[str, Step]:
    """Ingest every layer, integrate, detect: each step measured."""
    steps = {}
    _, steps["ingest"] = measured(lambda: [ingest_layer(settings, load_definition(path)) for path in definitions])
    _, steps["integrate"] = measured(lambda: integrate(settings))
    _, steps["detect"] = measured(lambda: detect(settings))
    return steps


def city_exists(base: Settings, patches: int) -> bool:
    """Whether the city's database geoservice_bench_city_N exists."""
    url = with_database(db.up(base, lambda _: None), "postgres")
    with closing(connect_url(url)) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE.format(patches=patches),))
        return cursor.fetchone() is not None


def city_base_map(base: Settings, patches: int, seed: int, work: Path) -> tuple[Settings, int]:
    """The city's database settings and its current integration run: reused when there is one (integrated in full
    again when it is incremental: its partition holds only what it recomputed), else built."""
    name = DATABASE.format(patches=patches)
    url = with_database(db.up(base, lambda _: None), name)
    if city_exists(base, patches):
        with closing(connect_url(url)) as connection, connection.cursor() as cursor:
            run = current_run(cursor, "integration")
        if run is not None:
            settings = base.model_copy(update={"database": base.database.model_copy(update={"url": url})})
            if run.base_run_id is not None:
                print(f"the {patches:,}-patch city's base map run {run.id} is incremental: integrating in full",
                      flush=True)
                return settings, integrate(settings, full=True).run_id
            print(f"reusing the {patches:,}-patch city's base map (run {run.id})", flush=True)
            return settings, run.id
    print(f"building the {patches:,}-patch city's base map …", flush=True)
    settings, definitions = city_settings(base, patches, seed, work)
    steps = run_city(settings, definitions)
    print("  " + ", ".join(f"{name} {step.seconds:.1f} s" for name, step in steps.items()), flush=True)
    with closing(connect_url(settings.database.url)) as connection, connection.cursor() as cursor:
        return settings, current_run(cursor, "integration").id


def plan_rules(settings: Settings) -> list[PlanDifference]:
    """The plan-difference rules of config/rules.yaml (the part of detection the alternatives do too)."""
    return [rule for rule in load_rules(settings.path(settings.paths.rules)).selected(None) if isinstance(rule, PlanDifference)]


def rows(settings: Settings, statement: str, params: dict[str, object] | None = None) -> list[tuple]:
    """All rows of one statement."""
    with closing(connect_url(settings.database.url)) as conn, conn.cursor() as cur:
        cur.execute(statement, params)
        return cur.fetchall()


def active_versions(settings: Settings) -> dict[str, int]:
    """Active version id by layer kind (one layer of each kind in the generated city)."""
    return dict(rows(settings, "SELECT l.kind, v.id FROM geoservice.layer_version v JOIN geoservice.layer l "
                               "ON l.name = v.layer WHERE v.is_active"))


def geoservice_job(settings: Settings, integrated: Step) -> Job:
    """The run's `integrate` step plus `detect` of the plan-difference rules; the results read back from PostGIS."""
    _, rules = measured(lambda: detect(settings, [rule.id for rule in plan_rules(settings)]))
    step = Step(integrated.seconds + rules.seconds, max(integrated.peak_mb, rules.peak_mb))
    (patches, area, *lines), = rows(settings, """
        SELECT count(*), sum(area_m2), sum(red_line_m2), sum(farmland_m2), sum(dev_boundary_m2)
        FROM geoservice.basemap_patch p WHERE """ + current_rows_sql("integration", "p"))
    conflicts = rows(settings, """
        SELECT rule_id, count(*), sum(area_m2) FROM geoservice.conflict c
        WHERE """ + current_rows_sql("detection", "c") + " GROUP BY rule_id")
    return Job("geoservice (integrate + detect of those rules)", step, patches, area, dict(zip(LINE_KINDS, lines)),
               {rule: (count, total) for rule, count, total in conflicts})


# --- GeoPandas -----------------------------------------------------------------------------------------------


def geopandas_job(settings: Settings) -> Job:
    """The job as a GeoPandas pipeline, reading the layers from PostGIS (nothing is written back)."""
    import geopandas
    import sqlalchemy

    engine = sqlalchemy.create_engine("postgresql+psycopg2://", creator=lambda: connect_url(settings.database.url))
    versions = active_versions(settings)
    sliver = settings.integration.sliver_area_m2

    def layer(kind: str, prefix: str) -> geopandas.GeoDataFrame:
        frame = geopandas.read_postgis(
            "SELECT f.id, f.source_id, c.construction, f.geom AS geometry FROM geoservice.feature f "
            "LEFT JOIN geoservice.land_class c ON c.code = f.class_code WHERE f.version_id = %(v)s",
            engine, geom_col="geometry", params={"v": versions[kind]})
        return frame.rename(columns={name: prefix + name for name in ("id", "source_id", "construction")})

    def split(frame: geopandas.GeoDataFrame, districts: geopandas.GeoDataFrame) -> geopandas.GeoDataFrame:
        parts = geopandas.overlay(frame, districts[["d_source_id", "geometry"]], how="identity", keep_geom_type=True)
        return parts[parts.area >= sliver]

    def work() -> tuple[int, float, dict[str, float], dict[str, tuple[int, float]]]:
        land, plan, districts = layer("land_use", "l_"), layer("urban_plan", "p_"), layer("district", "d_")
        union = geopandas.overlay(land, plan, how="union", keep_geom_type=True)
        patches = split(union, districts).reset_index(drop=True)
        lines = {}
        for kind in LINE_KINDS:
            dissolved = layer(kind, "x_")[["geometry"]].dissolve().explode(index_parts=False)
            pieces = geopandas.overlay(patches[["geometry"]].assign(patch=patches.index), dissolved, how="intersection",
                                       keep_geom_type=True)
            per_patch = pieces.area.groupby(pieces["patch"]).sum().reindex(patches.index, fill_value=0.0)
            lines[kind] = float(np.minimum(per_patch, patches.area).sum())
        conflicts = {}
        for rule in plan_rules(settings):
            count, total = 0, 0.0
            for difference in rule.classes:
                land_c, plan_c = CONSTRUCTION[difference]
                subject = land[land["l_construction"].eq(land_c).fillna(False).astype(bool)]
                other = plan[plan["p_construction"].eq(plan_c).fillna(False).astype(bool)]
                pieces = geopandas.overlay(subject, other, how="intersection", keep_geom_type=True)
                found = split(pieces[pieces.area >= rule.min_area_m2], districts)
                count, total = count + len(found), total + float(found.area.sum())
            conflicts[rule.id] = (count, total)
        return len(patches), float(patches.area.sum()), lines, conflicts

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GeoPandas' warnings about its overlay's inputs
        (patches, area, lines, conflicts), step = measured(work)
    engine.dispose()
    return Job("GeoPandas (overlay union, identity, intersections)", step, patches, area, lines, conflicts)


# --- PostGIS SQL ---------------------------------------------------------------------------------------------

EMPTY = "ST_SetSRID('MULTIPOLYGON EMPTY'::geometry, {srid})"

PIECES = """
CREATE TEMP TABLE piece AS
SELECT row_number() OVER () AS piece_id, * FROM (
    SELECT l.id AS land_id, p.id AS plan_id, ST_CollectionExtract(ST_Intersection(l.geom, p.geom), 3) AS geom
    FROM geoservice.feature l JOIN geoservice.feature p ON ST_Intersects(l.geom, p.geom)
    WHERE l.version_id = %(land)s AND p.version_id = %(plan)s
    UNION ALL
    SELECT l.id, NULL, ST_CollectionExtract(ST_Difference(l.geom, coalesce((SELECT ST_Union(p.geom) FROM geoservice.feature p
        WHERE p.version_id = %(plan)s AND ST_Intersects(p.geom, l.geom)), {empty})), 3)
    FROM geoservice.feature l WHERE l.version_id = %(land)s
    UNION ALL
    SELECT NULL, p.id, ST_CollectionExtract(ST_Difference(p.geom, coalesce((SELECT ST_Union(l.geom) FROM geoservice.feature l
        WHERE l.version_id = %(land)s AND ST_Intersects(l.geom, p.geom)), {empty})), 3)
    FROM geoservice.feature p WHERE p.version_id = %(plan)s
) s WHERE ST_Area(geom) > 0;
CREATE INDEX ON piece USING gist (geom);
ANALYZE piece;
"""

SUBDIVIDED = """
CREATE TEMP TABLE district_part AS
SELECT source_id AS district, ST_Subdivide(geom, 256) AS geom FROM geoservice.feature WHERE version_id = %(district)s;
CREATE INDEX ON district_part USING gist (geom);
CREATE TEMP TABLE line_part AS
SELECT l.kind, ST_Subdivide(ST_Union(f.geom), 256) AS geom
FROM geoservice.feature f JOIN geoservice.layer_version v ON v.id = f.version_id JOIN geoservice.layer l ON l.name = v.layer
WHERE v.is_active AND l.kind IN ('red_line', 'basic_farmland', 'dev_boundary') GROUP BY l.kind;
CREATE INDEX ON line_part USING gist (geom);
ANALYZE district_part;
ANALYZE line_part;
"""

#: {table}'s rows (an id column {key} and geom) split by district: the part in each district (over its subdivided
#: parts, unioned) and the part outside every district; slivers dropped.
SPLIT = """
CREATE TEMP TABLE {out} AS
SELECT row_number() OVER () AS patch_id, * FROM (
    SELECT c.{key}, d.district, ST_CollectionExtract(ST_Union(
        CASE WHEN ST_Within(c.geom, d.geom) THEN c.geom ELSE ST_Intersection(c.geom, d.geom) END), 3) AS geom
    FROM {table} c JOIN district_part d ON ST_Intersects(c.geom, d.geom) GROUP BY c.{key}, d.district
    UNION ALL
    SELECT c.{key}, NULL, ST_CollectionExtract(ST_Difference(c.geom, coalesce((SELECT ST_Union(d.geom) FROM district_part d
        WHERE ST_Intersects(d.geom, c.geom)), {empty})), 3)
    FROM {table} c WHERE NOT EXISTS (SELECT 1 FROM district_part d WHERE ST_Within(c.geom, d.geom))
) s WHERE ST_Area(geom) >= %(sliver)s;
"""

LINES = """
SELECT kind, sum(least(m2, area)) FROM (
    SELECT p.patch_id, lp.kind, max(ST_Area(p.geom)) AS area,
           sum(ST_Area(CASE WHEN ST_Within(p.geom, lp.geom) THEN p.geom ELSE ST_Intersection(p.geom, lp.geom) END)) AS m2
    FROM patch p JOIN line_part lp ON ST_Intersects(p.geom, lp.geom) GROUP BY p.patch_id, lp.kind
) overlap GROUP BY kind
"""

RULE_PIECES = """
CREATE TEMP TABLE {out} AS
SELECT row_number() OVER () AS piece_id, geom FROM (
    SELECT ST_CollectionExtract(ST_Intersection(l.geom, p.geom), 3) AS geom
    FROM geoservice.feature l JOIN geoservice.land_class lc ON lc.code = l.class_code
    JOIN geoservice.feature p ON ST_Intersects(l.geom, p.geom) JOIN geoservice.land_class pc ON pc.code = p.class_code
    WHERE l.version_id = %(land)s AND p.version_id = %(plan)s AND lc.construction = %(land_c)s AND pc.construction = %(plan_c)s
) s WHERE ST_Area(geom) >= %(min_area)s;
CREATE INDEX ON {out} USING gist (geom);
ANALYZE {out};
"""

def postgis_job(settings: Settings) -> Job:
    """The job in PostGIS SQL on the stored layers, in one session (temporary tables)."""
    versions = active_versions(settings)
    empty = sql.SQL(EMPTY.format(srid=settings.working_srid))
    params = {"land": versions["land_use"], "plan": versions["urban_plan"], "district": versions["district"],
              "sliver": settings.integration.sliver_area_m2}

    def split(cur, table: str, key: str, out: str) -> None:  # noqa: ANN001
        cur.execute(sql.SQL(SPLIT).format(out=sql.Identifier(out), table=sql.Identifier(table), key=sql.Identifier(key),
                                          empty=empty), params)

    def work(cur) -> tuple[int, float, dict[str, float], dict[str, tuple[int, float]]]:  # noqa: ANN001
        cur.execute(sql.SQL(PIECES).format(empty=empty), params)
        cur.execute(SUBDIVIDED, params)
        split(cur, "piece", "piece_id", "patch")
        cur.execute("CREATE INDEX ON patch USING gist (geom); ANALYZE patch")
        cur.execute("SELECT count(*), sum(ST_Area(geom)) FROM patch")
        patches, area = cur.fetchone()
        cur.execute(LINES)
        lines = {kind: 0.0 for kind in LINE_KINDS} | {kind: float(m2) for kind, m2 in cur.fetchall()}
        conflicts = {}
        for number, rule in enumerate(plan_rules(settings)):
            count, total = 0, 0.0
            for difference in rule.classes:
                land_c, plan_c = CONSTRUCTION[difference]
                pieces, found = f"rule_piece_{number}_{difference}", f"rule_conflict_{number}_{difference}"
                cur.execute(sql.SQL(RULE_PIECES).format(out=sql.Identifier(pieces)),
                            {**params, "land_c": land_c, "plan_c": plan_c, "min_area": rule.min_area_m2})
                split(cur, pieces, "piece_id", found)
                cur.execute(sql.SQL("SELECT count(*), coalesce(sum(ST_Area(geom)), 0) FROM {}").format(sql.Identifier(found)))
                n, m2 = cur.fetchone()
                count, total = count + n, total + float(m2)
            conflicts[rule.id] = (count, total)
        return patches, float(area), lines, conflicts

    conn = connect_url(settings.database.url)
    try:
        with conn.cursor() as cur:
            (patches, area, lines, conflicts), step = measured(lambda: work(cur), in_process=False)
        conn.rollback()
    finally:
        conn.close()
    return Job("PostGIS SQL (ST_Subdivide, ST_Within, ST_Intersection)", step, patches, area, lines, conflicts)


# --- report --------------------------------------------------------------------------------------------------


def assert_same_work(ours: Job, theirs: Job) -> None:
    """The alternative found what geoservice found: patch count, areas, line overlaps, conflicts."""
    def close(a: float, b: float) -> bool:
        return abs(a - b) <= AREA_RTOL * max(abs(a), abs(b), 1.0)

    problems = []
    if ours.patches != theirs.patches:
        problems.append(f"patches {theirs.patches:,} ≠ {ours.patches:,}")
    if not close(ours.area_m2, theirs.area_m2):
        problems.append(f"area {theirs.area_m2:.3f} ≠ {ours.area_m2:.3f} m²")
    problems += [f"{kind} overlap {theirs.line_m2[kind]:.3f} ≠ {m2:.3f} m²" for kind, m2 in ours.line_m2.items()
                 if not close(m2, theirs.line_m2[kind])]
    for rule, (count, total) in ours.conflicts.items():
        other = theirs.conflicts[rule]
        if other[0] != count or not close(other[1], total):
            problems.append(f"{rule}: {other[0]:,} conflicts, {other[1]:.3f} m² ≠ {count:,}, {total:.3f} m²")
    assert not problems, f"{theirs.method} did other work: " + "; ".join(problems)


def mb(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def print_scaling(results: dict[int, dict[str, Step]]) -> None:
    smallest = min(results)
    print(f"\n{'patches':>10s} {'step':10s} {'seconds':>9s} {'peak MB':>9s} {'× ' + format(smallest, ','):>12s}")
    for patches, steps in results.items():
        for name, step in steps.items():
            growth = step.seconds / results[smallest][name].seconds
            print(f"{patches:>10,d} {name:10s} {step.seconds:>9.2f} {mb(step.peak_mb):>9s} {growth:>12.2f}")


def print_comparison(patches: int, jobs: list[Job]) -> None:
    ours = jobs[0]
    print(f"\nthe same job on the {patches:,}-patch city: {ours.patches:,} patches, {ours.area_m2 / 1e4:,.2f} ha; "
          + ", ".join(f"{rule} {count:,}" for rule, (count, _) in ours.conflicts.items()))
    print(f"{'method':58s} {'seconds':>9s} {'peak MB':>9s} {'geoservice ×':>13s}")
    for job in jobs:
        print(f"{job.method:58s} {job.step.seconds:>9.2f} {mb(job.step.peak_mb):>9s} "
              f"{ours.step.seconds / job.step.seconds:>13.3f}")
    print("targets: geoservice ≤ 0.3× GeoPandas and ≤ 0.3× PostGIS SQL")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patches", default="100000,300000,1000000", help="land-use patches per city, comma-separated")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-alternatives", action="store_true", help="skip GeoPandas and PostGIS SQL")
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    parser.add_argument("--work", type=Path, default=WORK, help=f"where the cities are generated (default {WORK})")
    args = parser.parse_args(argv)
    sizes = sorted(int(size) for size in args.patches.split(","))
    base = load_settings(ROOT / "config" / "geoservice.yaml")
    db.up(base, lambda _: None)
    results: dict[int, dict[str, Step]] = {}
    for patches in sizes:
        settings, definitions = city_settings(base, patches, args.seed, args.work)
        try:
            results[patches] = run_city(settings, definitions)
            print(f"city of {patches:,} patches: " + ", ".join(f"{name} {step.seconds:.1f} s"
                                                              for name, step in results[patches].items()), flush=True)
            if patches == sizes[0] and not args.no_alternatives:
                jobs = [geoservice_job(settings, results[patches]["integrate"]), geopandas_job(settings),
                        postgis_job(settings)]
                for job in jobs[1:]:
                    assert_same_work(jobs[0], job)
                comparison = (patches, jobs)
        finally:
            if not args.keep:
                db.drop_database(settings.database.url, DATABASE.format(patches=patches))
    print_scaling(results)
    if not args.no_alternatives:
        print_comparison(*comparison)


if __name__ == "__main__":
    main()
