-- The one door: what policy needs on each version (its patient compartment) and resource (its
-- sensitivity), users and their sign-in state, break-the-glass grants, and the audit chain.
ALTER TABLE resource_versions ADD COLUMN patient TEXT;
UPDATE resource_versions SET patient = (SELECT r.patient FROM resources r WHERE r.rid = resource_versions.rid);
-- 0 = normal, 1 = restricted (v3-Confidentiality R), 2 = very restricted (V): of the current
-- version (resources) and of each version (resource_versions); a version is as sensitive as the
-- higher of the two.
ALTER TABLE resources ADD COLUMN sensitivity BIGINT NOT NULL DEFAULT 0;
ALTER TABLE resource_versions ADD COLUMN sensitivity BIGINT NOT NULL DEFAULT 0;

CREATE TABLE users (
    user_id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    roles TEXT NOT NULL,
    patient TEXT,
    password_hash TEXT,
    disabled BOOLEAN NOT NULL,
    mfa_secret BLOB,
    mfa_last_step BIGINT,
    mfa_required BOOLEAN NOT NULL,
    failed_logins BIGINT NOT NULL,
    locked_until BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE recovery_codes (
    user_id BIGINT NOT NULL,
    code_hash TEXT NOT NULL,
    used_at BIGINT,
    PRIMARY KEY (user_id, code_hash)
);

-- Server-side sessions, by the hash of their cookie value.
CREATE TABLE sessions (
    session_hash TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL,
    csrf_token TEXT NOT NULL,
    stage TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    source TEXT,
    user_agent TEXT,
    pending_secret BLOB
);
CREATE INDEX sessions_user ON sessions (user_id);

-- Failed sign-ins per client address (per account: users.failed_logins).
CREATE TABLE login_throttle (
    throttle_key TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    last_failure BIGINT NOT NULL,
    locked_until BIGINT NOT NULL
);

CREATE TABLE break_glass (
    grant_id INTEGER PRIMARY KEY,
    user_id BIGINT NOT NULL,
    patient TEXT NOT NULL,
    reason TEXT NOT NULL,
    granted_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX break_glass_user ON break_glass (user_id, expires_at);

ALTER TABLE access_tokens ADD COLUMN user_id BIGINT;
ALTER TABLE access_tokens ADD COLUMN patient TEXT;

-- The audit log: append-only, each entry chained to the previous one by an HMAC.
CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY,
    recorded BIGINT NOT NULL,
    actor TEXT NOT NULL,
    role TEXT,
    action TEXT NOT NULL,
    res_type TEXT,
    res_id TEXT,
    version BIGINT,
    patients TEXT,
    outcome TEXT NOT NULL,
    source TEXT,
    purpose TEXT,
    request_id TEXT,
    detail TEXT,
    mac TEXT NOT NULL
);
CREATE INDEX audit_log_recorded ON audit_log (recorded);
CREATE INDEX audit_log_actor ON audit_log (actor, recorded);

-- Which patients each entry concerns (an entry's `patients` column, one row each, for search).
CREATE TABLE audit_patients (
    patient TEXT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (patient, seq)
) WITHOUT ROWID;

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_patients_no_update BEFORE UPDATE ON audit_patients
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_patients_no_delete BEFORE DELETE ON audit_patients
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
