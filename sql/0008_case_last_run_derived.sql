-- A case's latest run is read from its conflicts (the newest run holding one) instead of being written on the case by
-- every detection run: a run then writes only its new cases, not all of them (at a million conflicts, rewriting every
-- case cost more than storing the run). Disappeared cases are found from the previous run that evaluated each rule.
ALTER TABLE geoservice.conflict_case DROP COLUMN last_run_id;
