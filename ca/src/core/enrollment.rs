//! The authority side of enrollment: `herald-ca` implements the token service's narrow
//! [`herald_token_service::Authority`] interface on top of its [`Authority`] and store.
//!
//! Every write is one store transaction with its audit entry: a token and its unique name
//! are recorded together; a certificate issued for a token is recorded in the transaction
//! that burns the token.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use herald_token_service::{
    rfc3339, AuthorityError, CurrentCertificate, Hop, IssuedCertificate, NewToken, TokenRecord,
    TokenStatus,
};
use herald_wire::{Discovery, Group};

use crate::core::authority::{Authority, IssueError, Issued, ISSUER_ID};
use crate::core::config::Config;
use crate::core::csr::{CsrError, VerifiedCsr};
use crate::core::policy::Profile;
use crate::model::audit::NewAuditEntry;
use crate::model::serial::Serial;
use crate::store::{
    read_tx, write_tx, CertRecord, EndpointGroupRecord, EnrollmentTokenRecord, Store, StoreError,
    StoreTx,
};

/// The authority as the token service sees it.
#[derive(Clone)]
pub(crate) struct TokenAuthority {
    backing: Backing,
}

/// The server has the whole authority; the CLI's token commands need only the store and the
/// profiles (no CA key is unlocked for them).
#[derive(Clone)]
enum Backing {
    Full(Arc<Authority>),
    StoreOnly {
        store: Arc<dyn Store>,
        profiles: BTreeMap<String, Profile>,
    },
}

impl std::fmt::Debug for TokenAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenAuthority")
    }
}

impl TokenAuthority {
    /// Everything: tokens, enrollment and renewal.
    pub(crate) fn new(authority: Arc<Authority>) -> Self {
        Self {
            backing: Backing::Full(authority),
        }
    }

    /// Token management only (create, list, revoke); issuing answers an internal error.
    pub(crate) fn tokens_only(store: Arc<dyn Store>, config: &Config) -> Self {
        Self {
            backing: Backing::StoreOnly {
                store,
                profiles: config.profiles.clone(),
            },
        }
    }

    fn store(&self) -> &dyn Store {
        match &self.backing {
            Backing::Full(a) => a.store(),
            Backing::StoreOnly { store, .. } => store.as_ref(),
        }
    }

    fn profiles(&self) -> &BTreeMap<String, Profile> {
        match &self.backing {
            Backing::Full(a) => &a.config().profiles,
            Backing::StoreOnly { profiles, .. } => profiles,
        }
    }

    fn authority(&self) -> Result<&Authority, AuthorityError> {
        match &self.backing {
            Backing::Full(a) => Ok(a),
            Backing::StoreOnly { .. } => Err(AuthorityError::Internal(
                "the CA keys are not loaded in this process".into(),
            )),
        }
    }
}

thread_local! {
    /// The request this thread verified last, with its bytes. The token service verifies a
    /// request's proof of possession before it checks the token, then asks for issuance on
    /// the same thread; issuance takes the verification from here instead of verifying the
    /// signature a second time. Only byte-identical requests match.
    static LAST_VERIFIED: RefCell<Option<(Vec<u8>, VerifiedCsr)>> = const { RefCell::new(None) };
}

/// Parses and verifies `csr`, remembering the result for [`verified`] on this thread.
fn verify_and_remember(csr: &[u8]) -> Result<VerifiedCsr, CsrError> {
    let verified = crate::core::csr::parse_and_verify(csr)?;
    LAST_VERIFIED.with(|last| *last.borrow_mut() = Some((csr.to_vec(), verified.clone())));
    Ok(verified)
}

/// The verification of `csr`: remembered from [`verify_and_remember`] on this thread if the
/// bytes are the same, otherwise done now.
fn verified(csr: &[u8]) -> Result<VerifiedCsr, CsrError> {
    let remembered = LAST_VERIFIED.with(|last| {
        last.borrow_mut()
            .take()
            .filter(|(bytes, _)| bytes.as_slice() == csr)
    });
    match remembered {
        Some((_, verified)) => Ok(verified),
        None => crate::core::csr::parse_and_verify(csr),
    }
}

