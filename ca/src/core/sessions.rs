//! Console sessions and the checks around them.
//!
//! - A session is a random 256-bit identifier in a cookie; the store keeps only its SHA-256,
//!   so a copy of the database holds no usable session. It ends after
//!   [`ConsoleSettings::idle_secs`] without a request, [`ConsoleSettings::absolute_secs`] after
//!   sign-in whatever its use, at sign-out, and when its account is disabled or reset.
//! - Sign-in goes through stages (password, then second factor or set-up, then active); each
//!   stage change issues a new identifier (no session fixation), and a pending stage lives at
//!   most [`PENDING_SECS`].
//! - Every state-changing form carries a CSRF token derived from the session identifier
//!   (SHA-256 with a domain label): another site can neither read nor compute it.
//! - Failed sign-ins are also limited per client address ([`ConsoleSettings::throttle`]), on
//!   top of the per-account lockout of [`crate::core::accounts`].

use base64::Engine as _;
use herald_token_service::{AddressLimiter, EnrollmentLimits};
use ring::rand::{SecureRandom, SystemRandom};

use crate::core::accounts::{role_of, AccountError, Lockout};
use crate::core::admin::Role;
use crate::core::config::ConsoleSection;
use crate::model::audit::NewAuditEntry;
use crate::store::{read_tx, write_tx, AccountRecord, SessionRecord, Store, StoreError};
use herald_token_client::sha256_hex;

/// Most seconds a half-finished sign-in (second factor or set-up pending) stays usable.
pub(crate) const PENDING_SECS: i64 = 600;
/// How often a session's last use is written (its idle expiry has this resolution).
const TOUCH_SECS: i64 = 60;

/// How far a session's sign-in got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// The password was right; a TOTP or recovery code is due.
    SecondFactor,
    /// The password was right; a new password and/or TOTP enrolment is due.
    Setup,
    /// Signed in.
    Active,
}

impl Stage {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Stage::SecondFactor => "second-factor",
            Stage::Setup => "setup",
            Stage::Active => "active",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "second-factor" => Some(Stage::SecondFactor),
            "setup" => Some(Stage::Setup),
            "active" => Some(Stage::Active),
            _ => None,
        }
    }
}

/// The console's settings (from `[console]`, clamped to sane ranges) and its per-address
/// throttle of failed sign-ins.
#[derive(Debug)]
pub(crate) struct ConsoleSettings {
    /// Whether `/ui/` is served.
    pub(crate) enabled: bool,
    /// Seconds of inactivity that end a session.
    pub(crate) idle_secs: i64,
    /// Seconds after sign-in that end a session.
    pub(crate) absolute_secs: i64,
    /// The account lockout rule.
    pub(crate) lockout: Lockout,
    /// Failed sign-ins per client address.
    pub(crate) throttle: AddressLimiter,
}

impl ConsoleSettings {
    /// The settings of `[console]`.
    pub(crate) fn new(section: &ConsoleSection) -> Self {
        Self {
            enabled: section.enabled,
            idle_secs: i64::from(section.idle_timeout_minutes.clamp(1, 1440)) * 60,
            absolute_secs: i64::from(section.absolute_timeout_hours.clamp(1, 168)) * 3600,
            lockout: Lockout {
                failures: i64::from(section.lockout_failures.clamp(1, 100)),
                lock_secs: i64::from(section.lockout_minutes.clamp(1, 24 * 60)) * 60,
            },
            throttle: AddressLimiter::new(EnrollmentLimits {
                failed_attempts_burst: section.address_failures_burst,
                failed_attempts_per_minute: section.address_failures_per_minute,
                requests_per_second: 0,
                ..EnrollmentLimits::default()
            }),
        }
    }

    fn lifetime(&self, stage: Stage) -> i64 {
        match stage {
            Stage::Active => self.absolute_secs,
            Stage::SecondFactor | Stage::Setup => PENDING_SECS.min(self.absolute_secs),
        }
    }
}

/// A session found for a request.
#[derive(Debug, Clone)]
pub(crate) struct Current {
    /// The identifier (the cookie's value).
    pub(crate) id: String,
    /// Its stage.
    pub(crate) stage: Stage,
    /// The account (enabled).
    pub(crate) account: AccountRecord,
    /// The account's role.
    pub(crate) role: Role,
}

