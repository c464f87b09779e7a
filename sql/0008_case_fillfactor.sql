-- Every detection run moves each case it finds to its last run (conflict_case.last_run_id): with room left on each
-- page, that update stays on the page (a heap-only tuple) instead of touching every index. Rewritten so existing
-- pages get the room too.
ALTER TABLE geoservice.conflict_case SET (fillfactor = 50);
CLUSTER geoservice.conflict_case USING conflict_case_pkey;
