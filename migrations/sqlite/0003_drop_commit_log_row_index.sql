-- Point lookups find a row's unflushed change through the engine's
-- in-memory tail index and read the entry by (vault_id, seq); the row-hash
-- index only slowed every commit down.
DROP INDEX IF EXISTS commit_log_row;
