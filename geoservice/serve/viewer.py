"""The map application at /map: one page (templates/map.html, static/map/*.js and map.css) on MapLibre GL JS
(static/vendor/maplibre-gl), drawing the dataset's vector tiles.

The page carries what the script needs as JSON: the layer tree of the caller's view (the collections the caller's
grade reads, as /collections lists them, grouped by what they are), the 用地用海 class colours
(config/classification/colours_2023.csv), the rules' titles, the background tile URL (`server.map_tiles`) and its CRS
(`server.map_tiles_crs`: a GCJ-02 background has the tiles, lookups and items asked for in GCJ-02), who is signed in,
the processes the caller may run (the project check) and the upload limit. Everything the page loads comes from this
server. The script is split by what it does: map.js (the map, tree, legend, lookup and conflicts panel), common.js
(styles and helpers), check.js (the project check: draw or drop a file) and compare.js (对比分析: the swipe between two
layers, and a layer's two versions with their change report).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Route

from geoservice.conflicts.rules import load_rules
from geoservice.errors import ConfigError
from geoservice.serve.auth import ANONYMOUS_NAME, Caller
from geoservice.serve.catalog import BASEMAP, CONFLICTS
from geoservice.serve.config import TEMPLATES
from geoservice.serve.live import GradeView
from geoservice.settings import Settings

MAP_PATH = "/map"
COLOUR_FILE = "colours_2023.csv"
#: the tree's groups, in drawing order (bottom first): title, and the collections or layer kinds in it, in order
#: (the opaque base map at the bottom, so the plans it merges show over it when switched on)
GROUPS = (("规划 Plans", (BASEMAP, "urban_plan")),
          ("现状 Land use", ("land_use",)),
          ("控制线 Protection lines", ("red_line", "basic_farmland", "dev_boundary")),
          ("项目 Projects", ("construction",)),
          ("冲突 Conflicts", (CONFLICTS,)),
          ("行政区 Districts", ("district",)))

#: the kinds the viewer starts with switched off (the base map carries both plans' codes)
OFF_AT_START = ("land_use", "urban_plan")


def class_colours(folder: Path) -> dict[str, dict[str, Any]]:
    """The 用地用海 (2023) level-1 and level-2 classes: {code: {"name": 名称, "rgb": [r, g, b]}}; ConfigError naming
    the file when it is missing or a row is not `code,name_zh,red,green,blue` with 0–255 values."""
    path = folder / COLOUR_FILE
    try:
        with path.open(encoding="utf-8", newline="") as file:
            colours = {row["code"]: {"name": row["name_zh"], "rgb": [int(row[c]) for c in ("red", "green", "blue")]}
                       for row in csv.DictReader(file)}
    except FileNotFoundError as exc:
        raise ConfigError(str(path), None, "the class colour table is missing (the /map viewer draws with it)") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(str(path), None, "each row must be code,name_zh,red,green,blue (integers)") from exc
    if not colours or any(not 0 <= v <= 255 for entry in colours.values() for v in entry["rgb"]):
        raise ConfigError(str(path), None, "needs at least one class, with red, green and blue from 0 to 255")
    return colours


def layer_tree(view: GradeView) -> list[dict[str, Any]]:
    """The caller's collections grouped for the tree (groups without a collection left out); `on`: shown at start."""
    tree = []
    for title, members in GROUPS:
        layers = sorted(({"id": name, "title": provider.collection.title, "kind": provider.collection.kind or name,
                          "on": (provider.collection.kind or name) not in OFF_AT_START}
                         for name, provider in view.providers.items() if (provider.collection.kind or name) in members),
                        key=lambda layer: members.index(layer["kind"]))
        if layers:
            tree.append({"title": title, "layers": layers})
    return tree


def shown_at_start(view: GradeView) -> list[str]:
    """The collections the viewer shows at its start, in the order its dataset tile URL names them (the tree's)."""
    return [layer["id"] for group in layer_tree(view) for layer in group["layers"] if layer["on"]]


class MapViewer:
    """The /map route: the page, with the caller's tree and the settings it needs."""

    def __init__(self, settings: Settings) -> None:
        self.colours = class_colours(settings.path(settings.paths.classification))
        self.rules = {rule.id: {"zh": rule.title_zh, "en": rule.title_en}
                      for rule in load_rules(settings.path(settings.paths.rules)).rules}
        self.background = settings.server.map_tiles
        self.background_crs = "GCJ02" if settings.server.map_tiles_crs == "GCJ02" else None
        self.max_upload_mb = settings.server.max_upload_mb
        environment = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape())
        self.template = environment.get_template("map.html")

    def routes(self) -> list[BaseRoute]:
        return [Route(MAP_PATH, self.page, methods=["GET"])]

    async def page(self, request: Request) -> HTMLResponse:
        caller: Caller = request.state.caller
        view: GradeView = request.state.view
        config = {"tree": layer_tree(view), "colours": self.colours, "rules": self.rules,
                  "background": self.background, "background_crs": self.background_crs,
                  "processes": sorted(view.api.manager.processes), "max_upload_mb": self.max_upload_mb,
                  "caller": {"name": None if caller.name == ANONYMOUS_NAME else caller.name,
                             "review": "review" in caller.scopes}}
        # </ cannot end the script element the JSON sits in
        text = json.dumps(config, ensure_ascii=False).replace("</", "<\\/")
        return HTMLResponse(self.template.render(config=text, signed_in=config["caller"]["name"]),
                            headers={"Cache-Control": "no-cache"})
