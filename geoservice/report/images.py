"""PNG pictures for documents (matplotlib, no pyplot state): the conflict map and the area charts.

Chinese labels need a CJK-capable font (e.g. Debian's fonts-wqy-microhei or fonts-noto-cjk); without one the
pictures are labelled in English (rule titles in English, districts by code) instead of showing empty boxes.
"""

from __future__ import annotations

import functools
import glob
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import shapely
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties, fontManager
from matplotlib.patches import Patch, PathPatch
from matplotlib.path import Path as MplPath

from geoservice.report.ledger import Ledger
from geoservice.report.statistics import Statistics
from geoservice.report.svg import DISTRICT_FILL, DISTRICT_STROKE, MAP_BACKGROUND, rule_colour

CJK_FAMILIES = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Micro Hei", "WenQuanYi Zen Hei",
                "Droid Sans Fallback", "AR PL UMing CN", "SimHei", "Microsoft YaHei", "PingFang SC")
#: font files looked for when fontconfig (fc-list) is not there
CJK_FILE_PATTERNS = ("/usr/share/fonts/**/wqy-*.tt[cf]", "/usr/share/fonts/**/NotoSansCJK*", "/usr/share/fonts/**/NotoSansSC*",
                     "/usr/share/fonts/**/DroidSansFallback*")
DPI = 150


def _cjk_font_files() -> list[str]:
    """Font files that cover Chinese: from fontconfig when it is installed, else by well-known file names."""
    if shutil.which("fc-list"):
        listed = subprocess.run(["fc-list", ":lang=zh", "file"], capture_output=True, text=True, timeout=30,
                                check=False).stdout
        return sorted(line.split(":")[0].strip() for line in listed.splitlines() if line.strip())
    return sorted(path for pattern in CJK_FILE_PATTERNS for path in glob.glob(pattern, recursive=True))


@functools.cache
def cjk_font() -> str | None:
    """The family name of a CJK-capable font known to matplotlib (registering an installed file if needed), or None."""
    known = {font.name for font in fontManager.ttflist}
    for family in CJK_FAMILIES:
        if family in known:
            return family
    for path in _cjk_font_files():
        try:
            fontManager.addfont(path)
            return FontProperties(fname=path).get_name()
        except (OSError, RuntimeError, ValueError):
            continue
    return None


def mpl_path(geometries: np.ndarray) -> MplPath:
    """One compound matplotlib path of (Multi)Polygons: exteriors counter-clockwise, holes clockwise (non-zero fill)."""
    rings = shapely.get_rings(shapely.get_parts(shapely.orient_polygons(geometries)))
    coords, ring_of_point = shapely.get_coordinates(rings, return_index=True)
    codes = np.full(len(coords), MplPath.LINETO, dtype=MplPath.code_type)
    if len(coords):
        starts = np.r_[0, np.flatnonzero(np.diff(ring_of_point)) + 1]
        codes[starts] = MplPath.MOVETO
        codes[np.r_[starts[1:], len(coords)] - 1] = MplPath.CLOSEPOLY
    return MplPath(coords, codes)


CJK_IN_PARENTHESES = re.compile(r"\s*[(（][^)）]*[\u2e80-\u9fff][^)）]*[)）]")
CJK = re.compile(r"[\u2e80-\u9fff\u3000-\u303f\uff00-\uffef]+")


def latin(text: str) -> str:
    """Text without its Chinese (a parenthesised Chinese gloss goes whole): for pictures without a CJK font."""
    return CJK.sub("", CJK_IN_PARENTHESES.sub("", text)).strip()


class _Labels:
    """Rule and district labels in Chinese when a CJK font is there, else in English."""

    def __init__(self, ledger: Ledger, font: str | None) -> None:
        self.chinese = font is not None
        self.rules = {rule.id: (rule.title_zh.split("（", 1)[0] if self.chinese else latin(rule.title_en) or rule.id)
                      for rule in ledger.run.rules}

    def district(self, code: str, name: str) -> str:
        return (name or "（无区县）") if self.chinese else (code or "(no district)")

    def text(self, zh: str, en: str) -> str:
        return zh if self.chinese else en


def _figure(width: float, height: float) -> tuple[Figure, FigureCanvasAgg]:
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    return figure, FigureCanvasAgg(figure)


def _save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=DPI, facecolor="white")
    return path


