-- Detection runs and their conflicts. A run's conflicts live in a partition of their own
-- (geoservice.conflict_p<run id>), attached and made current in the same transaction.

CREATE TABLE geoservice.detection_run (
    id                 bigserial PRIMARY KEY,
    started_at         timestamptz NOT NULL DEFAULT now(),
    finished_at        timestamptz,
    integration_run_id bigint REFERENCES geoservice.integration_run (id),
    layer_versions     jsonb NOT NULL,                     -- {layer name: {"version": n, "id": version id}}
    rules_checksum     text NOT NULL,                      -- sha256 of config/rules.yaml
    rules              jsonb NOT NULL,                     -- the rules as evaluated
    summary            jsonb NOT NULL DEFAULT '{}'::jsonb, -- counts, areas and seconds by rule
    is_current         boolean NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX detection_run_one_current ON geoservice.detection_run (is_current) WHERE is_current;

CREATE SEQUENCE geoservice.conflict_id_seq;

CREATE TABLE geoservice.conflict (
    run_id        bigint NOT NULL,
    id            bigint NOT NULL DEFAULT nextval('geoservice.conflict_id_seq'),
    rule_id       text NOT NULL,
    rule_type     text NOT NULL,
    severity      text NOT NULL,
    area_m2       double precision NOT NULL,
    layer_a       text NOT NULL,                   -- the subject layer (for plan differences: the land-use plan)
    feature_a     bigint NOT NULL,
    source_id_a   text,
    code_a        text,
    layer_b       text,                            -- the other layer (constraint, urban plan), when there is one
    feature_b     bigint,
    source_id_b   text,
    code_b        text,
    district_code text,
    district_name text,
    details       jsonb NOT NULL DEFAULT '{}'::jsonb,
    status        text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'confirmed', 'resolved', 'waived')),
    geom          geometry(MultiPolygon, {{working_srid}}) NOT NULL,
    PRIMARY KEY (run_id, id)
) PARTITION BY LIST (run_id);

CREATE INDEX conflict_geom ON geoservice.conflict USING gist (geom);
CREATE INDEX conflict_rule ON geoservice.conflict (run_id, rule_id);
