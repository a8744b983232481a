//! The enrollment rules, on top of the narrow [`Authority`] interface.

use std::net::IpAddr;
use std::sync::Arc;

use herald_token_client::{rfc3339, sha256_hex, Proof, ProofError, Purpose, ReplayGuard};
use herald_wire::{EnrollRequest, Group, IssuedCertificate, RenewRequest, Serial, PROOF_HEADER};
use serde::{Deserialize, Serialize};

use crate::guard::{AddressLimiter, EnrollmentLimits, UnknownTokenLog};
use crate::refusal::Refusal;
use crate::token::{
    hash_secret, new_secret, parse_ttl, token_status, validate_base, CreatedToken, TokenRecord,
    TokenStatus, DEFAULT_TTL_SECS,
};

/// The profile of relay certificates: only their holders may carry requests for others (and
/// name themselves in the relay chain).
pub const RELAY_PROFILE: &str = "relay";

/// Most relays one request may pass through.
pub const MAX_RELAY_HOPS: usize = 8;

/// What the authority reports when it cannot do what the token service asked.
#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    /// The certificate request is malformed or its signature (proof of possession) is wrong.
    #[error("{0}")]
    BadRequest(String),
    /// The profile's policy refuses the request (key type, unknown profile).
    #[error("{0}")]
    Policy(String),
    /// The token was burnt or revoked by a concurrent request: nothing was recorded.
    #[error("the token was used or revoked concurrently")]
    Conflict,
    /// Anything else (store, signing): logged, reported as an internal error.
    #[error("{0}")]
    Internal(String),
}

/// A certificate the authority issued earlier, with its state.
#[derive(Debug, Clone)]
pub struct CurrentCertificate {
    /// The certificate as it was issued.
    pub issued: IssuedCertificate,
    /// Its profile.
    pub profile: String,
    /// notAfter, Unix seconds.
    pub not_after: i64,
    /// True once revoked.
    pub revoked: bool,
}

/// The authority as the token service needs it. Every method that writes is one transaction
/// of the authority's store, with its audit entry.
pub trait Authority: Send + Sync + 'static {
    /// Parses a PKCS#10 request, verifies its signature (proof of possession) and returns the
    /// DER SubjectPublicKeyInfo.
    fn verify_request(&self, csr: &[u8]) -> Result<Vec<u8>, AuthorityError>;
    /// In one transaction: allocates the next unique name `BASE-NNNN` for `token.base`
    /// (never a name a certificate or token ever had), records the token and audits it.
    /// Returns the name. Refuses ([`AuthorityError::Policy`]) a group the profile's
    /// certificates cannot carry.
    fn create_token(&self, token: &NewToken<'_>, actor: &str) -> Result<String, AuthorityError>;
    /// The token whose secret hashes to `secret_hash`.
    fn token_by_hash(&self, secret_hash: &str) -> Result<Option<TokenRecord>, AuthorityError>;
    /// Every token, oldest first.
    fn list_tokens(&self) -> Result<Vec<TokenRecord>, AuthorityError>;
    /// Revokes a pending token; `false` if it is unknown, used or already revoked.
    fn revoke_token(&self, id: &str, actor: &str) -> Result<bool, AuthorityError>;
    /// Issues a certificate for `token.name` under `token.profile` from `csr`, and burns the
    /// token in the same transaction that records the certificate. If the token was used or
    /// revoked meanwhile, returns [`AuthorityError::Conflict`] and records nothing.
    /// `relays` (nearest the endpoint first) carried the request; they are audited.
    fn issue_for_token(
        &self,
        csr: &[u8],
        token: &TokenRecord,
        spki_sha256: &str,
        relays: &[Hop],
    ) -> Result<IssuedCertificate, AuthorityError>;
    /// The certificate with this serial.
    fn certificate(&self, serial: &Serial) -> Result<Option<CurrentCertificate>, AuthorityError>;
    /// The issued certificate matching a client certificate (DER) presented over TLS.
    fn client_certificate(&self, der: &[u8]) -> Result<Option<CurrentCertificate>, AuthorityError>;
    /// Issues a new certificate with the name and profile of `current`; `relays` carried the
    /// request and are audited.
    fn issue_renewal(
        &self,
        csr: &[u8],
        current: &CurrentCertificate,
        relays: &[Hop],
    ) -> Result<IssuedCertificate, AuthorityError>;
    /// Appends an audit entry (refusals); a failure is logged, not returned.
    fn audit(&self, actor: &str, action: &str, details: serde_json::Value);
    /// Whether `profile` exists.
    fn has_profile(&self, profile: &str) -> bool;
    /// Whether certificates of `profile` may renew through the API.
    fn renewable(&self, profile: &str) -> bool;
}

