//! PKCS#10 certificate requests (RFC 2986): parsing and proof of possession.
//!
//! Only the public key is taken from a request; the subject, names, usages and lifetime come
//! from the issuance policy.

use der::{Decode, Encode};
use x509_cert::request::CertReq;

/// The public key type of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA on P-256.
    EcdsaP256,
    /// ECDSA on P-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
    /// RSA with this modulus size in bits.
    Rsa(u32),
}

impl KeyKind {
    /// The policy name of the key type (`ecdsa-p256`, `ecdsa-p384`, `ed25519`, `rsa`).
    pub fn policy_name(self) -> &'static str {
        match self {
            KeyKind::EcdsaP256 => "ecdsa-p256",
            KeyKind::EcdsaP384 => "ecdsa-p384",
            KeyKind::Ed25519 => "ed25519",
            KeyKind::Rsa(_) => "rsa",
        }
    }
}

/// A request whose signature was verified.
#[derive(Debug, Clone)]
pub struct VerifiedCsr {
    /// The SubjectPublicKeyInfo, DER.
    pub spki_der: Vec<u8>,
    /// The key type.
    pub key: KeyKind,
}

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    /// Neither PEM nor DER PKCS#10.
    #[error("not a PKCS#10 certificate request: {0}")]
    Parse(String),
    /// The key type is not one Herald knows.
    #[error("unsupported public key algorithm {0}")]
    UnsupportedKey(String),
    /// The signature algorithm does not fit the key or is unknown.
    #[error("unsupported signature algorithm {0} for this key")]
    UnsupportedSignature(String),
    /// The signature does not verify: no proof of possession.
    #[error("the request's signature does not verify (no proof of possession of the key)")]
    BadSignature,
}

const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const P256: &str = "1.2.840.10045.3.1.7";
const P384: &str = "1.3.132.0.34";
const ED25519: &str = "1.3.101.112";
const RSA: &str = "1.2.840.113549.1.1.1";

/// Largest request accepted, in bytes.
pub(crate) const MAX_CSR_BYTES: usize = 16 * 1024;

/// Parses a request (PEM `CERTIFICATE REQUEST` or DER) and verifies its signature.
pub fn parse_and_verify(input: &[u8]) -> Result<VerifiedCsr, CsrError> {
    if input.len() > MAX_CSR_BYTES {
        return Err(CsrError::Parse(format!(
            "larger than {MAX_CSR_BYTES} bytes"
        )));
    }
    let der = if input.starts_with(b"-----") || input.first().is_some_and(u8::is_ascii_whitespace) {
        let (label, der) =
            der::pem::decode_vec(input).map_err(|e| CsrError::Parse(e.to_string()))?;
        if label != "CERTIFICATE REQUEST" && label != "NEW CERTIFICATE REQUEST" {
            return Err(CsrError::Parse(format!("unexpected PEM label {label}")));
        }
        der
    } else {
        input.to_vec()
    };
    let req = CertReq::from_der(&der).map_err(|e| CsrError::Parse(e.to_string()))?;
    let spki = &req.info.public_key;
    let key_bytes = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| CsrError::Parse("public key is not a whole number of bytes".into()))?;
    let key = key_kind(spki, key_bytes)?;
    let tbs = req
        .info
        .to_der()
        .map_err(|e| CsrError::Parse(e.to_string()))?;
    let signature = req
        .signature
        .as_bytes()
        .ok_or_else(|| CsrError::Parse("signature is not a whole number of bytes".into()))?;
    let alg = verification_algorithm(key, &req.algorithm.oid.to_string())?;
    ring::signature::UnparsedPublicKey::new(alg, key_bytes)
        .verify(&tbs, signature)
        .map_err(|_| CsrError::BadSignature)?;
    Ok(VerifiedCsr {
        spki_der: spki.to_der().map_err(|e| CsrError::Parse(e.to_string()))?,
        key,
    })
}

