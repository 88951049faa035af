-- Versioned FHIR resources and their typed search index. Each index table has a
-- (res_type, param, value) index for the filter that drives a search and a covering
-- (rid, param, value) index for the filters probed per candidate (SQLite).
CREATE TABLE resources (
    rid INTEGER PRIMARY KEY,
    res_type TEXT NOT NULL,
    res_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL,
    patient TEXT,
    UNIQUE (res_type, res_id)
);
CREATE INDEX resources_type_updated ON resources (res_type, last_updated);
CREATE INDEX resources_patient ON resources (patient);

CREATE TABLE resource_versions (
    rid BIGINT NOT NULL,
    version BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL,
    method TEXT NOT NULL,
    body BLOB,
    PRIMARY KEY (rid, version)
) WITHOUT ROWID;
CREATE INDEX resource_versions_updated ON resource_versions (last_updated);

CREATE TABLE idx_string (rid BIGINT NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL, value TEXT NOT NULL, exact TEXT NOT NULL);
CREATE INDEX idx_string_value ON idx_string (res_type, param, value);
CREATE INDEX idx_string_rid ON idx_string (rid, param, value);

CREATE TABLE idx_token (rid BIGINT NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL, system TEXT, code TEXT, text TEXT);
CREATE INDEX idx_token_code ON idx_token (res_type, param, code, system);
CREATE INDEX idx_token_rid ON idx_token (rid, param, code, system);

CREATE TABLE idx_date (rid BIGINT NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL, low BIGINT NOT NULL, high BIGINT NOT NULL);
CREATE INDEX idx_date_low ON idx_date (res_type, param, low);
CREATE INDEX idx_date_rid ON idx_date (rid, param, low, high);

CREATE TABLE idx_number (rid BIGINT NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL, value DOUBLE NOT NULL);
CREATE INDEX idx_number_value ON idx_number (res_type, param, value);
CREATE INDEX idx_number_rid ON idx_number (rid, param, value);

CREATE TABLE idx_quantity (rid BIGINT NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL, value DOUBLE NOT NULL, system TEXT, code TEXT, unit TEXT);
CREATE INDEX idx_quantity_value ON idx_quantity (res_type, param, value);
CREATE INDEX idx_quantity_rid ON idx_quantity (rid, param, value);

CREATE TABLE idx_reference (rid BIGINT NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL, target_type TEXT, target_id TEXT, url TEXT, ident_system TEXT, ident_value TEXT);
CREATE INDEX idx_reference_target ON idx_reference (res_type, param, target_id, target_type);
CREATE INDEX idx_reference_url ON idx_reference (res_type, param, url);
CREATE INDEX idx_reference_rid ON idx_reference (rid, param, target_id, target_type);

CREATE TABLE idx_uri (rid BIGINT NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL, value TEXT NOT NULL);
CREATE INDEX idx_uri_value ON idx_uri (res_type, param, value);
CREATE INDEX idx_uri_rid ON idx_uri (rid, param, value);

CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);

-- Bearer access tokens (stored hashed; the token itself is never kept).
CREATE TABLE access_tokens (
    token_hash TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    scopes TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked BOOLEAN NOT NULL
);
