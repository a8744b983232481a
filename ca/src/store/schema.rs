//! The store's schema, one version at a time, in both SQL dialects side by side so that the
//! two backends cannot drift apart. Each backend records the version it is at (SQLite:
//! `PRAGMA user_version`; PostgreSQL: the `herald_schema` table), applies the missing steps
//! in order inside one transaction each, and refuses a database newer than it understands.

/// One schema step: the same change in each dialect.
pub(crate) struct Migration {
    /// For SQLite (`INTEGER` for 64-bit integers, `BLOB` for bytes).
    pub(crate) sqlite: &'static str,
    /// For PostgreSQL (`BIGINT`, `BYTEA`).
    pub(crate) postgres: &'static str,
}

/// The steps, in order: entry `i` takes the schema from version `i` to `i + 1`.
pub(crate) const MIGRATIONS: &[Migration] = &[
    // 1: certificates, CRL numbers, the audit chain, admin and enrollment tokens.
    Migration {
        sqlite: "
CREATE TABLE IF NOT EXISTS certificates (
    serial TEXT PRIMARY KEY,
    issuer TEXT NOT NULL,
    name TEXT NOT NULL,
    profile TEXT NOT NULL,
    not_before INTEGER NOT NULL,
    not_after INTEGER NOT NULL,
    issued_at INTEGER NOT NULL,
    der BLOB NOT NULL,
    revoked_at INTEGER,
    reason INTEGER
);
CREATE INDEX IF NOT EXISTS certificates_name ON certificates(name);
CREATE TABLE IF NOT EXISTS crls (
    issuer TEXT PRIMARY KEY,
    last_number INTEGER NOT NULL,
    this_update INTEGER,
    next_update INTEGER
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    time INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS admin_tokens (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    label TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS name_counters (
    base TEXT PRIMARY KEY,
    last_number INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS enrollment_tokens (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    base TEXT NOT NULL,
    profile TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    used_at INTEGER,
    serial TEXT,
    spki_sha256 TEXT,
    revoked_at INTEGER
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
",
        postgres: "
CREATE TABLE certificates (
    serial TEXT PRIMARY KEY,
    issuer TEXT NOT NULL,
    name TEXT NOT NULL,
    profile TEXT NOT NULL,
    not_before BIGINT NOT NULL,
    not_after BIGINT NOT NULL,
    issued_at BIGINT NOT NULL,
    der BYTEA NOT NULL,
    revoked_at BIGINT,
    reason INTEGER
);
CREATE INDEX certificates_name ON certificates(name);
CREATE INDEX certificates_issued ON certificates(issued_at DESC, serial);
CREATE INDEX certificates_revoked_entries
    ON certificates(issuer, serial) WHERE revoked_at IS NOT NULL;
CREATE TABLE crls (
    issuer TEXT PRIMARY KEY,
    last_number BIGINT NOT NULL,
    this_update BIGINT,
    next_update BIGINT
);
CREATE TABLE audit (
    seq BIGINT PRIMARY KEY,
    time BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE admin_tokens (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    label TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE name_counters (
    base TEXT PRIMARY KEY,
    last_number BIGINT NOT NULL
);
CREATE TABLE enrollment_tokens (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    base TEXT NOT NULL,
    profile TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    used_at BIGINT,
    serial TEXT,
    spki_sha256 TEXT,
    revoked_at BIGINT
);
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
",
    },
    // 2: endpoints' status reports.
    Migration {
        sqlite: "
CREATE TABLE IF NOT EXISTS fleet_reports (
    name TEXT PRIMARY KEY,
    serial TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    installed_version INTEGER,
    last_check TEXT,
    last_result TEXT,
    last_error TEXT,
    unlisted TEXT NOT NULL
);
",
        postgres: "
CREATE TABLE fleet_reports (
    name TEXT PRIMARY KEY,
    serial TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    installed_version BIGINT,
    last_check TEXT,
    last_result TEXT,
    last_error TEXT,
    unlisted TEXT NOT NULL
);
",
    },
    // 3: admin tokens expire, are revoked and record their last use.
    Migration {
        sqlite: "
ALTER TABLE admin_tokens ADD COLUMN expires_at INTEGER;
ALTER TABLE admin_tokens ADD COLUMN revoked_at INTEGER;
ALTER TABLE admin_tokens ADD COLUMN last_used_at INTEGER;
",
        postgres: "
ALTER TABLE admin_tokens
    ADD COLUMN expires_at BIGINT,
    ADD COLUMN revoked_at BIGINT,
    ADD COLUMN last_used_at BIGINT;
",
    },
    // 4: the same indexes in both dialects: certificate listings in issue order, and the
    // revoked entries of a CRL read from the index alone.
    Migration {
        sqlite: "
DROP INDEX IF EXISTS certificates_revoked_entries;
CREATE INDEX certificates_revoked_entries
    ON certificates(issuer, serial, revoked_at, reason) WHERE revoked_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS certificates_issued ON certificates(issued_at DESC, serial);
",
        postgres: "
DROP INDEX IF EXISTS certificates_revoked_entries;
CREATE INDEX certificates_revoked_entries
    ON certificates(issuer, serial, revoked_at, reason) WHERE revoked_at IS NOT NULL;
",
    },
    // 5: the audit log in chains. Each chain has its own sequence numbers and hash links;
    // existing entries form chain 0. SQLite stores are written by one process and keep one
    // chain (its `seq` stays the table's key, so no index is needed). On PostgreSQL each
    // server appends to a chain of its own, whose head (`audit_chains`) the append statement
    // advances and hashes in one step, so servers never wait for each other's appends. The
    // column has no default there: a server of an older version, which would link its entry
    // to another chain's head, fails its writes instead. The PostgreSQL steps can run again.
    Migration {
        sqlite: "
ALTER TABLE audit ADD COLUMN chain INTEGER NOT NULL DEFAULT 0;
",
        postgres: "
ALTER TABLE audit ADD COLUMN IF NOT EXISTS chain BIGINT;
UPDATE audit SET chain = 0 WHERE chain IS NULL;
ALTER TABLE audit ALTER COLUMN chain SET NOT NULL;
ALTER TABLE audit DROP CONSTRAINT IF EXISTS audit_pkey;
ALTER TABLE audit ADD PRIMARY KEY (chain, seq);
CREATE TABLE IF NOT EXISTS audit_chains (
    chain BIGINT PRIMARY KEY,
    seq BIGINT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_chains (chain, seq, prev_hash, hash)
SELECT 0, coalesce(max(seq), 0), '',
    coalesce((SELECT hash FROM audit WHERE chain = 0 ORDER BY seq DESC LIMIT 1),
        '0000000000000000000000000000000000000000000000000000000000000000')
FROM audit WHERE chain = 0
ON CONFLICT (chain) DO NOTHING;
CREATE OR REPLACE FUNCTION herald_hash_part(part TEXT) RETURNS BYTEA
    LANGUAGE SQL IMMUTABLE STRICT
    AS 'SELECT int8send(octet_length(convert_to(part, ''UTF8''))::BIGINT)
        || convert_to(part, ''UTF8'')';
",
    },
];

/// The schema version this build writes; a database at a higher version is refused.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// The refusal for a database written by a newer `herald-ca`.
pub(crate) fn newer_than_supported(what: &str, version: u32) -> String {
    format!(
        "{what} is at schema version {version}, newer than this herald-ca understands \
         ({SCHEMA_VERSION}): upgrade herald-ca"
    )
}