fn key_kind(spki: &spki::SubjectPublicKeyInfoOwned, key_bytes: &[u8]) -> Result<KeyKind, CsrError> {
    let oid = spki.algorithm.oid.to_string();
    match oid.as_str() {
        EC_PUBLIC_KEY => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as::<der::asn1::ObjectIdentifier>().ok())
                .map(|o| o.to_string())
                .unwrap_or_default();
            match curve.as_str() {
                P256 => Ok(KeyKind::EcdsaP256),
                P384 => Ok(KeyKind::EcdsaP384),
                other => Err(CsrError::UnsupportedKey(format!("EC curve {other}"))),
            }
        }
        ED25519 => Ok(KeyKind::Ed25519),
        RSA => Ok(KeyKind::Rsa(rsa_bits(key_bytes)?)),
        other => Err(CsrError::UnsupportedKey(other.to_owned())),
    }
}

fn rsa_bits(key_bytes: &[u8]) -> Result<u32, CsrError> {
    #[derive(der::Sequence)]
    struct RsaPublicKey<'a> {
        modulus: der::asn1::UintRef<'a>,
        public_exponent: der::asn1::UintRef<'a>,
    }
    let key = RsaPublicKey::from_der(key_bytes).map_err(|e| CsrError::Parse(e.to_string()))?;
    let _ = key.public_exponent;
    let bytes = key.modulus.as_bytes();
    let lead = bytes.first().map_or(0, |b| 8 - b.leading_zeros());
    let bits = (bytes.len().saturating_sub(1) * 8) as u32 + lead;
    Ok(bits)
}

fn verification_algorithm(
    key: KeyKind,
    sig_oid: &str,
) -> Result<&'static dyn ring::signature::VerificationAlgorithm, CsrError> {
    use ring::signature as s;
    let alg: &'static dyn s::VerificationAlgorithm = match (key, sig_oid) {
        (KeyKind::EcdsaP256, "1.2.840.10045.4.3.2") => &s::ECDSA_P256_SHA256_ASN1,
        (KeyKind::EcdsaP256, "1.2.840.10045.4.3.3") => &s::ECDSA_P256_SHA384_ASN1,
        (KeyKind::EcdsaP384, "1.2.840.10045.4.3.2") => &s::ECDSA_P384_SHA256_ASN1,
        (KeyKind::EcdsaP384, "1.2.840.10045.4.3.3") => &s::ECDSA_P384_SHA384_ASN1,
        (KeyKind::Ed25519, ED25519) => &s::ED25519,
        (KeyKind::Rsa(_), "1.2.840.113549.1.1.11") => &s::RSA_PKCS1_2048_8192_SHA256,
        (KeyKind::Rsa(_), "1.2.840.113549.1.1.12") => &s::RSA_PKCS1_2048_8192_SHA384,
        (KeyKind::Rsa(_), "1.2.840.113549.1.1.13") => &s::RSA_PKCS1_2048_8192_SHA512,
        (_, other) => return Err(CsrError::UnsupportedSignature(other.to_owned())),
    };
    Ok(alg)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn csr_pem(alg: &'static rcgen::SignatureAlgorithm) -> String {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let params = rcgen::CertificateParams::new(vec!["asked.example".to_owned()]).unwrap();
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    #[test]
    fn valid_requests_verify_for_each_key_type() {
        for (alg, kind) in [
            (&rcgen::PKCS_ECDSA_P256_SHA256, KeyKind::EcdsaP256),
            (&rcgen::PKCS_ECDSA_P384_SHA384, KeyKind::EcdsaP384),
            (&rcgen::PKCS_ED25519, KeyKind::Ed25519),
        ] {
            let csr = parse_and_verify(csr_pem(alg).as_bytes()).unwrap();
            assert_eq!(csr.key, kind);
        }
    }

    #[test]
    fn tampered_csr_signature_rejected() {
        let pem = csr_pem(&rcgen::PKCS_ECDSA_P256_SHA256);
        let (_, mut der) = der::pem::decode_vec(pem.as_bytes()).unwrap();
        // Flip a bit inside the subject's common name: the signature no longer matches.
        let pos = der
            .windows(b"rcgen".len())
            .position(|w| w == b"rcgen")
            .unwrap();
        der[pos] ^= 0x01;
        assert!(matches!(
            parse_and_verify(&der),
            Err(CsrError::BadSignature)
        ));
    }

    #[test]
    fn garbage_csr_rejected_without_panic() {
        for input in [
            &b""[..],
            b"\x30\x03\x02\x01",
            b"-----BEGIN CERTIFICATE REQUEST-----\n!!\n",
        ] {
            assert!(matches!(parse_and_verify(input), Err(CsrError::Parse(_))));
        }
    }
}
