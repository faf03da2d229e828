-- Coffer control database, embedded (SQLite) backend: accounts, sessions and
-- the OAuth 2.1 authorization server (crate coffer-oauth). Timestamps are
-- microseconds since the Unix epoch. Secrets (session tokens, codes, refresh
-- tokens, device codes, client secrets, PAR request URIs) are stored only as
-- SHA-256 hashes; passwords as Argon2id PHC strings.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    -- As the user typed it.
    email         TEXT NOT NULL,
    -- Trimmed and lower-cased: emails are unique ignoring case.
    email_key     TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    -- One vault per user (created by the caller before the user).
    vault_id      TEXT NOT NULL UNIQUE REFERENCES vaults (id),
    created_at    INTEGER NOT NULL
);

CREATE TABLE sessions (
    token_hash  BLOB PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- Embedded in the session's forms; compared in constant time.
    csrf_token  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);

CREATE INDEX sessions_user ON sessions (user_id);

-- Failed sign-ins, counted per (email, client address) for throttling.
-- A successful sign-in deletes the pair's rows.
CREATE TABLE login_attempts (
    email_key  TEXT NOT NULL,
    -- IPv4 address, or the /64 of an IPv6 address.
    client_ip  TEXT NOT NULL,
    at         INTEGER NOT NULL
);

CREATE INDEX login_attempts_key ON login_attempts (email_key, client_ip, at);

-- OAuth clients.
CREATE TABLE apps (
    client_id      TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    homepage       TEXT,
    logo_url       TEXT,
    -- JSON array of strings, compared exactly (loopback: any port).
    redirect_uris  TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('public', 'confidential')),
    token_endpoint_auth_method TEXT NOT NULL
        CHECK (token_endpoint_auth_method IN ('none', 'client_secret_basic', 'client_secret_post')),
    -- SHA-256 of the client secret; only confidential clients have one.
    secret_hash    BLOB,
    -- JSON array: authorization_code, refresh_token, urn:ietf:params:oauth:grant-type:device_code.
    grant_types    TEXT NOT NULL,
    -- Scope asked for when a request names none ('' = none).
    default_scope  TEXT NOT NULL DEFAULT '',
    created_at     INTEGER NOT NULL,
    -- The user who registered the app; NULL for dynamic registration.
    registered_by  TEXT,
    CHECK ((kind = 'confidential') = (secret_hash IS NOT NULL))
);

-- What one user allowed one app on one vault. At most one active grant per
-- (user, app); a revoked grant stays revoked (a new consent makes a new grant).
CREATE TABLE grants (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users (id),
    vault_id        TEXT NOT NULL,
    app_id          TEXT NOT NULL REFERENCES apps (client_id),
    -- coffer_auth::GrantSpec as its authorization_details JSON array.
    spec            TEXT NOT NULL,
    -- Bumped on every change; tokens of older versions are refused.
    version         INTEGER NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    last_access_at  INTEGER
);

CREATE UNIQUE INDEX grants_one_active ON grants (user_id, app_id) WHERE status = 'active';
CREATE INDEX grants_user ON grants (user_id, created_at);

-- Every token issued from one authorization (a code or an approved device
-- code): its refresh tokens and access tokens. Revoking a family revokes all.
CREATE TABLE token_families (
    id          TEXT PRIMARY KEY,
    app_id      TEXT NOT NULL REFERENCES apps (client_id),
    grant_id    TEXT NOT NULL REFERENCES grants (id),
    user_id     TEXT NOT NULL REFERENCES users (id),
    -- What the user approved in this authorization (GrantSpec JSON); tokens
    -- carry this intersected with the grant's current spec.
    spec        TEXT NOT NULL,
    -- RFC 7638 thumbprint of the DPoP key the family is bound to.
    dpop_jkt    TEXT,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

CREATE INDEX token_families_grant ON token_families (grant_id);

CREATE TABLE authorization_codes (
    code_hash          BLOB PRIMARY KEY,
    app_id             TEXT NOT NULL REFERENCES apps (client_id),
    user_id            TEXT NOT NULL REFERENCES users (id),
    grant_id           TEXT NOT NULL REFERENCES grants (id),
    grant_version      INTEGER NOT NULL,
    redirect_uri       TEXT NOT NULL,
    -- Whether the authorization request named the redirect URI (then the
    -- token request must repeat it).
    redirect_uri_given INTEGER NOT NULL,
    -- PKCE S256 challenge.
    code_challenge     TEXT NOT NULL,
    -- RFC 9449 §10: the DPoP key the code is bound to, if the request said.
    dpop_jkt           TEXT,
    -- The family of the tokens this code is exchanged for.
    family_id          TEXT NOT NULL REFERENCES token_families (id),
    created_at         INTEGER NOT NULL,
    expires_at         INTEGER NOT NULL,
    used_at            INTEGER
);

CREATE TABLE refresh_tokens (
    token_hash   BLOB PRIMARY KEY,
    family_id    TEXT NOT NULL REFERENCES token_families (id),
    app_id       TEXT NOT NULL,
    grant_id     TEXT NOT NULL,
    -- The refresh token this one replaced (NULL for the first).
    parent_hash  BLOB,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    -- Set when rotated; presenting it again revokes the family.
    used_at      INTEGER,
    revoked_at   INTEGER
);

CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

-- Access tokens issued (biscuits are not stored): the authority block's
-- revocation id, so a family or a single token can be revoked at once.
CREATE TABLE access_tokens (
    revocation_id  BLOB PRIMARY KEY,
    family_id      TEXT NOT NULL,
    app_id         TEXT NOT NULL,
    grant_id       TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    dpop_jkt       TEXT,
    issued_at      INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    revoked_at     INTEGER
);

CREATE INDEX access_tokens_family ON access_tokens (family_id);
CREATE INDEX access_tokens_revoked ON access_tokens (revoked_at) WHERE revoked_at IS NOT NULL;

-- Pushed authorization requests (RFC 9126): single use, short-lived.
CREATE TABLE par_requests (
    -- SHA-256 of the request_uri.
    request_hash  BLOB PRIMARY KEY,
    app_id        TEXT NOT NULL REFERENCES apps (client_id),
    -- The authorization request parameters (JSON object).
    params        TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    used_at       INTEGER
);

-- Device authorization (RFC 8628).
CREATE TABLE device_codes (
    device_code_hash  BLOB PRIMARY KEY,
    -- 8 characters without the dash, e.g. BCDFGHJK.
    user_code         TEXT NOT NULL UNIQUE,
    app_id            TEXT NOT NULL REFERENCES apps (client_id),
    -- The requested GrantSpec JSON.
    spec              TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'used')),
    user_id           TEXT,
    grant_id          TEXT,
    family_id         TEXT,
    created_at        INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    interval_secs     INTEGER NOT NULL,
    last_poll_at      INTEGER
);

-- DPoP proof ids seen (replay detection), kept until the proof is too old.
CREATE TABLE dpop_proofs (
    -- SHA-256 of thumbprint, ':' and jti.
    jti_hash    BLOB PRIMARY KEY,
    expires_at  INTEGER NOT NULL
);
