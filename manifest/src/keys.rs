//! Public keys as TUF metadata declares them, signature verification (Ed25519, ECDSA P-256,
//! RSASSA-PSS) and Ed25519 signing.

use std::fmt;

use ring::signature::{self, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use spki::der::Decode as _;

use crate::canonical::to_canonical_bytes;
use crate::sha256_hex;

/// A key ID, taken as declared by the metadata that lists the key (TUF 1.0 section 4.2).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(String);

impl KeyId {
    /// Wraps a key ID string.
    pub fn new(id: impl Into<String>) -> Self {
        KeyId(id.into())
    }

    /// The key ID as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `keyval` member of a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyVal {
    /// The public key: hex for Ed25519, PEM (SubjectPublicKeyInfo) for ECDSA and RSA.
    pub public: String,
}

/// A public key as TUF metadata declares it (`keytype`, `scheme`, `keyval`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKey {
    /// `ed25519`, `ecdsa`, `ecdsa-sha2-nistp256` or `rsa`.
    pub keytype: String,
    /// `ed25519`, `ecdsa-sha2-nistp256` or `rsassa-pss-sha256`.
    pub scheme: String,
    /// The key material.
    pub keyval: KeyVal,
}

/// Why a key cannot be used or a signature is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[allow(missing_docs)] // fields are named for what they hold
pub enum KeyError {
    /// The key type and scheme pair is not one Herald verifies.
    #[error("unsupported key type {keytype:?} with scheme {scheme:?}")]
    Unsupported { keytype: String, scheme: String },
    /// The public key material does not decode.
    #[error("malformed public key: {0}")]
    Malformed(String),
    /// The private key does not decode.
    #[error("malformed Ed25519 private key (PKCS#8 expected): {0}")]
    PrivateKey(String),
    /// Signing failed.
    #[error("signing failed")]
    Sign,
}

/// A decoded public key ready to verify signatures.
#[derive(Debug, Clone)]
pub struct VerifyingKey {
    algorithm: &'static dyn signature::VerificationAlgorithm,
    bytes: Vec<u8>,
    /// What identifies the key material, whatever key ID declares it: two key IDs that name the
    /// same key count once towards a threshold.
    identity: String,
}

impl VerifyingKey {
    /// True when `sig` is a valid signature of `msg` by this key.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        UnparsedPublicKey::new(self.algorithm, &self.bytes)
            .verify(msg, sig)
            .is_ok()
    }

    /// A string identifying the key material (algorithm and raw key bytes).
    pub fn identity(&self) -> &str {
        &self.identity
    }
}

const OID_ED25519: &str = "1.3.101.112";
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_RSA: &str = "1.2.840.113549.1.1.1";

impl PublicKey {
    /// An Ed25519 key from its 32 raw bytes.
    pub fn ed25519(raw: &[u8]) -> Self {
        PublicKey {
            keytype: "ed25519".into(),
            scheme: "ed25519".into(),
            keyval: KeyVal {
                public: hex::encode(raw),
            },
        }
    }

    /// An Ed25519 key from a SubjectPublicKeyInfo PEM document (text before the PEM block,
    /// such as a banner, is skipped).
    pub fn from_ed25519_spki_pem(pem_text: &str) -> Result<Self, KeyError> {
        let der = pem_block(pem_text, "PUBLIC KEY")?;
        let (oid, _, raw) = spki_parts(&der)?;
        if oid != OID_ED25519 || raw.len() != 32 {
            return Err(KeyError::Malformed(
                "not an Ed25519 SubjectPublicKeyInfo".into(),
            ));
        }
        Ok(PublicKey::ed25519(&raw))
    }

    /// The key ID TUF tools compute for this key: SHA-256 of the canonical JSON of
    /// `{"keytype", "scheme", "keyval"}`, in hex.
    pub fn key_id(&self) -> KeyId {
        let value = json!({
            "keytype": self.keytype,
            "scheme": self.scheme,
            "keyval": {"public": self.keyval.public},
        });
        // Strings only: canonical encoding cannot fail.
        let bytes = to_canonical_bytes(&value).unwrap_or_default();
        KeyId(sha256_hex(&bytes))
    }

