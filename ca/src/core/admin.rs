//! Admin credentials: roles, bearer tokens (created, listed, revoked, checked) and the
//! record of their last use. The command line and the HTTP API both call these.

use std::collections::HashMap;
use std::sync::Mutex;

use herald_token_client::sha256_hex;
use ring::rand::{SecureRandom, SystemRandom};

use crate::model::audit::NewAuditEntry;
use crate::store::{read_tx, write_tx, AdminTokenRecord, Store, StoreError};

/// Why an admin credential was not accepted.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // fields are named for what they hold
pub(crate) enum AuthError {
    /// No valid credential: missing, unknown, revoked or expired (the text says which).
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// A valid credential whose role is below the one needed.
    #[error("this needs the {} role; the token has {}", needed.name(), has.name())]
    Forbidden { needed: Role, has: Role },
    /// The store failed, or holds a role this version does not know.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks admin bearer tokens and records their last use, at most once a minute per token
/// and process (a burst of concurrent calls with one token writes once; a failure to record a
/// last use is logged, not fatal).
#[derive(Debug, Default)]
pub(crate) struct AdminAuth {
    last_use_written: Mutex<HashMap<String, i64>>,
}

impl AdminAuth {
    /// The caller holding `token` (the bearer token as sent; `None`: none was sent), if the
    /// token is active and its role is at least `needed`.
    pub(crate) fn authenticate(
        &self,
        store: &dyn Store,
        token: Option<&str>,
        needed: Role,
    ) -> Result<Caller, AuthError> {
        let token = token.ok_or(AuthError::Unauthenticated(
            "an admin token is required (Authorization: Bearer ...)",
        ))?;
        let hash = sha256_hex(token.as_bytes());
        let record = read_tx(store, |tx| tx.admin_token_by_hash(&hash))?
            .ok_or(AuthError::Unauthenticated("unknown admin token"))?;
        let now = crate::model::time::now_unix();
        match admin_token_status(&record, now) {
            "revoked" => return Err(AuthError::Unauthenticated("this admin token was revoked")),
            "expired" => return Err(AuthError::Unauthenticated("this admin token has expired")),
            _ => {}
        }
        let role = Role::parse(&record.role)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown stored role {}", record.role)))?;
        if role < needed {
            return Err(AuthError::Forbidden { needed, has: role });
        }
        if record
            .last_used_at
            .is_none_or(|at| now - at >= LAST_USE_RESOLUTION_SECS)
        {
            self.note_use(store, &record.id, now);
        }
        Ok(Caller {
            id: record.id,
            role,
        })
    }

