-- SQLite only: there, resource_versions becomes a rowid table (see sqlite/0003_version_rows.sql).
-- PostgreSQL keeps every table in a heap with its B-tree indexes apart, which is what that
-- change gives SQLite; nothing to do here.
SELECT 1;
