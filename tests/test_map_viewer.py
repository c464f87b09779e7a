"""The map application at /map in headless Chromium (DevTools protocol, tests/browser.py) against the session's demo
server, with every other host unresolvable: the base map drawn in the 用地用海 class colours (pixels of the
screenshot), a click on a patch shows what /lookup says there, a status change from the conflicts panel lands in the
case's review history, a public caller's tree has only public layers, and no request leaves the server."""

from __future__ import annotations

import io
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from shapely.geometry import shape

from browser import Browser
from geoservice.errors import ConfigError
from geoservice.serve.viewer import class_colours
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
                                       "JOIN geoservice.integration_run r ON r.id = b.run_id WHERE r.is_current "
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
                                      "ON r.id = c.run_id JOIN geoservice.conflict_case k ON k.id = c.case_id WHERE r.is_current "
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
