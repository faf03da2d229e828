-- Schemas published at run time: by an app (`POST /v1/schemas`) or by an
-- operator (`coffer schema publish`). A schema's name is a namespace: the
-- first publisher claims it, and only that publisher adds versions.
CREATE TABLE schema_namespaces (
    name        TEXT PRIMARY KEY,
    -- The client id of the app that claimed the name; NULL for the operator.
    publisher   TEXT,
    claimed_at  INTEGER NOT NULL
);

-- Every published version, as the JSON text of its schema file.
CREATE TABLE published_schemas (
    name          TEXT NOT NULL REFERENCES schema_namespaces (name),
    version       INTEGER NOT NULL,
    definition    TEXT NOT NULL,
    published_at  INTEGER NOT NULL,
    PRIMARY KEY (name, version)
);
