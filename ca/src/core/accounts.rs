//! Console accounts: who signs in to `/ui/`, with which role, and how.
//!
//! - Passwords are stored only as Argon2id hashes (RustCrypto's `argon2`, OWASP's parameters:
//!   19 MiB, two passes). Accounts are created with a random one-time password, shown once,
//!   that must be replaced at the first sign-in.
//! - A second factor is required by default: TOTP (RFC 6238, [`crate::core::totp`]), enrolled
//!   at the first sign-in, each code accepted once; plus ten one-time recovery codes (80 random
//!   bits each, stored as SHA-256 hashes).
//! - Consecutive failed sign-ins (wrong password or code) lock the account for a while; a
//!   success resets the count. Counting is one conditional statement in the store, so failures
//!   on several servers sharing it all count.
//! - Every sign-in, failure, lockout and change is audited with the account's name, in the
//!   transaction that makes the change.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use ring::rand::{SecureRandom, SystemRandom};

use crate::core::admin::Role;
use crate::core::totp;
use crate::model::audit::NewAuditEntry;
use crate::store::{read_tx, write_tx, AccountRecord, Store, StoreError, StoreTx};
use herald_token_client::sha256_hex;

/// Shortest password an account may choose.
pub(crate) const MIN_PASSWORD_CHARS: usize = 12;
/// Longest password accepted (hashing cost grows with the input).
pub(crate) const MAX_PASSWORD_BYTES: usize = 256;
/// Recovery codes made at TOTP enrolment.
pub(crate) const RECOVERY_CODES: usize = 10;
/// The issuer authenticator apps show for Herald's codes.
pub(crate) const TOTP_ISSUER: &str = "Herald";

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// No account has this name.
    #[error("no account named {0}")]
    NotFound(String),
    /// The name is taken.
    #[error("an account named {0} exists")]
    Exists(String),
    /// The name is not acceptable.
    #[error("bad account name {0:?}: use 1 to 64 letters, digits, '.', '_', '-' or '@'")]
    BadName(String),
    /// A new password or code is not acceptable (the text says why; shown to the user).
    #[error("{0}")]
    Rejected(String),
    /// The system's random generator or the password hasher failed; nothing was changed.
    #[error("{0}; nothing was changed")]
    Crypto(&'static str),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a sign-in step was refused. What the person signing in is told never says whether an
/// account exists.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SignInError {
    /// Wrong name, password or code, or a disabled account.
    #[error("the name, password or code is wrong")]
    Refused,
    /// Too many failures: the account is locked until this time (Unix seconds).
    #[error("too many failed attempts: try again later")]
    Locked(i64),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The lockout rule: `failures` consecutive failures lock an account for `lock_secs`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lockout {
    pub(crate) failures: i64,
    pub(crate) lock_secs: i64,
}

/// What a sign-in needs next after the password was right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NextStep {
    /// Set a new password and/or enrol TOTP (first sign-in, or after a reset).
    Setup,
    /// Enter a TOTP or recovery code.
    SecondFactor,
    /// Signed in.
    Done,
}

fn random(bytes: &mut [u8]) -> Result<(), AccountError> {
    SystemRandom::new()
        .fill(bytes)
        .map_err(|_| AccountError::Crypto("the system random generator failed"))
}

/// Letters without look-alikes (no 0, 1, l, o): 32 symbols, five bits each.
const CODE_ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";

/// `groups` groups of `group_len` random symbols of [`CODE_ALPHABET`], joined by `-`.
fn random_code(groups: usize, group_len: usize) -> Result<String, AccountError> {
    let mut bytes = vec![0u8; groups * group_len];
    random(&mut bytes)?;
    let symbols: Vec<char> = bytes
        .iter()
        .map(|b| char::from(CODE_ALPHABET[usize::from(b & 31)]))
        .collect();
    Ok(symbols
        .chunks(group_len)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-"))
}

/// A new one-time password: 20 symbols, 100 random bits.
fn one_time_password() -> Result<String, AccountError> {
    random_code(4, 5)
}

/// The hash a recovery code is stored and looked up by: SHA-256 of its symbols, lower-case,
/// without separators (the code has 80 random bits, so a fast hash suffices).
fn recovery_code_hash(code: &str) -> String {
    let normal: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    sha256_hex(format!("herald-recovery-code-v1\0{normal}").as_bytes())
}

fn argon2() -> Argon2<'static> {
    Argon2::default()
}