impl Current {
    /// The audit actor of this session's actions.
    pub(crate) fn actor(&self) -> String {
        crate::core::accounts::actor(&self.account.name)
    }

    /// The CSRF token of this session's forms.
    pub(crate) fn csrf(&self) -> String {
        csrf_token(&self.id)
    }
}

/// Why a session could not be started.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    /// The system's random generator failed.
    #[error("the system random generator failed; no session was started")]
    Random,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A new random identifier: 32 bytes, base64url without padding (43 characters).
pub(crate) fn random_token() -> Result<String, SessionError> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| SessionError::Random)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn well_formed(id: &str) -> bool {
    id.len() == 43
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn id_hash(id: &str) -> String {
    sha256_hex(id.as_bytes())
}

/// Starts a session of `account` at `stage`; returns its identifier. Sessions past their
/// expiry are removed on the way.
pub(crate) fn start(
    store: &dyn Store,
    settings: &ConsoleSettings,
    account: &str,
    stage: Stage,
    now: i64,
) -> Result<String, SessionError> {
    let id = random_token()?;
    let record = SessionRecord {
        id_hash: id_hash(&id),
        account: account.to_owned(),
        stage: stage.as_str().to_owned(),
        created_at: now,
        last_seen_at: now,
        expires_at: now + settings.lifetime(stage),
    };
    write_tx(store, |tx| {
        tx.delete_expired_sessions(now, now - settings.idle_secs)?;
        tx.insert_session(&record)
    })?;
    Ok(id)
}

/// Replaces session `old` by a new one of the same account at `stage` (after each sign-in
/// step, so an identifier seen before it is worth nothing after).
pub(crate) fn advance(
    store: &dyn Store,
    settings: &ConsoleSettings,
    old: &Current,
    stage: Stage,
    now: i64,
) -> Result<String, SessionError> {
    write_tx(store, |tx| tx.delete_session(&id_hash(&old.id)))?;
    start(store, settings, &old.account.name, stage, now)
}

/// The live session with identifier `id`, if any: within its absolute and idle expiry, of
/// an enabled account. Its last use is recorded (at most once a minute).
pub(crate) fn resume(
    store: &dyn Store,
    settings: &ConsoleSettings,
    id: &str,
    now: i64,
) -> Result<Option<Current>, StoreError> {
    if !well_formed(id) {
        return Ok(None);
    }
    let hash = id_hash(id);
    let found = read_tx(store, |tx| {
        let Some(session) = tx.session(&hash)? else {
            return Ok::<_, StoreError>(None);
        };
        Ok(tx.account(&session.account)?.map(|a| (session, a)))
    })?;
    let Some((session, account)) = found else {
        return Ok(None);
    };
    let live = session.expires_at > now
        && session.last_seen_at + settings.idle_secs > now
        && account.disabled_at.is_none();
    let Some(stage) = Stage::parse(&session.stage).filter(|_| live) else {
        write_tx(store, |tx| tx.delete_session(&hash))?;
        return Ok(None);
    };
    if now - session.last_seen_at >= TOUCH_SECS {
        if let Err(e) = write_tx(store, |tx| tx.touch_session(&hash, now)) {
            tracing::warn!(error = %e, "cannot record the use of a console session");
        }
    }
    let role = role_of(&account)?;
    Ok(Some(Current {
        id: id.to_owned(),
        stage,
        account,
        role,
    }))
}

/// Ends session `current` (sign-out), audited.
pub(crate) fn end(store: &dyn Store, current: &Current) -> Result<(), StoreError> {
    write_tx(store, |tx| {
        tx.delete_session(&id_hash(&current.id))?;
        tx.append_audit(&NewAuditEntry::now(
            &current.actor(),
            "console-logout",
            serde_json::json!({ "account": current.account.name }),
        ))?;
        Ok(())
    })
}

/// Gives the account of session `current` the new password it chose (its current password
/// confirmed before, with [`crate::core::accounts::confirm_password`]); its other sessions
/// end, `current` stays.
pub(crate) fn change_password(
    store: &dyn Store,
    current: &Current,
    new_password: &str,
) -> Result<(), AccountError> {
    crate::core::accounts::change_own_password(
        store,
        &current.account.name,
        new_password,
        &id_hash(&current.id),
    )
}

/// The CSRF token of the forms of session `id`.
pub(crate) fn csrf_token(id: &str) -> String {
    sha256_hex(format!("herald-console-csrf-v1\0{id}").as_bytes())
}

/// Whether `presented` is the CSRF token of session `id` (compared in constant time).
pub(crate) fn csrf_matches(id: &str, presented: &str) -> bool {
    constant_time_eq(&csrf_token(id), presented)
}

/// Whether `a` and `b` are equal, in a time that depends only on their lengths.
pub(crate) fn constant_time_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::core::accounts::create_account;
    use crate::store::SqliteStore;

    fn setup() -> (tempfile::TempDir, SqliteStore, ConsoleSettings) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        create_account(&store, "alice", Role::Operator, true, "cli").unwrap();
        let settings = ConsoleSettings::new(&ConsoleSection {
            idle_timeout_minutes: 30,
            absolute_timeout_hours: 2,
            ..ConsoleSection::default()
        });
        (dir, store, settings)
    }

    #[test]
    fn session_ends_after_idle_time_and_absolute_time() {
        let (_dir, store, settings) = setup();
        let now = 1_800_000_000;
        let id = start(&store, &settings, "alice", Stage::Active, now).unwrap();
        // Used every 20 minutes, it lives until its absolute expiry (2 hours).
        let mut t = now;
        while t + 1200 < now + 7200 {
            t += 1200;
            assert!(
                resume(&store, &settings, &id, t).unwrap().is_some(),
                "at {t}"
            );
        }
        assert!(resume(&store, &settings, &id, now + 7200)
            .unwrap()
            .is_none());
        // Unused for 30 minutes, it ends.
        let id = start(&store, &settings, "alice", Stage::Active, now).unwrap();
        assert!(resume(&store, &settings, &id, now + 1799)
            .unwrap()
            .is_some());
        assert!(resume(&store, &settings, &id, now + 1799 + 1800)
            .unwrap()
            .is_none());
        assert!(
            resume(&store, &settings, &id, now + 1800)
                .unwrap()
                .is_none(),
            "an ended session does not come back"
        );
    }

    #[test]
    fn pending_sign_in_expires_quickly_and_advancing_changes_the_identifier() {
        let (_dir, store, settings) = setup();
        let now = 1_800_000_000;
        let id = start(&store, &settings, "alice", Stage::SecondFactor, now).unwrap();
        let current = resume(&store, &settings, &id, now + 10).unwrap().unwrap();
        assert_eq!(current.stage, Stage::SecondFactor);
        let active = advance(&store, &settings, &current, Stage::Active, now + 20).unwrap();
        assert_ne!(active, id);
        assert!(resume(&store, &settings, &id, now + 21).unwrap().is_none());
        let current = resume(&store, &settings, &active, now + 21)
            .unwrap()
            .unwrap();
        assert_eq!(current.stage, Stage::Active);
        let stale = start(&store, &settings, "alice", Stage::Setup, now).unwrap();
        assert!(resume(&store, &settings, &stale, now + PENDING_SECS)
            .unwrap()
            .is_none());
    }

    #[test]
    fn logout_and_disabling_end_sessions() {
        let (_dir, store, settings) = setup();
        let now = 1_800_000_000;
        let id = start(&store, &settings, "alice", Stage::Active, now).unwrap();
        let current = resume(&store, &settings, &id, now).unwrap().unwrap();
        end(&store, &current).unwrap();
        assert!(resume(&store, &settings, &id, now).unwrap().is_none());
        let id = start(&store, &settings, "alice", Stage::Active, now).unwrap();
        crate::core::accounts::disable_account(&store, "alice", "cli").unwrap();
        assert!(resume(&store, &settings, &id, now).unwrap().is_none());
    }

    #[test]
    fn changing_the_own_password_ends_the_other_sessions_only() {
        use crate::core::accounts::{change_own_password, confirm_password, sign_in_password};
        use crate::core::accounts::{NextStep, SignInError};
        let (_dir, store, settings) = setup();
        let now = 1_800_000_000;
        let (_, one_time) = create_account(&store, "bob", Role::Auditor, false, "cli").unwrap();
        let lockout = settings.lockout;
        assert_eq!(
            sign_in_password(&store, lockout, "bob", &one_time, now).unwrap(),
            NextStep::Setup
        );
        let here = start(&store, &settings, "bob", Stage::Active, now).unwrap();
        let elsewhere = start(&store, &settings, "bob", Stage::Active, now).unwrap();
        let alice = start(&store, &settings, "alice", Stage::Active, now).unwrap();
        let current = resume(&store, &settings, &here, now).unwrap().unwrap();

        let wrong = confirm_password(&store, lockout, "bob", "not the password", now);
        assert!(matches!(wrong, Err(SignInError::Refused)), "{wrong:?}");
        let record = read_tx(&store, |tx| tx.account("bob")).unwrap().unwrap();
        assert_eq!(
            record.failed_logins, 1,
            "a wrong password counts as a failure"
        );
        let short = change_password(&store, &current, "short");
        assert!(matches!(short, Err(AccountError::Rejected(_))), "{short:?}");
        assert!(resume(&store, &settings, &elsewhere, now)
            .unwrap()
            .is_some());

        confirm_password(&store, lockout, "bob", &one_time, now).unwrap();
        change_password(&store, &current, "bob's own long password").unwrap();
        assert!(resume(&store, &settings, &here, now).unwrap().is_some());
        assert!(resume(&store, &settings, &elsewhere, now)
            .unwrap()
            .is_none());
        assert!(resume(&store, &settings, &alice, now).unwrap().is_some());
        assert_eq!(
            sign_in_password(&store, lockout, "bob", "bob's own long password", now).unwrap(),
            NextStep::Done,
            "the chosen password is not one-time"
        );
        assert!(sign_in_password(&store, lockout, "bob", &one_time, now).is_err());
        let stranger = change_own_password(&store, "bob", "yet another password", "nothing");
        assert!(stranger.is_ok(), "{stranger:?}");
        assert!(resume(&store, &settings, &here, now).unwrap().is_none());
    }

    #[test]
    fn only_the_session_hash_is_stored_and_garbage_ids_find_nothing() {
        let (_dir, store, settings) = setup();
        let now = 1_800_000_000;
        let id = start(&store, &settings, "alice", Stage::Active, now).unwrap();
        assert_eq!(id.len(), 43);
        assert!(read_tx(&store, |tx| tx.session(&id)).unwrap().is_none());
        assert!(read_tx(&store, |tx| tx.session(&id_hash(&id)))
            .unwrap()
            .is_some());
        for garbage in ["", "x", "../../etc", &"a".repeat(43), &format!("{id}=")] {
            assert!(resume(&store, &settings, garbage, now).unwrap().is_none());
        }
    }

    #[test]
    fn csrf_token_is_bound_to_its_session() {
        let a = random_token().unwrap();
        let b = random_token().unwrap();
        assert!(csrf_matches(&a, &csrf_token(&a)));
        assert!(!csrf_matches(&a, &csrf_token(&b)));
        assert!(!csrf_matches(&a, ""));
        assert!(!csrf_matches(&a, &csrf_token(&a)[1..]));
        assert_ne!(csrf_token(&a), a, "the token does not reveal the session");
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("", "a"));
    }

    #[test]
    fn failed_sign_ins_are_throttled_per_address() {
        let settings = ConsoleSettings::new(&ConsoleSection {
            address_failures_burst: 3,
            address_failures_per_minute: 1,
            ..ConsoleSection::default()
        });
        let ip: std::net::IpAddr = "192.0.2.7".parse().unwrap();
        let other: std::net::IpAddr = "192.0.2.8".parse().unwrap();
        for _ in 0..3 {
            assert!(settings.throttle.admit(ip).is_ok());
            settings.throttle.record_failure(ip);
        }
        let wait = settings.throttle.admit(ip).unwrap_err();
        assert!(wait.as_secs() > 30, "{wait:?}");
        assert!(settings.throttle.admit(other).is_ok());
    }
}