fn internal(e: impl std::fmt::Display) -> AuthorityError {
    AuthorityError::Internal(e.to_string())
}

fn issue_error(e: IssueError) -> AuthorityError {
    match e {
        IssueError::Csr(e) => AuthorityError::BadRequest(e.to_string()),
        IssueError::Policy(e) => AuthorityError::Policy(e.to_string()),
        IssueError::Store(StoreError::Conflict(_)) => AuthorityError::Conflict,
        other => internal(other),
    }
}

/// The token service's view of a stored token.
pub(crate) fn token_view(r: EnrollmentTokenRecord) -> Result<TokenRecord, AuthorityError> {
    let serial = r.serial.as_deref().map(Serial::from_hex).transpose();
    Ok(TokenRecord {
        id: r.id,
        name: r.name,
        profile: r.profile,
        group: r.group,
        expires_at: r.expires_at,
        used_at: r.used_at,
        serial: serial.map_err(internal)?,
        spki_sha256: r.spki_sha256,
        revoked_at: r.revoked_at,
    })
}

impl TokenAuthority {
    fn issued(&self, issued: Issued) -> IssuedCertificate {
        IssuedCertificate {
            name: issued.record.name.clone(),
            certificate_pem: issued.certificate_pem,
            chain_pem: issued.chain_pem,
            serial: issued.record.serial,
            not_after: rfc3339(issued.record.not_after),
        }
    }

    fn current(&self, authority: &Authority, record: CertRecord) -> CurrentCertificate {
        CurrentCertificate {
            issued: IssuedCertificate {
                name: record.name.clone(),
                certificate_pem: crate::model::encoding::pem_certificate(&record.der),
                chain_pem: format!(
                    "{}{}",
                    crate::model::encoding::pem_certificate(authority.intermediate_der()),
                    crate::model::encoding::pem_certificate(authority.root_der())
                ),
                serial: record.serial,
                not_after: rfc3339(record.not_after),
            },
            profile: record.profile,
            not_after: record.not_after,
            revoked: record.revocation.is_some(),
        }
    }

    /// Issues for `name` in `group`, or in the group the store records for `name` (`None`).
    fn issue(
        &self,
        csr: &[u8],
        name: &str,
        group: Option<&Group>,
        profile: &str,
        actor: &str,
        extra: &mut dyn FnMut(&dyn StoreTx, &CertRecord) -> Result<(), StoreError>,
    ) -> Result<IssuedCertificate, AuthorityError> {
        let authority = self.authority()?;
        let group = match group {
            Some(group) => group.clone(),
            None => authority.recorded_group(name, profile).map_err(internal)?,
        };
        authority
            .issue_request(|| verified(csr), name, &group, profile, actor, extra)
            .map(|issued| self.issued(issued))
            .map_err(issue_error)
    }
}

impl herald_token_service::Authority for TokenAuthority {
    fn verify_request(&self, csr: &[u8]) -> Result<Vec<u8>, AuthorityError> {
        verify_and_remember(csr)
            .map(|v| v.spki_der)
            .map_err(|e| AuthorityError::BadRequest(e.to_string()))
    }