/// A relay that carried a request, as the authority verified it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hop {
    /// The relay's certificate name.
    pub name: String,
    /// Its certificate serial.
    pub serial: Serial,
}

/// Who handed a request to this server: the client certificate of the TLS connection (DER)
/// and the relay chain it claims (the [`herald_wire::RELAY_CHAIN`] header).
#[derive(Debug, Clone, Default)]
pub struct Carrier {
    /// The TLS client certificate, DER.
    pub peer: Option<Arc<Vec<u8>>>,
    /// The relay chain header, as received.
    pub relay_chain: Option<String>,
}

/// The certificate a request was proved for, and the relays that carried it.
#[derive(Debug, Clone)]
pub struct Proved {
    /// The certificate whose key signed the proof (issued here, valid, unrevoked).
    pub certificate: CurrentCertificate,
    /// The relays that carried the request, nearest the endpoint first.
    pub relays: Vec<Hop>,
}

/// `POST /api/v1/tokens` body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTokenRequest {
    /// Base name.
    pub name: String,
    /// Time to live (`24h`, `90m`, `7d`); default 24 hours.
    #[serde(default)]
    pub ttl: Option<String>,
    /// Profile; default `endpoint`.
    #[serde(default)]
    pub profile: Option<String>,
    /// The group the endpoint joins (see [`Group`]); default `default`.
    #[serde(default)]
    pub group: Option<String>,
}

/// A token for the authority to record ([`Authority::create_token`]).
#[derive(Debug, Clone, Copy)]
pub struct NewToken<'a> {
    /// The base name (lower case, checked); the authority appends the number.
    pub base: &'a str,
    /// The issuance profile (one the authority has).
    pub profile: &'a str,
    /// The group the enrolling endpoint joins.
    pub group: &'a Group,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
    /// Public identifier.
    pub id: &'a str,
    /// SHA-256 (hex) of the secret.
    pub secret_hash: &'a str,
}

/// The token service: the rules of token creation, enrollment and renewal.
#[derive(Clone)]
pub struct TokenService {
    authority: Arc<dyn Authority>,
    guard: Arc<Guard>,
    replay: ReplayGuard,
}

/// What protects the service from anonymous clients (see [`crate::guard`]).
#[derive(Debug)]
struct Guard {
    limiter: Arc<AddressLimiter>,
    unknown_tokens: UnknownTokenLog,
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenService")
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl From<AuthorityError> for Refusal {
    fn from(e: AuthorityError) -> Self {
        match e {
            AuthorityError::BadRequest(m) => Refusal::bad_request("bad_csr", m),
            AuthorityError::Policy(m) => Refusal::new(422, "policy", m),
            AuthorityError::Conflict => Refusal::new(409, "token_used", "the token is used"),
            AuthorityError::Internal(m) => Refusal::internal(&m),
        }
    }
}

impl TokenService {
    /// A service over `authority`, with the default [`EnrollmentLimits`].
    pub fn new(authority: Arc<dyn Authority>) -> Self {
        Self::with_limits(authority, EnrollmentLimits::default())
    }

    /// A service over `authority` with these per-address limits, and its own memory of used
    /// proofs (clones of the service share both).
    pub fn with_limits(authority: Arc<dyn Authority>, limits: EnrollmentLimits) -> Self {
        let unknown_tokens = UnknownTokenLog::new(limits.unknown_token_audit_secs);
        Self {
            authority,
            guard: Arc::new(Guard {
                limiter: Arc::new(AddressLimiter::new(limits)),
                unknown_tokens,
            }),
            replay: ReplayGuard::default(),
        }
    }

    /// The per-address rate limiter of enrollment and renewal.
    pub fn limiter(&self) -> &Arc<AddressLimiter> {
        &self.guard.limiter
    }

    /// Enrollments refused for an unknown token since start.
    pub fn unknown_token_refusals(&self) -> u64 {
        self.guard.unknown_tokens.total()
    }

    /// Writes one audit entry per source whose interval of unknown-token refusals is over
    /// (every pending one with `all`, e.g. at shutdown). Call it periodically; enrollments
    /// call it too.
    pub fn flush_refusal_audit(&self, all: bool) {
        for summary in self.guard.unknown_tokens.take_due(now(), all) {
            self.authority.audit(
                "endpoint",
                "enroll-refused-unknown-tokens",
                serde_json::to_value(&summary).unwrap_or_default(),
            );
        }
    }

