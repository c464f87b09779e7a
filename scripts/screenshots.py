"""The README's screenshots of the /map viewer, taken in headless Chromium from a running demo server.

    .venv/bin/geoservice serve &                 # the demo (make demo), with a token that may review
    .venv/bin/python scripts/screenshots.py --url http://127.0.0.1:5000 --token <token> --out docs

Writes docs/map-overview.png (the base map, lines and conflicts), docs/map-lookup.png (a click on a patch: what every
plan says there), docs/map-conflict.png (a conflict opened in the conflicts panel, with its review case),
docs/map-check.png (a project drawn across the edge of the first red-line feature and the conflicts it would create),
docs/map-swipe.png (对比分析: the land-use plan left of the divider, the urban plan right of it) and, when a layer has
two versions, docs/map-versions.png (the change report between the last two, the changes drawn on the map).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import urllib.parse
from pathlib import Path

import requests
from shapely.geometry import shape

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from browser import Browser  # noqa: E402  (the tests' DevTools client)

READY = ("window.viewer && viewer.map.getSource('data') && viewer.map.loaded() && viewer.map.areTilesLoaded()"
         " && !viewer.map.isMoving()")


def settle(browser: Browser, action: str) -> None:
    """Run a script on the page's map and wait until the map has drawn what it asked for."""
    browser.evaluate(f"new Promise((done) => {{ viewer.map.once('idle', () => done(true)); {action}; viewer.map.triggerRepaint(); }})")
    browser.wait_for(READY)


def click_at(browser: Browser, lng: float, lat: float) -> None:
    """A click on the main map at a place."""
    rect = browser.evaluate("(() => { const r = document.getElementById('map').getBoundingClientRect(); return [r.x, r.y]; })()")
    at = browser.evaluate(f"(() => {{ const p = viewer.map.project([{lng}, {lat}]); return [p.x, p.y]; }})()")
    browser.click(rect[0] + at[0], rect[1] + at[1])


def open_tab(browser: Browser, tab: str) -> None:
    browser.evaluate(f"document.querySelector('#tabs button[data-tab=\"{tab}\"]').click()")


def project_ring(lng: float, lat: float) -> list[tuple[float, float]]:
    """About 900 m × 700 m around a place (CRS84), as the tests' red-line project."""
    east, north = 1 / (111_320 * math.cos(math.radians(lat))), 1 / 110_540
    return [(lng + dx * east, lat + dy * north) for dx, dy in ((-400, -300), (500, -350), (450, 400), (-350, 380))]


def project_check(browser: Browser, get, out: Path) -> None:
    """A project drawn across the edge of the first red-line feature: map-check.png."""
    if browser.evaluate("document.getElementById('draw-start') === null || !viewer.check.click"):
        return
    lines = get("/collections/red_line/items", {"limit": 1})["features"]
    if not lines:
        return
    edge = shape(lines[0]["geometry"]).boundary.interpolate(0.25, normalized=True)  # a project across the red line
    ring = project_ring(edge.x, edge.y)
    xs, ys = zip(*ring)
    settle(browser, f"viewer.map.fitBounds([{min(xs)}, {min(ys)}, {max(xs)}, {max(ys)}], {{padding: 150, duration: 0}})")
    open_tab(browser, "check-tab")
    browser.evaluate("document.getElementById('draw-start').click()")
    for lng, lat in [*ring, ring[0]]:
        click_at(browser, lng, lat)
    browser.wait_for("!!document.querySelector('#check-summary')", timeout=120)
    browser.wait_for(READY)
    (out / "map-check.png").write_bytes(browser.screenshot())
    browser.evaluate("document.getElementById('check-clear').click()")


def swipe(browser: Browser, bounds: list[float], out: Path) -> None:
    """The land-use plan left of the divider, the urban plan right of it: map-swipe.png."""
    settle(browser, f"viewer.map.fitBounds({bounds}, {{padding: 20, duration: 0}})")
    open_tab(browser, "compare-tab")
    browser.evaluate("document.getElementById('swipe-toggle').click()")
    browser.wait_for("window.viewer?.swipe?.left && [viewer.swipe.left, viewer.swipe.right].every((m) => m.loaded()"
                     " && m.areTilesLoaded() && !m.isMoving())", timeout=120)
    (out / "map-swipe.png").write_bytes(browser.screenshot())
    browser.evaluate("document.getElementById('swipe-toggle').click()")


