"""A layer's versions and the change report between two of them (变更报告), per served layer collection:
GET /collections/{layer}/versions and GET /collections/{layer}/changes?from=V1&to=V2 (default: the version before
the active one → the active one); with f=geojson the report is a GeoJSON FeatureCollection of the changed features
(CRS84; the new geometry of added and changed features, the old one of removed features) carrying the report's
counts and area tables as foreign members — the /map viewer draws it, as no older version has tiles. Like everything
else, 404 when the caller may not read the layer."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import numpy as np
import orjson
import shapely
import shapely.geometry
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from geoservice.db import transaction
from geoservice.db.read import LayerVersion, layer_versions
from geoservice.governance import ChangeReportError, LayerChanges, change_geometries, layer_changes
from geoservice.queries.points import cached_transformer
from geoservice.serve.problems import problem
from geoservice.settings import Settings

FORMATS = ("json", "geojson")


def list_versions(settings: Settings, layer: str) -> list[LayerVersion]:
    """The layer's versions, oldest first."""
    with transaction(settings) as conn, conn.cursor() as cur:
        return layer_versions(cur, layer)


class ChangeEndpoints:
    """The routes over the layer collections of the caller's view."""

    def __init__(self, settings: Settings) -> None:
        self.settings, self.base_url = settings, settings.server.base_url

    def routes(self) -> list[Route]:
        return [Route("/collections/{collection_id}/versions", self.versions, methods=["GET"]),
                Route("/collections/{collection_id}/changes", self.changes, methods=["GET"])]

    @staticmethod
    def _hidden(request: Request, name: str) -> Response | None:
        collection = request.state.view.collection(name)
        visible = collection is not None and collection.kind is not None
        return None if visible else problem(HTTPStatus.NOT_FOUND, "NotFound", f"no collection {name!r}")

    async def versions(self, request: Request) -> Response:
        name = request.path_params["collection_id"]
        refusal = self._hidden(request, name)
        if refusal:
            return refusal
        rows = await run_in_threadpool(list_versions, self.settings, name)
        versions: list[dict[str, Any]] = []
        for row, before in zip(rows, [None, *rows[:-1]]):
            entry = {"version": row.version, "loaded_at": row.loaded_at.isoformat(), "features": row.feature_count,
                     "active": row.is_active}
            if before is not None:
                entry["changes"] = f"{self.base_url}/collections/{name}/changes?from={before.version}&to={row.version}"
            versions.append(entry)
        return Response(orjson.dumps({"layer": name, "versions": versions}), media_type="application/json")

    async def changes(self, request: Request) -> Response:
        name = request.path_params["collection_id"]
        refusal = self._hidden(request, name)
        if refusal:
            return refusal
        form = request.query_params.get("f", "json")
        try:
            if form not in FORMATS:
                raise ValueError(f"f: {form[:20]!r} is not offered here (json or geojson)")
            old, new = await run_in_threadpool(self._pair_asked, name, request.query_params)
            report = await run_in_threadpool(layer_changes, self.settings, name, old, new)
        except (ValueError, ChangeReportError) as exc:
            return problem(HTTPStatus.BAD_REQUEST, "InvalidParameterValue", str(exc))
        if form == "geojson":
            collection = await run_in_threadpool(self._feature_collection, report)
            return Response(orjson.dumps(collection, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/geo+json")
        return Response(orjson.dumps(report.as_dict()), media_type="application/json")

    def _feature_collection(self, report: LayerChanges) -> dict[str, Any]:
        """The report as GeoJSON in CRS84: a feature per change, the rest of the report beside the features."""
        geometries = shapely.from_wkb(change_geometries(self.settings, report))
        to_crs84 = cached_transformer(self.settings.working_crs, "OGC:CRS84")
        moved = shapely.transform(geometries, lambda xy: np.column_stack(to_crs84.transform(xy[:, 0], xy[:, 1])))
        summary = report.as_dict()
        changes = summary.pop("features")
        features = [{"type": "Feature", "geometry": shapely.geometry.mapping(geometry), "properties": change}
                    for geometry, change in zip(moved, changes, strict=True)]
        return {"type": "FeatureCollection", **summary, "features": features}

    def _pair_asked(self, name: str, params: Any) -> tuple[int, int]:
        unknown = sorted(set(params) - {"from", "to", "f"})
        if unknown:
            raise ValueError(f"unknown parameter {unknown[0]!r} (give from and to, version numbers)")
        rows = list_versions(self.settings, name)
        numbers, active = [row.version for row in rows], next(row.version for row in rows if row.is_active)
        try:
            new = int(params.get("to", active))
            old = int(params["from"]) if "from" in params else max((v for v in numbers if v < new), default=new)
        except ValueError as exc:
            raise ValueError("from and to are version numbers (see /versions)") from exc
        return old, new
