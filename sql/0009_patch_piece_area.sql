-- The area of the plan-union piece a patch was cut from (one land-use × urban-plan feature pair, or one plan's rest),
-- before the district split and the sliver rule: what a plan-difference rule's minimum area is compared with, so
-- detection can take its plan-difference conflicts from the current base map instead of overlaying the plans again.
-- NULL in runs stored before it.
ALTER TABLE geoservice.basemap_patch ADD COLUMN piece_m2 double precision;
