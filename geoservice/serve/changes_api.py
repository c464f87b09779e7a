"""A layer's versions and the change report between two of them (变更报告), per served layer collection:
GET /collections/{layer}/versions and GET /collections/{layer}/changes?from=V1&to=V2 (default: the version before
the active one → the active one), and what a base-map or detection run changed, GET /collections/basemap/changes and
/collections/conflicts/changes (?run=ID; default the current run); with f=geojson the report is a GeoJSON FeatureCollection of the changed features
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
from geoservice.db.read import LayerVersion, RunKind, layer_versions, read_run, run_summary
from geoservice.governance import ChangeReportError, LayerChanges, change_geometries, layer_changes
from geoservice.queries.points import cached_transformer
from geoservice.serve.catalog import BASEMAP, CONFLICTS
from geoservice.serve.params import RequestError, integer_param
from geoservice.serve.problems import problem
from geoservice.settings import Settings

FORMATS = ("json", "geojson")
#: the run collections and their runs' kind
RUN_KINDS: dict[str, RunKind] = {BASEMAP: "integration", CONFLICTS: "detection"}


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
        if name in RUN_KINDS and request.state.view.collection(name) is not None:
            return await self._run_changes(request, name)
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

    async def _run_changes(self, request: Request, name: str) -> Response:
        """What a base-map or detection run changed (default: the current run; `run`: another): an incremental run's
        changes of its inputs, what it recomputed and the area gained and lost by class (rule) and district."""
        params = request.query_params
        try:
            unknown = sorted(set(params) - {"run", "f"})
            if unknown:
                raise RequestError(f"unknown parameter {unknown[0]!r} (give run, a run id)")
            if params.get("f", "json") != "json":
                raise RequestError(f"f: {params['f'][:20]!r} is not offered here (json)")
            run_id = integer_param(params, "run", request.state.view.collection(name).partition_key, 1)
            if run_id >= 2**62:
                raise RequestError("run: no such run")
        except RequestError as exc:
            return problem(HTTPStatus.BAD_REQUEST, "InvalidParameterValue", str(exc))
        found = await run_in_threadpool(self._run_summary, RUN_KINDS[name], run_id)
        if found is None:
            return problem(HTTPStatus.NOT_FOUND, "NotFound", f"no {RUN_KINDS[name]} run {run_id}")
        return Response(orjson.dumps({"collection": name, **found}), media_type="application/json")

    def _run_summary(self, kind: RunKind, run_id: int) -> dict[str, Any] | None:
        with transaction(self.settings) as conn, conn.cursor() as cur:
            run = read_run(cur, kind, run_id)
            if run is None or not run.finished_at:
                return None
            return {"run_id": run.id, "finished_at": run.finished_at.isoformat(), "is_current": run.is_current,
                    "base_run_id": run.base_run_id, "incremental": run_summary(cur, kind, run.id).get("incremental")}

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
