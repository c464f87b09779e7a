-- GCJ-02 and BD-09 (Chinese consumer maps' obfuscated longitude/latitude) written by PostGIS: the forward formulas of
-- geoservice/gcj02.py in SQL, so an items page or a tile in these systems stays one statement (PROJ has neither system).
-- Both take WGS84/CRS84 longitude/latitude (x first) and do not check the China box: the server refuses a collection
-- outside it before asking. The tests check they agree with the Python to 1e-12 degrees.

-- A WGS84 (Multi)Polygon in GCJ-02 (bd09 false) or BD-09 (bd09 true), as a MultiPolygon with the same SRID: every
-- vertex moved (one set-based query over the dumped points, no function call per vertex), the rings rebuilt in order.
-- Served geometries are MultiPolygons; an empty one gives NULL.
CREATE FUNCTION geoservice.gcj02_shift(g geometry, bd09 boolean)
RETURNS geometry LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT ST_SetSRID(ST_Multi(ST_Collect(polygon ORDER BY part)), ST_SRID(g))
    FROM (SELECT part, ST_MakePolygon(rings[1], rings[2:]) AS polygon
          FROM (SELECT part, array_agg(ring ORDER BY ring_no) AS rings
                FROM (SELECT part, ring_no, ST_MakeLine(array_agg(
                             CASE WHEN bd09 THEN ST_MakePoint(z * cos(theta) + 0.0065, z * sin(theta) + 0.006)
                                  ELSE ST_MakePoint(gx, gy) END ORDER BY vertex)) AS ring
                      FROM (SELECT part, ring_no, vertex, gx, gy,
                                   sqrt(gx * gx + gy * gy) + 0.00002 * sin(gy * pi() * 3000.0 / 180.0) AS z,
                                   atan2(gy, gx) + 0.000003 * cos(gx * pi() * 3000.0 / 180.0) AS theta
                            FROM (SELECT part, ring_no, vertex,
                                         x + dlon * 180.0 / (6378245.0 / sqrt(magic) * cos(radlat) * pi()) AS gx,
                                         y + dlat * 180.0 / ((6378245.0 * (1.0 - 0.00669342162296594323))
                                                             / (magic * sqrt(magic)) * pi()) AS gy
                                  FROM (SELECT part, ring_no, vertex, x, y, radlat,
                                               1.0 - 0.00669342162296594323 * sin(radlat) ^ 2 AS magic,
                                               -100.0 + 2.0 * u + 3.0 * v + 0.2 * v * v + 0.1 * u * v
                                               + 0.2 * sqrt(abs(u)) + common
                                               + (20.0 * sin(v * pi()) + 40.0 * sin(v / 3.0 * pi())) * 2.0 / 3.0
                                               + (160.0 * sin(v / 12.0 * pi()) + 320.0 * sin(v * pi() / 30.0)) * 2.0 / 3.0
                                               AS dlat,
                                               300.0 + u + 2.0 * v + 0.1 * u * u + 0.1 * u * v
                                               + 0.1 * sqrt(abs(u)) + common
                                               + (20.0 * sin(u * pi()) + 40.0 * sin(u / 3.0 * pi())) * 2.0 / 3.0
                                               + (150.0 * sin(u / 12.0 * pi()) + 300.0 * sin(u / 30.0 * pi())) * 2.0 / 3.0
                                               AS dlon
                                        FROM (SELECT part, ring_no, vertex, x, y, x - 105.0 AS u, y - 35.0 AS v,
                                                     y / 180.0 * pi() AS radlat,
                                                     (20.0 * sin(6.0 * (x - 105.0) * pi())
                                                      + 20.0 * sin(2.0 * (x - 105.0) * pi())) * 2.0 / 3.0 AS common
                                              FROM (SELECT d.path[1] AS part, d.path[2] AS ring_no, d.path[3] AS vertex,
                                                           ST_X(d.geom) AS x, ST_Y(d.geom) AS y
                                                    FROM ST_DumpPoints(ST_Multi(g)) d) points) terms) deltas) shifted) moved
                      GROUP BY part, ring_no) r
                GROUP BY part) p) q
$$;
