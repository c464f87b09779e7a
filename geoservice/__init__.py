"""geoservice: multi-plan integration (多规合一) geodata service."""

__version__ = "0.1.0"
