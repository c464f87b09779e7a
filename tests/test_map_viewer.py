"""The map application at /map in headless Chromium (DevTools protocol, tests/browser.py) against the session's demo
server, with every other host unresolvable: the base map drawn in the 用地用海 class colours (pixels of the
screenshot), a click on a patch shows what /lookup says there, a status change from the conflicts panel lands in the
case's review history, a public caller's tree has only public layers; the project check (a polygon drawn by clicking,
a dropped GeoJSON, a chosen zipped Shapefile) lists what the project-check process finds; the swipe shows plan A's
class colours left of the divider and plan B's right of it; the version comparison lists the change report's counts;
and no request leaves the server."""

from __future__ import annotations

import io
import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from shapely.geometry import shape

import shapely
import shapely.geometry

from browser import Browser
from geoservice.errors import ConfigError
from geoservice.serve.viewer import class_colours
from layer_versions import EXPECTED_COUNTS, edited_landuse
from project_files import geojson_bytes, in_crs84, red_line_project, zipped_shapefile
from servers import TOKENS, Server
from sql_helpers import query

READY = ("window.viewer && viewer.map.getSource('data') && viewer.map.loaded() && viewer.map.areTilesLoaded()"
         " && !viewer.map.isMoving()")
MAP_RECT = "(() => { const r = document.getElementById('map').getBoundingClientRect();" \
           " return {x: r.x, y: r.y, width: r.width, height: r.height}; })()"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    with Browser(tmp_path / "profile") as opened:
        yield opened


def open_map(browser: Browser, served: Server, as_: str | None) -> None:
    """/map as the test token `as_`, signed in through /login (the token as the Basic password), or anonymously."""
    host = served.url.removeprefix("http://")
    url = f"http://{as_}:{TOKENS[as_][2]}@{host}/login?next=/map" if as_ else f"{served.url}/map"
    browser.goto(url)
    browser.wait_for(READY, timeout=90)


def settle(browser: Browser, action: str) -> None:
    """Run a script on the page's map and wait until the map has drawn what it asked for."""
    browser.evaluate(f"new Promise((done) => {{ viewer.map.once('idle', () => done(true)); {action}; viewer.map.triggerRepaint(); }})")
    browser.wait_for(READY)


def assert_stayed_home(browser: Browser, served: Server) -> None:
    """Every request the page and its workers made went to the server's own origin (blob: and data: are not requests
    to a host)."""
    own = urllib.parse.urlsplit(served.url)
    assert browser.requests, "no request recorded"
    for url in browser.requests:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme in ("blob", "data"):
            continue
        assert (parts.scheme, parts.hostname, parts.port) == (own.scheme, own.hostname, own.port), url
    assert not browser.errors, browser.errors


