-- Every version in a rowid table, its body last. As a WITHOUT ROWID table, resource_versions kept
-- whole rows (body included) in the cells of its key B-tree, also in the interior pages, so a
-- lookup by (rid, version) read whole overflowing rows on its way down. Here the key index holds
-- only (rid, version) and the row is found by its rowid; a body up to a page stays in its cell.
CREATE TABLE resource_versions_v3 (
    rid BIGINT NOT NULL,
    version BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL,
    method TEXT NOT NULL,
    patient TEXT,
    sensitivity BIGINT NOT NULL DEFAULT 0,
    body BLOB,
    PRIMARY KEY (rid, version)
);
INSERT INTO resource_versions_v3 (rid, version, last_updated, deleted, method, patient, sensitivity, body)
    SELECT rid, version, last_updated, deleted, method, patient, sensitivity, body
    FROM resource_versions ORDER BY rid, version;
DROP TABLE resource_versions;
ALTER TABLE resource_versions_v3 RENAME TO resource_versions;
CREATE INDEX resource_versions_updated ON resource_versions (last_updated);
