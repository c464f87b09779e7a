-- The base map (一张图): one integration run per `geoservice integrate`, its patches in a partition of
-- their own (geoservice.basemap_patch_p<run id>), attached and made current in the same transaction.

CREATE TABLE geoservice.integration_run (
    id             bigserial PRIMARY KEY,
    started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    layer_versions jsonb NOT NULL,                    -- {layer name: {"version": n, "id": version id}}
    parameters     jsonb NOT NULL DEFAULT '{}'::jsonb,
    summary        jsonb NOT NULL DEFAULT '{}'::jsonb, -- patch counts, slivers dropped, timings
    is_current     boolean NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX integration_run_one_current ON geoservice.integration_run (is_current) WHERE is_current;

CREATE SEQUENCE geoservice.basemap_patch_id_seq;

CREATE TABLE geoservice.basemap_patch (
    run_id           bigint NOT NULL,
    id               bigint NOT NULL DEFAULT nextval('geoservice.basemap_patch_id_seq'),
    land_feature_id  bigint,                          -- land-use plan feature (NULL: not covered by it)
    land_code        text,                            -- its unified 用地用海 (2023) code
    plan_feature_id  bigint,                          -- urban plan feature
    plan_code        text,
    difference       text NOT NULL,                   -- both_construction | urban_only (城建土非) | land_only (土建城非)
                                                      -- | both_non_construction | land_plan_only | urban_plan_only
    district_code    text,
    district_name    text,
    red_line_m2      double precision NOT NULL DEFAULT 0,
    farmland_m2      double precision NOT NULL DEFAULT 0,
    dev_boundary_m2  double precision NOT NULL DEFAULT 0,
    in_red_line      boolean NOT NULL DEFAULT false,  -- at least half of the patch lies in the line
    in_farmland      boolean NOT NULL DEFAULT false,
    in_dev_boundary  boolean NOT NULL DEFAULT false,
    area_m2          double precision NOT NULL,
    geom             geometry(MultiPolygon, {{working_srid}}) NOT NULL,
    PRIMARY KEY (run_id, id)
) PARTITION BY LIST (run_id);

CREATE INDEX basemap_patch_geom ON geoservice.basemap_patch USING gist (geom);
