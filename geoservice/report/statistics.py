"""Statistics of a run's ledger: counts and areas (ha) by rule × district, by two-plan difference class, by district
(with the share of its area), and by review status and presence."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import shapely

from geoservice.report.labels import DIFFERENCE_LABELS, PRESENCE_LABELS, STATUS_LABELS
from geoservice.db.read import Run
from geoservice.report.ledger import Ledger, read_ledger
from geoservice.settings import Settings

#: the long CSV's columns (each table fills the ones that apply)
CSV_COLUMNS = ("table", "rule", "class", "district_code", "district", "count", "ha", "district_ha", "planned_ha",
               "union_ha", "share_pct", "planned_share_pct")
TABLES = ("by_rule", "by_rule_district", "by_district", "by_difference", "by_status", "by_presence")
DIGITS = 4

Rows = list[dict[str, object]]


@dataclass
class Statistics:
    """A run's statistics as lists of plain rows (areas in ha, shares in % of the district's area)."""

    run: Run
    by_rule: Rows
    by_rule_district: Rows
    by_district: Rows
    by_difference: Rows
    by_status: Rows
    by_presence: Rows

    def as_dict(self) -> dict[str, object]:
        return {"run": self.run.as_dict(), **{name: getattr(self, name) for name in TABLES}}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), ensure_ascii=False, indent=2)

    def to_csv(self) -> str:
        """Every table in one long CSV: a `table` column names the table, other columns are filled where they apply."""
        frames = []
        for name in TABLES:
            frame = pd.DataFrame(getattr(self, name))
            frame = frame.rename(columns={"difference": "class", "status": "class", "presence": "class"})
            frames.append(frame.assign(table=name))
        long = pd.concat(frames, ignore_index=True).reindex(columns=list(CSV_COLUMNS))
        out = io.StringIO()
        long.to_csv(out, index=False, lineterminator="\n")
        return out.getvalue()


def _records(frame: pd.DataFrame) -> Rows:
    """Rows with plain Python values (NaN as None) and rounded floats."""
    frame = frame.round(DIGITS).astype(object)
    return frame.where(frame.notna(), None).to_dict("records")


def _district_areas(ledger: Ledger) -> pd.Series:
    d = ledger.districts
    return pd.Series(d.areas, index=pd.Index(d.codes, name="district_code"), dtype=float)


def _with_share(frame: pd.DataFrame, areas: pd.Series, area_column: str = "ha") -> pd.DataFrame:
    return frame.assign(share_pct=frame[area_column] / (frame["district_code"].map(areas) / 1e4) * 100)


def _by_rule(ledger: Ledger, present: pd.DataFrame) -> Rows:
    counts = present.groupby("rule_id")["area_m2"].agg(["count", "sum"])
    rows = pd.DataFrame([rule.__dict__ for rule in ledger.run.rules]).rename(columns={"id": "rule"})
    rows["count"] = rows["rule"].map(counts["count"]).fillna(0).astype(int)
    rows["ha"] = rows["rule"].map(counts["sum"]).fillna(0.0) / 1e4
    return _records(rows[["rule", "title_zh", "title_en", "severity", "count", "ha"]])


def _by_rule_district(ledger: Ledger, present: pd.DataFrame, areas: pd.Series) -> Rows:
    order = {rule.id: i for i, rule in enumerate(ledger.run.rules)}
    grouped = (present.groupby(["rule_id", "district_code", "district_name"])["area_m2"].agg(["count", "sum"])
               .reset_index().rename(columns={"rule_id": "rule", "district_name": "district"}))
    grouped["ha"] = grouped.pop("sum") / 1e4
    grouped = grouped.sort_values(["rule", "district_code"], key=lambda s: s.map(order) if s.name == "rule" else s)
    return _records(_with_share(grouped, areas))


def _by_district(ledger: Ledger, present: pd.DataFrame, geometries: np.ndarray, areas: pd.Series) -> Rows:
    d = ledger.districts
    frame = pd.DataFrame({"district_code": d.codes, "district": d.names, "district_ha": d.areas / 1e4})
    extra = sorted(set(present["district_code"]) - set(d.codes))  # conflicts outside every district
    if extra:
        names = present.drop_duplicates("district_code").set_index("district_code")["district_name"]
        frame = pd.concat([frame, pd.DataFrame({"district_code": extra, "district": names[extra].to_numpy(),
                                                "district_ha": np.nan})], ignore_index=True)
    planned = ledger.patches.groupby("district_code")["area_m2"].sum() / 1e4
    sums = present.groupby("district_code")["area_m2"].agg(["count", "sum"])
    codes = present["district_code"].to_numpy()
    union = {code: shapely.area(shapely.union_all(geometries[codes == code])) / 1e4 for code in frame["district_code"]}
    frame["planned_ha"] = frame["district_code"].map(planned)
    frame["count"] = frame["district_code"].map(sums["count"]).fillna(0).astype(int)
    frame["ha"] = frame["district_code"].map(sums["sum"]).fillna(0.0) / 1e4
    frame["union_ha"] = frame["district_code"].map(union)
    frame["share_pct"] = frame["union_ha"] / frame["district_ha"] * 100
    frame["planned_share_pct"] = frame["union_ha"] / frame["planned_ha"] * 100
    return _records(frame)


def _by_difference(ledger: Ledger, areas: pd.Series) -> Rows:
    patches = ledger.patches
    grouped = (patches.groupby(["difference", "district_code", "district_name"])["area_m2"].agg(["count", "sum"])
               .reset_index().rename(columns={"district_name": "district"}))
    grouped["ha"] = grouped.pop("sum") / 1e4
    order = {name: i for i, name in enumerate(DIFFERENCE_LABELS)}
    grouped = grouped.sort_values(["difference", "district_code"],
                                  key=lambda s: s.map(order) if s.name == "difference" else s)
    return _records(_with_share(grouped, areas))


def _by_label(rows: pd.DataFrame, column: str, labels: dict[str, tuple[str, str]]) -> Rows:
    sums = rows.groupby(column)["area_m2"].agg(["count", "sum"])
    frame = pd.DataFrame({column: list(labels)})
    frame["count"] = frame[column].map(sums["count"]).fillna(0).astype(int)
    frame["ha"] = frame[column].map(sums["sum"]).fillna(0.0) / 1e4
    return _records(frame)


def compute_statistics(ledger: Ledger) -> Statistics:
    """The statistics of a ledger already read (present conflicts; disappeared cases only in by_presence)."""
    mask = ledger.present
    present = ledger.rows[mask]
    areas = _district_areas(ledger)
    return Statistics(
        run=ledger.run,
        by_rule=_by_rule(ledger, present),
        by_rule_district=_by_rule_district(ledger, present, areas),
        by_district=_by_district(ledger, present, ledger.geometries[mask], areas),
        by_difference=_by_difference(ledger, areas),
        by_status=_by_label(present, "status", STATUS_LABELS),
        by_presence=_by_label(ledger.rows, "presence", PRESENCE_LABELS),
    )


def statistics(settings: Settings, run_id: int | None = None) -> Statistics:
    """The statistics of a detection run (default: the current one)."""
    return compute_statistics(read_ledger(settings, run_id))
