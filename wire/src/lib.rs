//! Herald's wire types: what crosses a process boundary between the authority (`herald-ca`),
//! its relays and the endpoints (`herald-update`) in the enrollment, renewal and status
//! protocol.
//!
//! Both sides depend on this crate, so a client does not link the server's HTTP framework
//! and the two cannot drift apart. It holds types and names only: no I/O, no HTTP client or
//! server, no cryptography.
//!
//! - [`Discovery`], the document at [`WELL_KNOWN_PATH`], and the API paths;
//! - [`EnrollRequest`], [`RenewRequest`] and their answer [`IssuedCertificate`];
//! - [`StatusReport`], the body of `POST /api/v1/status` (and the endpoint's `status.json`);
//! - [`Group`], an endpoint group's name, as the CA records it and certificates carry it;
//! - [`PROOF_HEADER`] and [`RELAY_CHAIN`], the protocol's headers;
//! - [`ErrorBody`], the JSON body of every error answer;
//! - [`Serial`], a certificate serial number as every crate names it (lowercase hex).

#![forbid(unsafe_code)]

mod discovery;
mod enrollment;
mod error;
mod group;
mod headers;
mod serial;
mod status;

pub use discovery::{Discovery, ENROLL_PATH, RENEW_PATH, STATUS_PATH, WELL_KNOWN_PATH};
pub use enrollment::{EnrollRequest, IssuedCertificate, RenewRequest};
pub use error::{ErrorBody, ErrorDetail};
pub use group::{Group, GroupError};
pub use headers::{PROOF_HEADER, RELAY_CHAIN};
pub use serial::{Serial, SerialParseError};
pub use status::{RolloutState, StatusReport};
