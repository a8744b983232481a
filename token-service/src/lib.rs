//! Herald's token service: one-time enrollment tokens that allocate unique names, the
//! enrollment and renewal API that endpoints call, and the relay that forwards for a site.
//!
//! It reaches the authority through a narrow interface that it defines itself,
//! [`Authority`], which `herald-ca` implements; `herald-ca` depends on this crate, never the
//! reverse. The crate holds no key and signs nothing: it decides whether a request may be
//! served (token state, expiry, retry, renewal rules) and the authority issues.

#![forbid(unsafe_code)]

pub mod client;
mod guard;
mod http;
pub mod proof;
pub mod relay;
mod service;
mod token;

pub use guard::{AddressLimiter, EnrollmentLimits, UnknownTokenSummary};
pub use http::{carrier, rate_limited, routes, ClientCertificate, Refusal};
pub use proof::{Proof, ProofError, Purpose, ReplayGuard, Signer, PROOF_HEADER};
pub use service::{
    rfc3339, Authority, AuthorityError, Carrier, CurrentCertificate, EnrollRequest, Hop,
    IssuedCertificate, NewTokenRequest, Proved, RenewRequest, TokenService, MAX_RELAY_HOPS,
    RELAY_PROFILE,
};
pub use token::{
    format_name, hash_secret, new_secret, parse_duration, parse_ttl, token_status, validate_base,
    CreatedToken, TokenError, TokenRecord, TokenStatus, DEFAULT_TTL_SECS, MAX_TTL_SECS,
};