    fn note_use(&self, store: &dyn Store, id: &str, now: i64) {
        {
            let mut written = self
                .last_use_written
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if written
                .get(id)
                .is_some_and(|at| now - at < LAST_USE_RESOLUTION_SECS)
            {
                return;
            }
            written.insert(id.to_owned(), now);
        }
        if let Err(e) = write_tx(store, |tx| tx.touch_admin_token(id, now)) {
            tracing::warn!(error = %e, "cannot record the last use of an admin token");
        }
    }
}

/// Why an admin token could not be created.
#[derive(Debug, thiserror::Error)]
pub enum AdminTokenError {
    /// The system's random generator failed; nothing was created.
    #[error("the system random generator failed; no admin token was created")]
    Random,
    /// The store failed; nothing was created.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Every admin token, as `admin-token list` and `GET /api/v1/admin-tokens` show them.
pub(crate) fn list_admin_tokens(store: &dyn Store) -> Result<Vec<AdminTokenRecord>, StoreError> {
    read_tx(store, |tx| tx.list_admin_tokens())
}

/// Admin roles, from least to most privileged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Role {
    /// Read-only.
    Auditor,
    /// Reads, revocation, enrollment tokens.
    Operator,
    /// Everything, including issuing from a CSR.
    Admin,
}

impl Role {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "auditor" => Some(Role::Auditor),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Role::Auditor => "auditor",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// Longest lifetime of an admin token with an expiry: ten years.
const MAX_ADMIN_TOKEN_SECS: i64 = 10 * 366 * 86_400;

/// Parses an admin token's lifetime (`30d`, `12h`; one minute to ten years) into its expiry
/// time, Unix seconds.
pub(crate) fn admin_token_expiry(text: &str) -> Result<i64, String> {
    herald_token_service::parse_duration(text)
        .filter(|secs| (60..=MAX_ADMIN_TOKEN_SECS).contains(secs))
        .map(|secs| crate::model::time::now_unix() + secs)
        .ok_or_else(|| {
            format!("bad expiry {text:?}: use a number with s, m, h or d, from 1m to 3660d")
        })
}

/// Creates an admin token; returns its record and the secret (shown once, stored as a hash).
pub(crate) fn create_admin_token(
    store: &dyn Store,
    role: Role,
    label: &str,
    expires_at: Option<i64>,
    actor: &str,
) -> Result<(AdminTokenRecord, String), AdminTokenError> {
    let rng = SystemRandom::new();
    let mut secret = [0u8; 32];
    let mut id = [0u8; 8];
    rng.fill(&mut secret)
        .and_then(|()| rng.fill(&mut id))
        .map_err(|_| AdminTokenError::Random)?;
    let id = hex::encode(id);
    let token = format!("hca_{id}_{}", hex::encode(secret));
    let record = AdminTokenRecord {
        id: id.clone(),
        hash: sha256_hex(token.as_bytes()),
        role: role.name().to_owned(),
        label: label.to_owned(),
        created_at: crate::model::time::now_unix(),
        expires_at,
        revoked_at: None,
        last_used_at: None,
    };
    write_tx(store, |tx| {
        tx.insert_admin_token(&record)?;
        tx.append_audit(&NewAuditEntry::now(
            actor,
            "admin-token-create",
            serde_json::json!({
                "id": id, "role": role.name(), "label": label, "expires_at": expires_at
            }),
        ))?;
        Ok::<_, StoreError>(())
    })?;
    Ok((record, token))
}

/// Revokes an admin token at once (audited); `false` if it is unknown or already revoked.
pub(crate) fn revoke_admin_token(
    store: &dyn Store,
    id: &str,
    actor: &str,
) -> Result<bool, StoreError> {
    write_tx(store, |tx| {
        let revoked = tx.revoke_admin_token(id, crate::model::time::now_unix())?;
        if revoked {
            tx.append_audit(&NewAuditEntry::now(
                actor,
                "admin-token-revoke",
                serde_json::json!({ "id": id }),
            ))?;
        }
        Ok::<_, StoreError>(revoked)
    })
}

/// The state of an admin token at `now`: `active`, `expired` or `revoked`.
pub(crate) fn admin_token_status(record: &AdminTokenRecord, now: i64) -> &'static str {
    if record.revoked_at.is_some() {
        "revoked"
    } else if record.expires_at.is_some_and(|at| at <= now) {
        "expired"
    } else {
        "active"
    }
}

/// An admin token as `admin-token list --json` and `GET /api/v1/admin-tokens` show it.
pub(crate) fn admin_token_json(record: &AdminTokenRecord, now: i64) -> serde_json::Value {
    serde_json::json!({
        "id": record.id,
        "role": record.role,
        "label": record.label,
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "revoked_at": record.revoked_at,
        "last_used_at": record.last_used_at,
        "status": admin_token_status(record, now),
    })
}

/// The caller of an admin endpoint, authenticated by bearer token.
pub(crate) struct Caller {
    pub(crate) id: String,
    pub(crate) role: Role,
}

impl Caller {
    /// The caller as the audit log names it.
    pub(crate) fn actor(&self) -> String {
        format!("admin-token:{}", self.id)
    }
}

/// How often the last use of an admin token is written (a write per call would make every
/// read a store write).
const LAST_USE_RESOLUTION_SECS: i64 = 60;
