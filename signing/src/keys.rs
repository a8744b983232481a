//! Signing keys: generation, loading from files and environment variables, passphrase
//! encryption (PKCS#8 PBES2).

use std::fs;
use std::path::{Path, PathBuf};

use herald_manifest::{Ed25519Signer, PublicKey, Signer};
use pkcs8::der::pem::LineEnding;
use pkcs8::pkcs5::pbes2;
use pkcs8::{EncryptedPrivateKeyInfo, PrivateKeyInfo};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair};

use crate::cli::KeyArgs;
use crate::Error;

/// PKCS#8 v1 prefix for Ed25519 (RFC 8410 section 7): SEQUENCE, version 0,
/// AlgorithmIdentifier id-Ed25519, OCTET STRING { OCTET STRING (32 bytes) }.
const PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// SubjectPublicKeyInfo prefix for Ed25519 (RFC 8410 section 4).
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// PBKDF2 iterations for encrypted keys (OWASP 2023 guidance for PBKDF2-HMAC-SHA256).
const PBKDF2_ITERATIONS: u32 = 600_000;

/// A new Ed25519 key: the PKCS#8 v1 private key document (DER) and the public key PEM.
///
/// ring writes PKCS#8 v2 (with the public key), which OpenSSL 3.0 refuses for Ed25519; the v1
/// document carries the same 32-byte seed and every tool reads it.
pub fn generate_key() -> Result<(Vec<u8>, String), Error> {
    let rng = SystemRandom::new();
    let key_error = |reason: &str| Error::Key {
        origin: "generator".into(),
        reason: reason.into(),
    };
    let v2 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| key_error("generation failed"))?;
    let pair = Ed25519KeyPair::from_pkcs8(v2.as_ref())
        .map_err(|_| key_error("generated key does not load"))?;
    let seed = v2
        .as_ref()
        .get(16..48)
        .ok_or_else(|| key_error("unexpected PKCS#8 layout"))?;
    let mut v1 = PKCS8_V1_PREFIX.to_vec();
    v1.extend_from_slice(seed);
    let mut spki = SPKI_PREFIX.to_vec();
    spki.extend_from_slice(pair.public_key().as_ref());
    let public = pem_lf("PUBLIC KEY", spki);
    Ok((v1, public))
}

