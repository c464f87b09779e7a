"""Review continuity across an incremental detection run: where its new cases came from, and how many cases it
carried, changed, found new and lost.

A conflict the run did not recompute is the same row in the new run, with its case and status: nothing to match. A
recomputed conflict is linked to its case by its key as in any run (a shrunk or grown conflict of the same features
keeps its case). A case seen for the first time is linked to the cases of the dropped conflicts of the same rule it
overlaps (`geoservice.case_origin`): split (its origin overlaps several new cases), merged (it overlaps several old
cases), else shrunk, grown or reshaped (by area).
"""

from __future__ import annotations

import psycopg2.extensions

_ORIGINS = """
WITH new AS (
    SELECT c.case_id, c.rule_id, c.geom, c.area_m2 FROM geoservice.conflict c
    JOIN geoservice.conflict_case k ON k.id = c.case_id WHERE c.run_id = %(run)s AND k.first_run_id = %(run)s),
old AS (
    SELECT c.case_id, c.rule_id, c.geom, c.area_m2 FROM geoservice.conflict c
    WHERE c.run_id = ANY(%(chain)s::bigint[]) AND c.until_run = %(run)s AND c.case_id IS NOT NULL),
pairs AS (
    SELECT DISTINCT n.case_id, o.case_id AS from_case FROM new n
    JOIN old o ON o.rule_id = n.rule_id AND n.geom && o.geom AND ST_Area(ST_Intersection(n.geom, o.geom)) > 0),
sizes AS (
    SELECT 'new' AS side, case_id, sum(area_m2) AS m2 FROM new GROUP BY case_id
    UNION ALL SELECT 'old', case_id, sum(area_m2) FROM old GROUP BY case_id)
INSERT INTO geoservice.case_origin (run_id, case_id, from_case, change)
SELECT %(run)s, p.case_id, p.from_case,
       CASE WHEN (SELECT count(*) FROM pairs q WHERE q.from_case = p.from_case) > 1 THEN 'split'
            WHEN (SELECT count(*) FROM pairs q WHERE q.case_id = p.case_id) > 1 THEN 'merged'
            WHEN n.m2 > o.m2 * (1 + 1e-9) THEN 'grown'
            WHEN n.m2 < o.m2 * (1 - 1e-9) THEN 'shrunk'
            ELSE 'reshaped' END
FROM pairs p JOIN sizes n ON n.side = 'new' AND n.case_id = p.case_id
JOIN sizes o ON o.side = 'old' AND o.case_id = p.from_case
"""

_COUNTS = """
WITH computed AS (SELECT DISTINCT case_id FROM geoservice.conflict WHERE run_id = %(run)s),
kept AS (SELECT DISTINCT case_id FROM geoservice.conflict
         WHERE run_id = ANY(%(chain)s::bigint[]) AND until_run IS NULL AND case_id IS NOT NULL)
SELECT (SELECT count(*) FROM kept WHERE case_id NOT IN (SELECT case_id FROM computed)),
       (SELECT count(*) FROM computed c JOIN geoservice.conflict_case k ON k.id = c.case_id
        WHERE k.first_run_id <> %(run)s
           OR EXISTS (SELECT 1 FROM geoservice.case_origin o WHERE o.run_id = %(run)s AND o.case_id = c.case_id)),
       (SELECT count(*) FROM computed c JOIN geoservice.conflict_case k ON k.id = c.case_id
        WHERE k.first_run_id = %(run)s
          AND NOT EXISTS (SELECT 1 FROM geoservice.case_origin o WHERE o.run_id = %(run)s AND o.case_id = c.case_id)),
       (SELECT count(*) FROM geoservice.disappeared_case WHERE run_id = %(run)s)
"""


def case_continuity(cur: psycopg2.extensions.cursor, run_id: int, carried: tuple[int, ...]) -> dict[str, object]:
    """After an incremental run's conflicts are stored and linked (in its transaction; `carried`: its base run's
    chain): record the origins of its new cases; the cases it carried, changed, found new and lost, and the origins
    by kind of change."""
    params = {"run": run_id, "chain": list(carried)}
    cur.execute(_ORIGINS, params)
    cur.execute(_COUNTS, params)
    carried_cases, changed, new, gone = cur.fetchone()
    cur.execute("SELECT change, count(*) FROM geoservice.case_origin WHERE run_id = %s GROUP BY 1 ORDER BY 1", (run_id,))
    return {"carried": carried_cases, "changed": changed, "new": new, "gone": gone, "origins": dict(cur.fetchall())}
