-- Searches over the population stop at the page: they walk an index in their order.
-- Newest first: the dates' latest ends in order (ascending walks idx_date_low).
CREATE INDEX idx_date_high ON idx_date (res_type, param, high);
-- The default order: a type's resources by row id (SQLite appends the row id to the index).
CREATE INDEX resources_type_rid ON resources (res_type);
