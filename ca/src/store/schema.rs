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
    // 5: endpoint groups (the group a token gives, the group the CA records per endpoint) and
    // the rollout fields of status reports, with the index the releases summary reads.
    Migration {
        sqlite: "
ALTER TABLE enrollment_tokens ADD COLUMN group_name TEXT NOT NULL DEFAULT 'default';
CREATE TABLE IF NOT EXISTS endpoint_groups (
    name TEXT PRIMARY KEY,
    group_name TEXT NOT NULL,
    changed_at INTEGER NOT NULL
);
ALTER TABLE fleet_reports ADD COLUMN group_name TEXT NOT NULL DEFAULT 'default';
ALTER TABLE fleet_reports ADD COLUMN channel TEXT;
ALTER TABLE fleet_reports ADD COLUMN offered_release INTEGER;
ALTER TABLE fleet_reports ADD COLUMN rollout_state TEXT;
ALTER TABLE fleet_reports ADD COLUMN rollout_reason TEXT;
CREATE INDEX IF NOT EXISTS fleet_reports_releases
    ON fleet_reports(channel, offered_release, group_name, rollout_state)
    WHERE channel IS NOT NULL AND offered_release IS NOT NULL AND rollout_state IS NOT NULL;
",
        postgres: "
ALTER TABLE enrollment_tokens ADD COLUMN IF NOT EXISTS group_name TEXT NOT NULL DEFAULT 'default';
CREATE TABLE IF NOT EXISTS endpoint_groups (
    name TEXT PRIMARY KEY,
    group_name TEXT NOT NULL,
    changed_at BIGINT NOT NULL
);
ALTER TABLE fleet_reports
    ADD COLUMN IF NOT EXISTS group_name TEXT NOT NULL DEFAULT 'default',
    ADD COLUMN IF NOT EXISTS channel TEXT,
    ADD COLUMN IF NOT EXISTS offered_release BIGINT,
    ADD COLUMN IF NOT EXISTS rollout_state TEXT,
    ADD COLUMN IF NOT EXISTS rollout_reason TEXT;
CREATE INDEX IF NOT EXISTS fleet_reports_releases
    ON fleet_reports(channel, offered_release, group_name, rollout_state)
    WHERE channel IS NOT NULL AND offered_release IS NOT NULL AND rollout_state IS NOT NULL;
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