    fn create_token(&self, token: &NewToken<'_>, actor: &str) -> Result<String, AuthorityError> {
        let NewToken {
            base,
            profile,
            group,
            expires_at,
            id,
            secret_hash,
        } = *token;
        if let Some(profile) = self.profiles().get(profile) {
            crate::core::policy::check_group(profile, group)
                .map_err(|e| AuthorityError::Policy(e.to_string()))?;
        }
        write_tx(self.store(), |tx| {
            // Skip any number whose name a certificate or token already carries (issued by
            // hand, or before the counter existed): a name is never handed out twice.
            let name = loop {
                let number = tx.allocate_name_number(base)?;
                let name = herald_token_service::format_name(base, number);
                if !tx.name_in_use(&name)? {
                    break name;
                }
            };
            tx.insert_enrollment_token(&EnrollmentTokenRecord {
                id: id.to_owned(),
                hash: secret_hash.to_owned(),
                name: name.clone(),
                base: base.to_owned(),
                profile: profile.to_owned(),
                group: group.clone(),
                created_at: crate::model::time::now_unix(),
                expires_at,
                created_by: actor.to_owned(),
                used_at: None,
                serial: None,
                spki_sha256: None,
                revoked_at: None,
            })?;
            tx.append_audit(&NewAuditEntry::now(
                actor,
                "token-create",
                serde_json::json!({
                    "id": id,
                    "name": name,
                    "profile": profile,
                    "group": group,
                    "expires_at": expires_at,
                }),
            ))?;
            Ok::<_, StoreError>(name)
        })
        .map_err(internal)
    }

    fn token_by_hash(&self, secret_hash: &str) -> Result<Option<TokenRecord>, AuthorityError> {
        read_tx(self.store(), |tx| tx.enrollment_token_by_hash(secret_hash))
            .map_err(internal)?
            .map(token_view)
            .transpose()
    }

    fn list_tokens(&self) -> Result<Vec<TokenRecord>, AuthorityError> {
        read_tx(self.store(), |tx| tx.list_enrollment_tokens())
            .map_err(internal)?
            .into_iter()
            .map(token_view)
            .collect()
    }

    fn revoke_token(&self, id: &str, actor: &str) -> Result<bool, AuthorityError> {
        write_tx(self.store(), |tx| {
            let changed = tx.revoke_enrollment_token(id, crate::model::time::now_unix())?;
            if changed {
                tx.append_audit(&NewAuditEntry::now(
                    actor,
                    "token-revoke",
                    serde_json::json!({"id": id}),
                ))?;
            }
            Ok::<_, StoreError>(changed)
        })
        .map_err(internal)
    }

    fn issue_for_token(
        &self,
        csr: &[u8],
        token: &TokenRecord,
        spki_sha256: &str,
        relays: &[Hop],
    ) -> Result<IssuedCertificate, AuthorityError> {
        let actor = format!("enrollment-token:{}", token.id);
        self.issue(
            csr,
            &token.name,
            Some(&token.group),
            &token.profile,
            &actor,
            &mut |tx, record| {
                let burnt = tx.burn_enrollment_token(
                    &token.id,
                    record.issued_at,
                    &record.serial.to_hex(),
                    spki_sha256,
                )?;
                if !burnt {
                    return Err(StoreError::Conflict(format!(
                        "token {} already used",
                        token.id
                    )));
                }
                // From now on the CA's record of the endpoint's group: renewals and
                // operators read and change this, never the token again.
                tx.set_endpoint_group(&EndpointGroupRecord {
                    name: token.name.clone(),
                    group: token.group.clone(),
                    changed_at: record.issued_at,
                })?;
                if !relays.is_empty() {
                    tx.append_audit(&NewAuditEntry::now(
                        &actor,
                        "enroll-relayed",
                        serde_json::json!({"serial": record.serial.to_hex(), "relays": relays}),
                    ))?;
                }
                Ok(())
            },
        )
    }

    fn certificate(&self, serial: &Serial) -> Result<Option<CurrentCertificate>, AuthorityError> {
        let authority = self.authority()?;
        Ok(authority
            .certificate(serial)
            .map_err(internal)?
            .map(|record| self.current(authority, record)))
    }

    fn client_certificate(&self, der: &[u8]) -> Result<Option<CurrentCertificate>, AuthorityError> {
        let Some(serial) = herald_token_client::certificate_serial(der) else {
            return Ok(None);
        };
        let authority = self.authority()?;
        let record = authority.certificate(&serial).map_err(internal)?;
        // The serial must name exactly this certificate, not another one with equal serial.
        Ok(record
            .filter(|r| r.der == der)
            .map(|record| self.current(authority, record)))
    }

