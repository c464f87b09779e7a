"""Project submissions over OGC API – Features Part 4 against a real server on a demo database of its own: OWSLib's
transactions and plain HTTP, optimistic locking (ETag, If-Match, 428/412, two writers with one ETag), the check stored
on arrival against the `project-check` process, bad input refused with nothing stored, grades and scopes, the review
workflow and its printable sheet in headless Chromium, every write in the audit and the change report, and a server
killed in the middle of writes."""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from owslib.ogcapi.features import Features
from PIL import Image

from browser import Browser
from conftest import demo_database
from geoservice.governance import layer_changes
from geoservice.serve import read_served_collections
from servers import ROOT, TOKENS, Server, bearer, running_server
from sql_helpers import query
from test_cli import run
from test_serve_schemathesis import is_feature_write, server_errors

pytestmark = pytest.mark.http

PROJECTS = "/collections/projects/items"
#: a 200 m square south-west of the demo's red line: inside it (so the project check finds conflicts)
RED_LINE_SQL = ("SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_Transform(ST_PointOnSurface(f.geom), 4326) AS p FROM "
                "geoservice.feature f JOIN geoservice.layer_version v ON v.id = f.version_id WHERE v.is_active "
                "AND v.layer = 'red_line' ORDER BY f.area_m2 DESC LIMIT 1) s")


