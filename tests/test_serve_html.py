"""HTML pages work without internet: everything they load comes from geoservice, and the map draws features."""

from __future__ import annotations

import re
import urllib.parse
import subprocess
from pathlib import Path

from servers import TOKENS, Server
from system_tools import chromium

PAGES = ["/", "/collections", "/collections/conflicts", "/collections/conflicts/items", "/collections/landuse/queryables",
         "/conformance", "/openapi", "/map", "/collections/catalog", "/collections/catalog/items",
         "/collections/catalog/items/landuse", "/collections/catalog/queryables"]
#: what a page loads: scripts, images, stylesheets and icons (not <link rel="alternate"> and other plain links)
_LOADS = re.compile(r"<(?:script|img)\b[^>]*?\bsrc=[\"']([^\"']+)[\"']"
                    r"|<link\b(?=[^>]*\brel=[\"'][^\"']*(?:stylesheet|icon))[^>]*?\bhref=[\"']([^\"']+)[\"']", re.IGNORECASE)
_CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                   "--disable-background-networking", "--disable-component-update", "--disable-sync",
                   "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]  # no host but this machine resolves


def signed_in_url(served: Server, path: str) -> str:
    """A browser signing in as `viewer` (the token as Basic password in the URL) and going on to `path`."""
    host = served.url.removeprefix("http://")
    return f"http://viewer:{TOKENS['viewer'][2]}@{host}/login?next={urllib.parse.quote(path, safe='/')}"


def test_pages_load_nothing_from_elsewhere(served: Server) -> None:
    first_item = served.items("conflicts", limit=1)["features"][0]["id"]
    for path in [*PAGES, f"/collections/conflicts/items/{first_item}"]:
        response = served.get(path, f="html")
        assert response.status_code == 200, path
        assert response.headers["Content-Type"].startswith("text/html")
        loads = [a or b for a, b in _LOADS.findall(response.text)]
        assert loads, path
        for target in loads:
            assert not target.startswith(("http://", "https://", "//")) or target.startswith(served.url), f"{path} loads {target}"


def test_vendored_libraries_are_served(served: Server) -> None:
    for path in ("/static/vendor/leaflet/leaflet.js", "/static/vendor/leaflet/leaflet.css",
                 "/static/vendor/bootstrap/bootstrap.min.css", "/static/vendor/swagger-ui/swagger-ui-bundle.js",
                 "/static/vendor/maplibre-gl/maplibre-gl.js", "/static/vendor/maplibre-gl/maplibre-gl.css",
                 "/static/map/map.js", "/static/map/map.css"):
        assert served.get(path).status_code == 200, path


def test_items_map_draws_features_in_headless_chromium(served: Server, tmp_path: Path) -> None:
    url = signed_in_url(served, "/collections/conflicts/items?f=html&limit=25")
    result = subprocess.run([chromium(), *_CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                             "--virtual-time-budget=15000", "--dump-dom", url], check=False,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    drawn = re.findall(r'<path class="leaflet-interactive"', result.stdout)
    assert len(drawn) == 25, f"the map drew {len(drawn)} of 25 features"
    assert 'class="leaflet-control-zoom' in result.stdout  # Leaflet itself ran
