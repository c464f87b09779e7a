"""`geoservice diff LAYER V1 V2`: what changed between two versions of a layer, computed by PostGIS.

Features are paired by source id (the layer's id field); features without one (a layer without id field, or a
version loaded before it had one) are paired by geometry: an old and a new feature whose overlap is at least
`MIN_OVERLAP` of each of them and each other's best such partner. A pair is *changed* when its geometry
(topologically), unified code, original code, name or any kept attribute differs; unpaired features are *added*
or *removed*.

Areas gained and lost per unified class are exact point-set differences: the area class C gained is
area(union of new C features − union of old C features), found from the added and changed features and the
old features they meet. Per district the same pieces are cut by the active district layer (the configured one
when several are active); what lies outside every district is counted under no district. Both versions are
partitions of geoservice.feature, in the working CRS, so areas are m².
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import psycopg2
import psycopg2.extensions
import pyogrio.raw

from geoservice.db.connection import transaction
from geoservice.db.layers import layers_of_kind
from geoservice.db.read import LayerVersion, active_versions, layer_versions
from geoservice.errors import GeoserviceError
from geoservice.settings import Settings

#: least overlap, as a share of each feature's area, for pairing features without source ids
MIN_OVERLAP = 0.5
#: areas below this (m²) are floating-point noise of the overlay, counted as zero
AREA_NOISE_M2 = 1e-6
GPKG_LAYER = "changes"


class ChangeReportError(GeoserviceError):
    """A change report cannot be made: unknown layer or version, ambiguous ids or districts."""


@dataclass(frozen=True)
class FeatureChange:
    """One added, removed or changed feature. `what` lists what changed: geometry, class_code, original_code, name,
    attributes.<key>; `matched_by` says how a changed feature was paired (source_id or geometry)."""

    change: str
    what: tuple[str, ...]
    matched_by: str | None
    source_id: str | None
    old_id: int | None
    new_id: int | None
    old_code: str | None
    new_code: str | None
    old_area_m2: float | None
    new_area_m2: float | None


@dataclass(frozen=True)
class AreaChange:
    """Area gained and lost (m²) by one unified class (code None: unclassified) or in one district (code None:
    outside every district)."""

    code: str | None
    name: str
    gained_m2: float
    lost_m2: float

    @property
    def net_m2(self) -> float:
        return self.gained_m2 - self.lost_m2

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "net_m2": self.net_m2, "gained_ha": self.gained_m2 / 1e4, "lost_ha": self.lost_m2 / 1e4,
                "net_ha": self.net_m2 / 1e4}


@dataclass
class LayerChanges:
    """The change report of a layer between two of its versions."""

    layer: str
    kind: str
    old_version: int
    new_version: int
    old_version_id: int
    new_version_id: int
    old_features: int
    new_features: int
    unchanged: int
    matched_by_id: int
    matched_by_geometry: int
    district_layer: str | None
    features: list[FeatureChange]
    by_class: list[AreaChange]
    by_district: list[AreaChange]
    old_revision: int | None = None              # None: the version as it is now
    new_revision: int | None = None
    counts: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.counts = {change: sum(f.change == change for f in self.features) for change in ("added", "removed", "changed")}

    def as_dict(self) -> dict[str, object]:
        plain = {name: getattr(self, name) for name in (
            "layer", "kind", "old_version", "old_revision", "new_version", "new_revision", "old_features", "new_features",
            "counts", "unchanged",
            "matched_by_id", "matched_by_geometry", "district_layer")}
        return {**plain, "by_class": [a.as_dict() for a in self.by_class], "by_district": [a.as_dict() for a in self.by_district],
                "features": [asdict(f) for f in self.features]}


PAIR_TABLE_SQL = """
CREATE TEMP TABLE change_pair (old_id bigint PRIMARY KEY, new_id bigint NOT NULL UNIQUE, matched_by text NOT NULL)
ON COMMIT DROP
"""

PAIR_BY_ID_SQL = """
INSERT INTO change_pair
SELECT o.id, n.id, 'source_id' FROM {old} o JOIN {new} n ON n.source_id = o.source_id
WHERE o.version_id = %(old)s AND n.version_id = %(new)s
"""

PAIR_BY_GEOMETRY_SQL = """
WITH old_left AS MATERIALIZED (
    SELECT o.id, o.source_id, o.area_m2, o.geom FROM {old} o
    WHERE o.version_id = %(old)s AND NOT EXISTS (SELECT 1 FROM change_pair p WHERE p.old_id = o.id)
), candidate AS (
    SELECT o.id AS old_id, n.id AS new_id,
           ST_Area(ST_Intersection(o.geom, n.geom)) / greatest(o.area_m2, n.area_m2) AS share
    FROM old_left o JOIN {new} n ON n.version_id = %(new)s AND ST_Intersects(o.geom, n.geom)
    WHERE (o.source_id IS NULL OR n.source_id IS NULL) AND NOT EXISTS (SELECT 1 FROM change_pair p WHERE p.new_id = n.id)
), good AS (SELECT * FROM candidate WHERE share >= %(min_overlap)s),
best_for_old AS (SELECT DISTINCT ON (old_id) old_id, new_id FROM good ORDER BY old_id, share DESC, new_id),
best_for_new AS (SELECT DISTINCT ON (new_id) old_id, new_id FROM good ORDER BY new_id, share DESC, old_id)
INSERT INTO change_pair SELECT old_id, new_id, 'geometry' FROM best_for_old JOIN best_for_new USING (old_id, new_id)
"""

PAIRED_SQL = """
SELECT p.matched_by, coalesce(n.source_id, o.source_id), p.old_id, p.new_id, o.class_code, n.class_code, o.area_m2, n.area_m2,
       array_remove(ARRAY[
           CASE WHEN o.geom = n.geom OR ST_Equals(o.geom, n.geom) THEN NULL ELSE 'geometry' END,
           CASE WHEN o.class_code IS DISTINCT FROM n.class_code THEN 'class_code' END,
           CASE WHEN o.original_code IS DISTINCT FROM n.original_code THEN 'original_code' END,
           CASE WHEN o.name IS DISTINCT FROM n.name THEN 'name' END], NULL)
       || ARRAY(SELECT 'attributes.' || k
                FROM (SELECT jsonb_object_keys(o.attributes) UNION SELECT jsonb_object_keys(n.attributes)) keys (k)
                WHERE o.attributes -> k IS DISTINCT FROM n.attributes -> k ORDER BY k)
