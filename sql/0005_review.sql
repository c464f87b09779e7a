-- The conflict ledger (冲突台账) and its review. A conflict_case is one conflict as people follow it across
-- detection runs, identified by a stable key: the rule, the two source features (layer + source id, or
-- 'fid:<feature id>' when a feature has no source id) and the district. Detection links every new conflict row
-- to its case (creating the case on first sight) and records in disappeared_case the cases of the rules it
-- evaluated that did not come back. The review status, opinion and reviewer live on the case (conflict.status
-- is a copy of it for readers of one run); every status change is appended to conflict_case_event, which
-- refuses UPDATE, DELETE and TRUNCATE.

-- One side of a case key: the source id, else 'fid:<feature id>', else '' (no such side).
CREATE FUNCTION geoservice.case_key(source_id text, feature_id bigint) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT coalesce(source_id, 'fid:' || feature_id::text, '') $$;

CREATE TABLE geoservice.conflict_case (
    id            bigserial PRIMARY KEY,
    rule_id       text NOT NULL,
    layer_a       text NOT NULL,
    key_a         text NOT NULL,                      -- geoservice.case_key(source_id_a, feature_a)
    layer_b       text NOT NULL DEFAULT '',           -- '' when the rule has no second layer
    key_b         text NOT NULL DEFAULT '',
    district_code text NOT NULL DEFAULT '',           -- '' outside every district
    status        text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'confirmed', 'resolved', 'waived')),
    opinion       text NOT NULL DEFAULT '',           -- the comment of the latest review (处理意见)
    reviewer      text,                               -- who made the latest review
    reviewed_at   timestamptz,
    first_run_id  bigint NOT NULL REFERENCES geoservice.detection_run (id),
    last_run_id   bigint NOT NULL REFERENCES geoservice.detection_run (id),  -- the latest run it appeared in
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (rule_id, layer_a, key_a, layer_b, key_b, district_code)
);

ALTER TABLE geoservice.conflict ADD COLUMN case_id bigint REFERENCES geoservice.conflict_case (id);
CREATE INDEX conflict_case_link ON geoservice.conflict (case_id);
CREATE INDEX conflict_by_id ON geoservice.conflict (id);          -- reviews name a conflict by its id alone

-- Cases of the rules a run evaluated that were not found by it (marked once, in the first such run).
CREATE TABLE geoservice.disappeared_case (
    run_id  bigint NOT NULL REFERENCES geoservice.detection_run (id),
    case_id bigint NOT NULL REFERENCES geoservice.conflict_case (id),
    PRIMARY KEY (run_id, case_id)
);
CREATE INDEX disappeared_case_by_case ON geoservice.disappeared_case (case_id, run_id);

-- The audit trail: one row per status change, never rewritten.
CREATE TABLE geoservice.conflict_case_event (
    id          bigserial PRIMARY KEY,
    case_id     bigint NOT NULL REFERENCES geoservice.conflict_case (id),
    conflict_id bigint,                                -- the conflict (图斑编号) the reviewer named
    changed_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    reviewer    text NOT NULL CHECK (reviewer <> ''),
    from_status text NOT NULL,
    to_status   text NOT NULL CHECK (to_status IN ('open', 'confirmed', 'resolved', 'waived')),
    comment     text NOT NULL DEFAULT ''
);
CREATE INDEX conflict_case_event_by_case ON geoservice.conflict_case_event (case_id, id);

CREATE FUNCTION geoservice.refuse_rewrite() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%.% is append-only: % refused', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'prohibited_sql_statement_attempted';
END
$$;

CREATE TRIGGER conflict_case_event_append_only BEFORE UPDATE OR DELETE ON geoservice.conflict_case_event
    FOR EACH ROW EXECUTE FUNCTION geoservice.refuse_rewrite();
CREATE TRIGGER conflict_case_event_no_truncate BEFORE TRUNCATE ON geoservice.conflict_case_event
    FOR EACH STATEMENT EXECUTE FUNCTION geoservice.refuse_rewrite();

-- Conflicts stored before this migration: one case per key, first and last seen in the runs that have it.
INSERT INTO geoservice.conflict_case (rule_id, layer_a, key_a, layer_b, key_b, district_code, status, first_run_id, last_run_id)
SELECT rule_id, layer_a, geoservice.case_key(source_id_a, feature_a), coalesce(layer_b, ''),
       geoservice.case_key(source_id_b, feature_b), coalesce(district_code, ''),
       (array_agg(status ORDER BY run_id DESC))[1], min(run_id), max(run_id)
FROM geoservice.conflict
GROUP BY 1, 2, 3, 4, 5, 6;

UPDATE geoservice.conflict c SET case_id = k.id
FROM geoservice.conflict_case k
WHERE k.rule_id = c.rule_id AND k.layer_a = c.layer_a AND k.key_a = geoservice.case_key(c.source_id_a, c.feature_a)
  AND k.layer_b = coalesce(c.layer_b, '') AND k.key_b = geoservice.case_key(c.source_id_b, c.feature_b)
  AND k.district_code = coalesce(c.district_code, '');
