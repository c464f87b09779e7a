"""Queries for location services: point lookup, project check on submit, hazard exposure."""

from geoservice.queries.lookup import lookup_point
from geoservice.queries.points import QueryError

__all__ = ["QueryError", "lookup_point"]
