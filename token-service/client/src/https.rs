//! The HTTPS client set-up shared by everything that talks to a Herald server as a client:
//! the relay upstream and the endpoint's enrollment and renewal.
//!
//! Limits: every client follows at most [`MAX_REDIRECTS`] redirects and only within the
//! origin (scheme, host, port) it was sent to; enrollment, renewal and relay bootstrap accept
//! only `https://` servers; the discovery document, read before trust is established, is
//! capped at [`MAX_DISCOVERY_BYTES`] and must arrive whole within [`DISCOVERY_TIMEOUT`].

use std::time::Duration;

use herald_wire::{Discovery, WELL_KNOWN_PATH};

use crate::certs::{first_certificate_der, first_pem_block};

/// Most redirects a client follows (each within the first request's origin).
pub const MAX_REDIRECTS: usize = 5;

/// Largest discovery document accepted, in bytes.
pub const MAX_DISCOVERY_BYTES: usize = 64 * 1024;

/// Time allowed to connect to a server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Time allowed for the whole discovery request: connection, headers and body.
pub const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(15);

/// The redirect policy of every Herald client: at most [`MAX_REDIRECTS`] redirects, each to
/// the origin (scheme, host and port) of the first request. A redirect to plain HTTP or to
/// another host fails the request, so neither a client certificate, a token nor a status
/// report is ever sent anywhere but where it was addressed.
pub fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let first = attempt.previous().first().map(reqwest::Url::origin);
        if attempt.previous().len() > MAX_REDIRECTS {
            let error = format!("more than {MAX_REDIRECTS} redirects");
            attempt.error(error)
        } else if first.as_ref() == Some(&attempt.url().origin()) {
            attempt.follow()
        } else {
            let error = format!(
                "redirect to {} refused: only redirects within the same origin are followed",
                attempt.url()
            );
            attempt.error(error)
        }
    })
}

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
        .tls_built_in_root_certs(false)
        .redirect(same_origin_redirects())
        .connect_timeout(CONNECT_TIMEOUT);
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

/// Why the server's root could not be established.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // fields are named for what they hold
pub enum BootstrapError {
    /// The fingerprint given is not 64 hex digits.
    #[error("root fingerprint must be 64 hex digits (SHA-256), optionally with colons")]
    BadFingerprint,
    /// The server's root does not match the pinned fingerprint.
    #[error("the server's root certificate has fingerprint {found}, not the pinned {expected}: refusing to enroll")]
    FingerprintMismatch { expected: String, found: String },
    /// The server URL is not `https://`: a token or a certificate request would travel in
    /// clear, and anyone in the middle could serve the (public) pinned root.
    #[error("{url}: only https:// servers are accepted for enrollment, renewal and relays")]
    NotHttps { url: String },
    /// The answer is larger than its limit ([`MAX_DISCOVERY_BYTES`] for the discovery
    /// document).
    #[error("{url}: answer larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    /// The answer did not arrive within [`DISCOVERY_TIMEOUT`].
    #[error("{url}: no complete answer within {} s", DISCOVERY_TIMEOUT.as_secs())]
    Timeout { url: String },
    /// The server could not be reached or answered with an error.
    #[error("{url}: {message}")]
    Http { url: String, message: String },
}

/// Parses a SHA-256 fingerprint written as hex, with or without colons.
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], BootstrapError> {
    let digits: String = text.chars().filter(|c| *c != ':').collect();
    let bytes = hex::decode(digits.trim()).map_err(|_| BootstrapError::BadFingerprint)?;
    <[u8; 32]>::try_from(bytes).map_err(|_| BootstrapError::BadFingerprint)
}

/// Refuses any server URL but `https://`.
pub fn require_https(url: &str) -> Result<reqwest::Url, BootstrapError> {
    match reqwest::Url::parse(url) {
        Ok(parsed) if parsed.scheme() == "https" && parsed.host().is_some() => Ok(parsed),
        _ => Err(BootstrapError::NotHttps {
            url: url.to_owned(),
        }),
    }
}

/// Fetches the discovery document of `server` with `client`: at most [`MAX_DISCOVERY_BYTES`],
/// the whole request within [`DISCOVERY_TIMEOUT`].
pub async fn fetch_discovery(
    client: &reqwest::Client,
    server: &str,
) -> Result<Discovery, BootstrapError> {
    let url = format!("{}{WELL_KNOWN_PATH}", server.trim_end_matches('/'));
    let body = get_bounded(client, &url).await?;
    serde_json::from_slice(&body).map_err(|e| BootstrapError::Http {
        url,
        message: format!("not a discovery document: {e}"),
    })
}

/// GETs `url`: a 2xx answer of at most [`MAX_DISCOVERY_BYTES`], complete within
/// [`DISCOVERY_TIMEOUT`]. A longer answer fails as soon as it passes the limit.
pub async fn get_bounded(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, BootstrapError> {
    get_limited(client, url, MAX_DISCOVERY_BYTES).await
}

/// GETs `url`: a 2xx answer of at most `max_bytes`, complete within [`DISCOVERY_TIMEOUT`]. A
/// longer answer fails as soon as it passes the limit ([`BootstrapError::TooLarge`]).
pub async fn get_limited(
    client: &reqwest::Client,
    url: &str,
    max_bytes: usize,
) -> Result<Vec<u8>, BootstrapError> {
    tokio::time::timeout(DISCOVERY_TIMEOUT, read_bounded(client, url, max_bytes))
        .await
        .map_err(|_| BootstrapError::Timeout {
            url: url.to_owned(),
        })?
}

async fn read_bounded(
    client: &reqwest::Client,
    url: &str,
    max_bytes: usize,
) -> Result<Vec<u8>, BootstrapError> {
    let http = |message: String| BootstrapError::Http {
        url: url.to_owned(),
        message,
    };
    let too_large = || BootstrapError::TooLarge {
        url: url.to_owned(),
        limit: max_bytes,
    };
    let mut response = client
        .get(url)
        .send()
        .await
        .map_err(|e| http(error_chain(&e)))?;
    if !response.status().is_success() {
        return Err(http(format!("HTTP {}", response.status())));
    }
    if response
        .content_length()
        .is_some_and(|len| len > max_bytes as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| http(error_chain(&e)))? {
        if body.len() + chunk.len() > max_bytes {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error's message followed by its causes (reqwest's own message omits them, among them a
/// refused redirect's reason).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut cause = err.source();
    while let Some(inner) = cause {
        let text = inner.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = inner.source();
    }
    message
}

/// Establishes trust in `server` from nothing but a pinned root fingerprint: the discovery
/// document is read once without checking the server certificate, only for its root; that
/// root must hash (SHA-256 of its DER) to the pin; then the document is read again over TLS
/// verified against that root alone. Returns the root (PEM) and the verified document.
/// Only `https://` servers are accepted.
pub async fn pinned_root(
    server: &str,
    fingerprint: &str,
) -> Result<(String, Discovery), BootstrapError> {
    require_https(server)?;
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
            expected: hex::encode(pinned),
            found: hex::encode(found.as_ref()),
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