def _map_png(ledger: Ledger, path: Path) -> Path:
    """The conflicts over the district boundaries, coloured by rule, with a legend."""
    labels = _Labels(ledger, cjk_font())
    districts = ledger.districts
    figure, _ = _figure(10, 11)
    axes = figure.add_subplot()
    axes.set_facecolor(MAP_BACKGROUND)
    if len(districts.geometries):
        axes.add_patch(PathPatch(mpl_path(districts.geometries), facecolor=DISTRICT_FILL, edgecolor=DISTRICT_STROKE, lw=0.8))
    present = ledger.present
    rules = ledger.rows["rule_id"].to_numpy()[present]
    geometries = ledger.geometries[present]
    handles = []
    for index, rule in enumerate(ledger.run.rules):
        mine = geometries[rules == rule.id]
        if len(mine):
            axes.add_patch(PathPatch(mpl_path(mine), facecolor=rule_colour(index), edgecolor="none"))
        handles.append(Patch(facecolor=rule_colour(index), label=f"{labels.rules[rule.id]} ({len(mine):,})"))
    for code, name, anchor in zip(districts.codes.tolist(), districts.names.tolist(),
                                  shapely.point_on_surface(districts.geometries).tolist()):
        axes.annotate(labels.district(code, name), (anchor.x, anchor.y), ha="center", fontsize=10, color="#333")
    everything = np.concatenate([districts.geometries, geometries])
    if len(everything):
        xmin, ymin, xmax, ymax = shapely.total_bounds(everything)
        axes.set_xlim(xmin, xmax)
        axes.set_ylim(ymin, ymax)
    axes.set_aspect("equal")
    axes.set_xticks([])
    axes.set_yticks([])
    axes.set_title(labels.text(f"冲突分布图（第 {ledger.run.id} 次检测）", f"Conflicts, detection run {ledger.run.id}"))
    figure.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    return _save(figure, path)


def _stacked_bars(path: Path, title: str, categories: list[str], series: list[tuple[str, str, np.ndarray]],
                  xlabel: str, legend: bool) -> Path:
    figure, _ = _figure(10, 1.2 + 0.45 * len(categories) + (1.0 if legend else 0))
    axes = figure.add_subplot()
    left = np.zeros(len(categories))
    positions = np.arange(len(categories))
    for name, colour, values in series:
        axes.barh(positions, values, left=left, color=colour, label=name, height=0.7)
        left = left + values
    for y, total in zip(positions.tolist(), left.tolist()):
        axes.annotate(f"{total:,.1f}", (total, y), xytext=(4, 0), textcoords="offset points", va="center", fontsize=8)
    axes.set_yticks(positions, categories)
    axes.invert_yaxis()
    axes.set_xlabel(xlabel)
    axes.set_title(title)
    axes.grid(axis="x", color="#ddd")
    axes.set_axisbelow(True)
    axes.set_xlim(0, max(float(left.max(initial=0.0)), 1e-9) * 1.12)
    if legend:
        figure.legend(loc="outside lower center", ncols=3, fontsize=7, frameon=False)
    return _save(figure, path)


def _area_by_district_png(ledger: Ledger, stats: Statistics, path: Path) -> Path:
    """Conflict area (ha) by district, stacked by rule."""
    labels = _Labels(ledger, cjk_font())
    rules = ledger.run.rules
    codes = [row["district_code"] for row in stats.by_district]
    cells = pd.DataFrame(stats.by_rule_district, columns=["rule", "district_code", "district", "count", "ha", "share_pct"])
    pivot = cells.pivot_table(index="rule", columns="district_code", values="ha", aggfunc="sum", fill_value=0.0)
    pivot = pivot.reindex(index=[r.id for r in rules], columns=codes, fill_value=0.0)
    categories = [labels.district(row["district_code"], row["district"] or "") for row in stats.by_district]
    series = [(labels.rules[rule.id], rule_colour(i), pivot.loc[rule.id].to_numpy()) for i, rule in enumerate(rules)]
    return _stacked_bars(path, labels.text("按区县和冲突类型的冲突面积", "Conflict area by district and rule"), categories,
                         series, labels.text("面积（公顷）", "area (ha)"), legend=True)


def _area_by_rule_png(ledger: Ledger, stats: Statistics, path: Path) -> Path:
    """Conflict area (ha) by rule."""
    labels = _Labels(ledger, cjk_font())
    rules = ledger.run.rules
    totals = np.array([row["ha"] for row in stats.by_rule], dtype=float)
    series = [(labels.rules[rule.id], rule_colour(i), np.where(np.arange(len(rules)) == i, totals, 0.0))
              for i, rule in enumerate(rules)]
    return _stacked_bars(path, labels.text("按冲突类型的冲突面积", "Conflict area by rule"),
                         [labels.rules[rule.id] for rule in rules], series, labels.text("面积（公顷）", "area (ha)"),
                         legend=False)


def write_images(ledger: Ledger, stats: Statistics, folder: Path) -> list[Path]:
    """map.png, area_by_district.png and area_by_rule.png in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    font = cjk_font()
    with matplotlib.rc_context({"font.family": [font, "DejaVu Sans"] if font else ["DejaVu Sans"]}):
        return [_map_png(ledger, folder / "map.png"), _area_by_district_png(ledger, stats, folder / "area_by_district.png"),
                _area_by_rule_png(ledger, stats, folder / "area_by_rule.png")]
