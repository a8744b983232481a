//! CA key generation and key files at rest.
//!
//! Private keys are PKCS#8 documents. On disk they are PEM `ENCRYPTED PRIVATE KEY` (PBES2:
//! PBKDF2-HMAC-SHA256 + AES-256-CBC), readable by OpenSSL with the same passphrase. Unencrypted
//! `PRIVATE KEY` files exist only when the operator asked for them with
//! `--insecure-unencrypted-keys`.

use std::fmt;
use std::path::{Path, PathBuf};

use pkcs8::der::pem::LineEnding;
use pkcs8::der::Decode;
use rcgen::{KeyPair, SignatureAlgorithm};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

/// The key algorithm of a CA key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CaKeyType {
    /// ECDSA on NIST P-256 with SHA-256 (the default, accepted everywhere).
    EcdsaP256,
    /// Ed25519 (RFC 8410).
    Ed25519,
}

impl CaKeyType {
    /// The rcgen signature algorithm for this key type.
    pub(crate) fn algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            CaKeyType::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            CaKeyType::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }
}

impl fmt::Display for CaKeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CaKeyType::EcdsaP256 => "ecdsa-p256",
            CaKeyType::Ed25519 => "ed25519",
        })
    }
}

/// A passphrase for key files. Its `Debug` output never shows the secret.
#[derive(Clone)]
pub struct Passphrase(String);

impl Passphrase {
    /// Wraps a passphrase; surrounding whitespace (a trailing newline in a file) is removed.
    pub fn new(secret: &str) -> Result<Self, KeyError> {
        let secret = secret.trim();
        if secret.len() < 8 {
            return Err(KeyError::WeakPassphrase);
        }
        Ok(Self(secret.to_owned()))
    }

    /// Reads a passphrase from a file (first line, trimmed).
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::new(text.lines().next().unwrap_or(""))
    }

    /// A fresh random passphrase (32 random bytes, hex).
    pub fn generate() -> Result<Self, KeyError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| KeyError::Random)?;
        Self::new(&hex::encode(bytes))
    }

    /// The secret text, to write it to a passphrase file.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(***)")
    }
}

/// How key files are protected at rest.
#[derive(Debug, Clone)]
pub enum KeyProtection {
    /// Encrypted with a passphrase; `iterations` is the PBKDF2 cost used when writing.
    Encrypted {
        /// The passphrase.
        passphrase: Passphrase,
        /// PBKDF2-HMAC-SHA256 iterations for new files.
        iterations: u32,
    },
    /// Plain PKCS#8 (only with `--insecure-unencrypted-keys`).
    InsecureUnencrypted,
}

/// Default PBKDF2-HMAC-SHA256 iteration count for new key files (OWASP 2023 guidance).
pub(crate) const DEFAULT_KDF_ITERATIONS: u32 = 600_000;
/// The lowest iteration count accepted by `init --kdf-iterations`.
pub(crate) const MIN_KDF_ITERATIONS: u32 = 1_000;

