//! The authority's counters, exported at `/metrics`.

use std::sync::atomic::AtomicU64;

/// Counters exported at `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Certificates issued.
    pub issued: AtomicU64,
    /// Certificates revoked.
    pub revoked: AtomicU64,
    /// CRLs produced.
    pub crls: AtomicU64,
    /// OCSP requests answered from the cache.
    pub ocsp_cached: AtomicU64,
    /// OCSP responses signed on request (nonce, several CertIDs, cache refresh).
    pub ocsp_signed: AtomicU64,
    /// OCSP requests refused (malformed, unauthorized).
    pub ocsp_refused: AtomicU64,
}
