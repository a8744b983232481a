//! The discovery document and the paths of the protocol.

use serde::{Deserialize, Serialize};

/// Where a server or relay serves its [`Discovery`] document.
pub const WELL_KNOWN_PATH: &str = "/.well-known/herald";

/// `POST`: a one-time token and a certificate request for a certificate.
pub const ENROLL_PATH: &str = "/api/v1/enroll";

/// `POST` over mutual TLS, with a proof: a new certificate for the current one's name.
pub const RENEW_PATH: &str = "/api/v1/renew";

/// `POST` over mutual TLS or with a proof: an endpoint's [`crate::StatusReport`].
pub const STATUS_PATH: &str = "/api/v1/status";

/// The discovery document served at [`WELL_KNOWN_PATH`]: everything an endpoint or a relay
/// needs besides the server URL and the root fingerprint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