/// The Argon2id hash (PHC string) of `password` with a fresh random salt.
pub(crate) fn hash_password(password: &str) -> Result<String, AccountError> {
    let mut salt = [0u8; 16];
    random(&mut salt)?;
    let salt = SaltString::encode_b64(&salt)
        .map_err(|_| AccountError::Crypto("the password salt cannot be encoded"))?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|_| AccountError::Crypto("the password cannot be hashed"))
}

/// Whether `password` matches the stored `hash` (false for a hash this version cannot read).
pub(crate) fn verify_password(hash: &str, password: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    PasswordHash::new(hash).is_ok_and(|parsed| {
        argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A hash nobody's password matches, verified for unknown names so that a sign-in takes as
/// long whether or not the account exists.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        hash_password("herald decoy password").unwrap_or_else(|_| {
            // Without randomness there is no decoy salt; a fixed one does the same job.
            "$argon2id$v=19$m=19456,t=2,p=1$aGVyYWxkZGVjb3k$5jPHZfDqhrJKQx0Fg3s0TjbF0wDqfDNx0p6FQkA0Xqs"
                .to_owned()
        })
    })
}

/// Whether `password` is acceptable as a new password.
pub(crate) fn check_new_password(password: &str) -> Result<(), AccountError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AccountError::Rejected(format!(
            "choose a password of at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(AccountError::Rejected(format!(
            "choose a password of at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), AccountError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(AccountError::BadName(name.to_owned()))
    }
}

/// The audit actor of an account's own actions.
pub(crate) fn actor(name: &str) -> String {
    format!("account:{name}")
}

/// Creates an account with a one-time password; returns it with that password (shown once).
pub(crate) fn create_account(
    store: &dyn Store,
    name: &str,
    role: Role,
    mfa_required: bool,
    by: &str,
) -> Result<(AccountRecord, String), AccountError> {
    check_name(name)?;
    let password = one_time_password()?;
    let record = AccountRecord {
        name: name.to_owned(),
        role: role.name().to_owned(),
        password_hash: hash_password(&password)?,
        password_one_time: true,
        mfa_required,
        totp_secret: None,
        totp_enrolled_at: None,
        totp_last_step: None,
        created_at: crate::model::time::now_unix(),
        disabled_at: None,
        failed_logins: 0,
        locked_until: None,
        last_login_at: None,
    };
    write_tx(store, |tx| {
        tx.insert_account(&record).map_err(|e| match e {
            StoreError::Conflict(_) => AccountError::Exists(name.to_owned()),
            other => other.into(),
        })?;
        tx.append_audit(&NewAuditEntry::now(
            by,
            "account-create",
            serde_json::json!({"account": name, "role": role.name(), "mfa_required": mfa_required}),
        ))?;
        Ok::<_, AccountError>(())
    })?;
    Ok((record, password))
}

/// Every account, by name.
pub(crate) fn list_accounts(store: &dyn Store) -> Result<Vec<AccountRecord>, StoreError> {
    read_tx(store, |tx| tx.list_accounts())
}

/// Reads account `name` in `tx`, or fails with [`AccountError::NotFound`].
fn existing(tx: &dyn StoreTx, name: &str) -> Result<AccountRecord, AccountError> {
    tx.account(name)?
        .ok_or_else(|| AccountError::NotFound(name.to_owned()))
}

/// Changes account `name` with `change`, ends its sessions and audits `action`, in one
/// transaction.
fn change_account(
    store: &dyn Store,
    name: &str,
    by: &str,
    action: &str,
    change: impl FnOnce(&dyn StoreTx, &mut AccountRecord) -> Result<(), AccountError>,
) -> Result<AccountRecord, AccountError> {
    write_tx(store, |tx| change_account_in(tx, name, by, action, change))
}

