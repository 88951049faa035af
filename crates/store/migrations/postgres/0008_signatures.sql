-- Signed encounters: signing locks an encounter and everything that refers to it (its note,
-- vitals, orders, prescriptions). A row here is the lock; only an addendum may be added after.
CREATE TABLE encounter_signatures (
    enc_id TEXT COLLATE "C" PRIMARY KEY,
    signed_at BIGINT NOT NULL,
    user_id BIGINT,
    signed_by TEXT NOT NULL
);
-- Results a clinician has reviewed (acknowledged): who and when.
CREATE TABLE result_reviews (
    report_id TEXT COLLATE "C" PRIMARY KEY,
    reviewed_at BIGINT NOT NULL,
    user_id BIGINT,
    reviewed_by TEXT NOT NULL
);
