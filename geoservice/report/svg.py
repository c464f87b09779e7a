"""Inline SVG drawn on the server: the conflict map (path data from simplified geometries, built with array
operations) and horizontal stacked bar charts. Plain strings, no script, nothing fetched."""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

import numpy as np
import shapely

#: one colour per rule, in rule order (Tableau 10, then repeated)
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")
MAP_BACKGROUND = "#dde8f0"
DISTRICT_FILL = "#f6f3ea"
DISTRICT_STROKE = "#7a7a7a"
CHART_BACKGROUND = "#f3f6fa"


def rule_colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


@dataclass(frozen=True)
class Frame:
    """Maps working-CRS coordinates onto SVG user units (origin top left, y down), keeping the aspect ratio."""

    x0: float
    y1: float
    scale: float
    width: int
    height: int

    @classmethod
    def around(cls, bounds: np.ndarray, width: int, margin: float = 0.02) -> Frame:
        xmin, ymin, xmax, ymax = bounds
        dx, dy = max(xmax - xmin, 1.0), max(ymax - ymin, 1.0)
        xmin, xmax, ymin, ymax = xmin - dx * margin, xmax + dx * margin, ymin - dy * margin, ymax + dy * margin
        scale = width / (xmax - xmin)
        return cls(xmin, ymax, scale, width, max(1, math.ceil((ymax - ymin) * scale)))

    def points(self, coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Whole-unit SVG coordinates of (n, 2) working-CRS coordinates."""
        return np.rint((coords[:, 0] - self.x0) * self.scale).astype(np.int64), \
            np.rint((self.y1 - coords[:, 1]) * self.scale).astype(np.int64)


def path_data(geometries: np.ndarray, frame: Frame) -> np.ndarray:
    """SVG path data ('M x,y x,y …Z M …Z'), one string per (Multi)Polygon, '' when nothing is left at this scale.

    Geometries are simplified to one SVG unit first; rings are written without their closing point.
    """
    out = np.full(len(geometries), "", dtype=object)
    simplified = shapely.simplify(geometries, 1.0 / frame.scale)
    parts, part_owner = shapely.get_parts(simplified, return_index=True)
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    coords, ring_of_point = shapely.get_coordinates(rings, return_index=True)
    if len(coords) == 0:
        return out
    ring_start = np.r_[0, np.flatnonzero(np.diff(ring_of_point)) + 1]
    ring_end = np.r_[ring_start[1:], len(coords)] - 1
    keep = np.ones(len(coords), bool)
    keep[ring_end] = False                                  # the closing point repeats the first
    x, y = frame.points(coords)
    tokens = np.char.add(np.char.add(x.astype(str), ","), y.astype(str)).astype(object)
    tokens[ring_start] = "M" + tokens[ring_start]
    last_kept = ring_end - 1
    tokens[last_kept] = tokens[last_kept] + "Z"
    owner = part_owner[ring_part[ring_of_point]]
    tokens, owner = tokens[keep], owner[keep]
    separators = np.where(np.r_[owner[1:] != owner[:-1], True], "\n", " ").astype(object)
    joined = "".join((tokens + separators).tolist()).split("\n")[:-1]
    out[np.unique(owner)] = joined
    return out


def map_svg(districts: np.ndarray, district_labels: list[str], conflicts: np.ndarray, colours: list[str],
            tooltips: list[str], attributes: list[str], width: int = 1000) -> str:
    """The map: districts (fill and outline, labelled), then one path per conflict in its rule's colour."""
    everything = np.concatenate([districts, conflicts])
    bounds = shapely.total_bounds(everything) if len(everything) else np.array([0.0, 0.0, 1.0, 1.0])
    frame = Frame.around(bounds, width)
    parts = [(f'<svg id="conflict-map" class="map" viewBox="0 0 {frame.width} {frame.height}" role="img" '
              'aria-label="conflict map">'),
             f'<rect class="map-background" width="{frame.width}" height="{frame.height}" fill="{MAP_BACKGROUND}"/>',
             f'<g class="districts" fill="{DISTRICT_FILL}" stroke="{DISTRICT_STROKE}" stroke-width="1.2">']
    for d, text in zip(path_data(districts, frame).tolist(), district_labels):
        parts.append(f'<path d="{d}"><title>{escape(text)}</title></path>' if d else "")
    parts.append('</g><g class="conflicts" stroke="none" fill-rule="evenodd">')
    for d, colour, tip, extra in zip(path_data(conflicts, frame).tolist(), colours, tooltips, attributes):
        if d:
            parts.append(f'<path d="{d}" fill="{colour}" {extra}><title>{escape(tip)}</title></path>')
    parts.append('</g><g class="labels" font-size="15" text-anchor="middle" fill="#333" stroke="#fff" '
                 'stroke-width="3" paint-order="stroke">')
    anchors = shapely.point_on_surface(districts)
    if len(anchors):
        xs, ys = frame.points(shapely.get_coordinates(anchors))
        parts += [f'<text x="{x}" y="{y}">{escape(text)}</text>' for x, y, text in zip(xs.tolist(), ys.tolist(), district_labels)]
    parts.append("</g></svg>")
    return "".join(parts)


def _nice_step(maximum: float, ticks: int = 5) -> float:
    raw = maximum / ticks if maximum > 0 else 1.0
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)