FROM change_pair p
JOIN {old} o ON o.version_id = %(old)s AND o.id = p.old_id
JOIN {new} n ON n.version_id = %(new)s AND n.id = p.new_id
ORDER BY p.old_id
"""

UNPAIRED_SQL = """
SELECT f.source_id, f.id, f.class_code, f.area_m2 FROM {rows} f
WHERE f.version_id = %(version)s AND NOT EXISTS (SELECT 1 FROM change_pair p WHERE p.{side}_id = f.id)
ORDER BY f.id
"""

#: the area of each class in version a's features `ids` not covered by version b's features of that class, cut by
#: the districts: (class_code, district code, district name, m²); district NULL = outside every district
AREA_SQL = """
WITH subject AS (
    SELECT class_code, ST_Union(geom) AS geom FROM {a} s
    WHERE version_id = %(a)s AND id = ANY(%(ids)s) GROUP BY class_code
), other AS (
    SELECT f.class_code, ST_Union(f.geom) AS geom FROM {b} f
    WHERE f.version_id = %(b)s AND EXISTS (
        SELECT 1 FROM {a} x
        WHERE x.version_id = %(a)s AND x.id = ANY(%(ids)s) AND x.class_code IS NOT DISTINCT FROM f.class_code
          AND ST_Intersects(x.geom, f.geom))
    GROUP BY f.class_code
), piece AS (
    SELECT s.class_code, CASE WHEN o.geom IS NULL THEN s.geom ELSE ST_Difference(s.geom, o.geom) END AS geom
    FROM subject s LEFT JOIN other o ON o.class_code IS NOT DISTINCT FROM s.class_code
), district AS (
    SELECT coalesce(source_id, name, id::text) AS source_id, name, geom FROM geoservice.feature WHERE version_id = %(districts)s
)
SELECT p.class_code, d.source_id, d.name, ST_Area(ST_Intersection(p.geom, d.geom))
FROM piece p JOIN district d ON ST_Intersects(p.geom, d.geom)
UNION ALL
SELECT p.class_code, NULL, NULL, ST_Area(CASE WHEN u.geom IS NULL THEN p.geom ELSE ST_Difference(p.geom, u.geom) END)
FROM piece p CROSS JOIN LATERAL (SELECT ST_Union(d.geom) AS geom FROM district d WHERE ST_Intersects(p.geom, d.geom)) u
"""

CLASS_NAMES_SQL = "SELECT code, name_zh FROM geoservice.land_class WHERE code = ANY(%s)"


class AreaPiece(NamedTuple):
    """Area of one class gained (or lost) within one district (code None: outside every district)."""

    class_code: str | None
    district_code: str | None
    district_name: str | None
    m2: float


@dataclass(frozen=True)
class State:
    """A layer version as it is now (revision None), or as it was after one of its revisions (writes, geoservice.edit)."""

    version: LayerVersion
    revision: int | None = None

    @property
    def rows(self) -> str:
        """The SQL source of its rows: the version's partition, or the rows of that revision (sql/0013)."""
        if self.revision is None:
            return "geoservice.feature"
        return f"geoservice.feature_state({int(self.version.version_id)}, {int(self.revision)})"

    def count(self, cur: psycopg2.extensions.cursor) -> int:
        if self.revision is None:
            return self.version.feature_count
        cur.execute(f"SELECT count(*) FROM {self.rows}")
        return cur.fetchone()[0]


