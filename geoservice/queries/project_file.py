"""A project submitted as a file: a GeoJSON, GeoPackage or (zipped) Shapefile read with ingest's readers and repair,
its polygons united into one project geometry.

An uploaded file is untrusted: it is opened only as the format its media type claims, after its first bytes say it is
that format (a GeoJSON object, an SQLite file with the GeoPackage application id, a zip archive holding one Shapefile
whose .shp and .shx carry the Shapefile magic number), written alone into a private folder (a zip's Shapefile parts are
unpacked there under fixed names, nothing else from the archive), and a zip may unpack to at most UNZIPPED_FACTOR times
the upload limit. GDAL never sees the archive itself, so no other member (a VRT naming a network file, say) is opened.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
import zlib
from pathlib import Path

import orjson
import pyogrio
import pyogrio.errors
import shapely
from pyproj import CRS
from pyproj.exceptions import CRSError

from geoservice.errors import IngestError, rows_text
from geoservice.ingest import read_polygons
from geoservice.queries.points import QueryError

GEOJSON, ZIPPED_SHAPEFILE, GEOPACKAGE = "application/geo+json", "application/zip", "application/geopackage+sqlite3"
#: media type -> (what it is called in messages, the suffix it is written with)
FORMATS = {GEOJSON: ("GeoJSON", ".geojson"), ZIPPED_SHAPEFILE: ("zipped Shapefile", ".zip"),
           GEOPACKAGE: ("GeoPackage", ".gpkg")}
#: other names browsers and systems give the same formats
ALIASES = {"application/json": GEOJSON, "application/x-zip-compressed": ZIPPED_SHAPEFILE,
           "application/x-zip": ZIPPED_SHAPEFILE}
SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg")
SHAPEFILE_MAGIC = b"\x00\x00\x27\x0a"
SQLITE_MAGIC = b"SQLite format 3\x00"
GEOPACKAGE_IDS = (b"GPKG", b"GP10", b"GP11")
GEOJSON_TYPES = ("FeatureCollection", "Feature", "Polygon", "MultiPolygon")
#: a zipped Shapefile may unpack to this many times the upload limit (a .dbf packs well; a zip bomb packs better)
UNZIPPED_FACTOR = 10
UPLOAD_STEM = "project"


def read_project_file(path: Path, name: str | None = None) -> tuple[shapely.Geometry, str | None]:
    """The polygons of a project file (GeoJSON, GeoPackage, Shapefile, zipped Shapefile) united into one geometry,
    repaired as ingest repairs rows, and the file's CRS. QueryError, naming the file as `name`, for a file that cannot
    be read, has several layers, no feature or a row that is no polygon."""
    shown = name or str(path)
    try:
        layers = [str(layer) for layer in pyogrio.list_layers(path)[:, 0]]
        if len(layers) > 1:
            raise QueryError(f"{shown} holds several layers ({', '.join(layers[:10])}): give a file with one")
        read = read_polygons(path)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as exc:
        raise QueryError(f"{shown} cannot be read as a vector file ({_named(str(exc), path, shown)})") from exc
    except IngestError as exc:
        raise QueryError(_named(str(exc), path, shown)) from exc
    if read.rejected:
        rows = [row for row, _ in read.rejected]
        raise QueryError(f"{shown}: {rows_text(rows)}: {read.rejected[0][1]} (a project is polygons)")
    geometries = read.geometries
    return (geometries[0] if len(geometries) == 1 else shapely.union_all(geometries)), read.crs


def _named(message: str, path: Path, shown: str) -> str:
    """A reader's message with the private path of an upload replaced by what the caller calls the file."""
    return message.replace(str(path.with_suffix(".shp")), shown).replace(str(path), shown)


def upload_format(media_type: object) -> str:
    """The canonical media type of an upload; QueryError naming the accepted ones."""
    media = ALIASES.get(media_type, media_type) if isinstance(media_type, str) else None
    if media not in FORMATS:
        accepted = ", ".join(f"{m} ({what})" for m, (what, _) in FORMATS.items())
        shown = repr(media_type[:60]) if isinstance(media_type, str) else "none"
        raise QueryError(f"the uploaded file's mediaType is {shown}; accepted: {accepted}")
    return media


