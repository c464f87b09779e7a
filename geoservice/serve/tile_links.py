"""The links that lead a client to the vector tiles: from each collection's document and from the landing page."""

from __future__ import annotations

REL_TILESETS = "http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector"
REL_SCHEMES = "http://www.opengis.net/def/rel/ogc/1.0/tiling-schemes"


def collection_tile_links(base_url: str, name: str) -> list[dict[str, str]]:
    """A collection's link to its tilesets."""
    return [{"type": "application/json", "rel": REL_TILESETS, "title": "Vector tilesets (Mapbox Vector Tile)",
             "href": f"{base_url}/collections/{name}/tiles"}]


def landing_tile_links(base_url: str) -> list[dict[str, str]]:
    """The landing page's links to the dataset's tilesets and the tile matrix sets."""
    return [{"type": "application/json", "rel": REL_TILESETS,
             "title": "Vector tilesets of the dataset (the collections as layers of one tile)", "href": f"{base_url}/tiles"},
            {"type": "application/json", "rel": REL_SCHEMES, "title": "Tile matrix sets",
             "href": f"{base_url}/tileMatrixSets"}]
