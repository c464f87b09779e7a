"""Queries for location services: point lookup, project check on submit, hazard exposure."""

from geoservice.queries.check import check_project
from geoservice.queries.exposure import hazard_exposure
from geoservice.queries.lookup import lookup_point
from geoservice.queries.points import QueryError
from geoservice.queries.project_file import read_project_file, read_project_upload

__all__ = ["QueryError", "check_project", "hazard_exposure", "lookup_point", "read_project_file",
           "read_project_upload"]