def versions(browser: Browser, get, out: Path) -> None:
    """The change report between the last two versions of the first layer that has two: map-versions.png."""
    options = browser.evaluate("[...document.getElementById('version-layer').options].map((o) => o.value)")
    for layer in options:
        listed = get(f"/collections/{layer}/versions", {})["versions"]
        if len(listed) >= 2:
            break
    else:
        print("no layer has two versions: no map-versions.png")
        return
    old, new = listed[-2]["version"], listed[-1]["version"]
    browser.evaluate(f"const layer = document.getElementById('version-layer'); layer.value = '{layer}';"
                     " layer.dispatchEvent(new Event('change'))")
    browser.wait_for(f"[...document.getElementById('version-to').options].some((o) => o.value === '{new}')")
    browser.evaluate(f"document.getElementById('version-from').value = '{old}'; document.getElementById('version-to').value = '{new}';"
                     " document.getElementById('version-run').click()")
    browser.wait_for("!!document.getElementById('version-counts')", timeout=120)
    browser.evaluate("(document.querySelector('#version-list li[data-change=\"removed\"]')"
                     " || document.querySelector('#version-list li')).click()")
    settle(browser, "viewer.map.zoomTo(viewer.map.getZoom() - 2.5, {duration: 0})")  # a changed feature among its neighbours
    (out / "map-versions.png").write_bytes(browser.screenshot())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:5000", help="the running server")
    parser.add_argument("--token", help="sign in with this token (anonymous: the public view)")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}

    def get(path: str, params: dict) -> dict:
        return requests.get(f"{args.url}{path}", params=params, headers=headers, timeout=60).json()

    patch = get("/collections/basemap/items", {"sortby": "-area_m2", "limit": 1})["features"][0]
    point = shape(patch["geometry"]).representative_point()
    parts = urllib.parse.urlsplit(args.url)
    start = (f"{parts.scheme}://map:{urllib.parse.quote(args.token, safe='')}@{parts.netloc}/login?next=/map" if args.token
             else f"{args.url}/map")
    with tempfile.TemporaryDirectory() as profile, Browser(Path(profile), width=1400, height=860) as browser:
        browser.goto(start)
        browser.wait_for(READY, timeout=120)
        (args.out / "map-overview.png").write_bytes(browser.screenshot())
        bounds = browser.evaluate("viewer.map.getBounds().toArray().flat()")
        settle(browser, f"viewer.map.jumpTo({{center: [{point.x}, {point.y}], zoom: 13}})")
        rect = browser.evaluate("(() => { const r = document.getElementById('map').getBoundingClientRect(); return [r.x, r.y]; })()")
        at = browser.evaluate(f"(() => {{ const p = viewer.map.project([{point.x}, {point.y}]); return [p.x, p.y]; }})()")
        browser.click(rect[0] + at[0], rect[1] + at[1])
        browser.wait_for("document.querySelectorAll('#place-body .code').length === 2")
        (args.out / "map-lookup.png").write_bytes(browser.screenshot())
        if browser.evaluate("!document.getElementById('conflicts').hidden"):
            browser.wait_for("!!document.querySelector('#conflict-list li[data-id] button')")
            browser.evaluate("document.querySelector('#conflict-list li[data-id] button').click()")
            browser.wait_for("!!document.querySelector('#case h3')")
            browser.wait_for(READY)
            (args.out / "map-conflict.png").write_bytes(browser.screenshot())
        project_check(browser, get, args.out)
        swipe(browser, bounds, args.out)
        versions(browser, get, args.out)
        outside = [u for u in browser.requests if urllib.parse.urlsplit(u).hostname not in (parts.hostname, None)
                   and not u.startswith(("blob:", "data:"))]
        if outside:
            sys.exit(f"the viewer asked other hosts: {outside[:5]}")
    print(f"wrote the screenshots into {args.out}/")


if __name__ == "__main__":
    main()
