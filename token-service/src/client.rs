//! The HTTPS client set-up shared by everything that talks to a Herald server as a client:
//! the relay upstream and the endpoint's enrollment and renewal.

/// A client builder trusting only `root_pem` (the Herald root, checked by the caller against a
/// pinned fingerprint), presenting `identity_pem` (private key then certificate chain) for
/// mutual TLS when given.
///
/// With `root_pem` absent the server certificate is not checked at all: use that only to
/// fetch the root certificate itself, which must then match a pinned fingerprint before
/// anything else is sent.
pub fn pinned_client_builder(
    root_pem: Option<&[u8]>,
    identity_pem: Option<&[u8]>,
) -> Result<reqwest::ClientBuilder, reqwest::Error> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false);
    match root_pem {
        Some(pem) => {
            for cert in reqwest::Certificate::from_pem_bundle(pem)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        None => builder = builder.danger_accept_invalid_certs(true),
    }
    if let Some(identity) = identity_pem {
        builder = builder.identity(reqwest::Identity::from_pem(identity)?);
    }
    Ok(builder)
}

/// The discovery document served at `/.well-known/herald`: everything an endpoint or a relay
/// needs besides the server URL and the root fingerprint.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Discovery {
    /// The root CA certificate, PEM.
    pub root_pem: String,
    /// The issuing CA certificate, PEM.
    #[serde(default)]
    pub intermediate_pem: Option<String>,
    /// Enrollment endpoint.
    #[serde(default)]
    pub enroll_url: Option<String>,
    /// Renewal endpoint (mutual TLS).
    #[serde(default)]
    pub renew_url: Option<String>,
    /// Status report endpoint (mutual TLS).
    #[serde(default)]
    pub status_url: Option<String>,
    /// OCSP responder.
    #[serde(default)]
    pub ocsp_url: Option<String>,
    /// CRL distribution point.
    #[serde(default)]
    pub crl_url: Option<String>,
    /// Update repository mirrors.
    #[serde(default)]
    pub repository_urls: Vec<String>,
}

/// Why the server's root could not be established.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The fingerprint given is not 64 hex digits.
    #[error("root fingerprint must be 64 hex digits (SHA-256), optionally with colons")]
    BadFingerprint,
    /// The server's root does not match the pinned fingerprint.
    #[error("the server's root certificate has fingerprint {found}, not the pinned {expected}: refusing to enroll")]
    FingerprintMismatch {
        /// The pinned fingerprint, hex.
        expected: String,
        /// The fingerprint of the root the server sent, hex.
        found: String,
    },
    /// The server could not be reached or answered with an error.
    #[error("{url}: {message}")]
    Http {
        /// The URL.
        url: String,
        /// What happened.
        message: String,
    },
}

/// Parses a SHA-256 fingerprint written as hex, with or without colons.
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], BootstrapError> {
    let digits: String = text.chars().filter(|c| *c != ':').collect();
    let bytes = hex_decode(digits.trim()).ok_or(BootstrapError::BadFingerprint)?;
    <[u8; 32]>::try_from(bytes).map_err(|_| BootstrapError::BadFingerprint)
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

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

/// The serial of a certificate (DER) as lowercase hex without leading zero bytes, as the
/// authority names certificates.
pub fn certificate_serial(der: &[u8]) -> Option<String> {
    use der::Decode;
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    let bytes = cert.tbs_certificate.serial_number.as_bytes();
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    Some(crate::token::hex(&bytes[start..]))
}

/// True when the first certificate of `cert_pem` certifies the public key `spki_der`.
pub fn certifies(cert_pem: &str, spki_der: &[u8]) -> bool {
    use der::{Decode, Encode};
    first_certificate_der(cert_pem)
        .and_then(|der| x509_cert::Certificate::from_der(&der).ok())
        .and_then(|cert| cert.tbs_certificate.subject_public_key_info.to_der().ok())
        .is_some_and(|spki| spki == spki_der)
}

/// Fetches the discovery document of `server` with `client`.
pub async fn fetch_discovery(
    client: &reqwest::Client,
    server: &str,
) -> Result<Discovery, BootstrapError> {
    let url = format!("{}/.well-known/herald", server.trim_end_matches('/'));
    let http = |message: String| BootstrapError::Http {
        url: url.clone(),
        message,
    };
    let response = client
        .get(&url)
        .send()
        .await
        .map_err(|e| http(e.to_string()))?;
    if !response.status().is_success() {
        return Err(http(format!("HTTP {}", response.status())));
    }
    let body = response.bytes().await.map_err(|e| http(e.to_string()))?;
    serde_json::from_slice(&body).map_err(|e| http(format!("not a discovery document: {e}")))
}

/// Establishes trust in `server` from nothing but a pinned root fingerprint: the discovery
/// document is read once without checking the server certificate, only for its root; that
/// root must hash (SHA-256 of its DER) to the pin; then the document is read again over TLS
/// verified against that root alone. Returns the root (PEM) and the verified document.
pub async fn pinned_root(
    server: &str,
    fingerprint: &str,
) -> Result<(String, Discovery), BootstrapError> {
    let pinned = parse_fingerprint(fingerprint)?;
    let setup = |e: reqwest::Error| BootstrapError::Http {
        url: server.to_owned(),
        message: e.to_string(),
    };
    let unchecked = pinned_client_builder(None, None)
        .and_then(reqwest::ClientBuilder::build)
        .map_err(setup)?;
    let unverified = fetch_discovery(&unchecked, server).await?;
    let root_pem = first_pem_block(&unverified.root_pem);
    let found = first_certificate_der(&root_pem)
        .map(|der| ring::digest::digest(&ring::digest::SHA256, &der))
        .ok_or_else(|| BootstrapError::Http {
            url: server.to_owned(),
            message: "the discovery document holds no root certificate".into(),
        })?;
    if found.as_ref() != pinned {
        return Err(BootstrapError::FingerprintMismatch {
            expected: crate::token::hex(&pinned),
            found: crate::token::hex(found.as_ref()),
        });
    }
    let verified = pinned_client_builder(Some(root_pem.as_bytes()), None)
        .and_then(reqwest::ClientBuilder::build)
        .map_err(setup)?;
    let discovery = fetch_discovery(&verified, server).await?;
    Ok((root_pem, discovery))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_with_or_without_colons() {
        let hex64 = "ab".repeat(32);
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(parse_fingerprint(&hex64).ok(), Some([0xab; 32]));
        assert_eq!(parse_fingerprint(&colons).ok(), Some([0xab; 32]));
        assert!(parse_fingerprint("abc").is_err());
        assert!(parse_fingerprint(&"zz".repeat(32)).is_err());
    }
}
