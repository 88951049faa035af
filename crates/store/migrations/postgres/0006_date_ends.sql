-- Newest first: a search over the population sorted by a date descending walks the dates'
-- latest ends in order and stops at the page (ascending ones walk idx_date_low).
CREATE INDEX idx_date_high ON idx_date (res_type, param, high);