/// [`change_account`] in transaction `tx`.
fn change_account_in(
    tx: &dyn StoreTx,
    name: &str,
    by: &str,
    action: &str,
    change: impl FnOnce(&dyn StoreTx, &mut AccountRecord) -> Result<(), AccountError>,
) -> Result<AccountRecord, AccountError> {
    let mut record = existing(tx, name)?;
    change(tx, &mut record)?;
    tx.update_account(&record)?;
    tx.delete_sessions_of(name)?;
    tx.append_audit(&NewAuditEntry::now(
        by,
        action,
        serde_json::json!({ "account": name }),
    ))?;
    Ok(record)
}

/// Disables account `name`: it can no longer sign in and its sessions end at once.
pub(crate) fn disable_account(store: &dyn Store, name: &str, by: &str) -> Result<(), AccountError> {
    change_account(store, name, by, "account-disable", |_, record| {
        record
            .disabled_at
            .get_or_insert(crate::model::time::now_unix());
        Ok(())
    })
    .map(drop)
}

/// Removes the second factor of account `name` (TOTP and recovery codes) and unlocks it: it
/// enrols again at its next sign-in. Its sessions end.
pub(crate) fn reset_mfa(store: &dyn Store, name: &str, by: &str) -> Result<(), AccountError> {
    change_account(store, name, by, "account-reset-mfa", |tx, record| {
        record.totp_secret = None;
        record.totp_enrolled_at = None;
        record.totp_last_step = None;
        record.failed_logins = 0;
        record.locked_until = None;
        tx.replace_recovery_codes(&record.name, &[], crate::model::time::now_unix())?;
        Ok(())
    })
    .map(drop)
}

/// Gives account `name` a new one-time password (returned, shown once) and unlocks it; it
/// chooses its own at the next sign-in. Its sessions end.
pub(crate) fn reset_password(
    store: &dyn Store,
    name: &str,
    by: &str,
) -> Result<String, AccountError> {
    let password = one_time_password()?;
    let hash = hash_password(&password)?;
    change_account(store, name, by, "account-password-reset", |_, record| {
        record.password_hash = hash;
        record.password_one_time = true;
        record.failed_logins = 0;
        record.locked_until = None;
        Ok(())
    })?;
    Ok(password)
}

/// The state of an account at `now`, as lists show it.
pub(crate) fn account_status(record: &AccountRecord, now: i64) -> &'static str {
    if record.disabled_at.is_some() {
        "disabled"
    } else if record.locked_until.is_some_and(|until| until > now) {
        "locked"
    } else if record.password_one_time {
        "first-sign-in"
    } else {
        "active"
    }
}

/// The second factor of an account: `totp`, `pending` (enrolment at the next sign-in) or
/// `off`.
pub(crate) fn mfa_status(record: &AccountRecord) -> &'static str {
    match (record.mfa_required, record.totp_enrolled_at) {
        (_, Some(_)) => "totp",
        (true, None) => "pending",
        (false, None) => "off",
    }
}

/// An account as `admin user list --json` and `GET /api/v1/accounts` show it.
pub(crate) fn account_json(record: &AccountRecord, now: i64) -> serde_json::Value {
    serde_json::json!({
        "name": record.name,
        "role": record.role,
        "status": account_status(record, now),
        "mfa": mfa_status(record),
        "created_at": record.created_at,
        "last_login_at": record.last_login_at,
        "locked_until": record.locked_until.filter(|until| *until > now),
        "disabled_at": record.disabled_at,
    })
}

/// Counts a failure of account `name` and audits it (and a lockout it causes), in one
/// transaction; returns the refusal to give.
fn fail(
    tx: &dyn StoreTx,
    lockout: Lockout,
    name: &str,
    reason: &str,
    now: i64,
) -> Result<SignInError, StoreError> {
    let counted = tx.count_login_failure(name, lockout.failures, now + lockout.lock_secs)?;
    tx.append_audit(&NewAuditEntry::now(
        "console",
        "console-login-failed",
        serde_json::json!({"account": name, "reason": reason}),
    ))?;
    if let Some((failures, Some(until))) = counted {
        if failures >= lockout.failures && until > now {
            tx.append_audit(&NewAuditEntry::now(
                "console",
                "console-account-locked",
                serde_json::json!({"account": name, "failures": failures, "until": until}),
            ))?;
            return Ok(SignInError::Locked(until));
        }
    }
    Ok(SignInError::Refused)
}

