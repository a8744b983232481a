//! Certificates and keys as the protocol handles them: PEM blocks, serials, fingerprints.

use herald_wire::Serial;

/// The first `-----BEGIN ...-----` to `-----END ...-----` block of a PEM text.
pub fn first_pem_block(text: &str) -> String {
    let start = text.find("-----BEGIN").unwrap_or(0);
    let rest = &text[start..];
    rest.find("-----END")
        .and_then(|i| rest[i..].find('\n').map(|j| rest[..i + j + 1].to_owned()))
        .unwrap_or_else(|| rest.to_owned())
}

/// The DER of the first certificate of a PEM text.
pub fn first_certificate_der(text: &str) -> Option<Vec<u8>> {
    match der::pem::decode_vec(first_pem_block(text).as_bytes()) {
        Ok(("CERTIFICATE", der)) => Some(der),
        _ => None,
    }
}

/// The serial of a certificate (DER), as the authority names certificates.
pub fn certificate_serial(der: &[u8]) -> Option<Serial> {
    use der::Decode;
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    Some(Serial::from_der_integer(
        cert.tbs_certificate.serial_number.as_bytes(),
    ))
}

/// True when the first certificate of `cert_pem` certifies the public key `spki_der`.
pub fn certifies(cert_pem: &str, spki_der: &[u8]) -> bool {
    use der::{Decode, Encode};
    first_certificate_der(cert_pem)
        .and_then(|der| x509_cert::Certificate::from_der(&der).ok())
        .and_then(|cert| cert.tbs_certificate.subject_public_key_info.to_der().ok())
        .is_some_and(|spki| spki == spki_der)
}

/// Lowercase hex SHA-256 (fingerprints of certificates, keys, bodies and token secrets).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}
