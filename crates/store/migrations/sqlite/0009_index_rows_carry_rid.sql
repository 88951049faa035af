-- A search led by a value reads its candidates' row ids from the index alone. SQLite appends
-- the index table's own row id to an index, not `rid`: without `rid` in the key each candidate
-- cost a seek into the index table (a count of a common code ran half as fast).
DROP INDEX IF EXISTS idx_string_value;
CREATE INDEX idx_string_value ON idx_string (res_type, param, value, rid);
DROP INDEX IF EXISTS idx_token_code;
CREATE INDEX idx_token_code ON idx_token (res_type, param, code, system, rid);
DROP INDEX IF EXISTS idx_date_low;
CREATE INDEX idx_date_low ON idx_date (res_type, param, low, rid);
DROP INDEX IF EXISTS idx_date_high;
CREATE INDEX idx_date_high ON idx_date (res_type, param, high, rid);
DROP INDEX IF EXISTS idx_number_value;
CREATE INDEX idx_number_value ON idx_number (res_type, param, value, rid);
DROP INDEX IF EXISTS idx_quantity_value;
CREATE INDEX idx_quantity_value ON idx_quantity (res_type, param, value, rid);
DROP INDEX IF EXISTS idx_reference_target;
CREATE INDEX idx_reference_target ON idx_reference (res_type, param, target_id, target_type, rid);
DROP INDEX IF EXISTS idx_reference_url;
CREATE INDEX idx_reference_url ON idx_reference (res_type, param, url, rid);
DROP INDEX IF EXISTS idx_uri_value;
CREATE INDEX idx_uri_value ON idx_uri (res_type, param, value, rid);
