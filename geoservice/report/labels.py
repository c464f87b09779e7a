"""What people read: the ledger's columns as bureaus name them (or in English) and the labels of coded values."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import shapely

from geoservice.report.ledger import Ledger

#: code -> (Chinese, English)
STATUS_LABELS = {"open": ("待处理", "open"), "confirmed": ("已确认", "confirmed"),
                 "resolved": ("已处理", "resolved"), "waived": ("已豁免", "waived")}
SEVERITY_LABELS = {"high": ("高", "high"), "medium": ("中", "medium"), "low": ("低", "low")}
PRESENCE_LABELS = {"new": ("新增", "new"), "recurring": ("延续", "recurring"), "disappeared": ("已消失", "disappeared")}
DIFFERENCE_LABELS = {
    "both_construction": ("两规均为建设用地", "construction in both plans"),
    "urban_only": ("城建土非", "urban-plan construction only"),
    "land_only": ("土建城非", "land-use-plan construction only"),
    "both_non_construction": ("两规均为非建设用地", "non-construction in both plans"),
    "land_plan_only": ("仅土规覆盖", "only in the land-use plan"),
    "urban_plan_only": ("仅城规覆盖", "only in the urban plan"),
}
NO_DISTRICT_LABEL = ("（无区县）", "(no district)")


@dataclass(frozen=True)
class Column:
    """One ledger column: its key, its Chinese and English headers, and its kind (text, int or float)."""

    key: str
    zh: str
    en: str
    kind: str = "text"

    def header(self, english: bool) -> str:
        return self.en if english else self.zh


LEDGER_COLUMNS = (
    Column("conflict_id", "图斑编号", "Conflict ID", "int"),
    Column("case_id", "台账编号", "Case ID", "int"),
    Column("rule", "冲突类型", "Conflict type"),
    Column("rule_id", "规则编号", "Rule ID"),
    Column("severity", "严重程度", "Severity"),
    Column("land_use", "土规用地", "Land-use plan class"),
    Column("urban_plan", "城规用地", "Urban plan class"),
    Column("layer_a", "主体图层", "Subject layer"),
    Column("source_id_a", "主体要素编号", "Subject feature ID"),
    Column("layer_b", "关联图层", "Other layer"),
    Column("source_id_b", "关联要素编号", "Other feature ID"),
    Column("area_ha", "面积(公顷)", "Area (ha)", "float"),
    Column("district", "所属区县", "District"),
    Column("district_code", "区县代码", "District code"),
    Column("measured", "检测值", "Measured value", "float"),
    Column("threshold", "阈值", "Threshold", "float"),
    Column("presence", "本期情况", "In this run"),
    Column("status", "处理状态", "Review status"),
    Column("opinion", "处理意见", "Opinion"),
    Column("reviewer", "审核人", "Reviewer"),
    Column("reviewed_at", "审核时间", "Reviewed at"),
    Column("first_run_id", "首次发现批次", "First found in run", "int"),
    Column("x", "中心点X", "Point X", "float"),
    Column("y", "中心点Y", "Point Y", "float"),
)
#: columns a file with a geometry of its own leaves out
POINT_COLUMNS = ("x", "y")


def label(labels: dict[str, tuple[str, str]], english: bool) -> dict[str, str]:
    """code -> label in one language."""
    return {code: pair[int(english)] for code, pair in labels.items()}


def district_label(name: str, english: bool) -> str:
    return name or NO_DISTRICT_LABEL[int(english)]


def _class_label(codes: pd.Series, names: pd.Series) -> pd.Series:
    """'0701 城镇住宅用地' (code and name), the code alone when it is not a known class, '' when there is no code."""
    named = codes.fillna("") + " " + names.fillna("")
    return named.str.strip().where(codes.notna(), "")


def _layer_label(names: pd.Series, titles: pd.Series, english: bool) -> pd.Series:
    """The layer's title without its English gloss ('永久基本农田 (…)' -> '永久基本农田'), or its name in English."""
    if english:
        return names.fillna("")
    return titles.fillna(names).fillna("").str.split(" (", n=1, regex=False).str[0]


def ledger_table(ledger: Ledger, english: bool = False, with_point: bool = True) -> pd.DataFrame:
    """The ledger as people read it: one column per LEDGER_COLUMNS entry, headed in Chinese (or English)."""
    rows = ledger.rows
    titles = {rule.id: rule.title_en if english else rule.title_zh for rule in ledger.run.rules}
    land_a, land_b = rows["kind_a"].eq("land_use"), rows["kind_b"].eq("land_use")
    plan_a, plan_b = rows["kind_a"].eq("urban_plan"), rows["kind_b"].eq("urban_plan")
    class_a = _class_label(rows["code_a"], rows["class_en_a" if english else "class_zh_a"])
    class_b = _class_label(rows["code_b"], rows["class_en_b" if english else "class_zh_b"])
    points = shapely.point_on_surface(ledger.geometries)
    reviewed = pd.to_datetime(rows["reviewed_at"], utc=True)
    values = {
        "conflict_id": rows["conflict_id"].astype("Int64"),
        "case_id": rows["case_id"].astype("Int64"),
        "rule": rows["rule_id"].map(titles).fillna(rows["rule_id"]),
        "rule_id": rows["rule_id"],
        "severity": rows["severity"].map(label(SEVERITY_LABELS, english)).fillna(rows["severity"]),
        "land_use": class_a.where(land_a, class_b.where(land_b, "")),
        "urban_plan": class_a.where(plan_a, class_b.where(plan_b, "")),
        "layer_a": _layer_label(rows["layer_a"], rows["title_a"], english),
        "source_id_a": rows["source_id_a"].fillna(""),
        "layer_b": _layer_label(rows["layer_b"], rows["title_b"], english),
        "source_id_b": rows["source_id_b"].fillna(""),
        "area_ha": (rows["area_m2"] / 1e4).round(4),
        "district": rows["district_name"].mask(rows["district_name"].eq(""), NO_DISTRICT_LABEL[int(english)]),
        "district_code": rows["district_code"],
        "measured": rows["measured"].astype(float),
        "threshold": rows["threshold"].astype(float),
        "presence": rows["presence"].map(label(PRESENCE_LABELS, english)),
        "status": rows["status"].map(label(STATUS_LABELS, english)),
        "opinion": rows["opinion"],
        "reviewer": rows["reviewer"].fillna(""),
        "reviewed_at": reviewed.dt.tz_convert(None).dt.strftime("%Y-%m-%d %H:%M:%S UTC").fillna(""),
        "first_run_id": rows["first_run_id"].astype("Int64"),
        "x": np.round(shapely.get_x(points), 2),
        "y": np.round(shapely.get_y(points), 2),
    }
    columns = [c for c in LEDGER_COLUMNS if with_point or c.key not in POINT_COLUMNS]
    return pd.DataFrame({c.header(english): values[c.key] for c in columns}, index=rows.index)