/// Refuses a sign-in step of an account that is disabled or locked (audited).
fn check_usable(
    tx: &dyn StoreTx,
    record: &AccountRecord,
    now: i64,
) -> Result<Result<(), SignInError>, StoreError> {
    let (reason, refusal) = if record.disabled_at.is_some() {
        ("disabled", SignInError::Refused)
    } else if let Some(until) = record.locked_until.filter(|until| *until > now) {
        ("locked", SignInError::Locked(until))
    } else {
        return Ok(Ok(()));
    };
    tx.append_audit(&NewAuditEntry::now(
        "console",
        "console-login-failed",
        serde_json::json!({"account": record.name, "reason": reason}),
    ))?;
    Ok(Err(refusal))
}

/// Records a completed sign-in of `record` (failures reset, time noted, audited).
fn signed_in(
    tx: &dyn StoreTx,
    record: &mut AccountRecord,
    method: &str,
    now: i64,
) -> Result<(), StoreError> {
    record.failed_logins = 0;
    record.locked_until = None;
    record.last_login_at = Some(now);
    tx.update_account(record)?;
    tx.append_audit(&NewAuditEntry::now(
        &actor(&record.name),
        "console-login",
        serde_json::json!({"account": record.name, "method": method}),
    ))?;
    Ok(())
}

/// Checks the password of account `name` as a sign-in step: the hash is checked outside the
/// store's transaction (it takes tens of milliseconds); a disabled or locked account, an
/// unknown name or a wrong password is refused and audited (a wrong one counts towards the
/// lockout). When it passes, `passed` runs in the same transaction as the checks.
fn password_step<T>(
    store: &dyn Store,
    lockout: Lockout,
    name: &str,
    password: &str,
    now: i64,
    passed: impl FnOnce(&dyn StoreTx, AccountRecord) -> Result<T, StoreError>,
) -> Result<T, SignInError> {
    let stored_hash = read_tx(store, |tx| tx.account(name))?.map(|r| r.password_hash);
    let password_ok = match stored_hash.as_deref() {
        Some(hash) => verify_password(hash, password),
        None => verify_password(decoy_hash(), password),
    };
    write_tx(store, |tx| {
        // Read again: another server may have counted failures or disabled it meanwhile.
        let Some(record) = tx.account(name)? else {
            tx.append_audit(&NewAuditEntry::now(
                "console",
                "console-login-failed",
                serde_json::json!({"account": name, "reason": "unknown account"}),
            ))?;
            return Ok(Err(SignInError::Refused));
        };
        if let Err(refusal) = check_usable(tx, &record, now)? {
            return Ok(Err(refusal));
        }
        if !password_ok {
            return Ok(Err(fail(tx, lockout, name, "wrong password", now)?));
        }
        Ok(Ok(passed(tx, record)?))
    })
    .map_err(SignInError::Store)?
}

/// The first sign-in step: the password of account `name` (see [`password_step`]).
pub(crate) fn sign_in_password(
    store: &dyn Store,
    lockout: Lockout,
    name: &str,
    password: &str,
    now: i64,
) -> Result<NextStep, SignInError> {
    password_step(store, lockout, name, password, now, |tx, mut record| {
        let needs_setup =
            record.password_one_time || (record.mfa_required && record.totp_enrolled_at.is_none());
        if needs_setup {
            Ok(NextStep::Setup)
        } else if record.totp_enrolled_at.is_some() {
            Ok(NextStep::SecondFactor)
        } else {
            signed_in(tx, &mut record, "password", now)?;
            Ok(NextStep::Done)
        }
    })
}

/// Checks the current password of signed-in account `name` before it changes its own: the
/// same check, refusals, audit and lockout as the first sign-in step.
pub(crate) fn confirm_password(
    store: &dyn Store,
    lockout: Lockout,
    name: &str,
    password: &str,
    now: i64,
) -> Result<(), SignInError> {
    password_step(store, lockout, name, password, now, |_, _| Ok(()))
}

