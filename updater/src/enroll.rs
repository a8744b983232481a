//! The endpoint's identity: enrollment with a one-time token, and renewal before expiry.
//!
//! Enrollment trusts nothing but the root fingerprint the operator gave:
//! 1. the discovery document (`GET /.well-known/herald`) is fetched once without checking the
//!    server certificate, only to read the root certificate from it; the server must be
//!    `https://`, the document at most 64 KiB, complete within 15 s, and no redirect leaves
//!    the server's origin;
//! 2. that root must hash (SHA-256 of its DER) to the pinned fingerprint, or enrollment stops;
//! 3. from then on the root is the only trust anchor: the discovery document is fetched again
//!    over verified TLS, and everything else uses that connection;
//! 4. the key pair is generated here (ECDSA P-256); only a PKCS#10 request leaves the machine.
//!    The key is kept (`pending-key.pem`, mode 0600) until the answer is stored, so a second
//!    run after a lost answer retries with the same key and gets the same certificate;
//! 5. the answer must certify exactly our public key.
//!
//! The identity is written to `STATE_DIR/identity/`: `identity.pem` (private key then
//! certificate chain, mode 0600, replaced atomically so key and certificate always match),
//! `cert.pem`, `ca.pem` (the root) and `discovery.json`.

use std::path::{Path, PathBuf};

use der::Decode;
use herald_token_client::{
    certifies, error_chain, first_pem_block, pinned_client_builder, pinned_root, BootstrapError,
    Purpose, Signer,
};
pub use herald_wire::Discovery;
use herald_wire::{
    EnrollRequest, ErrorBody, IssuedCertificate, RenewRequest, ENROLL_PATH, PROOF_HEADER,
};
use rcgen::PublicKeyData;
use serde::Serialize;
use url::Url;