    /// Decodes the key for verification.
    pub fn verifying_key(&self) -> Result<VerifyingKey, KeyError> {
        let unsupported = || KeyError::Unsupported {
            keytype: self.keytype.clone(),
            scheme: self.scheme.clone(),
        };
        let (algorithm, bytes): (&'static dyn signature::VerificationAlgorithm, Vec<u8>) =
            match (self.keytype.as_str(), self.scheme.as_str()) {
                ("ed25519", "ed25519") => {
                    let raw = hex::decode(&self.keyval.public)
                        .map_err(|e| KeyError::Malformed(e.to_string()))?;
                    if raw.len() != 32 {
                        return Err(KeyError::Malformed("Ed25519 key is not 32 bytes".into()));
                    }
                    (&signature::ED25519, raw)
                }
                ("ecdsa" | "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp256") => {
                    let der = pem_block(&self.keyval.public, "PUBLIC KEY")?;
                    let (oid, params, raw) = spki_parts(&der)?;
                    if oid != OID_EC_PUBLIC_KEY || params.as_deref() != Some(OID_P256) {
                        return Err(KeyError::Malformed("not a P-256 public key".into()));
                    }
                    (&signature::ECDSA_P256_SHA256_ASN1, raw)
                }
                ("rsa", "rsassa-pss-sha256") => {
                    let der = pem_block(&self.keyval.public, "PUBLIC KEY")?;
                    let (oid, _, raw) = spki_parts(&der)?;
                    if oid != OID_RSA {
                        return Err(KeyError::Malformed("not an RSA public key".into()));
                    }
                    (&signature::RSA_PSS_2048_8192_SHA256, raw)
                }
                _ => return Err(unsupported()),
            };
        let identity = format!("{}:{}", self.scheme, hex::encode(&bytes));
        Ok(VerifyingKey {
            algorithm,
            bytes,
            identity,
        })
    }

    /// The key as a JSON value, as it appears in metadata.
    pub fn to_value(&self) -> Value {
        json!({
            "keytype": self.keytype,
            "scheme": self.scheme,
            "keyval": {"public": self.keyval.public},
        })
    }
}

/// Extracts the DER of the first PEM block with the given label, skipping any text before it.
fn pem_block(text: &str, label: &str) -> Result<Vec<u8>, KeyError> {
    let start = text
        .find("-----BEGIN")
        .ok_or_else(|| KeyError::Malformed("no PEM block".into()))?;
    let block = pem::parse(&text[start..]).map_err(|e| KeyError::Malformed(e.to_string()))?;
    if block.tag() != label {
        return Err(KeyError::Malformed(format!(
            "PEM label {:?}, expected {label:?}",
            block.tag()
        )));
    }
    Ok(block.into_contents())
}

/// Algorithm OID, optional OID parameter and raw key bits of a SubjectPublicKeyInfo.
fn spki_parts(der: &[u8]) -> Result<(String, Option<String>, Vec<u8>), KeyError> {
    let info = spki::SubjectPublicKeyInfoRef::from_der(der)
        .map_err(|e| KeyError::Malformed(e.to_string()))?;
    let params = info
        .algorithm
        .parameters
        .and_then(|p| p.decode_as::<spki::ObjectIdentifier>().ok())
        .map(|oid| oid.to_string());
    let raw = info
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| KeyError::Malformed("public key bit string not byte aligned".into()))?
        .to_vec();
    Ok((info.algorithm.oid.to_string(), params, raw))
}

/// Something that signs metadata: a local key today, an HSM or a KMS later.
pub trait Signer: Send + Sync {
    /// The public key, as metadata declares it.
    fn public_key(&self) -> &PublicKey;
    /// The key ID under which signatures are recorded.
    fn key_id(&self) -> &KeyId;
    /// Signs `msg`.
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError>;
}