def read_project_upload(content: bytes, media_type: object, max_bytes: int) -> tuple[shapely.Geometry, CRS]:
    """The project in an uploaded file of the claimed media type, and its CRS (any CRS the file names: .prj,
    GeoPackage, GeoJSON — CRS84 when a GeoJSON names none)."""
    media = upload_format(media_type)
    what = FORMATS[media][0]
    shown = f"the uploaded {what}"
    with tempfile.TemporaryDirectory(prefix="geoservice-project-") as folder:
        path = _write_upload(Path(folder), media, content, max_bytes, shown)
        geometry, crs = read_project_file(path, shown)
    if not crs:
        raise QueryError(f"{shown} does not say its CRS" + (" (its .prj is missing)" if media == ZIPPED_SHAPEFILE else ""))
    try:
        return geometry, CRS.from_user_input(crs)
    except CRSError as exc:
        raise QueryError(f"{shown}: unreadable CRS {crs[:60]!r}") from exc


def _write_upload(folder: Path, media: str, content: bytes, max_bytes: int, shown: str) -> Path:
    """The upload written into `folder` under a fixed name after its first bytes showed it is what it claims."""
    if media == ZIPPED_SHAPEFILE:
        return _unzip_shapefile(folder, content, max_bytes * UNZIPPED_FACTOR, shown)
    if media == GEOPACKAGE and not (content.startswith(SQLITE_MAGIC) and content[68:72] in GEOPACKAGE_IDS):
        raise QueryError(f"{shown} is not a GeoPackage (no SQLite header with the GeoPackage application id)")
    if media == GEOJSON:
        _check_geojson(content, shown)
    path = folder / (UPLOAD_STEM + FORMATS[media][1])
    path.write_bytes(content)
    return path


def _check_geojson(content: bytes, shown: str) -> None:
    try:
        value = orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise QueryError(f"{shown} is not JSON ({exc})") from exc
    kind = value.get("type") if isinstance(value, dict) else None
    if kind not in GEOJSON_TYPES:
        raise QueryError(f"{shown} is not a GeoJSON {', '.join(GEOJSON_TYPES[:-1])} or {GEOJSON_TYPES[-1]}")


def _unzip_shapefile(folder: Path, content: bytes, max_unzipped: int, shown: str) -> Path:
    """The one Shapefile of a zip archive unpacked into `folder` as project.shp, .shx, .dbf (.prj, .cpg)."""
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            members = [i for i in archive.infolist() if not i.is_dir() and not i.filename.startswith("__MACOSX")]
            shapefiles = [i.filename for i in members if i.filename.lower().endswith(".shp")]
            if not shapefiles:
                raise QueryError(f"{shown} holds no .shp (zip one Shapefile: its .shp, .shx, .dbf and .prj)")
            if len(shapefiles) > 1:
                raise QueryError(f"{shown} holds several Shapefiles ({', '.join(shapefiles[:5])}): zip one")
            stem = shapefiles[0][:-4]
            parts = {suffix: next((i for i in members if i.filename.lower() == (stem + suffix).lower()), None)
                     for suffix in SHAPEFILE_PARTS}
            missing = [stem + suffix for suffix in (".shx", ".dbf") if parts[suffix] is None]
            if missing:
                raise QueryError(f"{shown} has {shapefiles[0]} but no {', '.join(missing)} "
                                 "(a Shapefile needs its .shp, .shx and .dbf side by side)")
            room = max_unzipped
            for suffix, member in parts.items():
                if member is None:
                    continue
                with archive.open(member) as source:
                    data = source.read(room + 1)
                room -= len(data)
                if room < 0:
                    raise QueryError(f"{shown} unpacks to more than {max_unzipped / 2**20:g} MB")
                if suffix in (".shp", ".shx") and not data.startswith(SHAPEFILE_MAGIC):
                    raise QueryError(f"{shown}: {member.filename} is not a Shapefile {suffix} (its first bytes say otherwise)")
                (folder / (UPLOAD_STEM + suffix)).write_bytes(data)
    except (zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError, EOFError) as exc:
        raise QueryError(f"{shown} is not a readable zip archive ({exc})") from exc
    return folder / (UPLOAD_STEM + ".shp")
