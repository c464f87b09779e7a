"""The project check of an uploaded file (`project_file`: GeoJSON, zipped Shapefile, GeoPackage) on the served demo:
the same conflicts as the same polygon given as `geometry`; a file is opened only as what it claims to be, and every
file the server will not read is a 400 naming the problem."""

from __future__ import annotations

import base64

import pytest
import shapely
import shapely.geometry

from project_files import geojson_bytes, in_crs84, red_line_project, upload, write_vector, zipped, zipped_shapefile
from servers import MAX_UPLOAD_MB, Server
from test_serve_robustness import assert_problem

CHECK = "/processes/project-check/execution"


def check(served: Server, inputs: dict, as_: str | None = "viewer"):
    return served.post(CHECK, {"inputs": inputs}, as_=as_)


def assert_same_conflicts(answer: dict, expected: dict, rel: float) -> None:
    """The same conflicts (rule, codes, district, the feature met), areas to `rel`."""
    def key(feature: dict) -> tuple:
        p = feature["properties"]
        return p["rule_id"], p["code_a"], p["layer_b"], p["feature_b"], p["code_b"], p["district_code"]
    got, want = sorted(answer["features"], key=key), sorted(expected["features"], key=key)
    assert [key(f) for f in got] == [key(f) for f in want]
    for a, b in zip(got, want, strict=True):
        assert a["properties"]["area_m2"] == pytest.approx(b["properties"]["area_m2"], rel=rel, abs=1e-6)


@pytest.fixture(scope="module")
def polygon(served: Server) -> shapely.Polygon:
    return red_line_project(served.settings)


