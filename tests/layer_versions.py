"""A second version of the demo's land-use plan with known changes (5 features recoded, 3 dropped, 1 added), loaded
beside the active version, which stays active (the session's server goes on serving what it served)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyogrio.raw

from geoservice.ingest import activate_version, ingest_layer, list_versions, load_definition
from geoservice.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
EXPECTED_COUNTS = {"added": 1, "removed": 3, "changed": 5}


def edited_landuse(settings: Settings, folder: Path) -> tuple[int, int]:
    """(the active version, the new edited version) of `landuse`."""
    definition = load_definition(ROOT / "layers" / "landuse.yaml")
    before = next(v.version for v in list_versions(settings, "landuse") if v.is_active)
    meta, _, wkb, fields = pyogrio.raw.read(definition.source_path, encoding="GB18030")
    table = {name: values.astype(object) for name, values in zip(meta["fields"], fields, strict=True)}
    recode = np.flatnonzero(table["DLBM"] != "0701")[:5]
    drop = np.flatnonzero(table["DLBM"] == "0701")[:3]
    table["DLBM"][recode] = "0701"
    keep = np.ones(len(wkb), dtype=bool)
    keep[drop] = False
    # the first dropped feature comes back under a new id: added
    rows = np.concatenate([np.flatnonzero(keep), drop[:1]])
    columns = {name: values[rows] for name, values in table.items()}
    columns["BSM"] = np.concatenate([columns["BSM"][:-1], np.array(["NEW-0001"], dtype=object)])
    pyogrio.raw.write(folder / "landuse_v2.gpkg", wkb[rows], list(columns.values()), list(columns), driver="GPKG",
                      geometry_type="Unknown", crs=meta["crs"])
    text = definition.file.read_text(encoding="utf-8")
    text = text.replace("source: {path: demo/landuse_plan.shp}", f"source: {{path: {folder / 'landuse_v2.gpkg'}}}")
    text = text.replace("encoding: auto", "encoding: UTF-8")
    (folder / "landuse.yaml").write_text(text, encoding="utf-8")
    ingest_layer(settings, load_definition(folder / "landuse.yaml"))
    new = max(v.version for v in list_versions(settings, "landuse"))
    activate_version(settings, "landuse", before)
    return before, new