    /// The authority.
    pub fn authority(&self) -> &Arc<dyn Authority> {
        &self.authority
    }

    /// Creates a token: allocates the unique name, stores the hash, returns the secret once.
    pub fn create_token(
        &self,
        request: &NewTokenRequest,
        actor: &str,
    ) -> Result<CreatedToken, Refusal> {
        // DNS names ignore case: `Web` and `web` share one sequence of names.
        let base = request.name.trim().to_ascii_lowercase();
        let base = base.as_str();
        validate_base(base).map_err(|e| Refusal::bad_request("bad_name", e.to_string()))?;
        let ttl = match request.ttl.as_deref() {
            Some(ttl) => {
                parse_ttl(ttl).map_err(|e| Refusal::bad_request("bad_ttl", e.to_string()))?
            }
            None => DEFAULT_TTL_SECS,
        };
        let profile = request.profile.as_deref().unwrap_or("endpoint");
        if !self.authority.has_profile(profile) {
            return Err(Refusal::bad_request(
                "unknown_profile",
                format!("no profile named {profile}"),
            ));
        }
        let group = match request.group.as_deref() {
            Some(group) => {
                Group::new(group).map_err(|e| Refusal::bad_request("bad_group", e.to_string()))?
            }
            None => Group::default(),
        };
        let (id, secret) = new_secret().map_err(|e| Refusal::internal(&e))?;
        let expires_at = now() + ttl;
        let name = self.authority.create_token(
            &NewToken {
                base,
                profile,
                group: &group,
                expires_at,
                id: &id,
                secret_hash: &hash_secret(&secret),
            },
            actor,
        )?;
        Ok(CreatedToken {
            id,
            token: secret,
            name,
            expires_at: rfc3339(expires_at),
            profile: profile.to_owned(),
            group,
        })
    }

    /// Every token with its status now.
    pub fn list_tokens(&self) -> Result<Vec<(TokenRecord, TokenStatus)>, Refusal> {
        let at = now();
        Ok(self
            .authority
            .list_tokens()?
            .into_iter()
            .map(|t| {
                let status = token_status(&t, at);
                (t, status)
            })
            .collect())
    }

    /// Refuses with `refusal`, auditing it.
    fn refuse(&self, action: &str, refusal: Refusal, details: serde_json::Value) -> Refusal {
        let mut details = details;
        details["code"] = serde_json::Value::String(refusal.code().to_owned());
        self.authority.audit("endpoint", action, details);
        refusal
    }

    /// Trades a token and a certificate request for a certificate (see the crate docs);
    /// `carrier` handed it over (relays are audited).
    pub fn enroll(
        &self,
        carrier: &Carrier,
        request: &EnrollRequest,
    ) -> Result<IssuedCertificate, Refusal> {
        self.enroll_from(carrier, request, None)
    }

    /// [`TokenService::enroll`] for a client at `source`. A refusal for an unknown token is
    /// not audited one by one (anyone can send those, as fast as they like): it is counted and
    /// gathered into one audit entry per source and interval.
    pub fn enroll_from(
        &self,
        carrier: &Carrier,
        request: &EnrollRequest,
        source: Option<IpAddr>,
    ) -> Result<IssuedCertificate, Refusal> {
        self.flush_refusal_audit(false);
        let relays = self.relays(carrier, "enroll-refused")?;
        let token = self
            .authority
            .token_by_hash(&hash_secret(&request.token))?
            .ok_or_else(|| {
                let source = source.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
                self.guard.unknown_tokens.record(&source, now());
                Refusal::new(401, "invalid_token", "unknown enrollment token")
            })?;
        let mut audit = serde_json::json!({"token": token.id, "name": token.name});
        if !relays.is_empty() {
            audit["relays"] = serde_json::json!(relays);
        }
        let spki = self
            .authority
            .verify_request(request.csr.as_bytes())
            .map_err(|e| self.refuse("enroll-refused", e.into(), audit.clone()))?;
        let spki_sha256 = sha256_hex(&spki);
        match token_status(&token, now()) {
            TokenStatus::Pending => {}
            TokenStatus::Used => return self.retry_or_refuse(&token, &spki_sha256, audit),
            TokenStatus::Expired => {
                return Err(self.refuse(
                    "enroll-refused",
                    Refusal::new(403, "token_expired", "the enrollment token has expired"),
                    audit,
                ))
            }
            TokenStatus::Revoked => {
                return Err(self.refuse(
                    "enroll-refused",
                    Refusal::new(403, "token_revoked", "the enrollment token was revoked"),
                    audit,
                ))
            }
        }
        match self
            .authority
            .issue_for_token(request.csr.as_bytes(), &token, &spki_sha256, &relays)
        {
            Ok(issued) => Ok(issued),
            Err(AuthorityError::Conflict) => {
                // Burnt concurrently: by this same key (a retry racing the original) or not.
                let token = self
                    .authority
                    .token_by_hash(&hash_secret(&request.token))?
                    .ok_or_else(|| Refusal::internal(&"token vanished"))?;
                self.retry_or_refuse(&token, &spki_sha256, audit)
            }
            Err(e) => Err(self.refuse("enroll-refused", e.into(), audit)),
        }
    }