@pytest.fixture(scope="module")
def expected(served: Server, polygon: shapely.Polygon) -> dict:
    answer = check(served, {"geometry": shapely.geometry.mapping(polygon), "crs": "EPSG:4548"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["features"]
    return answer.json()


def test_each_format_finds_what_the_geometry_finds(served: Server, polygon: shapely.Polygon, expected: dict, tmp_path) -> None:
    files = {"application/zip": (zipped_shapefile(tmp_path, polygon).read_bytes(), 1e-9),
             "application/geopackage+sqlite3": (write_vector(tmp_path / "p.gpkg", polygon, "EPSG:4548", "GPKG").read_bytes(), 1e-9),
             "application/geo+json": (geojson_bytes(in_crs84(polygon)), 1e-6)}  # through CRS84 and back
    for media_type, (content, rel) in files.items():
        answer = check(served, {"project_file": upload(content, media_type), "crs": "EPSG:4548"})
        assert answer.status_code == 200, (media_type, answer.text)
        body = answer.json()
        assert_same_conflicts(body, expected, rel)
        assert body["project"]["area_m2"] == pytest.approx(polygon.area, rel=rel)
        drawn = shapely.normalize(shapely.geometry.shape(body["project"]["geometry"]))  # a Shapefile turns its rings
        assert drawn.equals_exact(shapely.normalize(polygon), tolerance=1e-3 if rel < 1e-6 else 0.05)


def test_the_answer_is_in_the_asked_crs(served: Server, polygon: shapely.Polygon, tmp_path) -> None:
    answer = check(served, {"project_file": upload(zipped_shapefile(tmp_path, polygon).read_bytes(), "application/zip")})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["crs"] == "OGC:CRS84"
    drawn = shapely.normalize(shapely.geometry.shape(body["project"]["geometry"]))
    assert drawn.equals_exact(shapely.normalize(in_crs84(polygon)), tolerance=1e-7)


def _shapefile_parts(tmp_path, polygon: shapely.Polygon) -> dict[str, bytes]:
    archive = zipped_shapefile(tmp_path, polygon)
    return {suffix: archive.with_suffix(suffix).read_bytes() for suffix in (".shp", ".shx", ".dbf", ".prj")}


@pytest.mark.parametrize(("make", "message"), [
    (lambda parts, polygon: {"value": "***", "mediaType": "application/zip"}, "input 'project_file' is not valid base64"),
    (lambda parts, polygon: {"value": base64.b64encode(parts[".shp"]).decode()}, "mediaType is none; accepted: application/geo+json"),
    (lambda parts, polygon: upload(parts[".shp"], "application/vnd.shp"), "mediaType is 'application/vnd.shp'"),
    (lambda parts, polygon: upload(geojson_bytes(polygon), "application/zip"),
     "the uploaded zipped Shapefile is not a readable zip archive"),
    (lambda parts, polygon: upload(zipped({"p.shp": parts[".shp"], "p.dbf": parts[".dbf"]}), "application/zip"),
     "has p.shp but no p.shx (a Shapefile needs its .shp, .shx and .dbf side by side)"),
    (lambda parts, polygon: upload(zipped({"readme.txt": b"hello"}), "application/zip"), "holds no .shp"),
    (lambda parts, polygon: upload(zipped({f"{n}{s}": parts[s] for n in "ab" for s in (".shp", ".shx", ".dbf")}),
                                   "application/zip"), "holds several Shapefiles (a.shp, b.shp): zip one"),
    # a VRT naming a network file, dressed as a Shapefile: never given to GDAL
    (lambda parts, polygon: upload(zipped({"p.shp": b'<OGRVRTDataSource><OGRVRTLayer name="x"><SrcDataSource>'
                                                    b"/vsicurl/http://192.0.2.1/x.shp</SrcDataSource></OGRVRTLayer>"
                                                    b"</OGRVRTDataSource>", "p.shx": parts[".shx"], "p.dbf": parts[".dbf"]}),
                                   "application/zip"), "p.shp is not a Shapefile .shp (its first bytes say otherwise)"),
    (lambda parts, polygon: upload(zipped({"p.shp": parts[".shp"], "p.shx": parts[".shx"], "p.dbf": parts[".dbf"],
                                           "p.cpg": b"\0" * (MAX_UPLOAD_MB * 2**20 * 10)}), "application/zip"),
     f"unpacks to more than {MAX_UPLOAD_MB * 10} MB"),
    (lambda parts, polygon: upload(zipped({"p.shp": parts[".shp"], "p.shx": parts[".shx"], "p.dbf": parts[".dbf"]}),
                                   "application/zip"), "the uploaded zipped Shapefile does not say its CRS (its .prj is missing)"),
    (lambda parts, polygon: upload(geojson_bytes(polygon), "application/geopackage+sqlite3"),
     "the uploaded GeoPackage is not a GeoPackage (no SQLite header with the GeoPackage application id)"),
    (lambda parts, polygon: upload(b"not json", "application/geo+json"), "the uploaded GeoJSON is not JSON"),
    (lambda parts, polygon: upload(b'{"type": "Topology", "objects": {}}', "application/geo+json"),
     "the uploaded GeoJSON is not a GeoJSON FeatureCollection, Feature, Polygon or MultiPolygon"),
    (lambda parts, polygon: upload(geojson_bytes(shapely.Point(118.1, 24.5)), "application/geo+json"),
     "the uploaded GeoJSON: row 1: not a polygon (Point) (a project is polygons)"),
    (lambda parts, polygon: upload(b'{"type": "FeatureCollection", "features": []}', "application/geo+json"),
     "the uploaded GeoJSON: holds no feature"),
])
def test_a_file_the_server_will_not_read_is_a_400_naming_the_problem(served: Server, polygon, tmp_path, make, message) -> None:
    assert_problem(check(served, {"project_file": make(_shapefile_parts(tmp_path, polygon), in_crs84(polygon))}), 400, message)


def test_geometry_and_file_are_one_or_the_other(served: Server, polygon: shapely.Polygon) -> None:
    both = {"geometry": shapely.geometry.mapping(polygon), "crs": "EPSG:4548",
            "project_file": upload(geojson_bytes(in_crs84(polygon)), "application/geo+json")}
    assert_problem(check(served, both), 400, "give exactly one of 'geometry' (GeoJSON) and 'project_file'")
    assert_problem(check(served, {"crs": "EPSG:4548"}), 400, "give exactly one of 'geometry'")


def test_the_file_input_is_described(served: Server) -> None:
    described = served.get("/processes/project-check", f="json").json()
    assert "application/zip" in described["inputs"]["project_file"]["description"]
    assert described["inputs"]["geometry"]["minOccurs"] == 0
