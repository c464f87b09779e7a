"""Writing small source files for ingest tests, the way bureaus' files come (pyogrio; GBK; odd CRSs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyogrio.raw
import shapely
import yaml

#: a small grid of squares near Xiamen in EPSG:4548 (CGCS2000 GK CM 117E), x = easting
ORIGIN = (610_000.0, 2_710_000.0)
CLASSIFICATION_CSV = {
    "unified_2023.csv": "code,name_zh,name_en\n0101,水田,paddy field\n0103,旱地,dry land\n0301,乔木林地,forest\n"
                        "0701,城镇住宅用地,urban residential\n1001,工业用地,industrial\n16,留白用地,reserved\n",
    "tdgh_2017.csv": "source_code,source_name,unified_code\n0101,水田,0101\n0103,旱地,0103\n0301,乔木林地,0301\n"
                     "0701,城镇住宅用地,0701\n0601,工业用地,1001\n",
}


def write_classification(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in CLASSIFICATION_CSV.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def squares(count: int, size: float = 100.0, origin: tuple[float, float] = ORIGIN) -> np.ndarray:
    """`count` adjacent squares in a row (EPSG:4548)."""
    x0 = origin[0] + np.arange(count) * size
    return shapely.box(x0, origin[1], x0 + size, origin[1] + size)


def write_file(path: Path, geometries: np.ndarray, fields: dict[str, list], *, crs: str | None, encoding: str | None = None,
               driver: str | None = None, geometry_type: str = "Unknown", layer: str | None = None) -> Path:
    """Write geometries (shapely, WKB bytes as they are, None allowed) and text/number fields."""
    names = list(fields)
    data = [np.asarray(values, dtype=object if isinstance(values[0], str) else None) for values in fields.values()]
    wkb = np.array([g if g is None or isinstance(g, bytes) else shapely.to_wkb(g) for g in geometries], dtype=object)
    pyogrio.raw.write(path, wkb, data, names, driver=driver, geometry_type=geometry_type, crs=crs, encoding=encoding,
                      layer=layer)
    return path


def write_definition(folder: Path, name: str, source: str, layer: str | None = None, **keys: object) -> Path:
    """A layers/NAME.yaml next to its data."""
    body = {"name": name, "title": f"test layer {name}", "kind": "land_use", "source": {"path": source, "layer": layer},
            "code_field": "DLBM", "crosswalk": "tdgh_2017", "id_field": "BSM", "attributes": ["DLMC"], **keys}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body, allow_unicode=True), encoding="utf-8")
    return path


def landuse_fields(count: int, codes: list[str] | None = None) -> dict[str, list]:
    codes = codes or ["0101", "0103", "0301", "0701", "0601"]
    names = {"0101": "水田", "0103": "旱地", "0301": "乔木林地", "0701": "城镇住宅用地", "0601": "工业用地"}
    picked = [codes[i % len(codes)] for i in range(count)]
    return {"BSM": [f"B{i:05d}" for i in range(count)], "DLBM": picked, "DLMC": [names.get(c, "未知") for c in picked]}