    /// A used token: the same certificate again for the same key (lost response), else a
    /// refusal.
    fn retry_or_refuse(
        &self,
        token: &TokenRecord,
        spki_sha256: &str,
        audit: serde_json::Value,
    ) -> Result<IssuedCertificate, Refusal> {
        if token.spki_sha256.as_deref() == Some(spki_sha256) {
            if let Some(serial) = &token.serial {
                if let Some(current) = self.authority.certificate(serial)? {
                    if !current.revoked {
                        return Ok(current.issued);
                    }
                }
            }
        }
        Err(self.refuse(
            "enroll-refused",
            Refusal::new(
                409,
                "token_used",
                "the enrollment token was already used for another key",
            ),
            audit,
        ))
    }

    /// The relays that carried a request, checked: with a relay chain, the TLS client must
    /// hold a valid `relay` certificate named last in the chain, and every relay named before
    /// it must hold one too. The chain is what the last relay claims (each relay checks the
    /// entry of the one before it against its TLS client); it grants nothing but an audit
    /// record.
    fn relays(&self, carrier: &Carrier, refused: &str) -> Result<Vec<Hop>, Refusal> {
        let Some(chain) = &carrier.relay_chain else {
            return Ok(Vec::new());
        };
        let not_a_relay = |what: &str| {
            Refusal::new(
                403,
                "not_a_relay",
                format!("{what} is not a valid relay certificate of this CA"),
            )
        };
        // Refusals are audited only for clients this CA knows: anonymous ones write nothing.
        let sender = match &carrier.peer {
            Some(der) => self.authority.client_certificate(der)?,
            None => None,
        }
        .ok_or_else(|| not_a_relay("the client that sent a relay chain"))?;
        let audit = serde_json::json!({
            "relay_chain": chain,
            "sender": sender.issued.serial,
            "sender_name": sender.issued.name,
        });
        let Some(serials) = chain_serials(chain) else {
            return Err(self.refuse(
                refused,
                Refusal::bad_request(
                    "bad_relay_chain",
                    format!(
                        "the relay chain must list 1 to {MAX_RELAY_HOPS} certificate serials (hex)"
                    ),
                ),
                serde_json::json!({"sender": sender.issued.serial}),
            ));
        };
        let valid_relay = |c: &CurrentCertificate| {
            c.profile == RELAY_PROFILE && !c.revoked && now() < c.not_after
        };
        let last = Some(sender).filter(valid_relay).ok_or_else(|| {
            self.refuse(
                refused,
                not_a_relay("the client that sent a relay chain"),
                audit.clone(),
            )
        })?;
        let mut hops = Vec::with_capacity(serials.len());
        for (i, serial) in serials.iter().enumerate() {
            let is_last = i + 1 == serials.len();
            let hop = self
                .authority
                .certificate(serial)?
                .filter(valid_relay)
                .filter(|c| !is_last || c.issued.serial == last.issued.serial)
                .ok_or_else(|| {
                    let refusal = not_a_relay(&format!("relay chain entry {serial}"));
                    self.refuse(refused, refusal, audit.clone())
                })?;
            hops.push(Hop {
                name: hop.issued.name,
                serial: hop.issued.serial,
            });
        }
        Ok(hops)
    }