/// PEM with LF line endings, as OpenSSL writes it.
fn pem_lf(label: &str, der: Vec<u8>) -> String {
    pem::encode_config(
        &pem::Pem::new(label, der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// `herald-sign keygen`.
pub(crate) fn keygen(out: &Path, encrypt_env: Option<&str>, force: bool) -> Result<(), Error> {
    let pub_path = PathBuf::from(format!("{}.pub", out.display()));
    if !force {
        for path in [out, pub_path.as_path()] {
            if path.exists() {
                return Err(Error::Usage(format!(
                    "{} exists; use --force to overwrite",
                    path.display()
                )));
            }
        }
    }
    let (der, public) = generate_key()?;
    let private = match encrypt_env {
        Some(var) => encrypt_pem(&der, &passphrase(var)?, PBKDF2_ITERATIONS)?,
        None => pem_lf("PRIVATE KEY", der.clone()),
    };
    write_private(out, private.as_bytes())?;
    crate::fsutil::write_atomic(&pub_path, public.as_bytes())?;
    let signer = Ed25519Signer::from_pkcs8_der(&der).map_err(|e| Error::Key {
        origin: out.display().to_string(),
        reason: e.to_string(),
    })?;
    println!("{}", signer.key_id());
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    herald_files::write_private(path, bytes).map_err(Error::io(path))
}

fn passphrase(var: &str) -> Result<String, Error> {
    match std::env::var(var) {
        Ok(p) if !p.is_empty() => Ok(p),
        _ => Err(Error::Key {
            origin: format!("environment variable {var}"),
            reason: "passphrase variable is unset or empty".into(),
        }),
    }
}

fn encrypt_pem(der: &[u8], passphrase: &str, iterations: u32) -> Result<String, Error> {
    let fail = |reason: String| Error::Key {
        origin: "encryption".into(),
        reason,
    };
    let rng = SystemRandom::new();
    let mut salt = [0u8; 16];
    let mut iv = [0u8; 16];
    rng.fill(&mut salt)
        .and_then(|()| rng.fill(&mut iv))
        .map_err(|_| fail("no randomness".into()))?;
    let params = pbes2::Parameters::pbkdf2_sha256_aes256cbc(iterations, &salt, &iv)
        .map_err(|e| fail(e.to_string()))?;
    let info = PrivateKeyInfo::try_from(der).map_err(|e| fail(e.to_string()))?;
    let doc = info
        .encrypt_with_params(params, passphrase)
        .map_err(|e| fail(e.to_string()))?;
    let pem = doc
        .to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF)
        .map_err(|e| fail(e.to_string()))?;
    Ok(pem.to_string())
}

/// Parses a private key PEM document (`PRIVATE KEY`, or `ENCRYPTED PRIVATE KEY` with
/// `passphrase`). Text before the PEM block, such as a warning banner, is skipped.
pub fn parse_private_key_pem(
    text: &str,
    origin: &str,
    passphrase: Option<&str>,
) -> Result<Ed25519Signer, Error> {
    let key_error = |reason: String| Error::Key {
        origin: origin.into(),
        reason,
    };
    let start = text
        .find("-----BEGIN")
        .ok_or_else(|| key_error("no PEM block".into()))?;
    let block = pem::parse(&text[start..]).map_err(|e| key_error(e.to_string()))?;
    let der = match block.tag() {
        "PRIVATE KEY" => block.into_contents(),
        "ENCRYPTED PRIVATE KEY" => {
            let passphrase = passphrase
                .ok_or_else(|| key_error("the key is encrypted and no passphrase is set".into()))?;
            let info = EncryptedPrivateKeyInfo::try_from(block.contents())
                .map_err(|e| key_error(e.to_string()))?;
            let doc = info
                .decrypt(passphrase)
                .map_err(|_| key_error("wrong passphrase or corrupt key".into()))?;
            doc.as_bytes().to_vec()
        }
        other => return Err(key_error(format!("unexpected PEM label {other:?}"))),
    };
    Ed25519Signer::from_pkcs8_der(&der).map_err(|e| key_error(e.to_string()))
}

/// Loads every key named by `--key` and `--key-env`.
pub fn load_signers(args: &KeyArgs) -> Result<Vec<Ed25519Signer>, Error> {
    let passphrase = std::env::var(&args.passphrase_env).ok();
    let mut out: Vec<Ed25519Signer> = Vec::new();
    for path in &args.key_files {
        let text = fs::read_to_string(path).map_err(Error::io(path))?;
        out.push(parse_private_key_pem(
            &text,
            &path.display().to_string(),
            passphrase.as_deref(),
        )?);
    }
    for var in &args.key_envs {
        let origin = format!("environment variable {var}");
        let text = std::env::var(var).map_err(|_| Error::Key {
            origin: origin.clone(),
            reason: "unset or not UTF-8".into(),
        })?;
        out.push(parse_private_key_pem(
            &text,
            &origin,
            passphrase.as_deref(),
        )?);
    }
    out.dedup_by(|a, b| a.key_id() == b.key_id());
    Ok(out)
}

/// Reads a public key file (SubjectPublicKeyInfo PEM).
pub(crate) fn read_public_key(path: &Path) -> Result<PublicKey, Error> {
    let text = fs::read_to_string(path).map_err(Error::io(path))?;
    PublicKey::from_ed25519_spki_pem(&text).map_err(|e| Error::Key {
        origin: path.display().to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn generated_key_round_trips_through_pem() {
        let (der, public) = generate_key().unwrap();
        let pem_text = pem::encode(&pem::Pem::new("PRIVATE KEY", der));
        let signer = parse_private_key_pem(&pem_text, "test", None).unwrap();
        assert_eq!(
            signer.public_key(),
            &PublicKey::from_ed25519_spki_pem(&public).unwrap()
        );
    }

    #[test]
    fn encrypted_key_needs_right_passphrase() {
        let (der, _) = generate_key().unwrap();
        let pem_text = encrypt_pem(&der, "correct horse", 1_000).unwrap();
        assert!(pem_text.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
        parse_private_key_pem(&pem_text, "t", Some("correct horse")).unwrap();
        assert!(parse_private_key_pem(&pem_text, "t", Some("wrong")).is_err());
        assert!(parse_private_key_pem(&pem_text, "t", None).is_err());
    }

    #[test]
    fn example_key_with_banner_loads() {
        let text = include_str!("../../keys-example/signing/targets.key.pem");
        parse_private_key_pem(text, "example", None).unwrap();
    }

    #[test]
    fn public_key_pem_is_not_a_private_key() {
        let text = include_str!("../../keys-example/signing/targets.pub.pem");
        assert!(parse_private_key_pem(text, "example", None).is_err());
    }
}