/// Why enrollment or renewal failed.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // fields are named for what they hold
pub enum EnrollError {
    /// The server's root could not be established from the pinned fingerprint.
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
    /// The server could not be reached or answered with an error.
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    /// The server's answer is not what the protocol says.
    #[error("unexpected answer from {url}: {message}")]
    Protocol { url: String, message: String },
    /// The issued certificate does not certify the key generated here.
    #[error("the issued certificate is not for the key generated on this endpoint")]
    WrongKey,
    /// Key or request generation failed.
    #[error("key generation failed: {0}")]
    Key(#[from] rcgen::Error),
    /// The renewal could not be signed with the current key.
    #[error("signing the renewal with the current key: {0}")]
    Proof(String),
    /// No identity is stored.
    #[error("no identity in {0}: run `herald-update enroll` first")]
    NotEnrolled(PathBuf),
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What enrollment produced.
#[derive(Debug, Clone)]
pub struct Enrolled {
    /// The unique name the server issued the certificate for.
    pub name: String,
    /// Where the identity was written.
    pub identity_dir: PathBuf,
    /// The discovery document, fetched over verified TLS.
    pub discovery: Discovery,
}

/// Files of a stored identity.
#[derive(Debug, Clone)]
pub struct IdentityFiles {
    dir: PathBuf,
}

impl IdentityFiles {
    /// The identity of a state folder.
    pub fn in_state_dir(state_dir: &Path) -> Self {
        IdentityFiles {
            dir: state_dir.join("identity"),
        }
    }

    /// Private key then certificate chain, PEM (mode 0600).
    pub fn identity_pem(&self) -> PathBuf {
        self.dir.join("identity.pem")
    }

    /// The root certificate, PEM.
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The certificate chain alone, PEM.
    pub fn cert_pem(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    /// The discovery document.
    pub fn discovery(&self) -> PathBuf {
        self.dir.join("discovery.json")
    }

    /// The private key of an enrollment not yet answered (mode 0600).
    pub fn pending_key(&self) -> PathBuf {
        self.dir.join("pending-key.pem")
    }

    /// True when an identity is stored.
    pub fn exists(&self) -> bool {
        self.identity_pem().exists()
    }

    /// Reads the stored discovery document.
    pub fn read_discovery(&self) -> Result<Discovery, EnrollError> {
        let path = self.discovery();
        let bytes = read(&path)?;
        serde_json::from_slice(&bytes).map_err(|e| EnrollError::Io {
            path,
            source: std::io::Error::other(e),
        })
    }
}

fn client(
    anchor_pem: Option<&[u8]>,
    identity_pem: Option<&[u8]>,
) -> Result<reqwest::Client, EnrollError> {
    let err = |e: reqwest::Error| EnrollError::Http {
        url: "(client set-up)".into(),
        message: e.to_string(),
    };
    pinned_client_builder(anchor_pem, identity_pem)
        .map_err(err)?
        // Tokens, requests and certificates travel only over TLS, also after a redirect.
        .https_only(true)
        .timeout(std::time::Duration::from_secs(60))
        .user_agent(concat!("herald-update/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(err)
}

/// A POST with a JSON body.
fn json_post(
    client: &reqwest::Client,
    url: &str,
    body: &impl Serialize,
) -> Result<reqwest::RequestBuilder, EnrollError> {
    let json = serde_json::to_vec(body).map_err(|e| EnrollError::Protocol {
        url: url.to_owned(),
        message: e.to_string(),
    })?;
    Ok(client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(json))
}

/// Sends a request; a non-2xx answer becomes an error carrying the server's message.
async fn send(request: reqwest::RequestBuilder, url: &str) -> Result<Vec<u8>, EnrollError> {
    let http = |message: String| EnrollError::Http {
        url: url.to_owned(),
        message,
    };
    let response = request.send().await.map_err(|e| http(error_chain(&e)))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| http(e.to_string()))?;
    if !status.is_success() {
        let detail = ErrorBody::parse(&body)
            .map(|b| b.error.to_string())
            .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
        return Err(http(format!("HTTP {status}: {detail}")));
    }
    Ok(body.to_vec())
}

/// Enrolls this endpoint (see the module documentation).
pub async fn enroll(
    server: &Url,
    token: &str,
    root_fingerprint: &str,
    files: &IdentityFiles,
) -> Result<Enrolled, EnrollError> {
    // Steps 1 to 3: the root, checked against the pin, then verified TLS from now on.
    let (root_pem, discovery) = pinned_root(server.as_str(), root_fingerprint).await?;
    let verified = client(Some(root_pem.as_bytes()), None)?;
    let enroll_url = match &discovery.enroll_url {
        Some(url) => url.clone(),
        None => join(server, ENROLL_PATH.trim_start_matches('/'))?,
    };
    // Step 4: the key stays here. It is kept (owner-only) until enrollment succeeds, so
    // running the command again after a lost answer retries with the same key, which the
    // server answers with the same certificate.
    let key = pending_key(files)?;
    let csr = request_for(&key)?;
    let body = EnrollRequest {
        token: token.to_owned(),
        csr,
    };
    let answer = send(json_post(&verified, &enroll_url, &body)?, &enroll_url).await?;
    let issued = parse_issued(&answer, &enroll_url)?;
    // Step 5: the certificate must be for our key.
    store_identity(files, &key, &issued, &root_pem, &discovery)?;
    let pending = files.pending_key();
    std::fs::remove_file(&pending).map_err(|source| EnrollError::Io {
        path: pending,
        source,
    })?;
    Ok(Enrolled {
        name: issued.name,
        identity_dir: files.dir.clone(),
        discovery,
    })
}

/// Renews the stored identity over mutual TLS with a new key, when less than a third of its
/// lifetime is left (or always, with `force`). Returns the new name when it renewed.
pub async fn renew_if_due(
    files: &IdentityFiles,
    force: bool,
) -> Result<Option<String>, EnrollError> {
    if !files.exists() {
        return Err(EnrollError::NotEnrolled(files.dir.clone()));
    }
    let identity = read(&files.identity_pem())?;
    let ca = read(&files.ca_pem())?;
    if !force && !renewal_due(&String::from_utf8_lossy(&read(&files.cert_pem())?))? {
        return Ok(None);
    }
    let discovery = files.read_discovery()?;
    let renew_url = discovery
        .renew_url
        .clone()
        .ok_or_else(|| EnrollError::Protocol {
            url: files.discovery().display().to_string(),
            message: "the discovery document names no renewal URL".into(),
        })?;
    let client = client(Some(&ca), Some(&identity))?;
    let (key, csr) = new_key_and_request()?;
    // The current key signs the exact body: relays cannot change it or renew another
    // certificate with it.
    let body = serde_json::to_vec(&RenewRequest { csr }).map_err(|e| EnrollError::Protocol {
        url: renew_url.clone(),
        message: e.to_string(),
    })?;
    let proof = Signer::from_identity_pem(&String::from_utf8_lossy(&identity))
        .and_then(|signer| signer.header(Purpose::Renew, &body, unix_now()))
        .map_err(|e| EnrollError::Proof(e.to_string()))?;
    let request = client
        .post(&renew_url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(PROOF_HEADER, proof)
        .body(body);
    let answer = send(request, &renew_url).await?;
    let issued = parse_issued(&answer, &renew_url)?;
    let root_pem = String::from_utf8_lossy(&ca).into_owned();
    store_identity(files, &key, &issued, &root_pem, &discovery)?;
    Ok(Some(issued.name))
}

/// True when less than a third of the certificate's lifetime is left.
fn renewal_due(cert_pem: &str) -> Result<bool, EnrollError> {
    let bad = |message: String| EnrollError::Protocol {
        url: "stored certificate".into(),
        message,
    };
    let (_, der) = der::pem::decode_vec(first_pem_block(cert_pem).as_bytes())
        .map_err(|e| bad(e.to_string()))?;
    let cert = x509_cert::Certificate::from_der(&der).map_err(|e| bad(e.to_string()))?;
    let validity = &cert.tbs_certificate.validity;
    let start = validity.not_before.to_unix_duration().as_secs();
    let end = validity.not_after.to_unix_duration().as_secs();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    Ok(now + (end.saturating_sub(start)) / 3 >= end)
}

/// Seconds since the Unix epoch.
fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn join(server: &Url, path: &str) -> Result<String, EnrollError> {
    server
        .join(path)
        .map(|u| u.to_string())
        .map_err(|e| EnrollError::Http {
            url: server.to_string(),
            message: e.to_string(),
        })
}

/// A new ECDSA P-256 key pair and a PKCS#10 request for it (the server sets the name).
fn new_key_and_request() -> Result<(rcgen::KeyPair, String), EnrollError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let csr = request_for(&key)?;
    Ok((key, csr))
}

/// The key of an enrollment in progress: the one kept from an earlier attempt, or a new one
/// written (mode 0600) before anything is sent.
fn pending_key(files: &IdentityFiles) -> Result<rcgen::KeyPair, EnrollError> {
    let path = files.pending_key();
    if path.exists() {
        let pem = String::from_utf8_lossy(&read(&path)?).into_owned();
        return Ok(rcgen::KeyPair::from_pem(&pem)?);
    }
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let io = |source| EnrollError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(&files.dir).map_err(io)?;
    set_private(&files.dir, 0o700).map_err(io)?;
    herald_files::write_private(&path, key.serialize_pem().as_bytes()).map_err(io)?;
    Ok(key)
}

/// A PKCS#10 request for `key` (the server sets the name, whatever the request says).
fn request_for(key: &rcgen::KeyPair) -> Result<String, EnrollError> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "herald-endpoint");
    Ok(params.serialize_request(key)?.pem()?)
}

fn parse_issued(answer: &[u8], url: &str) -> Result<IssuedCertificate, EnrollError> {
    serde_json::from_slice(answer).map_err(|e| EnrollError::Protocol {
        url: url.to_owned(),
        message: e.to_string(),
    })
}

/// Checks that the certificate is for `key`, then writes the identity atomically.
fn store_identity(
    files: &IdentityFiles,
    key: &rcgen::KeyPair,
    issued: &IssuedCertificate,
    root_pem: &str,
    discovery: &Discovery,
) -> Result<(), EnrollError> {
    if !certifies(&issued.certificate_pem, &key.subject_public_key_info()) {
        return Err(EnrollError::WrongKey);
    }
    let mut chain = issued.certificate_pem.trim_end().to_owned();
    chain.push('\n');
    if !issued.chain_pem.trim().is_empty() {
        chain.push_str(issued.chain_pem.trim_end());
        chain.push('\n');
    }
    let mut identity = key.serialize_pem();
    identity.push_str(&chain);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| EnrollError::Io { path, source }
    };
    std::fs::create_dir_all(&files.dir).map_err(io(&files.dir))?;
    set_private(&files.dir, 0o700).map_err(io(&files.dir))?;
    herald_files::write_private(&files.identity_pem(), identity.as_bytes())
        .map_err(io(&files.identity_pem()))?;
    herald_files::write_public(&files.cert_pem(), chain.as_bytes())
        .map_err(io(&files.cert_pem()))?;
    herald_files::write_public(&files.ca_pem(), root_pem.as_bytes())
        .map_err(io(&files.ca_pem()))?;
    let discovery_json = serde_json::to_vec_pretty(discovery).map_err(|e| EnrollError::Io {
        path: files.discovery(),
        source: std::io::Error::other(e),
    })?;
    herald_files::write_public(&files.discovery(), &discovery_json).map_err(io(&files.discovery()))
}

fn set_private(dir: &Path, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = (dir, mode);
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>, EnrollError> {
    std::fs::read(path).map_err(|source| EnrollError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn certificate_for_another_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let files = IdentityFiles::in_state_dir(dir.path());
        let (key, _) = new_key_and_request().unwrap();
        // The example client certificate certifies a different key.
        let other = std::fs::read_to_string(herald_keys_example::pki::client_cert()).unwrap();
        let issued = IssuedCertificate {
            name: "EXAMPLE-LAPTOP-0001".into(),
            certificate_pem: other,
            chain_pem: String::new(),
            serial: herald_wire::Serial::from_bytes(&[1]),
            not_after: "2030-01-01T00:00:00Z".into(),
        };
        let err = store_identity(&files, &key, &issued, "", &Discovery::default()).unwrap_err();
        assert!(matches!(err, EnrollError::WrongKey), "{err}");
        assert!(!files.exists(), "nothing written");
    }

    #[test]
    fn renewal_is_due_in_the_last_third_of_the_lifetime() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let now = time::OffsetDateTime::now_utc();
        let cert_with = |before_days: i64, after_days: i64| {
            let mut params = rcgen::CertificateParams::new(vec!["x".to_owned()]).unwrap();
            params.not_before = now - time::Duration::days(before_days);
            params.not_after = now + time::Duration::days(after_days);
            params.self_signed(&key).unwrap().pem()
        };
        assert!(!renewal_due(&cert_with(1, 29)).unwrap());
        assert!(renewal_due(&cert_with(25, 5)).unwrap());
        assert!(renewal_due(&cert_with(30, -1)).unwrap(), "expired: due");
    }
}