    fn issue_renewal(
        &self,
        csr: &[u8],
        current: &CurrentCertificate,
        relays: &[Hop],
    ) -> Result<IssuedCertificate, AuthorityError> {
        let actor = format!("renewal:{}", current.issued.serial);
        let previous = current.issued.serial.clone();
        // The certificate carries the endpoint's current group (an operator may have changed
        // it since the last one was issued).
        self.issue(
            csr,
            &current.issued.name,
            None,
            &current.profile,
            &actor,
            &mut |tx, record| {
                tx.append_audit(&NewAuditEntry::now(
                    &actor,
                    "renew",
                    serde_json::json!({
                        "previous": previous,
                        "serial": record.serial.to_hex(),
                        "relays": relays,
                    }),
                ))?;
                Ok(())
            },
        )
    }

    fn audit(&self, actor: &str, action: &str, details: serde_json::Value) {
        let result = write_tx(self.store(), |tx| {
            tx.append_audit(&NewAuditEntry::now(actor, action, details.clone()))
        });
        if let Err(e) = result {
            tracing::error!(error = %e, action, "cannot audit a refusal");
        }
    }

    fn has_profile(&self, profile: &str) -> bool {
        self.profiles().contains_key(profile)
    }

    fn renewable(&self, profile: &str) -> bool {
        match &self.backing {
            Backing::Full(a) => a
                .config()
                .profiles
                .get(profile)
                .is_some_and(crate::core::policy::Profile::renews),
            Backing::StoreOnly { .. } => false,
        }
    }
}

/// A token as `token list --json` and `GET /api/v1/tokens` show it: its record and status.
#[derive(Debug, serde::Serialize)]
pub(crate) struct TokenView<'a> {
    #[serde(flatten)]
    token: &'a TokenRecord,
    status: &'static str,
}

/// The view of `token` in `status`.
pub(crate) fn token_json(token: &TokenRecord, status: TokenStatus) -> TokenView<'_> {
    TokenView {
        token,
        status: status.as_str(),
    }
}

/// The discovery document (`/.well-known/herald`): the CA certificates and where endpoints
/// enroll, renew, report and update (see [`Config::api_base`]).
pub(crate) fn discovery_document(authority: &Authority) -> Discovery {
    let pem = crate::model::encoding::pem_certificate;
    let config = authority.config();
    let base = config.api_base();
    let mut repository_urls = config.enrollment.repository_urls.clone();
    if let (true, true, Some(base)) = (
        repository_urls.is_empty(),
        config.repository.is_some(),
        &base,
    ) {
        repository_urls.push(format!("{base}{}/", crate::core::config::REPO_PATH));
    }
    let url = |path: &str| base.as_ref().map(|base| format!("{base}{path}"));
    Discovery {
        root_pem: pem(authority.root_der()),
        intermediate_pem: Some(pem(authority.intermediate_der())),
        enroll_url: url("/api/v1/enroll"),
        renew_url: url("/api/v1/renew"),
        status_url: url("/api/v1/status"),
        ocsp_url: Some(config.ocsp_url()),
        crl_url: Some(config.crl_url(ISSUER_ID)),
        repository_urls,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn csr_der() -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .serialize_request(&key)
            .unwrap()
            .der()
            .to_vec()
    }

    #[test]
    fn remembered_verification_serves_only_the_same_bytes_once() {
        let good = csr_der();
        let mut forged = good.clone();
        let last = forged.len() - 1;
        forged[last] ^= 1; // the signature's last byte
        let spki = verify_and_remember(&good).unwrap().spki_der;
        // Other bytes are verified, not taken from what was remembered.
        assert!(matches!(verified(&forged), Err(CsrError::BadSignature)));
        // The same bytes are taken from it, once.
        verify_and_remember(&good).unwrap();
        assert_eq!(verified(&good).unwrap().spki_der, spki);
        assert!(LAST_VERIFIED.with(|last| last.borrow().is_none()));
        assert!(matches!(verified(&forged), Err(CsrError::BadSignature)));
    }
}