def parse_state(text: str) -> tuple[int, int | None]:
    """`V` (a version as it is now) or `V@R` (as it was after revision R) as (version, revision)."""
    version, at, revision = text.partition("@")
    if not version.isdigit() or not (revision.isdigit() or not at):
        raise ChangeReportError(f"{text!r} is not a version: give V, or V@R for version V as it was after revision R")
    return int(version), int(revision) if at else None


def _states(cur: psycopg2.extensions.cursor, layer: str, old: tuple[int, int | None],
            new: tuple[int, int | None]) -> tuple[State, State]:
    """Both states of the layer; errors naming what is missing."""
    known = {v.version: v for v in layer_versions(cur, layer)}
    if not known:
        raise ChangeReportError(f"layer {layer!r} is not stored (see `geoservice layers`)")
    for version, revision in (old, new):
        if version not in known:
            raise ChangeReportError(f"layer {layer!r} has no version {version} (it has {', '.join(map(str, known))})")
        if revision is not None and revision > known[version].revision:
            raise ChangeReportError(f"layer {layer!r} version {version} has revisions 0 to {known[version].revision}")
    return State(known[old[0]], old[1]), State(known[new[0]], new[1])


def _district_version(cur: psycopg2.extensions.cursor, settings: Settings) -> tuple[str | None, int | None]:
    """The district layer (active version) to cut areas by: the configured one, else the one active; none is fine."""
    found = layers_of_kind(active_versions(cur), "district", settings.integration.district_layer, required=False)
    if len(found) > 1:
        raise ChangeReportError(f"several active layers of kind district ({', '.join(l.name for l in found)}): "
                                "name the one to use as integration.district_layer in config/geoservice.yaml")
    return (found[0].name, found[0].version_id) if found else (None, None)


def _pair(cur: psycopg2.extensions.cursor, layer: str, old: State, new: State) -> None:
    """Fill change_pair: by source id, then by geometry where a side has no id."""
    cur.execute(PAIR_TABLE_SQL)
    sides = {"old": old.rows, "new": new.rows}
    try:
        cur.execute(PAIR_BY_ID_SQL.format(**sides), {"old": old.version.version_id, "new": new.version.version_id})
    except psycopg2.errors.UniqueViolation as exc:
        raise ChangeReportError(f"layer {layer!r}: versions {old.version.version} and {new.version.version} have "
                                "duplicate source ids: features cannot be paired by id") from exc
    cur.execute("ANALYZE change_pair")
    cur.execute(PAIR_BY_GEOMETRY_SQL.format(**sides), {"old": old.version.version_id, "new": new.version.version_id,
                                                      "min_overlap": MIN_OVERLAP})


def _areas(cur: psycopg2.extensions.cursor, a: State, b: State, ids: list[int], districts: int | None) -> list[AreaPiece]:
    """Per class and district, the area of state a's features `ids` that state b's features of the class do not cover."""
    if not ids:
        return []
    cur.execute(AREA_SQL.format(a=a.rows, b=b.rows),
                {"a": a.version.version_id, "b": b.version.version_id, "ids": ids, "districts": districts})
    return [AreaPiece(*row) for row in cur.fetchall() if row[3] >= AREA_NOISE_M2]


def _area_table(gained: list[AreaPiece], lost: list[AreaPiece], by_class: bool, names: dict[str | None, str]) -> list[AreaChange]:
    """Gained and lost pieces summed by class or by district; ordered by code, None last."""
    sums: dict[str | None, list[float]] = {}
    for side, pieces in enumerate((gained, lost)):
        for piece in pieces:
            sums.setdefault(piece.class_code if by_class else piece.district_code, [0.0, 0.0])[side] += piece.m2
    order = sorted(sums, key=lambda code: (code is None, code or ""))
    return [AreaChange(code, names.get(code, ""), sums[code][0], sums[code][1]) for code in order]


