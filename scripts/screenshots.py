"""The README's screenshots of the /map viewer, taken in headless Chromium from a running demo server.

    .venv/bin/geoservice serve &                 # the demo (make demo), with a token that may review
    .venv/bin/python scripts/screenshots.py --url http://127.0.0.1:5000 --token <token> --out docs

Writes docs/map-overview.png (the base map, lines and conflicts), docs/map-lookup.png (a click on a patch: what every
plan says there) and docs/map-conflict.png (a conflict opened in the conflicts panel, with its review case).
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:5000", help="the running server")
    parser.add_argument("--token", help="sign in with this token (anonymous: the public view)")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    patch = requests.get(f"{args.url}/collections/basemap/items", params={"sortby": "-area_m2", "limit": 1},
                         headers=headers, timeout=60).json()["features"][0]
    point = shape(patch["geometry"]).representative_point()
    parts = urllib.parse.urlsplit(args.url)
    start = (f"{parts.scheme}://map:{urllib.parse.quote(args.token, safe='')}@{parts.netloc}/login?next=/map" if args.token
             else f"{args.url}/map")
    with tempfile.TemporaryDirectory() as profile, Browser(Path(profile), width=1400, height=860) as browser:
        browser.goto(start)
        browser.wait_for(READY, timeout=120)
        (args.out / "map-overview.png").write_bytes(browser.screenshot())
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
        outside = [u for u in browser.requests if urllib.parse.urlsplit(u).hostname not in (parts.hostname, None)
                   and not u.startswith(("blob:", "data:"))]
        if outside:
            sys.exit(f"the viewer asked other hosts: {outside[:5]}")
    print(f"wrote the screenshots into {args.out}/")


if __name__ == "__main__":
    main()
