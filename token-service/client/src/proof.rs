//! End-to-end proofs: an endpoint authorises a renewal or a status report by signing, with the
//! private key of its current certificate, a statement that binds that certificate, the exact
//! request body, a purpose, a fresh time and a random nonce. Whoever carries the request
//! (relays, proxies) cannot change it or claim it for another certificate; the authority
//! checks the proof and refuses stale and replayed ones.
//!
//! The proof travels in the [`herald_wire::PROOF_HEADER`] header as base64 of its JSON, so the
//! body is forwarded byte for byte. The signed statement is
//!
//! ```text
//! herald-proof-v1\n{purpose}\n{SHA-256 of the certificate DER, hex}\n{SHA-256 of the body, hex}\n{timestamp}\n{nonce}
//! ```
//!
//! Key types: ECDSA P-256 (SHA-256) as `herald-update` and relays generate, ECDSA P-384
//! (SHA-384), Ed25519 and RSA PKCS#1 v1.5 (SHA-256).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use der::Decode;
use serde::{Deserialize, Serialize};

use crate::certs::sha256_hex;

/// How far a proof's time may be from the authority's clock, in seconds (either way).
pub const MAX_SKEW_SECS: i64 = 300;

/// Most proofs remembered at once against replay (a bound on memory).
const MAX_REMEMBERED: usize = 1_000_000;

/// Largest header value accepted, in bytes.
const MAX_HEADER_BYTES: usize = 16 * 1024;

const STATEMENT_VERSION: &str = "herald-proof-v1";

/// What a proof authorises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `POST /api/v1/renew`: the body holds the request for the new key.
    Renew,
    /// `POST /api/v1/status`: the body is the status report.
    Status,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Renew => "renew",
            Purpose::Status => "status",
        }
    }
}

/// Why a proof was refused or could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[allow(missing_docs)] // fields are named for what they hold
pub enum ProofError {
    /// The header is not base64 of the proof's JSON, or a field is malformed.
    #[error("malformed proof: {0}")]
    Malformed(String),
    /// The proof is for another purpose or another body than the request it came with.
    #[error("the proof does not cover this request ({0})")]
    Mismatch(&'static str),
    /// Its time is too far from the authority's clock.
    #[error("the proof is stale or from the future: made at {made}, now is {now} (allowed skew {MAX_SKEW_SECS} s)")]
    Stale { made: i64, now: i64 },
    /// The certificate's key type cannot sign proofs.
    #[error("unsupported key type for proofs: {0}")]
    UnsupportedKey(String),
    /// The signature does not verify with the certificate's public key.
    #[error("the proof's signature does not verify with the certificate's key")]
    BadSignature,
    /// The same proof was already used.
    #[error("the proof was already used")]
    Replayed,
    /// Too many proofs are remembered; try again later.
    #[error("too many recent proofs; try again later")]
    Busy,
    /// Signing failed.
    #[error("signing the proof failed: {0}")]
    Sign(String),
}

/// A proof as it travels (JSON, then base64 in the header).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Proof {
    /// `renew` or `status`.
    pub purpose: String,
    /// The current certificate, base64 DER.
    pub certificate: String,
    /// SHA-256 of the request body, hex.
    pub body_sha256: String,
    /// When the proof was made, Unix seconds.
    pub timestamp: i64,
    /// 16 random bytes, hex.
    pub nonce: String,
    /// The signature over the statement, base64.
    pub signature: String,
}

