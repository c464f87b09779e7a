-- Incremental runs (常态更新): a run stores only the rows it recomputed and shares the rest with the runs before it.
-- A run's chain is the list of runs whose stored rows it reads: a full run's is [its id]; an incremental run's is its
-- base run's chain and its own id. A row belongs to run R when its run_id is in R's chain and it was not dropped by a
-- run up to R (until_run NULL, or greater than R). An incremental run drops the rows it replaces by setting
-- until_run in its own transaction: readers of the previous run keep seeing them, a killed run leaves nothing.

ALTER TABLE geoservice.integration_run
    ADD COLUMN base_run_id bigint REFERENCES geoservice.integration_run (id),  -- incremental from this run; NULL: full
    ADD COLUMN chain bigint[] NOT NULL DEFAULT '{}';                          -- the runs whose rows it reads
ALTER TABLE geoservice.detection_run
    ADD COLUMN base_run_id bigint REFERENCES geoservice.detection_run (id),
    ADD COLUMN chain bigint[] NOT NULL DEFAULT '{}';
UPDATE geoservice.integration_run SET chain = ARRAY[id];
UPDATE geoservice.detection_run SET chain = ARRAY[id];

ALTER TABLE geoservice.basemap_patch ADD COLUMN until_run bigint;  -- the first run of its chain without this row
ALTER TABLE geoservice.conflict ADD COLUMN until_run bigint;

-- Where a changed conflict's case came from: the cases of the dropped conflicts of the same rule it overlaps
-- (split, merged, shrunk, grown), recorded by the incremental detection run that linked it.
CREATE TABLE geoservice.case_origin (
    run_id      bigint NOT NULL REFERENCES geoservice.detection_run (id),
    case_id     bigint NOT NULL REFERENCES geoservice.conflict_case (id),
    from_case   bigint NOT NULL REFERENCES geoservice.conflict_case (id),
    change      text NOT NULL CHECK (change IN ('split', 'merged', 'shrunk', 'grown', 'reshaped')),
    PRIMARY KEY (run_id, case_id, from_case)
);
