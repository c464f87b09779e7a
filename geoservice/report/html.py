"""The self-contained HTML report of a run: summary, map, charts, statistics tables and the ledger, one file that
needs no network (inline CSS and SVG, no script)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape

import numpy as np
import pandas as pd

from geoservice import __version__
from geoservice.db.read import RunRule
from geoservice.report.labels import DIFFERENCE_LABELS, PRESENCE_LABELS, STATUS_LABELS, district_label, label, ledger_table
from geoservice.report.ledger import Ledger, read_ledger
from geoservice.report.statistics import Statistics, compute_statistics
from geoservice.report.svg import map_svg, rule_colour, stacked_bar_svg
from geoservice.settings import Settings

LEDGER_SHOWN = ("图斑编号", "台账编号", "冲突类型", "所属区县", "面积(公顷)", "土规用地", "城规用地", "本期情况", "处理状态",
                "处理意见")

STYLE = """
body{font-family:"Noto Sans CJK SC","WenQuanYi Micro Hei","Microsoft YaHei","PingFang SC",sans-serif;margin:0;
  color:#222;background:#fff}
main{max-width:1100px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:26px;margin:8px 0 4px}h2{font-size:19px;margin:32px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
small,.en{color:#666;font-weight:normal}
.meta{color:#555;font-size:13px;margin:0}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 14px;min-width:140px}
.card b{display:block;font-size:22px}
figure{margin:0}svg{display:block;width:100%;height:auto}
.legend{list-style:none;padding:0;margin:8px 0;display:flex;flex-wrap:wrap;gap:6px 18px;font-size:13px}
.legend span{display:inline-block;width:14px;height:14px;margin-right:6px;vertical-align:-2px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left}th{background:#f3f3f3}
td.n{text-align:right;font-variant-numeric:tabular-nums}
details summary{cursor:pointer;font-size:15px;margin:8px 0}
footer{color:#888;font-size:12px;margin-top:40px}
"""


def short_title(rule: RunRule) -> str:
    """A rule's Chinese title without its parenthesised explanation (城建土非（…） -> 城建土非)."""
    return rule.title_zh.split("（", 1)[0].split("(", 1)[0].strip() or rule.id


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "<td></td>"
    if isinstance(value, (int, np.integer)):
        return f'<td class="n">{value:,}</td>'
    if isinstance(value, (float, np.floating)):
        return f'<td class="n">{value:,.2f}</td>'
    return f"<td>{escape(str(value))}</td>"


def table_html(headers: Sequence[str], rows: Sequence[Sequence[object]], table_id: str = "") -> str:
    """An HTML table; integers and floats right-aligned (floats to 2 decimals)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    attribute = f' id="{table_id}"' if table_id else ""
    return f"<table{attribute}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _heading(zh: str, en: str) -> str:
    return f'<h2>{escape(zh)} <small class="en">{escape(en)}</small></h2>'


def _summary(ledger: Ledger, stats: Statistics) -> str:
    total = sum(row["count"] for row in stats.by_rule)
    hectares = sum(row["ha"] for row in stats.by_rule)
    union = sum(row["union_ha"] or 0.0 for row in stats.by_district)
    statuses = label(STATUS_LABELS, False)
    presences = label(PRESENCE_LABELS, False)
    cards = [("冲突图斑", f"{total:,}", "conflicts"), ("冲突面积合计(公顷)", f"{hectares:,.1f}", "area, sum (ha)"),
             ("冲突用地面积(公顷)", f"{union:,.1f}", "area, union (ha)")]
    cards += [(statuses[r["status"]], f"{r['count']:,}", r["status"]) for r in stats.by_status]
    cards += [(presences[r["presence"]], f"{r['count']:,}", r["presence"]) for r in stats.by_presence]
    return '<div class="cards">' + "".join(
        f'<div class="card">{escape(zh)}<b>{value}</b><small>{escape(en)}</small></div>' for zh, value, en in cards) + "</div>"


def _map(ledger: Ledger) -> str:
    present = ledger.present
    rows = ledger.rows[present]
    order = {rule.id: i for i, rule in enumerate(ledger.run.rules)}
    titles = {rule.id: short_title(rule) for rule in ledger.run.rules}
    colours = [rule_colour(order.get(rule, len(order))) for rule in rows["rule_id"].tolist()]
    statuses = label(STATUS_LABELS, False)
    hectares = (rows["area_m2"] / 1e4).map("{:,.2f}".format).astype(str)
    rule_titles = rows["rule_id"].map(titles).fillna(rows["rule_id"])
    tooltips = ("图斑 " + rows["conflict_id"].astype(str) + " · " + rule_titles + " · " + rows["district_name"] + " · "
                + hectares + " 公顷 · " + rows["status"].map(statuses)).tolist()
    attributes = ('data-conflict="' + rows["conflict_id"].astype(str) + '" data-rule="' + rows["rule_id"] + '"').tolist()
    d = ledger.districts
    svg = map_svg(d.geometries, [district_label(n, False) for n in d.names.tolist()], ledger.geometries[present],
                  colours, tooltips, attributes)
    counts = rows["rule_id"].value_counts()
    legend = "".join(f'<li><span style="background:{rule_colour(i)}"></span>{escape(short_title(rule))} '
                     f'<small>{escape(rule.title_en)} · {int(counts.get(rule.id, 0)):,}</small></li>'
                     for i, rule in enumerate(ledger.run.rules))
    return f'<figure id="map">{svg}<figcaption><ul class="legend">{legend}</ul></figcaption></figure>'


def _charts(ledger: Ledger, stats: Statistics) -> str:
    rules = ledger.run.rules
    by_cell = pd.DataFrame(stats.by_rule_district, columns=["rule", "district_code", "district", "count", "ha", "share_pct"])
    codes = [row["district_code"] for row in stats.by_district]
    names = [district_label(row["district"] or "", False) for row in stats.by_district]
    pivot = by_cell.pivot_table(index="rule", columns="district_code", values="ha", aggfunc="sum", fill_value=0.0)
    pivot = pivot.reindex(index=[r.id for r in rules], columns=codes, fill_value=0.0)
    by_district = stacked_bar_svg("chart-district", names, [
        (short_title(rule), rule_colour(i), pivot.loc[rule.id].to_numpy()) for i, rule in enumerate(rules)], "公顷 ha")
    totals = np.array([row["ha"] for row in stats.by_rule], dtype=float)
    by_rule = stacked_bar_svg("chart-rule", [short_title(r) for r in rules], [
        (short_title(rule), rule_colour(i), np.where(np.arange(len(rules)) == i, totals, 0.0))
        for i, rule in enumerate(rules)], "公顷 ha")
    return (_heading("按区县和冲突类型的冲突面积", "Conflict area by district and rule") + by_district
            + _heading("按冲突类型的冲突面积", "Conflict area by rule") + by_rule)


def _tables(ledger: Ledger, stats: Statistics) -> str:
    rules = {rule.id: rule for rule in ledger.run.rules}
    by_rule = table_html(["冲突类型", "Rule", "严重程度", "图斑数", "面积(公顷)"], [
        [short_title(rules[r["rule"]]), r["title_en"], r["severity"], r["count"], r["ha"]] for r in stats.by_rule],
        "table-by-rule")
    by_district = table_html(
        ["所属区县", "区县面积(公顷)", "规划覆盖面积(公顷)", "图斑数", "冲突面积合计(公顷)", "冲突用地面积(公顷)",
         "占区县面积(%)"],
        [[district_label(r["district"] or "", False), r["district_ha"], r["planned_ha"], r["count"], r["ha"], r["union_ha"],
          r["share_pct"]] for r in stats.by_district], "table-by-district")
    cells = pd.DataFrame(stats.by_rule_district, columns=["rule", "district_code", "district", "count", "ha", "share_pct"])
    codes = [row["district_code"] for row in stats.by_district]
    names = [district_label(row["district"] or "", False) for row in stats.by_district]
    matrix = cells.pivot_table(index="rule", columns="district_code", values="ha", aggfunc="sum")
    matrix = matrix.reindex(index=list(rules), columns=codes)
    by_rule_district = table_html(["冲突类型（公顷）"] + names, [
        [short_title(rules[rule])] + [None if np.isnan(v) else float(v) for v in matrix.loc[rule].tolist()] for rule in rules],
        "table-by-rule-district")
    differences = pd.DataFrame(stats.by_difference,
                               columns=["difference", "district_code", "district", "count", "ha", "share_pct"])
    diff = differences.pivot_table(index="difference", columns="district_code", values="ha", aggfunc="sum")
    diff = diff.reindex(index=[d for d in DIFFERENCE_LABELS if d in diff.index], columns=codes)
    by_difference = table_html(["两规差异（公顷）", "Difference"] + names, [
        [DIFFERENCE_LABELS[d][0], DIFFERENCE_LABELS[d][1]] + [None if np.isnan(v) else float(v) for v in diff.loc[d].tolist()]
        for d in diff.index], "table-by-difference")
    return (_heading("按冲突类型统计", "By rule") + by_rule + _heading("按区县统计", "By district") + by_district
            + _heading("冲突类型 × 区县", "Rule × district (ha)") + by_rule_district
            + _heading("两规差异", "Differences between the two plans (ha)") + by_difference)


def _ledger_section(ledger: Ledger) -> str:
    table = ledger_table(ledger)[list(LEDGER_SHOWN)]
    rows = table.astype(object).where(table.notna(), None).to_numpy().tolist()
    return (_heading("冲突台账", "Conflict ledger") + f"<details><summary>{len(rows):,} 条记录 · rows</summary>"
            + table_html(LEDGER_SHOWN, rows, "ledger") + "</details>")


def render_html(ledger: Ledger, stats: Statistics) -> str:
    """The report page of a ledger already read."""
    run = ledger.run
    versions = run.versions_text()
    finished = run.finished_at.strftime("%Y-%m-%d %H:%M:%S %Z") if run.finished_at else "—"
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    title = f"冲突台账报告 · 第 {run.id} 次检测"
    return "".join([
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body><main>",
        f'<h1>{escape(title)} <small class="en">Conflict ledger report, detection run {run.id}</small></h1>',
        (f'<p class="meta">检测完成 finished: {escape(finished)} · 底图 base map run: {run.integration_run_id or "—"}'
         f'{" · 当前批次 current run" if run.is_current else ""}</p>'),
        f'<p class="meta">图层版本 layer versions: {escape(versions)}</p>',
        _summary(ledger, stats),
        _heading("冲突分布图", "Map of conflicts by rule"), _map(ledger),
        _charts(ledger, stats), _tables(ledger, stats), _ledger_section(ledger),
        f"<footer>geoservice {escape(__version__)} · 生成于 generated {generated}</footer>",
        "</main></body></html>",
    ])


def html_report(settings: Settings, run_id: int | None = None) -> str:
    """The HTML report of a detection run (default: the current one), as one self-contained page."""
    ledger = read_ledger(settings, run_id)
    return render_html(ledger, compute_statistics(ledger))
