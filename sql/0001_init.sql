-- Layers and their versions. A load writes a new layer_version and makes it active in the same
-- transaction; at most one version per layer is active; serving reads only active versions.

CREATE TABLE geoservice.layer (
    name        text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    kind        text NOT NULL CHECK (kind IN ('land_use', 'urban_plan', 'construction', 'red_line',
                                              'basic_farmland', 'dev_boundary', 'district')),
    title       text NOT NULL,
    description text NOT NULL DEFAULT '',
    definition  jsonb NOT NULL DEFAULT '{}'::jsonb,   -- the layer definition (layers/*.yaml) as last loaded
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE geoservice.layer_version (
    id              bigserial PRIMARY KEY,
    layer           text NOT NULL REFERENCES geoservice.layer (name) ON DELETE CASCADE,
    version         integer NOT NULL CHECK (version > 0),
    source_path     text NOT NULL,
    source_checksum text NOT NULL,                    -- sha256 of the source file(s)
    loaded_at       timestamptz NOT NULL DEFAULT now(),
    feature_count   integer NOT NULL DEFAULT 0 CHECK (feature_count >= 0),
    is_active       boolean NOT NULL DEFAULT false,
    summary         jsonb NOT NULL DEFAULT '{}'::jsonb, -- rows read / kept / repaired / rejected, timings
    UNIQUE (layer, version)
);

CREATE UNIQUE INDEX layer_version_one_active ON geoservice.layer_version (layer) WHERE is_active;
