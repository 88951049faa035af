-- A date's index row says whether its resource has other rows for the same parameter (a Timing's
-- events, a repeating element). A walk of a date's index newest first keeps a resource's row only
-- where it holds the resource's latest end (oldest first: earliest start), so that each resource
-- comes once; with the flag in the index it probes only the rare resources that have several,
-- instead of one B-tree descent for every candidate (a quarter of the newest ten
-- DiagnosticReports' statement).
ALTER TABLE idx_date ADD COLUMN multi BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE idx_date SET multi = TRUE WHERE (rid, param) IN (SELECT rid, param FROM idx_date GROUP BY rid, param HAVING COUNT(*) > 1);
DROP INDEX IF EXISTS idx_date_low;
CREATE INDEX idx_date_low ON idx_date (res_type, param, low, rid) INCLUDE (patient, multi);
DROP INDEX IF EXISTS idx_date_high;
CREATE INDEX idx_date_high ON idx_date (res_type, param, high, rid) INCLUDE (patient, multi);
-- A population page in row-id order led by a date range reads the date's rows in row-id order
-- (`idx_date_rid`), keeping the type's own from the index alone: it includes the type.
DROP INDEX IF EXISTS idx_date_rid;
CREATE INDEX idx_date_rid ON idx_date (rid, param, low, high) INCLUDE (res_type);
