//! The client side of Herald's token service, for everything that talks to a Herald server as
//! a client: the endpoint agent (`herald-update`) and relays towards their upstream.
//!
//! - HTTPS set-up trusting only the pinned root, with bounded, same-origin redirects, and
//!   the bootstrap of that trust from a root fingerprint ([`pinned_root`]);
//! - certificate helpers ([`certifies`], [`certificate_serial`], PEM blocks), and the
//!   endpoint's name and group as its certificate carries them ([`identity_of_certificate`]);
//! - the end-to-end proofs ([`proof`]) that endpoints sign over renewals and status reports
//!   and the authority checks: both sides live here, since they must agree byte for byte.
//!
//! The wire types (requests, answers, discovery document, headers) are in `herald-wire`.
//! Nothing here links an HTTP server framework: the server side is `herald-token-service`.

#![forbid(unsafe_code)]

mod certs;
mod https;
pub mod proof;
mod time;

pub use certs::{
    certificate_serial, certifies, first_certificate_der, first_pem_block, identity_of_certificate,
    sha256_hex, EndpointIdentity, IdentityError,
};
pub use https::{
    error_chain, fetch_discovery, get_bounded, get_limited, parse_fingerprint,
    pinned_client_builder, pinned_root, require_https, same_origin_redirects, BootstrapError,
    CONNECT_TIMEOUT, DISCOVERY_TIMEOUT, MAX_DISCOVERY_BYTES, MAX_REDIRECTS,
};
pub use proof::{Proof, ProofError, Purpose, ReplayGuard, Signer, VerifiedProof, MAX_SKEW_SECS};
pub use time::rfc3339;