@pytest.fixture(scope="module")
def edited(base_settings: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server over a demo database of this module's own (its writes change the projects layer)."""
    with demo_database(base_settings, f"geoservice_edits_{os.getpid()}") as settings:
        collections, _ = read_served_collections(settings)
        log = tmp_path_factory.mktemp("edits") / "serve.log"
        with running_server(settings, log, {c.name: c for c in collections}) as server:
            yield server


def square(lon: float, lat: float, metres: float = 200.0) -> dict[str, Any]:
    """A GeoJSON square (CRS84) of about `metres` a side, its south-west corner at lon/lat."""
    dx, dy = metres / (111_320 * np.cos(np.radians(lat))), metres / 110_574
    ring = [[lon, lat], [lon + dx, lat], [lon + dx, lat + dy], [lon, lat + dy], [lon, lat]]
    return {"type": "Polygon", "coordinates": [ring]}


def project(server: Server, number: str, geometry: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """A project Feature as the bureau's file has it (XMBH, XMMC, YDDM …), over the red line unless told."""
    if geometry is None:
        lon, lat = query(server.settings, RED_LINE_SQL)[0]
        geometry = square(lon, lat)
    properties = {"XMBH": number, "XMMC": f"测试项目 {number}", "JSDW": "厦门测试开发有限公司", "FZR": "王小明",
                  "SFZH": "350203199001011234", "LXDH": "13912345678", "YDDM": "0701", "PZRQ": "2026-12-01", **extra}
    return {"type": "Feature", "geometry": geometry, "properties": properties}


def write(server: Server, method: str, path: str, body: Any = None, as_: str | None = "tester",
          **headers: str) -> requests.Response:
    data = body if isinstance(body, bytes | None) else json.dumps(body, ensure_ascii=False).encode()
    return requests.request(method, f"{server.url}{path}", data=data, timeout=120,
                            headers={**bearer(as_), "Content-Type": "application/geo+json", **headers})


def create(server: Server, number: str, **kwargs: Any) -> requests.Response:
    response = write(server, "POST", PROJECTS, project(server, number, **kwargs))
    assert response.status_code == 201, response.text
    return response


def counts(server: Server) -> tuple[int, ...]:
    """Rows written so far: current projects, history rows, audit events, the active version's revision."""
    return query(server.settings, "SELECT (SELECT count(*) FROM geoservice.feature f JOIN geoservice.layer_version v ON "
                                  "v.id = f.version_id WHERE v.is_active AND v.layer = 'projects'), "
                                  "(SELECT count(*) FROM geoservice.feature_history), "
                                  "(SELECT count(*) FROM geoservice.audit_event), "
                                  "(SELECT revision FROM geoservice.layer_version WHERE is_active AND layer = 'projects')")[0]


def test_owslib_creates_updates_and_deletes(edited: Server) -> None:
    api = Features(edited.url, headers=bearer("tester"))
    api.headers = {**api.headers}  # OWSLib shares one header dict between its objects
    assert api.collection_item_create("projects", project(edited, "XM-OWS-1"))
    location = api.response_headers["Location"]
    fid = location.rsplit("/", 1)[1]
    item = api.collection_item("projects", fid)
    assert item["properties"]["source_id"] == "XM-OWS-1" and item["properties"]["class_code"] == "0701"
    tag = api.response_headers["ETag"]
    api.headers["If-Match"] = '"0.0.0"'
    with pytest.raises(RuntimeError, match="PreconditionFailed"):
        api.collection_item_update("projects", fid, project(edited, "XM-OWS-1", XMMC="改名"))
    api.headers["If-Match"] = tag
    assert api.collection_item_update("projects", fid, project(edited, "XM-OWS-1", XMMC="改名"))
    assert api.collection_item("projects", fid)["properties"]["XMMC"] == "改名"
    api.headers["If-Match"] = api.response_headers["ETag"]
    assert api.collection_item_delete("projects", fid)
    assert requests.get(location, headers=bearer("tester"), timeout=60).status_code == 404


def test_create_check_stale_update_and_delete_over_http(edited: Server) -> None:
    before = counts(edited)
    created = create(edited, "XM-HTTP-1")
    location, first = created.headers["Location"], created.headers["ETag"]
    fid = int(location.rsplit("/", 1)[1])
    feature = created.json()
    assert feature["id"] == fid and feature["submission"]["status"] == "received"
    assert feature["submission"]["conflicts"] > 0  # it lies in the red line
    read = requests.get(location, headers=bearer("tester"), timeout=60)
    assert read.headers["ETag"] == first and read.headers["Last-Modified"]
    assert requests.get(location, headers={**bearer("tester"), "If-None-Match": first}, timeout=60).status_code == 304
    review = requests.get(f"{location}/review", headers=bearer("viewer"), timeout=60).json()
    assert review["status"] == "received" and review["status_zh"] == "受理" and review["revision"] > 0
    assert len(review["conflicts"]) == feature["submission"]["conflicts"]

    changed = project(edited, "XM-HTTP-1", XMMC="第二版")
    missing = write(edited, "PUT", f"{PROJECTS}/{fid}", changed)
    assert missing.status_code == 428 and "If-Match" in missing.json()["description"]
    second = write(edited, "PUT", f"{PROJECTS}/{fid}", changed, **{"If-Match": first})
    assert second.status_code == 200, second.text
    assert second.json()["properties"]["XMMC"] == "第二版" and second.headers["ETag"] != first
    stale = write(edited, "PUT", f"{PROJECTS}/{fid}", project(edited, "XM-HTTP-1", XMMC="过期"), **{"If-Match": first})
    assert stale.status_code == 412 and "read it again" in stale.json()["description"]
    patched = write(edited, "PATCH", f"{PROJECTS}/{fid}", {"properties": {"JSDW": "新单位", "FZR": None}},
                    **{"If-Match": second.headers["ETag"], "Content-Type": "application/merge-patch+json"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["properties"]["JSDW"] == "新单位" and patched.json()["properties"]["XMMC"] == "第二版"
    assert write(edited, "DELETE", f"{PROJECTS}/{fid}", **{"If-Match": second.headers["ETag"]}).status_code == 412
    deleted = write(edited, "DELETE", f"{PROJECTS}/{fid}", **{"If-Match": patched.headers["ETag"]})
    assert deleted.status_code == 204
    assert requests.get(location, headers=bearer("tester"), timeout=60).status_code == 404

    current, history, audit, revision = counts(edited)
    assert (current, history, audit) == (before[0], before[1] + 3, before[2] + 4 + 1)  # + the withdrawal
    actions = query(edited.settings, "SELECT action, revision, before IS NULL, after IS NULL FROM geoservice.audit_event "
                                     "WHERE feature_id = %s AND action <> 'status' ORDER BY id", fid)
    assert [a[0] for a in actions] == ["create", "replace", "update", "delete"]
    assert [a[2:] for a in actions] == [(True, False), (False, False), (False, False), (False, True)]
    revisions = [a[1] for a in actions]
    assert revisions == sorted(revisions) and revisions[-1] == revision

    version = query(edited.settings, "SELECT version FROM geoservice.layer_version WHERE is_active AND layer = 'projects'")[0][0]
    steps = [(revisions[0] - 1, revisions[0], "added"), (revisions[0], revisions[1], "changed"),
             (revisions[2], revisions[3], "removed")]
    for old, new, change in steps:  # every write is in the change report between the states around it
        report = layer_changes(edited.settings, "projects", version, version, old, new)
        assert [(f.change, f.source_id) for f in report.features] == [(change, "XM-HTTP-1")], (old, new, report.features)
    renamed = layer_changes(edited.settings, "projects", version, version, revisions[0], revisions[1])
    assert renamed.features[0].what == ("name", "attributes.XMMC")
    past = query(edited.settings, "SELECT attributes ->> 'XMMC' FROM geoservice.feature_state(%s, %s) WHERE id = %s",
                 query(edited.settings, "SELECT id FROM geoservice.layer_version WHERE is_active AND layer = 'projects'")[0][0],
                 revisions[0], fid)
    assert past == [("测试项目 XM-HTTP-1",)]  # any past state reads back


def test_two_updates_with_one_etag_exactly_one_wins(edited: Server) -> None:
    created = create(edited, "XM-RACE-1")
    location, tag = created.headers["Location"], created.headers["ETag"]
    path = location.removeprefix(edited.url)
    answers: list[int] = []
    start = threading.Barrier(8)

    def writer(n: int) -> None:
        start.wait()
        answers.append(write(edited, "PUT", path, project(edited, "XM-RACE-1", XMMC=f"第{n}个"), **{"If-Match": tag}).status_code)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [200] + [412] * 7, answers
    fid = int(location.rsplit("/", 1)[1])
    assert query(edited.settings, "SELECT count(*) FROM geoservice.audit_event WHERE feature_id = %s AND action = 'replace'",
                 fid) == [(1,)]


def test_the_stored_check_is_the_project_check_process_answer(edited: Server) -> None:
    body = project(edited, "XM-CHECK-1")
    created = create(edited, "XM-CHECK-1", geometry=body["geometry"])
    stored = requests.get(f"{created.headers['Location']}/review", headers=bearer("tester"), timeout=60).json()
    answered = edited.post("/processes/project-check/execution",
                           {"inputs": {"geometry": body["geometry"], "code": "0701"}}).json()

    def key(conflict: dict[str, Any]) -> tuple[Any, ...]:
        return conflict["rule_id"], conflict["layer_b"], conflict["feature_b"], conflict["district_code"]

    process = sorted((f["properties"] for f in answered["features"]), key=key)
    assert [key(c) for c in sorted(stored["conflicts"], key=key)] == [key(c) for c in process] != []
    for mine, theirs in zip(sorted(stored["conflicts"], key=key), process, strict=True):
        assert mine["area_m2"] == pytest.approx(theirs["area_m2"], rel=1e-9)
    assert stored["project_area_m2"] == pytest.approx(answered["project"]["area_m2"], rel=1e-9)


@pytest.mark.parametrize("body, headers, status, words", [
    (b"{not json", {}, 400, ["not JSON"]),
    ({"type": "Point", "coordinates": [118, 24]}, {}, 400, ["Feature or a FeatureCollection"]),
    ("point", {}, 400, ["Polygon or MultiPolygon", "Point"]),
    ("empty", {}, 400, ["empty"]),
    ("zero-area", {}, 400, ["no polygonal area left"]),
    ("outside", {}, 400, ["outside the area of use"]),
    ({"XMBH": "XM-BAD", "颜色": "红"}, {}, 400, ["unknown property '颜色'"]),
    ({"XMBH": "XM-BAD", "YDDM": "9999"}, {}, 400, ["'9999' is not in crosswalk"]),
    ({"XMBH": ""}, {}, 400, ["no value in id field 'XMBH'"]),
    ({"XMBH": "XM-BAD"}, {"Content-Crs": "<http://www.opengis.net/def/crs/EPSG/0/32650>"}, 400, ["Content-Crs", "not offered"]),
    ({"XMBH": "XM-BAD"}, {"Content-Type": "text/plain"}, 400, ["Content-Type"]),
])
def test_bad_input_is_a_400_naming_it_and_nothing_is_stored(edited: Server, body: Any, headers: dict[str, str],
                                                           status: int, words: list[str]) -> None:
    feature = project(edited, "XM-BAD")
    if isinstance(body, dict) and "type" not in body:
        feature["properties"] = {**feature["properties"], **body}
        body = feature
    elif isinstance(body, str):
        geometry = {"point": {"type": "Point", "coordinates": [118.1, 24.5]},
                    "empty": {"type": "Polygon", "coordinates": []},
                    "zero-area": {"type": "Polygon",
                                  "coordinates": [[[118.1, 24.5], [118.2, 24.5], [118.1, 24.5], [118.1, 24.5]]]},
                    "outside": square(0.0, 0.0)}[body]
        body = {**feature, "geometry": geometry}
    before = counts(edited)
    response = write(edited, "POST", PROJECTS, body, **headers)
    assert response.status_code == status, response.text
    description = response.json()["description"]
    for word in words:
        assert word in description, description
    assert "SQLSTATE" not in description and "psycopg2" not in description
    assert counts(edited) == before


def test_existing_ids_a_big_body_and_repairs(edited: Server) -> None:
    created = create(edited, "XM-DUP-1")
    fid = int(created.headers["Location"].rsplit("/", 1)[1])
    before = counts(edited)
    again = write(edited, "POST", PROJECTS, {**project(edited, "XM-DUP-2"), "id": fid})
    assert again.status_code == 400 and f"feature {fid} exists" in again.json()["description"]
    same_number = write(edited, "POST", PROJECTS, project(edited, "XM-DUP-1"))
    assert same_number.status_code == 400 and "'XM-DUP-1' is another feature's" in same_number.json()["description"]
    big = write(edited, "POST", PROJECTS, b'{"type": "Feature", "x": "' + b"x" * (2 * 2**20) + b'"}')
    assert big.status_code == 413 and "upload limit" in big.json()["description"]
    assert counts(edited) == before
    lon, lat = query(edited.settings, RED_LINE_SQL)[0]
    ring = square(lon, lat)["coordinates"][0]
    bow_tie = {"type": "Polygon", "coordinates": [[ring[0], ring[2], ring[1], ring[3], ring[0]]]}
    repaired = create(edited, "XM-BOWTIE-1", geometry=bow_tie).json()
    assert repaired["properties"]["status"] == "repaired" and repaired["geometry"]["type"] == "MultiPolygon"


def test_writes_need_the_edit_scope_and_a_readable_layer(edited: Server) -> None:
    body = project(edited, "XM-AUTH-1")
    anonymous = write(edited, "POST", PROJECTS, body, as_=None)
    assert anonymous.status_code == 401 and "Bearer" in anonymous.headers["WWW-Authenticate"]
    viewer = write(edited, "POST", PROJECTS, body, as_="viewer")
    assert viewer.status_code == 403 and "no 'edit' scope" in viewer.json()["description"]
    clerk = write(edited, "POST", PROJECTS, body, as_="clerk")  # an edit token of a grade that cannot read projects
    assert clerk.status_code == 404 and clerk.json()["description"] == write(
        edited, "POST", "/collections/nothing/items", body, as_="clerk").json()["description"].replace("nothing", "projects")
    assert write(edited, "POST", "/collections/landuse/items", body).status_code == 405
    options = requests.options(f"{edited.url}{PROJECTS}", headers=bearer("tester"), timeout=60)
    assert options.status_code == 204 and options.headers["Allow"] == "GET, HEAD, OPTIONS, POST"
    item = requests.options(f"{edited.url}{PROJECTS}/1", headers=bearer("tester"), timeout=60)
    assert item.headers["Allow"] == "GET, HEAD, OPTIONS, PUT, PATCH, DELETE"
    assert requests.options(f"{edited.url}/collections/landuse/items", headers=bearer("tester"),
                            timeout=60).headers["Allow"] == "GET, HEAD, OPTIONS"
    assert requests.options(f"{edited.url}{PROJECTS}", headers=bearer("clerk"), timeout=60).status_code == 404
    conformance = requests.get(f"{edited.url}/conformance", timeout=60).json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/create-replace-delete" in conformance


def test_a_writer_cannot_change_what_is_masked_for_it(edited: Server) -> None:
    created = create(edited, "XM-MASK-1")
    location = created.headers["Location"]
    seen = requests.get(location, headers=bearer("editor"), timeout=60)
    assert seen.json()["properties"]["FZR"] == "王**"  # 脱敏 for an internal caller
    back = {"type": "Feature", "geometry": seen.json()["geometry"],
            "properties": {**seen.json()["properties"], "XMMC": "改了名字", "name": "改了名字", "SFZH": None}}
    written = write(edited, "PUT", location.removeprefix(edited.url), back, as_="editor", **{"If-Match": seen.headers["ETag"]})
    assert written.status_code == 200, written.text
    patched = write(edited, "PATCH", location.removeprefix(edited.url), {"properties": {"LXDH": "110"}}, as_="editor",
                    **{"If-Match": written.headers["ETag"]})
    assert patched.status_code == 200, patched.text
    fid = int(location.rsplit("/", 1)[1])
    stored = query(edited.settings, "SELECT attributes FROM geoservice.feature WHERE id = %s", fid)[0][0]
    assert (stored["XMMC"], stored["FZR"], stored["SFZH"], stored["LXDH"]) == (
        "改了名字", "王小明", "350203199001011234", "13912345678")


def test_ingest_and_a_write_store_the_same_row(edited: Server) -> None:
    source = json.loads((ROOT / "layers/demo/projects.geojson").read_text(encoding="utf-8"))["features"][0]
    number = source["properties"]["XMBH"]
    columns = "source_id, name, class_code, original_code, status, attributes, area_m2"
    ingested = query(edited.settings, f"SELECT {columns}, ST_AsEWKB(geom) FROM geoservice.feature f JOIN "
                     "geoservice.layer_version v ON v.id = f.version_id WHERE v.is_active AND v.layer = 'projects' "
                     "AND f.source_id = %s", number)[0]
    swapped = {**source["geometry"], "coordinates": [[[y, x] for x, y in ring] for ring in source["geometry"]["coordinates"]]}
    renumbered = {**source, "geometry": swapped, "properties": {**source["properties"], "XMBH": f"{number}-again"}}
    created = write(edited, "POST", PROJECTS, renumbered, **{"Content-Crs": "<http://www.opengis.net/def/crs/EPSG/0/4490>"})
    assert created.status_code == 201, created.text
    fid = int(created.headers["Location"].rsplit("/", 1)[1])
    written = query(edited.settings, f"SELECT {columns}, ST_AsEWKB(geom) FROM geoservice.feature WHERE id = %s", fid)[0]
    assert written[0] == f"{number}-again"
    assert written[1:6] == ingested[1:6]  # name, codes, status, attributes as ingest stored them
    assert written[6] == pytest.approx(ingested[6], rel=1e-9)
    distance = query(edited.settings, "SELECT ST_HausdorffDistance(%s::geometry, %s::geometry)", written[7], ingested[7])
    assert distance[0][0] < 1e-6


def test_review_workflow_and_the_printable_sheet(edited: Server, tmp_path: Path) -> None:
    created = create(edited, "XM-REVIEW-1")
    location, tag = created.headers["Location"], created.headers["ETag"]
    review = f"{location}/review"

    def decide(status: str, comment: str = "", as_: str = "tester") -> requests.Response:
        return requests.post(review, json={"status": status, "comment": comment}, headers=bearer(as_), timeout=60)

    assert decide("under_review", as_="viewer").status_code == 403
    assert decide("approved").status_code == 409  # received → approved skips the review
    assert decide("under_review").json()["status"] == "under_review"
    assert write(edited, "PUT", location.removeprefix(edited.url), project(edited, "XM-REVIEW-1"),
                 **{"If-Match": tag}).status_code == 409  # under review: the applicant waits
    assert decide("returned").status_code == 422  # a decision needs its opinion (审查意见)
    returned = decide("returned", "占用生态保护红线，请调整选址").json()
    assert returned["status"] == "returned" and returned["status_zh"] == "退回修改"
    moved = square(*query(edited.settings, RED_LINE_SQL)[0])
    resubmitted = write(edited, "PUT", location.removeprefix(edited.url), project(edited, "XM-REVIEW-1", geometry=moved),
                        **{"If-Match": tag})
    assert resubmitted.status_code == 200
    decide("under_review")
    approved = decide("approved", "同意").json()
    assert [(e["from_status"], e["to_status"]) for e in approved["history"]] == [
        ("received", "under_review"), ("under_review", "returned"), ("returned", "received"),
        ("received", "under_review"), ("under_review", "approved")]
    assert approved["allowed"] == []

    host = edited.url.removeprefix("http://")
    with Browser(tmp_path / "profile", 1000, 1400) as browser:
        browser.goto(f"http://tester:{TOKENS['tester'][2]}@{host}/login?next="
                     f"{review.removeprefix(edited.url)}%3Ff%3Dhtml")
        browser.wait_for("window.sheet && window.sheet.ready", timeout=90)
        assert "合规性审查意见书" in browser.evaluate("document.body.innerText")
        assert "同意" in browser.evaluate("document.body.innerText")
        rect = browser.evaluate("(() => { const r = document.getElementById('map').getBoundingClientRect();"
                                " return {x: r.x, y: r.y, width: r.width, height: r.height}; })()")
        pixels = np.asarray(Image.open(io.BytesIO(browser.screenshot(rect))).convert("RGB")).reshape(-1, 3).astype(int)
        assert not browser.errors, browser.errors
        hosts = {urllib.parse.urlsplit(url).netloc.rsplit("@", 1)[-1] for url in browser.requests if url.startswith("http")}
        assert hosts == {host}, hosts
    red = (pixels[:, 0] > 180) & (pixels[:, 1] < 90) & (pixels[:, 2] < 90)
    blue = (pixels[:, 2] > 150) & (pixels[:, 0] < 150)
    assert red.sum() > 500 and blue.sum() > 500, (red.sum(), blue.sum())  # the conflicts and the project drew


def test_layers_and_audit_show_the_writes(edited: Server) -> None:
    env = {"GEOSERVICE_DATABASE_URL": edited.settings.database.url}
    create(edited, "XM-CLI-1")
    layers = json.loads(run("layers", "projects", "--format", "json", env=env).stdout)
    active = next(v for v in layers if v["active"])
    assert active["revision"] > 0 and active["edited_at"]
    events = json.loads(run("audit", "--collection", "projects", "--format", "json", env=env).stdout)
    assert events[-1]["action"] == "create" and events[-1]["after"]["source_id"] == "XM-CLI-1"
    assert events[-1]["actor"] == "tester"
    table = run("audit", "--since", "2020-01-01", "--collection", "projects", env=env)
    assert table.returncode == 0 and "create" in table.stdout and "tester" in table.stdout
    diff = json.loads(run("diff", "projects", f"{active['version']}@{active['revision'] - 1}",
                          str(active["version"]), "--format", "json", env=env).stdout)
    assert diff["counts"]["added"] == 1 and diff["old_revision"] == active["revision"] - 1
    with pytest.raises(Exception):  # the trail is append-only
        query(edited.settings, "DELETE FROM geoservice.audit_event")
    with pytest.raises(Exception):  # and a stored row is never changed
        query(edited.settings, "UPDATE geoservice.feature SET name = 'x' WHERE source_id = 'XM-CLI-1'")


def test_a_server_killed_mid_write_leaves_the_old_or_the_new_state(edited: Server, tmp_path: Path) -> None:
    created = create(edited, "XM-KILL-1")
    fid = int(created.headers["Location"].rsplit("/", 1)[1])
    names = {"测试项目 XM-KILL-1"}
    for attempt in range(4):
        with running_server(edited.settings, tmp_path / f"serve-{attempt}.log", edited.served) as own:
            tag = requests.get(f"{own.url}{PROJECTS}/{fid}", headers=bearer("tester"), timeout=60).headers["ETag"]
            name = f"第{attempt}次"
            names.add(name)
            sent = threading.Thread(target=lambda: _quietly(write, own, "PUT", f"{PROJECTS}/{fid}",
                                                            project(own, "XM-KILL-1", XMMC=name), **{"If-Match": tag}))
            sent.start()
            time.sleep(0.005 * attempt)
            os.kill(own.process.pid, signal.SIGKILL)
            sent.join()
        rows = query(edited.settings, "SELECT attributes ->> 'XMMC', revision FROM geoservice.feature WHERE id = %s", fid)
        assert len(rows) == 1 and rows[0][0] in names
        history = query(edited.settings, "SELECT count(*) FROM geoservice.feature_history WHERE id = %s", fid)[0][0]
        audited = query(edited.settings, "SELECT count(*) FROM geoservice.audit_event WHERE feature_id = %s "
                                         "AND action <> 'status'", fid)[0][0]
        assert audited == history + 1  # each committed write moved one row and logged one event; no half write


def _quietly(function: Any, *args: Any, **kwargs: Any) -> None:
    try:
        function(*args, **kwargs)
    except requests.RequestException:
        pass


def test_part_4_is_in_the_openapi_document_and_no_generated_write_gets_a_server_error(edited: Server) -> None:
    paths = edited.get("/openapi", f="json").json()["paths"]
    assert {"post", "options"} <= set(paths[PROJECTS]) and {"put", "patch", "delete", "options"} <= set(
        paths[PROJECTS + "/{featureId}"])
    assert "If-Match" in [p.get("name") for p in paths[PROJECTS + "/{featureId}"]["put"]["parameters"]]
    assert {"get", "post"} <= set(paths[PROJECTS + "/{featureId}/review"])
    assert "post" not in paths["/collections/red_line/items"] and "put" not in paths["/collections/red_line/items/{featureId}"]
    operations, failures = server_errors(edited.url, bearer("tester"), 8, is_feature_write)
    assert operations >= 4
    assert failures == []