def layer_changes(settings: Settings, layer: str, old_version: int, new_version: int, old_revision: int | None = None,
                  new_revision: int | None = None) -> LayerChanges:
    """The change report of `layer` from `old_version` to `new_version` (see the module docstring); with a revision,
    a version as it was after that revision (its writes: geoservice.edit)."""
    with transaction(settings) as conn, conn.cursor() as cur:
        old, new = _states(cur, layer, (old_version, old_revision), (new_version, new_revision))
        district_layer, district_version = _district_version(cur, settings)
        _pair(cur, layer, old, new)
        cur.execute(PAIRED_SQL.format(old=old.rows, new=new.rows),
                    {"old": old.version.version_id, "new": new.version.version_id})
        paired = cur.fetchall()
        features = [FeatureChange("changed", tuple(what), how, sid, o, n, oc, nc, oa, na)
                    for how, sid, o, n, oc, nc, oa, na, what in paired if what]
        cur.execute(UNPAIRED_SQL.format(side="new", rows=new.rows), {"version": new.version.version_id})
        features += [FeatureChange("added", (), None, sid, None, fid, None, code, None, area) for sid, fid, code, area in cur.fetchall()]
        cur.execute(UNPAIRED_SQL.format(side="old", rows=old.rows), {"version": old.version.version_id})
        features += [FeatureChange("removed", (), None, sid, fid, None, code, None, area, None) for sid, fid, code, area in cur.fetchall()]
        reshaped = [f for f in features if f.change != "changed" or {"geometry", "class_code"} & set(f.what)]
        gained = _areas(cur, new, old, [f.new_id for f in reshaped if f.new_id is not None], district_version)
        lost = _areas(cur, old, new, [f.old_id for f in reshaped if f.old_id is not None], district_version)
        cur.execute(CLASS_NAMES_SQL, (sorted({p.class_code for p in gained + lost if p.class_code is not None}),))
        class_names: dict[str | None, str] = {None: "(unclassified)", **dict(cur.fetchall())}
        counts = old.count(cur), new.count(cur)
    district_names: dict[str | None, str] = {
        None: "(outside districts)", **{p.district_code: p.district_name or "" for p in gained + lost if p.district_code}}
    how = [row[0] for row in paired]
    return LayerChanges(
        layer, old.version.kind, old.version.version, new.version.version, old.version.version_id,
        new.version.version_id, *counts, unchanged=sum(1 for row in paired if not row[8]),
        matched_by_id=how.count("source_id"), matched_by_geometry=how.count("geometry"), district_layer=district_layer,
        features=features, by_class=_area_table(gained, lost, True, class_names),
        by_district=_area_table(gained, lost, False, district_names), old_revision=old_revision,
        new_revision=new_revision)


def change_geometries(settings: Settings, changes: LayerChanges) -> np.ndarray:
    """The WKB (working CRS) of each of `changes.features`, in order: the new geometry of added and changed features,
    the old one of removed features."""
    latest = 2**31 - 1  # a version as it is now: every revision
    new = (changes.new_version_id, latest if changes.new_revision is None else changes.new_revision)
    old = (changes.old_version_id, latest if changes.old_revision is None else changes.old_revision)
    wanted = {new: [f.new_id for f in changes.features if f.new_id is not None],
              old: [f.old_id for f in changes.features if f.change == "removed"]}
    geometries: dict[tuple[tuple[int, int], int], bytes] = {}
    with transaction(settings) as conn, conn.cursor() as cur:
        for state, ids in wanted.items():
            cur.execute("SELECT id, ST_AsBinary(geom) FROM geoservice.feature_state(%s, %s) WHERE id = ANY(%s)",
                        (*state, ids))
            geometries.update({(state, fid): bytes(wkb) for fid, wkb in cur.fetchall()})
    return np.array([geometries[(old, f.old_id) if f.change == "removed" else (new, f.new_id)]
                     for f in changes.features], dtype=object)


def write_changes_gpkg(settings: Settings, changes: LayerChanges, path: Path) -> Path:
    """The added, removed and changed features as a GeoPackage layer `changes` (working CRS): the new geometry of
    added and changed features, the old one of removed features, with a `change` column and what changed."""
    if path.suffix.lower() != ".gpkg":
        raise ChangeReportError(f"{path}: the export is a GeoPackage: give a path ending in .gpkg")
    features = changes.features
    wkb = change_geometries(settings, changes)
    text = {"change": [f.change for f in features], "what": [", ".join(f.what) for f in features],
            "matched_by": [f.matched_by for f in features], "source_id": [f.source_id for f in features],
            "old_code": [f.old_code for f in features], "new_code": [f.new_code for f in features]}
    numbers = {"old_id": [f.old_id for f in features], "new_id": [f.new_id for f in features],
               "old_area_m2": [f.old_area_m2 for f in features], "new_area_m2": [f.new_area_m2 for f in features]}
    data = [np.array(values, dtype=object) for values in text.values()]
    masks: list[np.ndarray | None] = [None] * len(text)
    for name, values in numbers.items():
        missing = np.array([v is None for v in values], dtype=bool)
        kind = np.int64 if name.endswith("_id") else np.float64
        data.append(np.array([0 if v is None else v for v in values], dtype=kind))
        masks.append(missing)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    pyogrio.raw.write(path, wkb, data, [*text, *numbers],
                      field_mask=masks, layer=GPKG_LAYER, driver="GPKG", geometry_type="MultiPolygon",
                      crs=settings.working_crs)
    return path