def stacked_bar_svg(chart_id: str, categories: list[str], series: list[tuple[str, str, np.ndarray]], unit: str,
                    label_width: int = 220, bar_width: int = 620, row_height: int = 26) -> str:
    """Horizontal bars, one per category, stacked by series (name, colour, one value per category); totals at the end."""
    values = np.array([v for _, _, v in series], dtype=float).reshape(len(series), len(categories))
    totals = values.sum(axis=0)
    step = _nice_step(float(totals.max()) if len(categories) else 0.0)
    top = step * max(1, math.ceil(float(totals.max()) / step)) if len(categories) else step
    scale = bar_width / top
    width, height = label_width + bar_width + 90, 30 + row_height * len(categories) + 10
    parts = [f'<svg id="{chart_id}" class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(chart_id)}">',
             f'<rect class="chart-background" width="{width}" height="{height}" fill="{CHART_BACKGROUND}"/>',
             '<g class="grid" stroke="#ddd" font-size="11" fill="#666" text-anchor="middle">']
    tick = 0.0
    while tick <= top + step / 2:
        x = label_width + tick * scale
        parts.append(f'<line x1="{x:.1f}" y1="22" x2="{x:.1f}" y2="{height - 8}"/>'
                     f'<text x="{x:.1f}" y="16" stroke="none">{tick:,.{0 if step >= 1 else 1}f}</text>')
        tick += step
    parts.append(f'</g><text x="{label_width - 8}" y="16" font-size="11" fill="#666" text-anchor="end">{escape(unit)}</text>')
    parts.append('<g class="bars">')
    for row, category in enumerate(categories):
        y = 30 + row * row_height
        parts.append(f'<text x="{label_width - 8}" y="{y + row_height * 0.55:.1f}" font-size="13" text-anchor="end" '
                     f'dominant-baseline="middle">{escape(category)}</text>')
        x = float(label_width)
        for (name, colour, _), value in zip(series, values[:, row].tolist()):
            if value > 0:
                w = value * scale
                parts.append(f'<rect x="{x:.2f}" y="{y + 3}" width="{w:.2f}" height="{row_height - 6}" fill="{colour}">'
                             f'<title>{escape(category)} · {escape(name)}: {value:,.2f} {escape(unit)}</title></rect>')
                x += w
        parts.append(f'<text x="{x + 6:.1f}" y="{y + row_height * 0.55:.1f}" font-size="12" fill="#333" '
                     f'dominant-baseline="middle">{totals[row]:,.1f}</text>')
    parts.append("</g></svg>")
    return "".join(parts)
