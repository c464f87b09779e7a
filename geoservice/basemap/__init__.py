"""The base map (一张图): planar union of the plans, every patch with each plan's code, district and lines."""

from geoservice.basemap.build import DIFFERENCE_CLASSES, BaseMap, build_basemap, difference_classes
from geoservice.basemap.store import IntegrationSummary, integrate

__all__ = ["DIFFERENCE_CLASSES", "BaseMap", "IntegrationSummary", "build_basemap", "difference_classes", "integrate"]
