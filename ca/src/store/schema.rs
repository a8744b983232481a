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
    // 5: the console: accounts (password, TOTP, lockout), their recovery codes and sessions;
    // `endpoints`, one row per endpoint kept by triggers from certificates and status reports
    // so that the console pages, counts and searches are indexed queries however large the
    // fleet; reports per hour for the dashboard's chart; indexes for paging audit entries,
    // enrollment tokens and expiring certificates. Every statement may run again over its own
    // result (the trigger functions carry their schema, so rows written by any session keep
    // the view current).
    Migration {
        sqlite: "
CREATE TABLE IF NOT EXISTS admin_accounts (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    password_one_time INTEGER NOT NULL,
    mfa_required INTEGER NOT NULL,
    totp_secret TEXT,
    totp_enrolled_at INTEGER,
    totp_last_step INTEGER,
    created_at INTEGER NOT NULL,
    disabled_at INTEGER,
    failed_logins INTEGER NOT NULL,
    locked_until INTEGER,
    last_login_at INTEGER
);
CREATE TABLE IF NOT EXISTS recovery_codes (
    account TEXT NOT NULL,
    hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    used_at INTEGER,
    PRIMARY KEY (account, hash)
);
CREATE TABLE IF NOT EXISTS console_sessions (
    id_hash TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    stage TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS console_sessions_account ON console_sessions(account);
CREATE INDEX IF NOT EXISTS console_sessions_expiry ON console_sessions(expires_at);
CREATE TABLE IF NOT EXISTS endpoints (
    name TEXT PRIMARY KEY,
    name_key TEXT NOT NULL,
    grp TEXT NOT NULL,
    serial TEXT,
    issued_at INTEGER,
    not_after INTEGER,
    revoked_at INTEGER,
    installed_version INTEGER,
    last_seen INTEGER,
    last_result TEXT,
    failing INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS endpoints_key ON endpoints(name_key, name);
CREATE INDEX IF NOT EXISTS endpoints_revoked ON endpoints(name_key, name) WHERE revoked_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS endpoints_unreported ON endpoints(name_key, name) WHERE last_seen IS NULL;
CREATE INDEX IF NOT EXISTS endpoints_failing ON endpoints(name_key, name) WHERE failing = 1;
CREATE INDEX IF NOT EXISTS endpoints_not_after ON endpoints(not_after) WHERE revoked_at IS NULL;
CREATE INDEX IF NOT EXISTS endpoints_group ON endpoints(grp, name_key, name);
CREATE INDEX IF NOT EXISTS endpoints_release ON endpoints(installed_version, name_key, name);
CREATE INDEX IF NOT EXISTS endpoints_by_release ON endpoints(installed_version);
CREATE INDEX IF NOT EXISTS endpoints_uncertified ON endpoints(name) WHERE serial IS NULL;
CREATE TABLE IF NOT EXISTS fleet_report_hours (
    hour INTEGER PRIMARY KEY,
    reports INTEGER NOT NULL,
    failures INTEGER NOT NULL
);
INSERT INTO endpoints (name, name_key, grp, serial, issued_at, not_after, revoked_at)
SELECT c.name, lower(c.name), COALESCE(t.base, c.name), c.serial, c.issued_at, c.not_after,
       c.revoked_at
FROM certificates c LEFT JOIN enrollment_tokens t ON t.name = c.name
WHERE c.profile = 'endpoint' AND NOT EXISTS (
    SELECT 1 FROM certificates d WHERE d.name = c.name AND d.profile = 'endpoint'
        AND (d.issued_at > c.issued_at OR (d.issued_at = c.issued_at AND d.serial > c.serial)))
ON CONFLICT (name) DO NOTHING;
INSERT INTO endpoints (name, name_key, grp, installed_version, last_seen, last_result, failing)
SELECT r.name, lower(r.name), COALESCE(t.base, r.name), r.installed_version, r.received_at,
       r.last_result, r.last_result IS 'error'
FROM fleet_reports r LEFT JOIN enrollment_tokens t ON t.name = r.name WHERE true
ON CONFLICT(name) DO UPDATE SET installed_version = excluded.installed_version,
    last_seen = excluded.last_seen, last_result = excluded.last_result,
    failing = excluded.failing;
CREATE TRIGGER IF NOT EXISTS endpoints_on_issue AFTER INSERT ON certificates
WHEN NEW.profile = 'endpoint'
BEGIN
    INSERT INTO endpoints (name, name_key, grp, serial, issued_at, not_after, revoked_at)
    VALUES (NEW.name, lower(NEW.name),
            COALESCE((SELECT base FROM enrollment_tokens WHERE name = NEW.name), NEW.name),
            NEW.serial, NEW.issued_at, NEW.not_after, NEW.revoked_at)
    ON CONFLICT(name) DO UPDATE SET serial = excluded.serial, issued_at = excluded.issued_at,
        not_after = excluded.not_after, revoked_at = excluded.revoked_at
    WHERE endpoints.issued_at IS NULL OR excluded.issued_at >= endpoints.issued_at;
END;
CREATE TRIGGER IF NOT EXISTS endpoints_on_revoke AFTER UPDATE OF revoked_at ON certificates
BEGIN
    UPDATE endpoints SET revoked_at = NEW.revoked_at
    WHERE name = NEW.name AND serial = NEW.serial;
END;
CREATE TRIGGER IF NOT EXISTS endpoints_on_report AFTER INSERT ON fleet_reports
BEGIN
    INSERT INTO endpoints (name, name_key, grp, installed_version, last_seen, last_result,
                           failing)
    VALUES (NEW.name, lower(NEW.name),
            COALESCE((SELECT base FROM enrollment_tokens WHERE name = NEW.name), NEW.name),
            NEW.installed_version, NEW.received_at, NEW.last_result,
            NEW.last_result IS 'error')
    ON CONFLICT(name) DO UPDATE SET installed_version = excluded.installed_version,
        last_seen = excluded.last_seen, last_result = excluded.last_result,
        failing = excluded.failing;
    INSERT INTO fleet_report_hours (hour, reports, failures)
    VALUES (NEW.received_at / 3600, 1, NEW.last_result IS 'error')
    ON CONFLICT(hour) DO UPDATE SET reports = reports + 1,
        failures = failures + excluded.failures;
END;
CREATE INDEX IF NOT EXISTS audit_actor ON audit(actor, seq);
CREATE INDEX IF NOT EXISTS audit_action ON audit(action, seq);
CREATE INDEX IF NOT EXISTS enrollment_tokens_created ON enrollment_tokens(created_at, id);
CREATE INDEX IF NOT EXISTS certificates_expiry ON certificates(not_after) WHERE revoked_at IS NULL;
",
        postgres: "
CREATE TABLE IF NOT EXISTS admin_accounts (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    password_one_time BIGINT NOT NULL,
    mfa_required BIGINT NOT NULL,
    totp_secret TEXT,
    totp_enrolled_at BIGINT,
    totp_last_step BIGINT,
    created_at BIGINT NOT NULL,
    disabled_at BIGINT,
    failed_logins BIGINT NOT NULL,
    locked_until BIGINT,
    last_login_at BIGINT
);
CREATE TABLE IF NOT EXISTS recovery_codes (
    account TEXT NOT NULL,
    hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    used_at BIGINT,
    PRIMARY KEY (account, hash)
);
CREATE TABLE IF NOT EXISTS console_sessions (
    id_hash TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    stage TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS console_sessions_account ON console_sessions(account);
CREATE INDEX IF NOT EXISTS console_sessions_expiry ON console_sessions(expires_at);
CREATE TABLE IF NOT EXISTS endpoints (
    name TEXT COLLATE \"C\" PRIMARY KEY,
    name_key TEXT COLLATE \"C\" NOT NULL,
    grp TEXT NOT NULL,
    serial TEXT,
    issued_at BIGINT,
    not_after BIGINT,
    revoked_at BIGINT,
    installed_version BIGINT,
    last_seen BIGINT,
    last_result TEXT,
    failing BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS endpoints_key ON endpoints(name_key, name);
CREATE INDEX IF NOT EXISTS endpoints_revoked ON endpoints(name_key, name) WHERE revoked_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS endpoints_unreported ON endpoints(name_key, name) WHERE last_seen IS NULL;
CREATE INDEX IF NOT EXISTS endpoints_failing ON endpoints(name_key, name) WHERE failing = 1;
CREATE INDEX IF NOT EXISTS endpoints_not_after ON endpoints(not_after) WHERE revoked_at IS NULL;
CREATE INDEX IF NOT EXISTS endpoints_group ON endpoints(grp, name_key, name);
CREATE INDEX IF NOT EXISTS endpoints_release ON endpoints(installed_version, name_key, name);
CREATE INDEX IF NOT EXISTS endpoints_by_release ON endpoints(installed_version);
CREATE INDEX IF NOT EXISTS endpoints_uncertified ON endpoints(name) WHERE serial IS NULL;
CREATE TABLE IF NOT EXISTS fleet_report_hours (
    hour BIGINT PRIMARY KEY,
    reports BIGINT NOT NULL,
    failures BIGINT NOT NULL
);
INSERT INTO endpoints (name, name_key, grp, serial, issued_at, not_after, revoked_at)
SELECT c.name, lower(c.name), COALESCE(t.base, c.name), c.serial, c.issued_at, c.not_after,
       c.revoked_at
FROM certificates c LEFT JOIN enrollment_tokens t ON t.name = c.name
WHERE c.profile = 'endpoint' AND NOT EXISTS (
    SELECT 1 FROM certificates d WHERE d.name = c.name AND d.profile = 'endpoint'
        AND (d.issued_at > c.issued_at OR (d.issued_at = c.issued_at AND d.serial > c.serial)))
ON CONFLICT (name) DO NOTHING;
INSERT INTO endpoints (name, name_key, grp, installed_version, last_seen, last_result, failing)
SELECT r.name, lower(r.name), COALESCE(t.base, r.name), r.installed_version, r.received_at,
       r.last_result, CASE WHEN r.last_result = 'error' THEN 1 ELSE 0 END
FROM fleet_reports r LEFT JOIN enrollment_tokens t ON t.name = r.name
ON CONFLICT (name) DO UPDATE SET installed_version = EXCLUDED.installed_version,
    last_seen = EXCLUDED.last_seen, last_result = EXCLUDED.last_result,
    failing = EXCLUDED.failing;
CREATE OR REPLACE FUNCTION endpoints_on_issue() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $body$
BEGIN
    IF NEW.profile = 'endpoint' THEN
        INSERT INTO endpoints (name, name_key, grp, serial, issued_at, not_after, revoked_at)
        VALUES (NEW.name, lower(NEW.name),
                COALESCE((SELECT base FROM enrollment_tokens WHERE name = NEW.name), NEW.name),
                NEW.serial, NEW.issued_at, NEW.not_after, NEW.revoked_at)
        ON CONFLICT (name) DO UPDATE SET serial = EXCLUDED.serial,
            issued_at = EXCLUDED.issued_at, not_after = EXCLUDED.not_after,
            revoked_at = EXCLUDED.revoked_at
        WHERE endpoints.issued_at IS NULL OR EXCLUDED.issued_at >= endpoints.issued_at;
    END IF;
    RETURN NULL;
END $body$;
DROP TRIGGER IF EXISTS endpoints_on_issue ON certificates;
CREATE TRIGGER endpoints_on_issue AFTER INSERT ON certificates
    FOR EACH ROW EXECUTE FUNCTION endpoints_on_issue();
CREATE OR REPLACE FUNCTION endpoints_on_revoke() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $body$
BEGIN
    UPDATE endpoints SET revoked_at = NEW.revoked_at
    WHERE name = NEW.name AND serial = NEW.serial;
    RETURN NULL;
END $body$;
DROP TRIGGER IF EXISTS endpoints_on_revoke ON certificates;
CREATE TRIGGER endpoints_on_revoke AFTER UPDATE OF revoked_at ON certificates
    FOR EACH ROW EXECUTE FUNCTION endpoints_on_revoke();
CREATE OR REPLACE FUNCTION endpoints_on_report() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $body$
DECLARE
    failed BIGINT := CASE WHEN NEW.last_result = 'error' THEN 1 ELSE 0 END;
BEGIN
    INSERT INTO endpoints (name, name_key, grp, installed_version, last_seen, last_result,
                           failing)
    VALUES (NEW.name, lower(NEW.name),
            COALESCE((SELECT base FROM enrollment_tokens WHERE name = NEW.name), NEW.name),
            NEW.installed_version, NEW.received_at, NEW.last_result, failed)
    ON CONFLICT (name) DO UPDATE SET installed_version = EXCLUDED.installed_version,
        last_seen = EXCLUDED.last_seen, last_result = EXCLUDED.last_result,
        failing = EXCLUDED.failing;
    INSERT INTO fleet_report_hours (hour, reports, failures)
    VALUES (NEW.received_at / 3600, 1, failed)
    ON CONFLICT (hour) DO UPDATE SET reports = fleet_report_hours.reports + 1,
        failures = fleet_report_hours.failures + EXCLUDED.failures;
    RETURN NULL;
END $body$;
DROP TRIGGER IF EXISTS endpoints_on_report ON fleet_reports;
CREATE TRIGGER endpoints_on_report AFTER INSERT OR UPDATE ON fleet_reports
    FOR EACH ROW EXECUTE FUNCTION endpoints_on_report();
CREATE INDEX IF NOT EXISTS audit_actor ON audit(actor, seq);
CREATE INDEX IF NOT EXISTS audit_action ON audit(action, seq);
CREATE INDEX IF NOT EXISTS enrollment_tokens_created ON enrollment_tokens(created_at, id);
CREATE INDEX IF NOT EXISTS certificates_expiry ON certificates(not_after) WHERE revoked_at IS NULL;
",
    },
    // 6: the audit log in chains. Each chain has its own sequence numbers and hash links;
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
    // 7: endpoint groups (the group a token gives, the group the CA records per endpoint) and
    // the rollout fields of status reports, with the index the releases summary reads. The
    // console's `endpoints` view follows: its group becomes the group the CA records (none was
    // recorded before this version, so every endpoint starts in `default`), kept by triggers
    // on `endpoint_groups`; it gains the channel, offered release and rollout state of the last
    // report. Every PostgreSQL statement may run again over its own result.
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
ALTER TABLE endpoints ADD COLUMN channel TEXT;
ALTER TABLE endpoints ADD COLUMN offered_release INTEGER;
ALTER TABLE endpoints ADD COLUMN rollout_state TEXT;
UPDATE endpoints SET grp = COALESCE(
    (SELECT group_name FROM endpoint_groups g WHERE g.name = endpoints.name), 'default');
DROP TRIGGER IF EXISTS endpoints_on_issue;
CREATE TRIGGER endpoints_on_issue AFTER INSERT ON certificates
WHEN NEW.profile = 'endpoint'
BEGIN
    INSERT INTO endpoints (name, name_key, grp, serial, issued_at, not_after, revoked_at)
    VALUES (NEW.name, lower(NEW.name),
            COALESCE((SELECT group_name FROM endpoint_groups WHERE name = NEW.name), 'default'),
            NEW.serial, NEW.issued_at, NEW.not_after, NEW.revoked_at)
    ON CONFLICT(name) DO UPDATE SET serial = excluded.serial, issued_at = excluded.issued_at,
        not_after = excluded.not_after, revoked_at = excluded.revoked_at
    WHERE endpoints.issued_at IS NULL OR excluded.issued_at >= endpoints.issued_at;
END;
DROP TRIGGER IF EXISTS endpoints_on_report;
CREATE TRIGGER endpoints_on_report AFTER INSERT ON fleet_reports
BEGIN
    INSERT INTO endpoints (name, name_key, grp, installed_version, last_seen, last_result,
                           failing, channel, offered_release, rollout_state)
    VALUES (NEW.name, lower(NEW.name),
            COALESCE((SELECT group_name FROM endpoint_groups WHERE name = NEW.name), 'default'),
            NEW.installed_version, NEW.received_at, NEW.last_result,
            NEW.last_result IS 'error', NEW.channel, NEW.offered_release, NEW.rollout_state)
    ON CONFLICT(name) DO UPDATE SET installed_version = excluded.installed_version,
        last_seen = excluded.last_seen, last_result = excluded.last_result,
        failing = excluded.failing, channel = excluded.channel,
        offered_release = excluded.offered_release, rollout_state = excluded.rollout_state;
    INSERT INTO fleet_report_hours (hour, reports, failures)
    VALUES (NEW.received_at / 3600, 1, NEW.last_result IS 'error')
    ON CONFLICT(hour) DO UPDATE SET reports = reports + 1,
        failures = failures + excluded.failures;
END;
CREATE TRIGGER IF NOT EXISTS endpoints_on_group AFTER INSERT ON endpoint_groups
BEGIN
    UPDATE endpoints SET grp = NEW.group_name WHERE name = NEW.name;
END;
CREATE TRIGGER IF NOT EXISTS endpoints_on_group_change AFTER UPDATE OF group_name
    ON endpoint_groups
BEGIN
    UPDATE endpoints SET grp = NEW.group_name WHERE name = NEW.name;
END;
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
ALTER TABLE endpoints
    ADD COLUMN IF NOT EXISTS channel TEXT,
    ADD COLUMN IF NOT EXISTS offered_release BIGINT,
    ADD COLUMN IF NOT EXISTS rollout_state TEXT;
UPDATE endpoints SET grp = COALESCE(
    (SELECT group_name FROM endpoint_groups g WHERE g.name = endpoints.name), 'default');
CREATE OR REPLACE FUNCTION endpoints_on_issue() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $body$
BEGIN
    IF NEW.profile = 'endpoint' THEN
        INSERT INTO endpoints (name, name_key, grp, serial, issued_at, not_after, revoked_at)
        VALUES (NEW.name, lower(NEW.name),
                COALESCE((SELECT group_name FROM endpoint_groups WHERE name = NEW.name),
                         'default'),
                NEW.serial, NEW.issued_at, NEW.not_after, NEW.revoked_at)
        ON CONFLICT (name) DO UPDATE SET serial = EXCLUDED.serial,
            issued_at = EXCLUDED.issued_at, not_after = EXCLUDED.not_after,
            revoked_at = EXCLUDED.revoked_at
        WHERE endpoints.issued_at IS NULL OR EXCLUDED.issued_at >= endpoints.issued_at;
    END IF;
    RETURN NULL;
END $body$;
CREATE OR REPLACE FUNCTION endpoints_on_report() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $body$
DECLARE
    failed BIGINT := CASE WHEN NEW.last_result = 'error' THEN 1 ELSE 0 END;
BEGIN
    INSERT INTO endpoints (name, name_key, grp, installed_version, last_seen, last_result,
                           failing, channel, offered_release, rollout_state)
    VALUES (NEW.name, lower(NEW.name),
            COALESCE((SELECT group_name FROM endpoint_groups WHERE name = NEW.name),
                     'default'),
            NEW.installed_version, NEW.received_at, NEW.last_result, failed, NEW.channel,
            NEW.offered_release, NEW.rollout_state)
    ON CONFLICT (name) DO UPDATE SET installed_version = EXCLUDED.installed_version,
        last_seen = EXCLUDED.last_seen, last_result = EXCLUDED.last_result,
        failing = EXCLUDED.failing, channel = EXCLUDED.channel,
        offered_release = EXCLUDED.offered_release, rollout_state = EXCLUDED.rollout_state;
    INSERT INTO fleet_report_hours (hour, reports, failures)
    VALUES (NEW.received_at / 3600, 1, failed)
    ON CONFLICT (hour) DO UPDATE SET reports = fleet_report_hours.reports + 1,
        failures = fleet_report_hours.failures + EXCLUDED.failures;
    RETURN NULL;
END $body$;
CREATE OR REPLACE FUNCTION endpoints_on_group() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $body$
BEGIN
    UPDATE endpoints SET grp = NEW.group_name WHERE name = NEW.name;
    RETURN NULL;
END $body$;
DROP TRIGGER IF EXISTS endpoints_on_group ON endpoint_groups;
CREATE TRIGGER endpoints_on_group AFTER INSERT OR UPDATE OF group_name ON endpoint_groups
    FOR EACH ROW EXECUTE FUNCTION endpoints_on_group();
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
