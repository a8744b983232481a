//! How certificates are written as PEM, for every layer (SHA-256 fingerprints are
//! `herald_token_client::sha256_hex`, shared with the token service and endpoints).

/// A DER certificate as one PEM block (`CERTIFICATE`, LF line endings).
pub(crate) fn pem_certificate(der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new("CERTIFICATE", der), config)
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
}
