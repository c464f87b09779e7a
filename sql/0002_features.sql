-- Source features of every layer version, in the working CRS. One partition per layer version
-- (geoservice.feature_p<version id>): a load fills and indexes its own table, then attaches it in the
-- same transaction, so readers never see half a load and old versions can be dropped whole.

CREATE SEQUENCE geoservice.feature_id_seq;

CREATE TABLE geoservice.feature (
    version_id    bigint NOT NULL,
    id            bigint NOT NULL DEFAULT nextval('geoservice.feature_id_seq'),
    source_row    integer NOT NULL,                 -- 1-based row in the source file
    source_id     text,                             -- the layer's id_field (e.g. BSM), when it has one
    name          text,                             -- the layer's name_field, when it has one
    class_code    text,                             -- unified 用地用海 (2023) code; NULL when unclassified
    original_code text,                             -- the code as the source file has it
    status        text NOT NULL DEFAULT 'kept' CHECK (status IN ('kept', 'repaired')),
    attributes    jsonb NOT NULL DEFAULT '{}'::jsonb,
    area_m2       double precision NOT NULL,
    geom          geometry(MultiPolygon, {{working_srid}}) NOT NULL,
    PRIMARY KEY (version_id, id)
) PARTITION BY LIST (version_id);

CREATE INDEX feature_geom ON geoservice.feature USING gist (geom);
CREATE INDEX feature_class ON geoservice.feature (version_id, class_code);

-- The 用地用海分类 (2023) classes, refreshed from config/classification/unified_2023.csv on every ingest.
CREATE TABLE geoservice.land_class (
    code         text PRIMARY KEY,
    name_zh      text NOT NULL,
    name_en      text NOT NULL,
    construction boolean NOT NULL
);