/// Gives account `name` the new password `new_password` it chose (after
/// [`confirm_password`]), audited as its own action; in the same transaction every session
/// of the account ends except `keep` (the identifier hash of the session it changed it in).
pub(crate) fn change_own_password(
    store: &dyn Store,
    name: &str,
    new_password: &str,
    keep: &str,
) -> Result<(), AccountError> {
    check_new_password(new_password)?;
    let hash = hash_password(new_password)?;
    write_tx(store, |tx| {
        let kept = tx.session(keep)?;
        change_account_in(
            tx,
            name,
            &actor(name),
            "account-password-change",
            |_, record| {
                if record.disabled_at.is_some() {
                    return Err(AccountError::Rejected("this account is disabled".into()));
                }
                record.password_hash = hash;
                record.password_one_time = false;
                Ok(())
            },
        )?;
        if let Some(session) = kept.filter(|s| s.account == name) {
            tx.insert_session(&session)?;
        }
        Ok(())
    })
}

/// The second sign-in step of account `name`: a TOTP code (six digits, accepted once) or
/// one of its recovery codes (each usable once).
pub(crate) fn sign_in_second_factor(
    store: &dyn Store,
    lockout: Lockout,
    name: &str,
    code: &str,
    now: i64,
) -> Result<(), SignInError> {
    write_tx(store, |tx| {
        let Some(mut record) = tx.account(name)? else {
            return Ok(Err(SignInError::Refused));
        };
        if let Err(refusal) = check_usable(tx, &record, now)? {
            return Ok(Err(refusal));
        }
        let secret = record
            .totp_secret
            .as_deref()
            .filter(|_| record.totp_enrolled_at.is_some())
            .and_then(|hex| hex::decode(hex).ok());
        let digits = code.chars().filter(|c| !c.is_whitespace()).count() == totp::DIGITS as usize;
        let method = if digits {
            let step = secret
                .as_deref()
                .and_then(|secret| totp::matching_step(secret, code, now));
            match step {
                Some(step) if tx.accept_totp_step(name, step)? => {
                    record.totp_last_step = Some(step);
                    "totp"
                }
                Some(_) => return Ok(Err(fail(tx, lockout, name, "code used before", now)?)),
                None => return Ok(Err(fail(tx, lockout, name, "wrong code", now)?)),
            }
        } else if tx.use_recovery_code(name, &recovery_code_hash(code), now)? {
            "recovery-code"
        } else {
            return Ok(Err(fail(tx, lockout, name, "wrong recovery code", now)?));
        };
        signed_in(tx, &mut record, method, now)?;
        Ok(Ok(()))
    })
    .map_err(SignInError::Store)?
}

/// What the set-up page of account `name` asks for.
#[derive(Debug, Clone)]
pub(crate) struct SetupNeeds {
    /// A new password (the current one is one-time).
    pub(crate) password: bool,
    /// TOTP enrolment, with the pending secret to show.
    pub(crate) totp_secret: Option<Vec<u8>>,
}

/// What account `name` must still set up; a pending TOTP secret is made (and kept, so a
/// reload shows the same one) when enrolment is due.
pub(crate) fn setup_needs(store: &dyn Store, name: &str) -> Result<SetupNeeds, AccountError> {
    write_tx(store, |tx| {
        let mut record = existing(tx, name)?;
        let enrol = record.mfa_required && record.totp_enrolled_at.is_none();
        let totp_secret = if enrol {
            let pending = record
                .totp_secret
                .as_deref()
                .and_then(|h| hex::decode(h).ok());
            Some(match pending {
                Some(secret) => secret,
                None => {
                    let mut secret = vec![0u8; totp::SECRET_BYTES];
                    random(&mut secret)?;
                    record.totp_secret = Some(hex::encode(&secret));
                    tx.update_account(&record)?;
                    secret
                }
            })
        } else {
            None
        };
        Ok(SetupNeeds {
            password: record.password_one_time,
            totp_secret,
        })
    })
}

