"""Ingest: bureau files → clean, classified, versioned layers in PostGIS."""

from geoservice.ingest.definition import Definition, LayerDefinition, LayerKind, load_definition, load_definitions
from geoservice.ingest.pipeline import IngestSummary, ingest_layer
from geoservice.ingest.polygons import PolygonFile, read_polygons
from geoservice.ingest.registry import activate_version, list_versions

__all__ = [
    "Definition", "IngestSummary", "LayerDefinition", "LayerKind", "PolygonFile", "activate_version",
    "ingest_layer", "list_versions", "load_definition", "load_definitions", "read_polygons",
]