/// A proof whose signature verified, for the certificate it names.
#[derive(Debug, Clone)]
pub struct VerifiedProof {
    /// The certificate the proof was made with, DER (its issuer and state are for the
    /// authority to check).
    pub certificate_der: Vec<u8>,
    replay_key: String,
    expires: i64,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn statement(purpose: &str, cert_der: &[u8], body_sha256: &str, at: i64, nonce: &str) -> Vec<u8> {
    format!(
        "{STATEMENT_VERSION}\n{purpose}\n{}\n{body_sha256}\n{at}\n{nonce}",
        sha256_hex(cert_der)
    )
    .into_bytes()
}

impl Proof {
    /// Signs a proof for `body` with `key`, the private key of the certificate `cert_der`, at
    /// time `now` (Unix seconds).
    pub fn sign(
        purpose: Purpose,
        cert_der: &[u8],
        body: &[u8],
        key: &rcgen::KeyPair,
        now: i64,
    ) -> Result<Self, ProofError> {
        use rcgen::SigningKey;
        use ring::rand::SecureRandom;
        let mut nonce = [0u8; 16];
        ring::rand::SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| ProofError::Sign("random generator failed".into()))?;
        let nonce = hex::encode(nonce);
        let body_sha256 = sha256_hex(body);
        let message = statement(purpose.as_str(), cert_der, &body_sha256, now, &nonce);
        let signature = key
            .sign(&message)
            .map_err(|e| ProofError::Sign(e.to_string()))?;
        Ok(Self {
            purpose: purpose.as_str().to_owned(),
            certificate: b64().encode(cert_der),
            body_sha256,
            timestamp: now,
            nonce,
            signature: b64().encode(signature),
        })
    }

    /// The header value: base64 of the JSON.
    pub fn to_header(&self) -> String {
        // A struct of strings and an integer always serialises.
        b64().encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Parses a header value.
    pub fn from_header(value: &[u8]) -> Result<Self, ProofError> {
        if value.len() > MAX_HEADER_BYTES {
            return Err(ProofError::Malformed(format!(
                "larger than {MAX_HEADER_BYTES} bytes"
            )));
        }
        let json = b64()
            .decode(value.trim_ascii())
            .map_err(|e| ProofError::Malformed(format!("not base64: {e}")))?;
        serde_json::from_slice(&json).map_err(|e| ProofError::Malformed(e.to_string()))
    }

    /// Checks that the proof covers `purpose` and `body`, is fresh at `now`, and that its
    /// signature verifies with the public key of the certificate it carries.
    pub fn verify(
        &self,
        purpose: Purpose,
        body: &[u8],
        now: i64,
    ) -> Result<VerifiedProof, ProofError> {
        if self.purpose != purpose.as_str() {
            return Err(ProofError::Mismatch("purpose"));
        }
        if self.body_sha256 != sha256_hex(body) {
            return Err(ProofError::Mismatch("body"));
        }
        if self.nonce.len() != 32 || !self.nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ProofError::Malformed(
                "the nonce is not 16 bytes of hex".into(),
            ));
        }
        if (now - self.timestamp).abs() > MAX_SKEW_SECS {
            return Err(ProofError::Stale {
                made: self.timestamp,
                now,
            });
        }
        let cert_der = b64()
            .decode(&self.certificate)
            .map_err(|e| ProofError::Malformed(format!("certificate not base64: {e}")))?;
        let signature = b64()
            .decode(&self.signature)
            .map_err(|e| ProofError::Malformed(format!("signature not base64: {e}")))?;
        let cert = x509_cert::Certificate::from_der(&cert_der)
            .map_err(|e| ProofError::Malformed(format!("certificate: {e}")))?;
        let spki = &cert.tbs_certificate.subject_public_key_info;
        let key = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| ProofError::Malformed("public key bits".into()))?;
        let message = statement(
            &self.purpose,
            &cert_der,
            &self.body_sha256,
            self.timestamp,
            &self.nonce,
        );
        ring::signature::UnparsedPublicKey::new(algorithm(spki)?, key)
            .verify(&message, &signature)
            .map_err(|_| ProofError::BadSignature)?;
        Ok(VerifiedProof {
            replay_key: format!("{}:{}", sha256_hex(&cert_der), self.nonce),
            certificate_der: cert_der,
            expires: self.timestamp + MAX_SKEW_SECS,
        })
    }
}

