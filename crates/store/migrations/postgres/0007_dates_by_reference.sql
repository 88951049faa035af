-- A chart's records newest (or oldest) first stop at the page: each resource's dates, one row
-- per date parameter holding its earliest start and latest end, under the id of every local
-- resource it refers to through a parameter of its patient compartment (`subject`, `patient`,
-- `performer` …). A search about one patient walks its rows in the sort's order.
CREATE TABLE idx_ref_date (rid BIGINT NOT NULL, res_type TEXT COLLATE "C" NOT NULL, param TEXT COLLATE "C" NOT NULL, target_id TEXT COLLATE "C" NOT NULL, low BIGINT NOT NULL, high BIGINT NOT NULL);
CREATE INDEX idx_ref_date_high ON idx_ref_date (target_id, res_type, param, high DESC, rid);
CREATE INDEX idx_ref_date_low ON idx_ref_date (target_id, res_type, param, low, rid);
CREATE INDEX idx_ref_date_rid ON idx_ref_date (rid);
-- The rows of what is already stored: under every local id a resource refers to (more than a
-- write keeps — a search only ever looks under the ids its reference names, and checks every
-- row it finds — until the resource is written again).
INSERT INTO idx_ref_date (rid, res_type, param, target_id, low, high)
SELECT d.rid, d.res_type, d.param, t.target_id, MIN(d.low), MAX(d.high)
FROM (SELECT DISTINCT rid, target_id FROM idx_reference WHERE target_id IS NOT NULL AND param NOT LIKE '#%') t
JOIN idx_date d ON d.rid = t.rid
WHERE d.param NOT LIKE '#%'
GROUP BY d.rid, d.res_type, d.param, t.target_id;
