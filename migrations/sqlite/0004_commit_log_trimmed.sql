-- How far the commit log of each table has been trimmed: every entry of the
-- table with seq <= upto is gone from the log. A change feed cursor at or
-- past it can be served from the log; an older one must resync
-- (decision 0025).
CREATE TABLE commit_log_trimmed (
    vault_id   TEXT NOT NULL,
    table_name TEXT NOT NULL,
    upto       INTEGER NOT NULL,
    PRIMARY KEY (vault_id, table_name)
) WITHOUT ROWID;
