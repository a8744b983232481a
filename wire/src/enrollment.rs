//! Enrollment and renewal requests, and the certificate they are answered with.

use serde::{Deserialize, Serialize};

use crate::Serial;

/// `POST /api/v1/enroll` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The one-time token.
    pub token: String,
    /// The PKCS#10 request, PEM.
    pub csr: String,
}

/// `POST /api/v1/renew` body; the request carries a proof over this body in the
/// [`crate::PROOF_HEADER`] header.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    /// The PKCS#10 request for the new key, PEM.
    pub csr: String,
}

/// A certificate issued by the authority: the answer to enrollment and renewal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IssuedCertificate {
    /// The name the certificate was issued for.
    pub name: String,
    /// The certificate, PEM.
    pub certificate_pem: String,
    /// The issuing CA certificate, PEM.
    pub chain_pem: String,
    /// Serial (lowercase hex on the wire).
    pub serial: Serial,
    /// notAfter, RFC 3339.
    pub not_after: String,
}