    /// Checks the end-to-end proof of a request (renewal or status report): the proof in
    /// `proof_header` must cover `purpose` and `body`, be fresh and unused, and be signed with
    /// the key of a certificate this CA issued that is neither revoked nor expired. Without
    /// relays, the TLS client must be that certificate itself.
    pub fn prove(
        &self,
        purpose: Purpose,
        carrier: &Carrier,
        proof_header: Option<&[u8]>,
        body: &[u8],
    ) -> Result<Proved, Refusal> {
        let refused = match purpose {
            Purpose::Renew => "renew-refused",
            Purpose::Status => "status-refused",
        };
        let relays = self.relays(carrier, refused)?;
        if relays.is_empty() && carrier.peer.is_none() {
            return Err(Refusal::new(
                401,
                "client_certificate_required",
                "this needs mutual TLS with the current certificate, or a relay",
            ));
        }
        let mut audit = serde_json::json!({});
        if !relays.is_empty() {
            audit["relays"] = serde_json::json!(relays);
        }
        let header = proof_header.ok_or_else(|| {
            self.refuse(
                refused,
                Refusal::new(
                    401,
                    "proof_required",
                    format!(
                        "sign the request with the current key ({} header)",
                        PROOF_HEADER
                    ),
                ),
                audit.clone(),
            )
        })?;
        let at = now();
        let verified = Proof::from_header(header)
            .and_then(|p| p.verify(purpose, body, at))
            .map_err(|e| self.refuse(refused, proof_refusal(&e), audit.clone()))?;
        let current = self
            .authority
            .client_certificate(&verified.certificate_der)?
            .ok_or_else(|| {
                self.refuse(
                    refused,
                    Refusal::new(
                        403,
                        "unknown_certificate",
                        "this CA did not issue the certificate of the proof",
                    ),
                    audit.clone(),
                )
            })?;
        audit["serial"] = current.issued.serial.to_hex().into();
        audit["name"] = current.issued.name.clone().into();
        if current.revoked {
            return Err(self.refuse(
                refused,
                Refusal::new(
                    403,
                    "certificate_revoked",
                    "the current certificate is revoked",
                ),
                audit,
            ));
        }
        if at >= current.not_after {
            return Err(self.refuse(
                refused,
                Refusal::new(
                    403,
                    "certificate_expired",
                    "the current certificate has expired",
                ),
                audit,
            ));
        }
        if relays.is_empty() && carrier.peer.as_deref() != Some(&verified.certificate_der) {
            return Err(self.refuse(
                refused,
                Refusal::new(
                    403,
                    "not_a_relay",
                    "the client certificate is neither the one of the proof nor a relay's",
                ),
                audit,
            ));
        }
        self.replay
            .admit(&verified, at)
            .map_err(|e| self.refuse(refused, proof_refusal(&e), audit.clone()))?;
        Ok(Proved {
            certificate: current,
            relays,
        })
    }

