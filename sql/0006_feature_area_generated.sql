-- A feature's area is computed by PostGIS as the row is written (a generated column), instead of being
-- formatted by the loader: exact, and cheaper on a bulk load.

ALTER TABLE geoservice.feature DROP COLUMN area_m2;
ALTER TABLE geoservice.feature ADD COLUMN area_m2 double precision GENERATED ALWAYS AS (ST_Area(geom)) STORED;