def class_pixels(png: bytes, colours: dict[str, dict], codes: set[str]) -> dict[tuple[int, int, int], int]:
    """How many pixels of the picture have exactly each colour the classes `codes` are drawn in (white left out)."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3).astype(np.int64)
    values, counts = np.unique((pixels[:, 0] << 16) | (pixels[:, 1] << 8) | pixels[:, 2], return_counts=True)
    found = dict(zip(values.tolist(), counts.tolist()))
    drawn_in = {tuple((colours.get(code[:4]) or colours[code[:2]])["rgb"]) for code in codes} - {(255, 255, 255)}
    return {(r, g, b): found.get((r << 16) | (g << 8) | b, 0) for r, g, b in drawn_in}


@pytest.mark.parametrize("colour_by, column", [("land_code", "land_code"), ("plan_code", "plan_code")])
def test_map_draws_the_base_map_in_class_colours(served: Server, browser: Browser, colour_by: str, column: str) -> None:
    open_map(browser, served, "viewer")
    settle(browser, f"const select = document.getElementById('colour-by'); select.value = '{colour_by}';"
                    " select.dispatchEvent(new Event('change'))")
    rect = browser.evaluate(MAP_RECT)
    png = browser.screenshot(rect)
    colours = class_colours(served.settings.path(served.settings.paths.classification))
    codes = {code for (code,) in query(served.settings, f"SELECT DISTINCT {column} FROM geoservice.basemap_patch b "
                                       "JOIN geoservice.integration_run r ON b.run_id = ANY(r.chain) AND (b.until_run IS NULL OR b.until_run > r.id) WHERE r.is_current "
                                       f"AND {column} IS NOT NULL")}
    counts = class_pixels(png, colours, codes)
    drawn = {colour: n for colour, n in counts.items() if n >= 100}
    assert len(drawn) >= 5, f"pixels of each class colour: {counts}"
    assert sum(counts.values()) >= 0.25 * rect["width"] * rect["height"], counts  # the city fills much of the map
    assert_stayed_home(browser, served)


def test_clicking_a_patch_shows_what_lookup_gives(served: Server, browser: Browser) -> None:
    patch = served.items("basemap", sortby="-area_m2", limit=1)["features"][0]
    point = shape(patch["geometry"]).representative_point()
    expected = served.get("/lookup", as_="viewer", x=point.x, y=point.y).json()["patch"]
    open_map(browser, served, "viewer")
    settle(browser, f"viewer.map.jumpTo({{center: [{point.x}, {point.y}], zoom: 14}})")
    rect = browser.evaluate(MAP_RECT)
    at = browser.evaluate(f"(() => {{ const p = viewer.map.project([{point.x}, {point.y}]); return [p.x, p.y]; }})()")
    browser.click(rect["x"] + at[0], rect["y"] + at[1])
    shown = browser.wait_for("(() => { const c = [...document.querySelectorAll('#place-body .code')];"
                             " return c.length === 2 && c.map((e) => [e.dataset.plan, e.textContent]); })()")
    said = dict(shown)
    for plan in ("land_use", "urban_plan"):
        assert said[plan].startswith(f"{expected[plan]['code']} {expected[plan]['name_zh']}"), (plan, said, expected)
    assert_stayed_home(browser, served)


def test_status_change_from_the_panel_is_in_the_review_history(served: Server, browser: Browser) -> None:
    unreviewed = {i for (i,) in query(served.settings, "SELECT c.id FROM geoservice.conflict c JOIN geoservice.detection_run r "
                                      "ON c.run_id = ANY(r.chain) AND (c.until_run IS NULL OR c.until_run > r.id) JOIN geoservice.conflict_case k ON k.id = c.case_id WHERE r.is_current "
                                      "AND k.status = 'open' AND NOT EXISTS (SELECT 1 FROM geoservice.conflict_case_event e "
                                      "WHERE e.case_id = k.id)")}
    open_map(browser, served, "tester")  # restricted, with the review scope
    listed = browser.wait_for("[...document.querySelectorAll('#conflict-list li[data-id]')].map((li) => Number(li.dataset.id))")
    conflict = min(set(listed) & unreviewed)
    browser.evaluate(f"document.querySelector('#conflict-list li[data-id=\"{conflict}\"] button').click()")
    browser.wait_for("!!document.getElementById('review-form')")
    comment = "地图上核实 checked on the map"
    browser.evaluate("document.getElementById('review-status').value = 'confirmed';"
                     f"document.getElementById('review-comment').value = '{comment}';"
                     "document.querySelector('#review-form button').click()")
    browser.wait_for(f"document.getElementById('case-history')?.textContent.includes('{comment}')")
    case = served.get(f"/collections/conflicts/items/{conflict}/review", as_="viewer").json()
    assert case["case"]["status"] == "confirmed" and case["case"]["reviewer"] == "tester"
    assert [(e["from_status"], e["to_status"], e["reviewer"], e["comment"]) for e in case["history"]] == [
        ("open", "confirmed", "tester", comment)]
    assert browser.evaluate("document.getElementById('case-status').textContent").startswith("已确认")
    assert_stayed_home(browser, served)


def test_a_public_caller_sees_only_public_layers(served: Server, browser: Browser) -> None:
    assert f'href="{served.url}/map"' in served.get("/", as_=None, f="html").text  # linked from the landing page
    public = sorted(c["id"] for c in served.get("/collections", as_=None).json()["collections"])
    assert public and all(served.collections[name].grade == "public" for name in public)
    open_map(browser, served, None)
    tree = browser.evaluate("[...document.querySelectorAll('#tree input[data-layer]')].map((i) => i.dataset.layer)")
    assert sorted(tree) == public
    assert browser.evaluate("document.getElementById('conflicts').hidden")  # no conflicts panel
    asked = {name for url in browser.requests if "/tiles/WebMercatorQuad/" in url
             for name in urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["collections"][0].split(",")}
    assert asked and asked <= set(public)
    assert_stayed_home(browser, served)


def test_a_broken_colour_table_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="colours_2023.csv: the class colour table is missing"):
        class_colours(tmp_path)
    (tmp_path / "colours_2023.csv").write_text("code,name_zh,red,green,blue\n01,耕地,245,248,\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="code,name_zh,red,green,blue"):
        class_colours(tmp_path)
    (tmp_path / "colours_2023.csv").write_text("code,name_zh,red,green,blue\n01,耕地,245,248,300\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="from 0 to 255"):
        class_colours(tmp_path)
    assert class_colours(Path(__file__).resolve().parent.parent / "config" / "classification")["0703"]["rgb"] == [255, 211, 128]


# -- the project check -------------------------------------------------------------------------------------------

CHECK = "/processes/project-check/execution"
#: the conflicts the check table lists: rule, area m², district, the code and layer met
CHECK_ROWS = ("[...document.querySelectorAll('#check-table tbody tr')].map((r) => [r.dataset.rule, Number(r.dataset.area),"
              " r.dataset.district, r.dataset.codeB, r.dataset.layerB])")


def open_tab(browser: Browser, tab: str) -> None:
    browser.evaluate(f"document.querySelector('#tabs button[data-tab=\"{tab}\"]').click()")
    assert not browser.evaluate(f"document.getElementById('{tab}').hidden")


def rows_of(answer: dict) -> list[list]:
    return [[p["rule_id"], p["area_m2"], p["district_code"] or "", p["code_b"] or "", p["layer_b"] or ""]
            for p in (f["properties"] for f in answer["features"])]


def assert_same_rows(listed: list[list], expected: list[list], rel: float = 0) -> None:
    assert len(listed) == len(expected) > 0, (listed, expected)
    for got, want in zip(sorted(listed), sorted(expected), strict=True):
        assert got[0] == want[0] and got[2:] == want[2:], (got, want)
        assert got[1] == pytest.approx(want[1], rel=rel, abs=1e-6 if rel else 0), (got, want)


def checked(browser: Browser, what: str) -> list[list]:
    """The check table once the answer about `what` (the drawn polygon, a file name) is shown."""
    browser.wait_for(f"document.querySelector('#check-summary p')?.textContent.startsWith({what!r})", timeout=90)
    return browser.evaluate(CHECK_ROWS)


def test_drawing_a_project_lists_the_conflicts_the_process_finds(served: Server, browser: Browser) -> None:
    polygon = in_crs84(red_line_project(served.settings))
    vertices = list(polygon.exterior.coords)[:-1]
    open_map(browser, served, "viewer")
    settle(browser, f"viewer.map.fitBounds({list(polygon.bounds)}, {{padding: 150, duration: 0}})")
    open_tab(browser, "check-tab")
    browser.evaluate("document.getElementById('draw-start').click()")
    rect = browser.evaluate(MAP_RECT)
    for x, y in [*vertices, vertices[0]]:  # the last click, on the first vertex, closes the polygon
        at = browser.evaluate(f"(() => {{ const p = viewer.map.project([{x}, {y}]); return [p.x, p.y]; }})()")
        browser.click(rect["x"] + at[0], rect["y"] + at[1])
    listed = checked(browser, "绘制的范围")
    sent = browser.evaluate("viewer.check.state.asked")
    drawn = shapely.geometry.shape(sent["geometry"])
    assert shapely.normalize(drawn).equals_exact(shapely.normalize(polygon), tolerance=1e-4)  # a pixel or so
    direct = served.post(CHECK, {"inputs": sent}, as_="viewer").json()
    assert_same_rows(listed, rows_of(direct))
    assert browser.evaluate("document.getElementById('check-count').textContent") == str(direct["numberReturned"])
    settle(browser, "")
    assert browser.evaluate("viewer.map.queryRenderedFeatures({layers: ['check-conflicts-fill']}).length") > 0
    assert not browser.evaluate("document.getElementById('check-result').querySelector('.error')")
    assert_stayed_home(browser, served)


def test_a_dropped_geojson_and_a_chosen_zipped_shapefile_list_what_the_process_finds(served: Server, browser: Browser,
                                                                                      tmp_path: Path) -> None:
    polygon = red_line_project(served.settings)
    direct = served.post(CHECK, {"inputs": {"geometry": shapely.geometry.mapping(polygon), "crs": "EPSG:4548"}}, as_="viewer")
    expected = rows_of(direct.json())
    open_map(browser, served, "viewer")
    open_tab(browser, "check-tab")
    text = geojson_bytes(in_crs84(polygon)).decode()
    browser.evaluate(f"(() => {{ const data = new DataTransfer(); data.items.add(new File([{json.dumps(text)}], 'project.geojson'));"
                     " document.getElementById('drop-zone').dispatchEvent(new DragEvent('drop', {dataTransfer: data,"
                     " bubbles: true, cancelable: true})); })()")
    assert_same_rows(checked(browser, "project.geojson"), expected, rel=1e-6)  # through CRS84 and back
    browser.set_files("#check-file", [zipped_shapefile(tmp_path, polygon)])
    assert_same_rows(checked(browser, "project.zip"), expected, rel=1e-9)
    assert browser.evaluate("viewer.check.state.asked.project_file.mediaType") == "application/zip"
    assert_stayed_home(browser, served)


# -- 对比分析 ------------------------------------------------------------------------------------------------------

SWIPE_READY = ("window.viewer?.swipe?.left && [viewer.swipe.left, viewer.swipe.right].every((m) => m.loaded()"
               " && m.areTilesLoaded() && !m.isMoving())")


def class_colour(colours: dict[str, dict], code: str | None) -> tuple[int, int, int] | None:
    """The colour the viewer fills a class code with (level 2, else level 1, else grey)."""
    if not code:
        return None
    entry = colours.get(code[:4]) or colours.get(code[:2])
    return tuple(entry["rgb"]) if entry else (204, 204, 204)


def test_the_swipe_shows_plan_a_left_and_plan_b_right(served: Server, browser: Browser) -> None:
    open_map(browser, served, "viewer")
    open_tab(browser, "compare-tab")
    assert browser.evaluate("[document.getElementById('swipe-left').value, document.getElementById('swipe-right').value]") \
        == ["landuse", "urban_plan"]
    browser.evaluate("document.getElementById('swipe-toggle').click()")
    browser.wait_for(SWIPE_READY, timeout=90)
    rect = browser.evaluate(MAP_RECT)
    handle = browser.evaluate("(() => { const r = document.querySelector('#swipe-divider span').getBoundingClientRect();"
                              " return [r.x + r.width / 2, r.y + r.height / 2]; })()")
    browser.drag((handle[0], handle[1]), (rect["x"] + 0.4 * rect["width"], handle[1]))  # the divider dragged to 40 %
    assert browser.evaluate("viewer.swipe.position") == pytest.approx(0.4, abs=0.01)
    browser.wait_for(SWIPE_READY)
    divider = browser.evaluate("viewer.swipe.position") * rect["width"]
    pixels = np.asarray(Image.open(io.BytesIO(browser.screenshot(rect))).convert("RGB")).astype(int)
    colours = class_colours(served.settings.path(served.settings.paths.classification))
    seen = {"left": [0, 0, 0], "right": [0, 0, 0]}  # places where the plans' colours differ: A's colour, B's colour, all
    for fx in np.linspace(0.04, 0.96, 24):
        for fy in np.linspace(0.15, 0.85, 12):
            x, y = fx * rect["width"], fy * rect["height"]
            if abs(x - divider) < 8:
                continue
            lng, lat = browser.evaluate(f"viewer.swipe.left.unproject([{x}, {y}]).toArray()")
            patch = served.get("/lookup", as_="viewer", x=lng, y=lat).json().get("patch") or {}
            a, b = (class_colour(colours, (patch.get(plan) or {}).get("code")) for plan in ("land_use", "urban_plan"))
            if a is None or b is None or a == b:
                continue
            pixel = tuple(pixels[int(y), int(x)])
            side = seen["left" if x < divider else "right"]
            side[0] += all(abs(p - c) <= 2 for p, c in zip(pixel, a, strict=True))
            side[1] += all(abs(p - c) <= 2 for p, c in zip(pixel, b, strict=True))
            side[2] += 1
    (a_left, b_left, left), (a_right, b_right, right) = seen["left"], seen["right"]
    assert left >= 10 and right >= 10, seen
    assert a_left >= 0.8 * left and b_left <= 0.1 * left, seen      # left of the divider: plan A (land use)
    assert b_right >= 0.8 * right and a_right <= 0.1 * right, seen  # right of it: plan B (urban plan)
    assert_stayed_home(browser, served)


def test_the_version_comparison_lists_the_change_report(served: Server, browser: Browser, tmp_path: Path) -> None:
    before, new = edited_landuse(served.settings, tmp_path)
    report = served.get("/collections/landuse/changes", as_="viewer", **{"from": before, "to": new}).json()
    assert report["counts"] == EXPECTED_COUNTS
    open_map(browser, served, "viewer")
    open_tab(browser, "compare-tab")
    browser.evaluate("const layer = document.getElementById('version-layer'); layer.value = 'landuse';"
                     " layer.dispatchEvent(new Event('change'))")
    browser.wait_for(f"[...document.getElementById('version-to').options].some((o) => o.value === '{new}')")
    browser.evaluate(f"document.getElementById('version-from').value = '{before}';"
                     f" document.getElementById('version-to').value = '{new}';"
                     " document.getElementById('version-run').click()")
    listed = dict(browser.wait_for("[...document.querySelectorAll('#version-counts td[data-change]')]"
                                   ".map((td) => [td.dataset.change, Number(td.textContent)])", timeout=90))
    assert listed == {**report["counts"], "unchanged": report["unchanged"]}
    assert browser.evaluate("document.querySelectorAll('#version-list li[data-change]').length") == len(report["features"])
    settle(browser, "")
    drawn = browser.evaluate("[...new Set(viewer.map.queryRenderedFeatures({layers: ['changes-fill']})"
                             ".map((f) => f.properties.change))].sort()")
    assert drawn == ["added", "changed", "removed"]
    assert_stayed_home(browser, served)
