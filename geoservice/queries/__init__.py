"""Queries for location services: point lookup, project check on submit, hazard exposure."""

from geoservice.queries.check import check_project
from geoservice.queries.exposure import hazard_exposure
from geoservice.queries.lookup import lookup_point
from geoservice.queries.points import InputCrs, QueryError, input_crs
from geoservice.queries.project_file import read_project_file, read_project_upload

__all__ = ["InputCrs", "QueryError", "check_project", "hazard_exposure", "input_crs", "lookup_point", "read_project_file",
           "read_project_upload"]
