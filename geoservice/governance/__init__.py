"""Data governance: backup and restore of the database and configuration, and change reports between layer versions."""

from geoservice.governance.backup import BackupSummary, TableTotal, backup
from geoservice.governance.changes import (
    AreaChange, ChangeReportError, FeatureChange, LayerChanges, change_geometries, layer_changes, parse_state,
    write_changes_gpkg,
)
from geoservice.governance.manifest import BackupError
from geoservice.governance.restore import RestoreError, RestoreSummary, restore

__all__ = [
    "AreaChange", "BackupError", "BackupSummary", "ChangeReportError", "FeatureChange", "LayerChanges", "RestoreError",
    "RestoreSummary", "TableTotal", "backup", "change_geometries", "layer_changes", "parse_state", "restore", "write_changes_gpkg",
]