/// An Ed25519 signing key held in memory.
///
/// Signing uses ed25519-dalek (precomputed base-point tables: a quarter faster than ring's
/// Ed25519 signing, which matters when a release signs every one of 100,000 files);
/// verification everywhere else stays with ring.
pub struct Ed25519Signer {
    key: ed25519_dalek::SigningKey,
    public: PublicKey,
    key_id: KeyId,
}

impl fmt::Debug for Ed25519Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ed25519Signer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Ed25519Signer {
    /// Loads a PKCS#8 (v1 or v2) Ed25519 private key document (DER). A v2 document whose
    /// public key does not belong to its private key is refused.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        use ed25519_dalek::pkcs8::DecodePrivateKey;
        let key = ed25519_dalek::SigningKey::from_pkcs8_der(der)
            .map_err(|e| KeyError::PrivateKey(e.to_string()))?;
        let public = PublicKey::ed25519(key.verifying_key().as_bytes());
        let key_id = public.key_id();
        Ok(Ed25519Signer {
            key,
            public,
            key_id,
        })
    }
}

impl Signer for Ed25519Signer {
    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        use ed25519_dalek::Signer as _;
        Ok(self.key.sign(msg).to_bytes().to_vec())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const EXAMPLE_PUB: &str = include_str!("../../keys-example/signing/release.pub.pem");
    const EXAMPLE_KEY: &str = include_str!("../../keys-example/signing/release.key.pem");

    fn example_signer() -> Ed25519Signer {
        Ed25519Signer::from_pkcs8_der(&pem_block(EXAMPLE_KEY, "PRIVATE KEY").unwrap()).unwrap()
    }

    #[test]
    fn ed25519_spki_pem_matches_private_key() {
        let public = PublicKey::from_ed25519_spki_pem(EXAMPLE_PUB).unwrap();
        assert_eq!(&public, example_signer().public_key());
    }

    #[test]
    fn pkcs8_v2_with_foreign_public_key_refused() {
        let rng = ring::rand::SystemRandom::new();
        let generate = || {
            signature::Ed25519KeyPair::generate_pkcs8(&rng)
                .unwrap()
                .as_ref()
                .to_vec()
        };
        let (mut v2, other) = (generate(), generate());
        assert!(Ed25519Signer::from_pkcs8_der(&v2).is_ok());
        // The public key is the last 32 bytes of ring's v2 document: put another key's there.
        let at = v2.len() - 32;
        v2[at..].copy_from_slice(&other[other.len() - 32..]);
        assert!(matches!(
            Ed25519Signer::from_pkcs8_der(&v2),
            Err(KeyError::PrivateKey(_))
        ));
    }

    #[test]
    fn ed25519_sign_then_verify() {
        let signer = example_signer();
        let sig = signer.sign(b"hello").unwrap();
        let key = signer.public_key().verifying_key().unwrap();
        assert!(key.verify(b"hello", &sig));
        assert!(!key.verify(b"hellO", &sig));
    }

    #[test]
    fn key_id_is_sha256_of_canonical_key() {
        let key = PublicKey::ed25519(&[0u8; 32]);
        let canonical = format!(
            r#"{{"keytype":"ed25519","keyval":{{"public":"{}"}},"scheme":"ed25519"}}"#,
            "00".repeat(32)
        );
        assert_eq!(key.key_id().as_str(), sha256_hex(canonical.as_bytes()));
    }

    #[test]
    fn unsupported_scheme_rejected() {
        let mut key = PublicKey::ed25519(&[0u8; 32]);
        key.scheme = "ed448".into();
        assert!(matches!(
            key.verifying_key(),
            Err(KeyError::Unsupported { .. })
        ));
    }

    #[test]
    fn malformed_ed25519_hex_rejected() {
        let mut key = PublicKey::ed25519(&[0u8; 32]);
        key.keyval.public = "zz".into();
        assert!(matches!(key.verifying_key(), Err(KeyError::Malformed(_))));
    }
}