/// Completes the set-up of account `name`: the new password (when the current one is
/// one-time; never the same again) and the first TOTP code (when enrolment is due). Returns
/// the new recovery codes (shown once) when TOTP was enrolled. Signs the account in.
pub(crate) fn complete_setup(
    store: &dyn Store,
    name: &str,
    new_password: Option<&str>,
    code: Option<&str>,
    now: i64,
) -> Result<Option<Vec<String>>, AccountError> {
    let current = read_tx(store, |tx| existing(tx, name))?;
    let new_hash = if current.password_one_time {
        let password = new_password
            .filter(|p| !p.is_empty())
            .ok_or_else(|| AccountError::Rejected("choose a new password".into()))?;
        check_new_password(password)?;
        if verify_password(&current.password_hash, password) {
            return Err(AccountError::Rejected(
                "choose a password other than the one-time password".into(),
            ));
        }
        Some(hash_password(password)?)
    } else {
        None
    };
    let enrol = current.mfa_required && current.totp_enrolled_at.is_none();
    let codes = if enrol {
        let codes = (0..RECOVERY_CODES)
            .map(|_| random_code(4, 4))
            .collect::<Result<Vec<_>, _>>()?;
        Some(codes)
    } else {
        None
    };
    write_tx(store, |tx| {
        let mut record = existing(tx, name)?;
        if record.disabled_at.is_some() {
            return Err(AccountError::Rejected("this account is disabled".into()));
        }
        if let Some(hash) = &new_hash {
            record.password_hash = hash.clone();
            record.password_one_time = false;
        }
        if let Some(codes) = &codes {
            let secret = record
                .totp_secret
                .as_deref()
                .and_then(|h| hex::decode(h).ok())
                .ok_or_else(|| AccountError::Rejected("reload the page to enrol".into()))?;
            let step = code
                .and_then(|code| totp::matching_step(&secret, code, now))
                .ok_or_else(|| {
                    AccountError::Rejected(
                        "the code does not match: check the time on your device and enter \
                         the code it shows now"
                            .into(),
                    )
                })?;
            record.totp_enrolled_at = Some(now);
            record.totp_last_step = Some(step);
            let hashes: Vec<String> = codes.iter().map(|c| recovery_code_hash(c)).collect();
            tx.replace_recovery_codes(name, &hashes, now)?;
        }
        tx.append_audit(&NewAuditEntry::now(
            &actor(name),
            "console-setup",
            serde_json::json!({
                "account": name,
                "password_changed": new_hash.is_some(),
                "totp_enrolled": codes.is_some(),
            }),
        ))?;
        signed_in(tx, &mut record, "setup", now)?;
        Ok(())
    })?;
    Ok(codes)
}