    /// A new certificate for the name of the certificate whose key signed the proof: `body`
    /// is the [`RenewRequest`] exactly as received, `proof_header` the proof over it.
    pub fn renew(
        &self,
        carrier: &Carrier,
        proof_header: Option<&[u8]>,
        body: &[u8],
    ) -> Result<IssuedCertificate, Refusal> {
        let request: RenewRequest = serde_json::from_slice(body)
            .map_err(|e| Refusal::bad_request("bad_json", e.to_string()))?;
        let Proved {
            certificate: current,
            relays,
        } = self.prove(Purpose::Renew, carrier, proof_header, body)?;
        let mut audit =
            serde_json::json!({"serial": current.issued.serial, "name": current.issued.name});
        if !relays.is_empty() {
            audit["relays"] = serde_json::json!(relays);
        }
        if !self.authority.renewable(&current.profile) {
            return Err(self.refuse(
                "renew-refused",
                Refusal::new(
                    403,
                    "not_renewable",
                    format!(
                        "certificates of the {} profile do not renew through this API",
                        current.profile
                    ),
                ),
                audit,
            ));
        }
        self.authority
            .verify_request(request.csr.as_bytes())
            .map_err(|e| self.refuse("renew-refused", e.into(), audit.clone()))?;
        self.authority
            .issue_renewal(request.csr.as_bytes(), &current, &relays)
            .map_err(|e| self.refuse("renew-refused", e.into(), audit))
    }
}

/// The serials of a relay chain header: 1 to [`MAX_RELAY_HOPS`] entries, each plain hex.
fn chain_serials(chain: &str) -> Option<Vec<Serial>> {
    let entries: Vec<&str> = chain.split(',').map(str::trim).collect();
    if entries.len() > MAX_RELAY_HOPS {
        return None;
    }
    entries
        .into_iter()
        .map(|s| {
            let plain_hex =
                !s.is_empty() && s.len() <= 40 && s.bytes().all(|b| b.is_ascii_hexdigit());
            plain_hex.then(|| Serial::from_hex(s).ok()).flatten()
        })
        .collect()
}

/// The answer to a refused proof.
fn proof_refusal(e: &ProofError) -> Refusal {
    match e {
        ProofError::Malformed(_) | ProofError::Mismatch(_) => {
            Refusal::bad_request("bad_proof", e.to_string())
        }
        ProofError::Stale { .. } => Refusal::new(403, "stale_proof", e.to_string()),
        ProofError::Replayed => Refusal::new(403, "replayed_proof", e.to_string()),
        ProofError::UnsupportedKey(_) | ProofError::BadSignature => {
            Refusal::new(403, "bad_proof", e.to_string())
        }
        ProofError::Busy => Refusal::new(503, "busy", e.to_string()),
        ProofError::Sign(_) => Refusal::internal(e),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Mutex;

    use super::*;

    /// An in-memory authority: requests are `csr:<key>` (the key stands for the public key;
    /// `bad` fails proof of possession), certificates are `cert:<serial>`.
    #[derive(Default)]
    struct Fake {
        tokens: Mutex<Vec<(String, TokenRecord)>>,
        certs: Mutex<Vec<CurrentCertificate>>,
        audits: Mutex<Vec<String>>,
        /// Burn the token behind the caller's back before issuing (a concurrent winner).
        race: Mutex<Option<String>>,
        /// Real certificates (DER) standing for the serials of `certs`.
        ders: Mutex<std::collections::HashMap<Vec<u8>, Serial>>,
    }

    impl Authority for Fake {
        fn verify_request(&self, csr: &[u8]) -> Result<Vec<u8>, AuthorityError> {
            match std::str::from_utf8(csr).unwrap().strip_prefix("csr:") {
                Some("bad") | None => Err(AuthorityError::BadRequest("bad signature".into())),
                Some(key) => Ok(key.as_bytes().to_vec()),
            }
        }
        fn create_token(
            &self,
            token: &NewToken<'_>,
            _actor: &str,
        ) -> Result<String, AuthorityError> {
            let mut tokens = self.tokens.lock().unwrap();
            let name = format!("{}-{:04}", token.base, tokens.len() + 1);
            tokens.push((
                token.secret_hash.to_owned(),
                TokenRecord {
                    id: token.id.into(),
                    name: name.clone(),
                    profile: token.profile.into(),
                    group: token.group.clone(),
                    expires_at: token.expires_at,
                    used_at: None,
                    serial: None,
                    spki_sha256: None,
                    revoked_at: None,
                },
            ));
            Ok(name)
        }
        fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>, AuthorityError> {
            let tokens = self.tokens.lock().unwrap();
            Ok(tokens
                .iter()
                .find(|(h, _)| h == hash)
                .map(|(_, t)| t.clone()))
        }
        fn list_tokens(&self) -> Result<Vec<TokenRecord>, AuthorityError> {
            Ok(self
                .tokens
                .lock()
                .unwrap()
                .iter()
                .map(|t| t.1.clone())
                .collect())
        }
        fn revoke_token(&self, id: &str, _actor: &str) -> Result<bool, AuthorityError> {
            let mut tokens = self.tokens.lock().unwrap();
            let t = tokens.iter_mut().find(|(_, t)| t.id == id).unwrap();
            t.1.revoked_at = Some(1);
            Ok(true)
        }
        fn issue_for_token(
            &self,
            csr: &[u8],
            token: &TokenRecord,
            spki_sha256: &str,
            _relays: &[Hop],
        ) -> Result<IssuedCertificate, AuthorityError> {
            if let Some(other) = self.race.lock().unwrap().take() {
                let mut tokens = self.tokens.lock().unwrap();
                let t = tokens.iter_mut().find(|(_, t)| t.id == token.id).unwrap();
                t.1.used_at = Some(1);
                t.1.spki_sha256 = Some(sha256_hex(other.as_bytes()));
                t.1.serial = Some(Serial::from_bytes(&[0x99]));
                return Err(AuthorityError::Conflict);
            }
            let mut certs = self.certs.lock().unwrap();
            let serial = Serial::from_hex(&format!("{:02x}", certs.len() + 1)).unwrap();
            let issued = IssuedCertificate {
                name: token.name.clone(),
                certificate_pem: format!("cert:{serial}:{}", String::from_utf8_lossy(csr)),
                chain_pem: String::new(),
                serial: serial.clone(),
                not_after: String::new(),
            };
            certs.push(CurrentCertificate {
                issued: issued.clone(),
                profile: token.profile.clone(),
                not_after: now() + 3600,
                revoked: false,
            });
            let mut tokens = self.tokens.lock().unwrap();
            let t = tokens.iter_mut().find(|(_, t)| t.id == token.id).unwrap();
            t.1.used_at = Some(now());
            t.1.serial = Some(serial);
            t.1.spki_sha256 = Some(spki_sha256.into());
            Ok(issued)
        }
        fn certificate(
            &self,
            serial: &Serial,
        ) -> Result<Option<CurrentCertificate>, AuthorityError> {
            let certs = self.certs.lock().unwrap();
            Ok(certs.iter().find(|c| c.issued.serial == *serial).cloned())
        }
        fn client_certificate(
            &self,
            der: &[u8],
        ) -> Result<Option<CurrentCertificate>, AuthorityError> {
            let serial = self.ders.lock().unwrap().get(der).cloned();
            match serial {
                Some(serial) => self.certificate(&serial),
                None => Ok(None),
            }
        }
        fn issue_renewal(
            &self,
            _csr: &[u8],
            current: &CurrentCertificate,
            _relays: &[Hop],
        ) -> Result<IssuedCertificate, AuthorityError> {
            Ok(current.issued.clone())
        }
        fn audit(&self, _actor: &str, action: &str, details: serde_json::Value) {
            self.audits.lock().unwrap().push(format!(
                "{action}:{}",
                details["code"].as_str().unwrap_or("")
            ));
        }
        fn has_profile(&self, profile: &str) -> bool {
            profile == "endpoint" || profile == RELAY_PROFILE
        }
        fn renewable(&self, profile: &str) -> bool {
            self.has_profile(profile)
        }
    }

    fn setup() -> (Arc<Fake>, TokenService, String) {
        let fake = Arc::new(Fake::default());
        let service = TokenService::new(fake.clone());
        let created = service
            .create_token(
                &NewTokenRequest {
                    name: "web".into(),
                    ..NewTokenRequest::default()
                },
                "test",
            )
            .unwrap();
        assert_eq!(created.name, "web-0001");
        (fake, service, created.token)
    }

    fn enroll(
        service: &TokenService,
        token: &str,
        key: &str,
    ) -> Result<IssuedCertificate, Refusal> {
        service.enroll(
            &Carrier::default(),
            &EnrollRequest {
                token: token.into(),
                csr: format!("csr:{key}"),
            },
        )
    }

    #[test]
    fn same_key_retry_gets_the_same_certificate_other_key_refused_and_audited() {
        let (fake, service, token) = setup();
        let first = enroll(&service, &token, "k1").unwrap();
        assert_eq!(enroll(&service, &token, "k1").unwrap(), first);
        let refused = enroll(&service, &token, "k2").unwrap_err();
        assert_eq!((refused.status(), refused.code()), (409, "token_used"));
        assert_eq!(
            fake.audits.lock().unwrap().last().unwrap(),
            "enroll-refused:token_used"
        );
    }

    #[test]
    fn unknown_revoked_and_bad_pop_refused() {
        let (fake, service, token) = setup();
        assert_eq!(
            enroll(&service, "nope", "k").unwrap_err().code(),
            "invalid_token"
        );
        assert_eq!(
            enroll(&service, &token, "bad").unwrap_err().code(),
            "bad_csr"
        );
        let id = fake.tokens.lock().unwrap()[0].1.id.clone();
        fake.revoke_token(&id, "test").unwrap();
        assert_eq!(
            enroll(&service, &token, "k").unwrap_err().code(),
            "token_revoked"
        );
        assert_eq!(
            fake.audits.lock().unwrap().len(),
            2,
            "every refusal with a real token audited"
        );
        assert_eq!(
            service.unknown_token_refusals(),
            1,
            "the unknown one counted"
        );
        service.flush_refusal_audit(true);
        assert_eq!(
            fake.audits.lock().unwrap().last().unwrap(),
            "enroll-refused-unknown-tokens:",
            "and audited in aggregate"
        );
    }

    #[test]
    fn lost_race_for_the_token_refused_unless_same_key() {
        let (fake, service, token) = setup();
        *fake.race.lock().unwrap() = Some("winner".into());
        let refused = enroll(&service, &token, "loser").unwrap_err();
        assert_eq!(refused.code(), "token_used");
    }

    #[test]
    fn bad_token_requests_refused() {
        let (_, service, _) = setup();
        let request = |name: &str, ttl: Option<&str>, profile: Option<&str>| NewTokenRequest {
            name: name.into(),
            ttl: ttl.map(str::to_owned),
            profile: profile.map(str::to_owned),
            group: None,
        };
        let code = |r: NewTokenRequest| service.create_token(&r, "t").unwrap_err().code();
        assert_eq!(code(request("bad name", None, None)), "bad_name");
        let upper = service
            .create_token(&request("WEB", None, None), "t")
            .unwrap();
        assert_eq!(upper.name, "web-0002", "bases are case-insensitive");
        assert_eq!(code(request("web", Some("forever"), None)), "bad_ttl");
        assert_eq!(code(request("web", None, Some("root"))), "unknown_profile");
    }

    #[test]
    fn token_carries_its_group_and_refuses_an_invalid_one() {
        let (fake, service, _) = setup();
        let with_group = |group: &str| NewTokenRequest {
            name: "kiosk".into(),
            group: Some(group.into()),
            ..NewTokenRequest::default()
        };
        let created = service.create_token(&with_group("pilot"), "t").unwrap();
        assert_eq!(created.group.as_str(), "pilot");
        let recorded = fake.tokens.lock().unwrap().last().unwrap().1.group.clone();
        assert_eq!(recorded.as_str(), "pilot");
        let refused = service
            .create_token(&with_group("Pilot Group"), "t")
            .unwrap_err();
        assert_eq!(refused.code(), "bad_group");
        let first = fake.tokens.lock().unwrap().first().unwrap().1.group.clone();
        assert!(first.is_default(), "no group asked: the default group");
    }

    /// Enrolls `key` and gives the certificate a real DER and private key, for proofs.
    fn enrolled_with_key(
        fake: &Fake,
        service: &TokenService,
        token: &str,
    ) -> (Vec<u8>, rcgen::KeyPair) {
        let issued = enroll(service, token, "k1").unwrap();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let der = rcgen::CertificateParams::new(vec!["web-0001".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .der()
            .to_vec();
        fake.ders.lock().unwrap().insert(der.clone(), issued.serial);
        (der, key)
    }

    fn renew_with(
        service: &TokenService,
        peer: Option<&[u8]>,
        chain: Option<&str>,
        proof: Option<&str>,
    ) -> Result<IssuedCertificate, Refusal> {
        let carrier = Carrier {
            peer: peer.map(|d| Arc::new(d.to_vec())),
            relay_chain: chain.map(str::to_owned),
        };
        service.renew(&carrier, proof.map(str::as_bytes), RENEW_BODY)
    }

    const RENEW_BODY: &[u8] = br#"{"csr":"csr:k2"}"#;

    fn proof(der: &[u8], key: &rcgen::KeyPair, at: i64) -> String {
        Proof::sign(Purpose::Renew, der, RENEW_BODY, key, at)
            .unwrap()
            .to_header()
    }

    #[test]
    fn renewal_needs_a_fresh_unused_proof_of_the_current_key() {
        let (fake, service, token) = setup();
        let (der, key) = enrolled_with_key(&fake, &service, &token);
        let fresh = proof(&der, &key, now());
        assert_eq!(
            renew_with(&service, Some(&der), None, Some(&fresh))
                .unwrap()
                .name,
            "web-0001"
        );
        let code = |r: Result<IssuedCertificate, Refusal>| r.unwrap_err().code();
        assert_eq!(
            code(renew_with(&service, Some(&der), None, Some(&fresh))),
            "replayed_proof"
        );
        assert_eq!(
            code(renew_with(&service, Some(&der), None, None)),
            "proof_required"
        );
        let stale = proof(&der, &key, now() - 3600);
        assert_eq!(
            code(renew_with(&service, Some(&der), None, Some(&stale))),
            "stale_proof"
        );
        assert_eq!(
            code(renew_with(
                &service,
                None,
                None,
                Some(&proof(&der, &key, now()))
            )),
            "client_certificate_required"
        );
        fake.certs.lock().unwrap()[0].revoked = true;
        assert_eq!(
            code(renew_with(
                &service,
                Some(&der),
                None,
                Some(&proof(&der, &key, now()))
            )),
            "certificate_revoked"
        );
        assert!(fake
            .audits
            .lock()
            .unwrap()
            .contains(&"renew-refused:replayed_proof".to_owned()));
    }

    #[test]
    fn relay_chain_from_a_non_relay_and_unrenewable_profiles_refused() {
        let (fake, service, token) = setup();
        let (der, key) = enrolled_with_key(&fake, &service, &token);
        // The endpoint claims to be a relay carrying its own request.
        let refused = renew_with(
            &service,
            Some(&der),
            Some("01"),
            Some(&proof(&der, &key, now())),
        )
        .unwrap_err();
        assert_eq!((refused.status(), refused.code()), (403, "not_a_relay"));
        let refused = renew_with(&service, Some(&der), Some("zz"), None).unwrap_err();
        assert_eq!(refused.code(), "bad_relay_chain");
        fake.certs.lock().unwrap()[0].profile = "server".into();
        let refused =
            renew_with(&service, Some(&der), None, Some(&proof(&der, &key, now()))).unwrap_err();
        assert_eq!(refused.code(), "not_renewable");
    }
}