fn algorithm(
    spki: &x509_cert::spki::SubjectPublicKeyInfoOwned,
) -> Result<&'static dyn ring::signature::VerificationAlgorithm, ProofError> {
    use ring::signature as s;
    const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
    const P256: &str = "1.2.840.10045.3.1.7";
    const P384: &str = "1.3.132.0.34";
    const ED25519: &str = "1.3.101.112";
    const RSA: &str = "1.2.840.113549.1.1.1";
    let curve = || {
        spki.algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<der::asn1::ObjectIdentifier>().ok())
            .map(|o| o.to_string())
            .unwrap_or_default()
    };
    let oid = spki.algorithm.oid.to_string();
    match (oid.as_str(), curve().as_str()) {
        (EC_PUBLIC_KEY, P256) => Ok(&s::ECDSA_P256_SHA256_ASN1),
        (EC_PUBLIC_KEY, P384) => Ok(&s::ECDSA_P384_SHA384_ASN1),
        (ED25519, _) => Ok(&s::ED25519),
        (RSA, _) => Ok(&s::RSA_PKCS1_2048_8192_SHA256),
        (oid, curve) => Err(ProofError::UnsupportedKey(format!("{oid} {curve}"))),
    }
}

/// The proofs seen within the skew window, so that none is accepted twice. Held in memory
/// (see ARCHITECTURE.md): a proof is only valid for [`MAX_SKEW_SECS`] after it was made, so
/// forgetting it after that loses nothing; a restart forgets the window, a bounded gap.
#[derive(Debug, Clone, Default)]
pub struct ReplayGuard {
    seen: Arc<Mutex<HashMap<String, i64>>>,
}

impl ReplayGuard {
    /// Records `proof` as used at `now`; refuses it if it was used before.
    pub fn admit(&self, proof: &VerifiedProof, now: i64) -> Result<(), ProofError> {
        let mut seen = self
            .seen
            .lock()
            .map_err(|_| ProofError::Sign("replay memory poisoned".into()))?;
        if seen.len() >= MAX_REMEMBERED {
            seen.retain(|_, expires| *expires >= now);
            if seen.len() >= MAX_REMEMBERED {
                return Err(ProofError::Busy);
            }
        }
        match seen.entry(proof.replay_key.clone()) {
            std::collections::hash_map::Entry::Occupied(_) => Err(ProofError::Replayed),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(proof.expires);
                Ok(())
            }
        }
    }
}

/// The PEM blocks (label, whole block) of a text, in order.
fn pem_blocks(text: &str) -> Vec<(&str, &str)> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(begin) = rest.find("-----BEGIN ") {
        let after = &rest[begin + 11..];
        let Some(label_end) = after.find("-----") else {
            break;
        };
        let label = &after[..label_end];
        let end_marker = format!("-----END {label}-----");
        let Some(end) = rest[begin..].find(&end_marker) else {
            break;
        };
        let stop = begin + end + end_marker.len();
        blocks.push((label, &rest[begin..stop]));
        rest = &rest[stop..];
    }
    blocks
}

/// An identity that signs proofs: the private key and the certificate it belongs to.
pub struct Signer {
    key: rcgen::KeyPair,
    certificate_der: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").finish_non_exhaustive()
    }
}