/// Errors reading, writing or generating keys.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // fields are named for what they hold
pub enum KeyError {
    /// The passphrase is shorter than 8 characters.
    #[error("the passphrase must have at least 8 characters")]
    WeakPassphrase,
    /// The system random generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// Key generation failed.
    #[error("cannot generate a key: {0}")]
    Generate(#[source] rcgen::Error),
    /// A key file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A key file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The key file is not a PEM PKCS#8 document.
    #[error("{path} is not a PKCS#8 PEM private key: {detail}")]
    Format { path: PathBuf, detail: String },
    /// The passphrase does not decrypt the key file.
    #[error("cannot decrypt {path}: wrong passphrase or damaged file")]
    Decrypt { path: PathBuf },
    /// The key file is encrypted but no passphrase was given.
    #[error("{path} is encrypted: set HERALD_CA_PASSPHRASE or pass --passphrase-file")]
    PassphraseNeeded { path: PathBuf },
    /// Encryption failed.
    #[error("cannot encrypt a key: {0}")]
    Encrypt(String),
}

/// Generates a new CA key.
pub(crate) fn generate(kind: CaKeyType) -> Result<KeyPair, KeyError> {
    KeyPair::generate_for(kind.algorithm()).map_err(KeyError::Generate)
}

/// Writes `key` to `path` (mode 0600) protected as asked.
pub(crate) fn write_key(
    path: &Path,
    key: &KeyPair,
    protection: &KeyProtection,
) -> Result<(), KeyError> {
    let pem = match protection {
        KeyProtection::InsecureUnencrypted => key.serialize_pem(),
        KeyProtection::Encrypted {
            passphrase,
            iterations,
        } => encrypt_pem(&key.serialize_der(), passphrase, *iterations)?,
    };
    herald_files::write_private(path, pem.as_bytes()).map_err(|source| KeyError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Encrypts a PKCS#8 DER document as `ENCRYPTED PRIVATE KEY` PEM.
fn encrypt_pem(der: &[u8], passphrase: &Passphrase, iterations: u32) -> Result<String, KeyError> {
    let rng = SystemRandom::new();
    let mut salt = [0u8; 16];
    let mut iv = [0u8; 16];
    rng.fill(&mut salt).map_err(|_| KeyError::Random)?;
    rng.fill(&mut iv).map_err(|_| KeyError::Random)?;
    let params = pkcs8::pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(iterations, &salt, &iv)
        .map_err(|e| KeyError::Encrypt(e.to_string()))?;
    let info =
        pkcs8::PrivateKeyInfo::from_der(der).map_err(|e| KeyError::Encrypt(e.to_string()))?;
    let doc = info
        .encrypt_with_params(params, passphrase.expose().as_bytes())
        .map_err(|e| KeyError::Encrypt(e.to_string()))?;
    doc.to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF)
        .map(|pem| pem.to_string())
        .map_err(|e| KeyError::Encrypt(e.to_string()))
}

/// Reads a key file written by [`write_key`] (encrypted or not).
pub(crate) fn read_key(path: &Path, passphrase: Option<&Passphrase>) -> Result<KeyPair, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let format = |detail: String| KeyError::Format {
        path: path.to_path_buf(),
        detail,
    };
    let (label, der) =
        pkcs8::der::pem::decode_vec(text.as_bytes()).map_err(|e| format(e.to_string()))?;
    let plain = match label {
        "PRIVATE KEY" => der,
        "ENCRYPTED PRIVATE KEY" => {
            let passphrase = passphrase.ok_or_else(|| KeyError::PassphraseNeeded {
                path: path.to_path_buf(),
            })?;
            let info = pkcs8::EncryptedPrivateKeyInfo::from_der(&der)
                .map_err(|e| format(e.to_string()))?;
            let doc =
                info.decrypt(passphrase.expose().as_bytes())
                    .map_err(|_| KeyError::Decrypt {
                        path: path.to_path_buf(),
                    })?;
            doc.as_bytes().to_vec()
        }
        other => return Err(format(format!("unexpected PEM label {other}"))),
    };
    KeyPair::try_from(plain.as_slice()).map_err(|e| format(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn encrypted_key_round_trips_and_wrong_passphrase_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        let key = generate(CaKeyType::EcdsaP256).unwrap();
        let pass = Passphrase::new("correct horse battery").unwrap();
        let protection = KeyProtection::Encrypted {
            passphrase: pass.clone(),
            iterations: MIN_KDF_ITERATIONS,
        };
        write_key(&path, &key, &protection).unwrap();
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .contains("ENCRYPTED PRIVATE KEY"));
        let back = read_key(&path, Some(&pass)).unwrap();
        assert_eq!(back.public_key_raw(), key.public_key_raw());
        let wrong = Passphrase::new("wrong passphrase").unwrap();
        assert!(matches!(
            read_key(&path, Some(&wrong)),
            Err(KeyError::Decrypt { .. })
        ));
        assert!(matches!(
            read_key(&path, None),
            Err(KeyError::PassphraseNeeded { .. })
        ));
    }

    #[test]
    fn short_passphrase_rejected() {
        assert!(matches!(
            Passphrase::new("short"),
            Err(KeyError::WeakPassphrase)
        ));
    }
}
