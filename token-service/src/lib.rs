//! Herald's token service: one-time enrollment tokens that allocate unique names, the
//! enrollment and renewal API that endpoints call, and the relay that forwards for a site.
//!
//! It reaches the authority through a narrow interface that it defines itself,
//! [`Authority`], which `herald-ca` implements; `herald-ca` depends on this crate, never the
//! reverse. The crate holds no key and signs nothing: it decides whether a request may be
//! served (token state, expiry, retry, renewal rules) and the authority issues.
//!
//! Layers, each using only those below it (a test in `tests/layering.rs` keeps it so):
//!
//! 1. `herald-wire` (messages, headers, error body, serials) and `herald-token-client`
//!    (HTTPS set-up, proofs), outside this crate;
//! 2. `token`, `guard`, `refusal`: tokens and names, per-address limits, a refusal;
//! 3. `service`: the enrollment and renewal rules over [`Authority`], no HTTP;
//! 4. `http`: the axum routes over [`TokenService`];
//! 5. [`relay`]: a site's stand-in for the server, on top of the HTTP layer.

#![forbid(unsafe_code)]

mod guard;
mod http;
mod refusal;
pub mod relay;
mod service;
mod token;

pub use guard::{AddressLimiter, EnrollmentLimits, UnknownTokenSummary};
pub use herald_token_client::{rfc3339, Proof, ProofError, Purpose, Signer};
pub use herald_wire::{EnrollRequest, IssuedCertificate, RenewRequest, PROOF_HEADER};
pub use http::{carrier, json_errors, rate_limited, routes, ClientCertificate};
pub use refusal::Refusal;
pub use service::{
    Authority, AuthorityError, Carrier, CurrentCertificate, Hop, NewToken, NewTokenRequest, Proved,
    TokenService, MAX_RELAY_HOPS, RELAY_PROFILE,
};
pub use token::{
    format_name, hash_secret, new_secret, parse_duration, parse_ttl, token_status, validate_base,
    CreatedToken, TokenError, TokenRecord, TokenStatus, DEFAULT_TTL_SECS, MAX_TTL_SECS,
};