impl Signer {
    /// From an identity file: a PKCS#8 private key (`PRIVATE KEY`) and the certificate chain,
    /// PEM, in any order; the first certificate is the key's.
    pub fn from_identity_pem(pem: &str) -> Result<Self, ProofError> {
        let blocks = pem_blocks(pem);
        let key = blocks
            .iter()
            .find(|(label, _)| label.ends_with("PRIVATE KEY"))
            .ok_or_else(|| ProofError::Malformed("the identity holds no private key".into()))?;
        if key.0 != "PRIVATE KEY" {
            return Err(ProofError::Malformed(format!(
                "the identity's key is {}, not PKCS#8 (PRIVATE KEY)",
                key.0
            )));
        }
        let key = rcgen::KeyPair::from_pem(key.1)
            .map_err(|e| ProofError::Malformed(format!("private key: {e}")))?;
        let certificate_der = blocks
            .iter()
            .find(|(label, _)| *label == "CERTIFICATE")
            .and_then(|(_, block)| der::pem::decode_vec(block.as_bytes()).ok())
            .map(|(_, der)| der)
            .ok_or_else(|| ProofError::Malformed("the identity holds no certificate".into()))?;
        Ok(Self {
            key,
            certificate_der,
        })
    }

    /// A proof for `body`, made at `now` (Unix seconds), as the header value.
    pub fn header(&self, purpose: Purpose, body: &[u8], now: i64) -> Result<String, ProofError> {
        Proof::sign(purpose, &self.certificate_der, body, &self.key, now).map(|p| p.to_header())
    }

    /// The certificate, DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate_der
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cert_and_key(alg: &'static rcgen::SignatureAlgorithm) -> (Vec<u8>, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["e.example".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.der().to_vec(), key)
    }

    #[test]
    fn proofs_verify_for_each_key_type_and_only_for_their_body_and_purpose() {
        for alg in [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
            &rcgen::PKCS_ED25519,
        ] {
            let (cert, key) = cert_and_key(alg);
            let proof = Proof::sign(Purpose::Renew, &cert, b"body", &key, 1000).unwrap();
            let parsed = Proof::from_header(proof.to_header().as_bytes()).unwrap();
            let verified = parsed.verify(Purpose::Renew, b"body", 1000).unwrap();
            assert_eq!(verified.certificate_der, cert);
            assert_eq!(
                parsed.verify(Purpose::Renew, b"other", 1000).unwrap_err(),
                ProofError::Mismatch("body")
            );
            assert_eq!(
                parsed.verify(Purpose::Status, b"body", 1000).unwrap_err(),
                ProofError::Mismatch("purpose")
            );
        }
    }

    #[test]
    fn proof_for_another_certificate_or_stale_refused() {
        let (cert, key) = cert_and_key(&rcgen::PKCS_ECDSA_P256_SHA256);
        let (other_cert, _) = cert_and_key(&rcgen::PKCS_ECDSA_P256_SHA256);
        let mut proof = Proof::sign(Purpose::Status, &cert, b"r", &key, 1000).unwrap();
        assert!(matches!(
            proof.verify(Purpose::Status, b"r", 1000 + MAX_SKEW_SECS + 1),
            Err(ProofError::Stale { .. })
        ));
        assert!(matches!(
            proof.verify(Purpose::Status, b"r", 1000 - MAX_SKEW_SECS - 1),
            Err(ProofError::Stale { .. })
        ));
        proof.certificate = b64().encode(other_cert);
        assert_eq!(
            proof.verify(Purpose::Status, b"r", 1000).unwrap_err(),
            ProofError::BadSignature
        );
        assert!(matches!(
            Proof::from_header(b"!!"),
            Err(ProofError::Malformed(_))
        ));
    }

    #[test]
    fn replayed_proof_refused_once_admitted() {
        let (cert, key) = cert_and_key(&rcgen::PKCS_ECDSA_P256_SHA256);
        let guard = ReplayGuard::default();
        let proof = Proof::sign(Purpose::Renew, &cert, b"b", &key, 50).unwrap();
        let verified = proof.verify(Purpose::Renew, b"b", 50).unwrap();
        guard.admit(&verified, 50).unwrap();
        assert_eq!(guard.admit(&verified, 51), Err(ProofError::Replayed));
        let fresh = Proof::sign(Purpose::Renew, &cert, b"b", &key, 50).unwrap();
        guard
            .admit(&fresh.verify(Purpose::Renew, b"b", 50).unwrap(), 51)
            .unwrap();
    }
}
