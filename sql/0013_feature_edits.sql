-- Writes over OGC API - Features Part 4 (project submissions) and their history.
--
-- A layer version's table holds its current rows. A write never changes a stored row: it counts a new revision of the
-- version (layer_version.revision, under the version row's lock, so revisions follow commit order), inserts the new row
-- with that revision (a replaced feature keeps its id) and moves the row it supersedes, unchanged, into
-- feature_history with the revision that ended it. The state of version V at revision R is its rows written at R or
-- before and not ended by then: geoservice.feature_state(V, R). Ingested rows are revision 0.

ALTER TABLE geoservice.layer_version
    ADD COLUMN revision  integer NOT NULL DEFAULT 0 CHECK (revision >= 0),  -- writes applied to this version
    ADD COLUMN edited_at timestamptz;                                       -- when the last of them committed

ALTER TABLE geoservice.feature ADD COLUMN revision integer NOT NULL DEFAULT 0;

CREATE FUNCTION geoservice.refuse_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%.%: a stored row is never changed: write a new revision', TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'prohibited_sql_statement_attempted';
END
$$;

CREATE TRIGGER feature_never_updated BEFORE UPDATE ON geoservice.feature
    FOR EACH ROW EXECUTE FUNCTION geoservice.refuse_update();

-- Rows superseded or deleted by a write, as they were stored, with the revision that ended them.
CREATE TABLE geoservice.feature_history (
    version_id     bigint NOT NULL,
    id             bigint NOT NULL,
    source_row     integer NOT NULL,
    source_id      text,
    name           text,
    class_code     text,
    original_code  text,
    status         text NOT NULL,
    attributes     jsonb NOT NULL,
    geom           geometry(MultiPolygon, {{working_srid}}) NOT NULL,
    area_m2        double precision NOT NULL,
    revision       integer NOT NULL,                   -- the revision that wrote the row (0: ingested)
    ended_revision integer NOT NULL CHECK (ended_revision > revision),
    PRIMARY KEY (version_id, id, revision)
);

CREATE TRIGGER feature_history_append_only BEFORE UPDATE OR DELETE ON geoservice.feature_history
    FOR EACH ROW EXECUTE FUNCTION geoservice.refuse_rewrite();
CREATE TRIGGER feature_history_no_truncate BEFORE TRUNCATE ON geoservice.feature_history
    FOR EACH STATEMENT EXECUTE FUNCTION geoservice.refuse_rewrite();

-- Version `v` as it was after revision `r`: the rows written by then and not yet ended.
CREATE FUNCTION geoservice.feature_state(v bigint, r integer) RETURNS TABLE (
    version_id bigint, id bigint, source_row integer, source_id text, name text, class_code text, original_code text,
    status text, attributes jsonb, geom geometry, area_m2 double precision, revision integer
) LANGUAGE sql STABLE AS $$
    SELECT version_id, id, source_row, source_id, name, class_code, original_code, status, attributes, geom, area_m2,
           revision
    FROM geoservice.feature WHERE version_id = v AND revision <= r
    UNION ALL
    SELECT version_id, id, source_row, source_id, name, class_code, original_code, status, attributes, geom, area_m2,
           revision
    FROM geoservice.feature_history WHERE version_id = v AND revision <= r AND ended_revision > r
$$;

-- The audit trail of writes and submission decisions: who, when, what, before and after; never rewritten.
CREATE TABLE geoservice.audit_event (
    id         bigserial PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor      text NOT NULL CHECK (actor <> ''),
    layer      text NOT NULL,
    version_id bigint NOT NULL,
    revision   integer,                                -- the revision a write made (NULL: a status change)
    feature_id bigint NOT NULL,
    action     text NOT NULL CHECK (action IN ('create', 'replace', 'update', 'delete', 'status')),
    before     jsonb,                                  -- the row (or status) before; NULL for a create
    after      jsonb,                                  -- the row (or status) after; NULL for a delete
    comment    text NOT NULL DEFAULT ''
);
CREATE INDEX audit_event_by_layer ON geoservice.audit_event (layer, id);
CREATE INDEX audit_event_by_feature ON geoservice.audit_event (version_id, feature_id, id);

CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON geoservice.audit_event
    FOR EACH ROW EXECUTE FUNCTION geoservice.refuse_rewrite();
CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON geoservice.audit_event
    FOR EACH STATEMENT EXECUTE FUNCTION geoservice.refuse_rewrite();

-- A construction project submitted over HTTP (合规性审查): its review status and the latest opinion; each revision's
-- check in submission_check; every status change in audit_event.
CREATE TABLE geoservice.submission (
    id          bigserial PRIMARY KEY,
    layer       text NOT NULL,
    version_id  bigint NOT NULL,
    feature_id  bigint NOT NULL,
    status      text NOT NULL DEFAULT 'received'
                CHECK (status IN ('received', 'under_review', 'approved', 'refused', 'returned', 'withdrawn')),
    opinion     text NOT NULL DEFAULT '',
    reviewer    text,
    reviewed_at timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (version_id, feature_id)
);

-- The project check of one revision of a submission, as `project-check` answers it for the stored geometry.
CREATE TABLE geoservice.submission_check (
    submission_id     bigint NOT NULL REFERENCES geoservice.submission (id),
    revision          integer NOT NULL,
    checked_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    rules_checksum    text NOT NULL,
    project_area_m2   double precision NOT NULL,
    conflict_area_m2  double precision NOT NULL,
    conflicts         jsonb NOT NULL,                  -- [{rule_id, area_m2, district_code, layer_b, feature_b, …, geometry}]
    PRIMARY KEY (submission_id, revision)
);

CREATE TRIGGER submission_check_append_only BEFORE UPDATE OR DELETE ON geoservice.submission_check
    FOR EACH ROW EXECUTE FUNCTION geoservice.refuse_rewrite();
