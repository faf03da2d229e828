-- Coffer control database, embedded (SQLite) backend: vaults, their wrapped
-- data keys, the schema registry, installed tables, table manifests and the
-- commit log. Timestamps are microseconds since the Unix epoch.

CREATE TABLE vaults (
    id          TEXT PRIMARY KEY,
    created_at  INTEGER NOT NULL,
    -- The next change sequence number of this vault.
    next_seq    INTEGER NOT NULL DEFAULT 1,
    -- Set when the vault was deleted (its key shredded).
    deleted_at  INTEGER,
    -- Set when everything under the vault's prefix has been removed.
    purged_at   INTEGER
);

-- The vault's data key, wrapped with the server's master key. Deleting this
-- row is the crypto-shred: nothing of the vault can be decrypted afterwards.
CREATE TABLE vault_keys (
    vault_id    TEXT PRIMARY KEY,
    wrapped_dek BLOB NOT NULL
);

-- Schema definitions known to this server (built-in and app-published).
CREATE TABLE schemas (
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    definition  TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (name, version)
);

-- Tables installed in a vault, `schema.table`, at a schema version.
CREATE TABLE vault_tables (
    vault_id       TEXT NOT NULL,
    table_name     TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    installed_at   INTEGER NOT NULL,
    PRIMARY KEY (vault_id, table_name)
);

-- Every committed row change. The payload is the full row version, sealed
-- with the vault key (AES-256-GCM); row_hash is a keyed hash of the row id.
CREATE TABLE commit_log (
    vault_id     TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    table_name   TEXT NOT NULL,
    row_hash     BLOB NOT NULL,
    committed_at INTEGER NOT NULL,
    payload      BLOB NOT NULL,
    PRIMARY KEY (vault_id, seq)
) WITHOUT ROWID;

CREATE INDEX commit_log_row ON commit_log (vault_id, table_name, row_hash, seq);

-- Table manifests: each version lists the data files of a table (sealed
-- body) and the last change flushed into them. The newest version is the
-- truth; files not listed there are never read.
CREATE TABLE manifests (
    vault_id     TEXT NOT NULL,
    table_name   TEXT NOT NULL,
    version      INTEGER NOT NULL,
    flushed_seq  INTEGER NOT NULL,
    body         BLOB NOT NULL,
    committed_at INTEGER NOT NULL,
    PRIMARY KEY (vault_id, table_name, version)
);