/// The role of `record`, refusing a role this version does not know.
pub(crate) fn role_of(record: &AccountRecord) -> Result<Role, StoreError> {
    Role::parse(&record.role)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown stored role {}", record.role)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::SqliteStore;

    const LOCKOUT: Lockout = Lockout {
        failures: 3,
        lock_secs: 600,
    };

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        (dir, store)
    }

    fn actions(store: &dyn Store) -> Vec<String> {
        let mut out = Vec::new();
        crate::core::audit::entries(store, 1, 1000, &mut |e| out.push(e.entry.action)).unwrap();
        out
    }

    /// An account that finished its set-up with `password`; returns its TOTP secret.
    fn enrolled(store: &dyn Store, name: &str, password: &str, now: i64) -> Vec<u8> {
        let (_, one_time) = create_account(store, name, Role::Operator, true, "cli").unwrap();
        assert_eq!(
            sign_in_password(store, LOCKOUT, name, &one_time, now).unwrap(),
            NextStep::Setup
        );
        let secret = setup_needs(store, name).unwrap().totp_secret.unwrap();
        let code = format!("{:06}", totp::code_at(&secret, totp::step_at(now), 6));
        let codes = complete_setup(store, name, Some(password), Some(&code), now)
            .unwrap()
            .unwrap();
        assert_eq!(codes.len(), RECOVERY_CODES);
        secret
    }

    #[test]
    fn password_hashes_are_argon2id_salted_and_verify() {
        let a = hash_password("correct horse battery").unwrap();
        let b = hash_password("correct horse battery").unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(verify_password(&a, "correct horse battery"));
        assert!(!verify_password(&a, "correct horse battery!"));
        assert!(!verify_password("not a hash", "x"));
    }

    #[test]
    fn first_sign_in_sets_password_and_enrols_totp() {
        let (_dir, store) = store();
        let now = 1_800_000_000;
        let (record, one_time) = create_account(&store, "alice", Role::Admin, true, "cli").unwrap();
        assert!(record.password_one_time);
        assert!(!record.password_hash.contains(&one_time));
        assert_eq!(
            sign_in_password(&store, LOCKOUT, "alice", &one_time, now).unwrap(),
            NextStep::Setup
        );
        let needs = setup_needs(&store, "alice").unwrap();
        assert!(needs.password);
        let secret = needs.totp_secret.unwrap();
        assert_eq!(
            setup_needs(&store, "alice").unwrap().totp_secret.unwrap(),
            secret,
            "a reload shows the same pending secret"
        );
        let code = format!("{:06}", totp::code_at(&secret, totp::step_at(now), 6));
        let refused = complete_setup(&store, "alice", Some(&one_time), Some(&code), now);
        assert!(
            matches!(refused, Err(AccountError::Rejected(_))),
            "{refused:?}"
        );
        let refused = complete_setup(&store, "alice", Some("short"), Some(&code), now);
        assert!(matches!(refused, Err(AccountError::Rejected(_))));
        let refused = complete_setup(
            &store,
            "alice",
            Some("a long new password"),
            Some("000000"),
            now,
        );
        assert!(matches!(refused, Err(AccountError::Rejected(_))));
        let codes = complete_setup(
            &store,
            "alice",
            Some("a long new password"),
            Some(&code),
            now,
        )
        .unwrap()
        .unwrap();
        assert_eq!(codes.len(), RECOVERY_CODES);
        // The one-time password is gone; the new one leads to the second factor.
        assert!(matches!(
            sign_in_password(&store, LOCKOUT, "alice", &one_time, now),
            Err(SignInError::Refused)
        ));
        assert_eq!(
            sign_in_password(&store, LOCKOUT, "alice", "a long new password", now).unwrap(),
            NextStep::SecondFactor
        );
        // The enrolment code was used: it is not accepted again.
        assert!(sign_in_second_factor(&store, LOCKOUT, "alice", &code, now).is_err());
        let later = now + 60;
        let next = format!("{:06}", totp::code_at(&secret, totp::step_at(later), 6));
        sign_in_second_factor(&store, LOCKOUT, "alice", &next, later).unwrap();
        let audit = actions(&store);
        assert!(audit.contains(&"account-create".to_owned()));
        assert!(audit.contains(&"console-setup".to_owned()));
        assert!(audit.contains(&"console-login".to_owned()));
        assert!(audit.contains(&"console-login-failed".to_owned()));
    }

    #[test]
    fn totp_code_replayed_is_refused() {
        let (_dir, store) = store();
        let now = 1_800_000_000;
        let secret = enrolled(&store, "bob", "bob's long password", now);
        let later = now + 120;
        let code = format!("{:06}", totp::code_at(&secret, totp::step_at(later), 6));
        sign_in_second_factor(&store, LOCKOUT, "bob", &code, later).unwrap();
        assert!(matches!(
            sign_in_second_factor(&store, LOCKOUT, "bob", &code, later + 5),
            Err(SignInError::Refused)
        ));
    }

    #[test]
    fn repeated_failures_lock_the_account_even_for_the_right_code() {
        let (_dir, store) = store();
        let now = 1_800_000_000;
        let secret = enrolled(&store, "carol", "carol's long password", now);
        let later = now + 120;
        let right = format!("{:06}", totp::code_at(&secret, totp::step_at(later), 6));
        let wrong = format!(
            "{:06}",
            (totp::code_at(&secret, totp::step_at(later), 6) + 1) % 1_000_000
        );
        for _ in 0..LOCKOUT.failures - 1 {
            assert!(matches!(
                sign_in_second_factor(&store, LOCKOUT, "carol", &wrong, later),
                Err(SignInError::Refused)
            ));
        }
        let locked = sign_in_second_factor(&store, LOCKOUT, "carol", &wrong, later);
        assert!(matches!(locked, Err(SignInError::Locked(until)) if until == later + 600));
        assert!(matches!(
            sign_in_second_factor(&store, LOCKOUT, "carol", &right, later + 1),
            Err(SignInError::Locked(_))
        ));
        assert!(matches!(
            sign_in_password(&store, LOCKOUT, "carol", "carol's long password", later + 1),
            Err(SignInError::Locked(_))
        ));
        assert!(actions(&store).contains(&"console-account-locked".to_owned()));
        // After the lock, the right code works and resets the count.
        let after = later + 601;
        let code = format!("{:06}", totp::code_at(&secret, totp::step_at(after), 6));
        sign_in_second_factor(&store, LOCKOUT, "carol", &code, after).unwrap();
        let record = read_tx(&store, |tx| tx.account("carol")).unwrap().unwrap();
        assert_eq!(record.failed_logins, 0);
        assert_eq!(record.locked_until, None);
    }

    #[test]
    fn wrong_passwords_lock_and_unknown_or_disabled_accounts_are_refused_alike() {
        let (_dir, store) = store();
        let now = 1_800_000_000;
        enrolled(&store, "dave", "dave's long password", now);
        for _ in 0..LOCKOUT.failures - 1 {
            assert!(matches!(
                sign_in_password(&store, LOCKOUT, "dave", "guess", now),
                Err(SignInError::Refused)
            ));
        }
        assert!(matches!(
            sign_in_password(&store, LOCKOUT, "dave", "guess", now),
            Err(SignInError::Locked(_))
        ));
        assert!(matches!(
            sign_in_password(&store, LOCKOUT, "nobody", "guess", now),
            Err(SignInError::Refused)
        ));
        reset_password(&store, "dave", "cli").unwrap();
        disable_account(&store, "dave", "cli").unwrap();
        let record = read_tx(&store, |tx| tx.account("dave")).unwrap().unwrap();
        assert_eq!(account_status(&record, now), "disabled");
        assert!(matches!(
            sign_in_password(&store, LOCKOUT, "dave", "dave's long password", now),
            Err(SignInError::Refused)
        ));
    }

    #[test]
    fn recovery_codes_work_once_each() {
        let (_dir, store) = store();
        let now = 1_800_000_000;
        let (_, one_time) = create_account(&store, "erin", Role::Auditor, true, "cli").unwrap();
        sign_in_password(&store, LOCKOUT, "erin", &one_time, now).unwrap();
        let secret = setup_needs(&store, "erin").unwrap().totp_secret.unwrap();
        let code = format!("{:06}", totp::code_at(&secret, totp::step_at(now), 6));
        let codes = complete_setup(
            &store,
            "erin",
            Some("erin's long password"),
            Some(&code),
            now,
        )
        .unwrap()
        .unwrap();
        let upper = codes[0].to_uppercase();
        sign_in_second_factor(&store, LOCKOUT, "erin", &upper, now).unwrap();
        assert!(sign_in_second_factor(&store, LOCKOUT, "erin", &codes[0], now).is_err());
        sign_in_second_factor(&store, LOCKOUT, "erin", &codes[1], now).unwrap();
        assert_eq!(
            read_tx(&store, |tx| tx.recovery_codes_left("erin")).unwrap(),
            (RECOVERY_CODES - 2) as i64
        );
        reset_mfa(&store, "erin", "cli").unwrap();
        assert_eq!(
            read_tx(&store, |tx| tx.recovery_codes_left("erin")).unwrap(),
            0
        );
        assert_eq!(
            sign_in_password(&store, LOCKOUT, "erin", "erin's long password", now).unwrap(),
            NextStep::Setup,
            "after a reset the account enrols again"
        );
    }

    #[test]
    fn account_without_mfa_is_signed_in_by_password_after_setup() {
        let (_dir, store) = store();
        let now = 1_800_000_000;
        let (_, one_time) = create_account(&store, "bench", Role::Auditor, false, "cli").unwrap();
        assert_eq!(
            sign_in_password(&store, LOCKOUT, "bench", &one_time, now).unwrap(),
            NextStep::Setup
        );
        assert!(setup_needs(&store, "bench").unwrap().totp_secret.is_none());
        assert!(
            complete_setup(&store, "bench", Some("bench long password"), None, now)
                .unwrap()
                .is_none()
        );
        assert_eq!(
            sign_in_password(&store, LOCKOUT, "bench", "bench long password", now).unwrap(),
            NextStep::Done
        );
    }

    #[test]
    fn account_names_are_checked_and_unique() {
        let (_dir, store) = store();
        assert!(matches!(
            create_account(&store, "bad name", Role::Admin, true, "cli"),
            Err(AccountError::BadName(_))
        ));
        create_account(&store, "ops@example", Role::Admin, true, "cli").unwrap();
        assert!(matches!(
            create_account(&store, "ops@example", Role::Admin, true, "cli"),
            Err(AccountError::Exists(_))
        ));
    }
}
