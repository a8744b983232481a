//! Encodings every layer shares: certificates as PEM and SHA-256 fingerprints as hex.

/// A DER certificate as one PEM block (`CERTIFICATE`, LF line endings).
pub(crate) fn pem_certificate(der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new("CERTIFICATE", der), config)
}

/// SHA-256 of `bytes`, lowercase hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pem_matches_the_der_crate_encoding() {
        for len in [1usize, 47, 48, 49, 300] {
            let der: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let expected =
                der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, &der).unwrap();
            assert_eq!(pem_certificate(&der), expected, "length {len}");
        }
    }

    #[test]
    fn sha256_of_nothing() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
