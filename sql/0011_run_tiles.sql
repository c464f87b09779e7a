-- Tiles of a distributed run (integrate or detect on Dask): a tile's rows and its record commit in one transaction,
-- so a retried tile finds its record (its rows are complete) or nothing (its rows were rolled back). The records of a
-- run are removed when the run is attached, or when it fails.
CREATE TABLE geoservice.run_tile (
    stage       text NOT NULL CHECK (stage IN ('integration', 'detection')),
    run_id      bigint NOT NULL,
    tile        integer NOT NULL,
    summary     jsonb NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stage, run_id, tile)
);
