//! The protocol's HTTP headers.

/// The header carrying an endpoint's end-to-end proof (base64 of its JSON) over a renewal
/// request or a status report. Relays pass it on unchanged.
pub const PROOF_HEADER: &str = "x-herald-proof";

/// The header listing (comma-separated, hex) the certificate serials of the relays a request
/// passed through, nearest the endpoint first, each appended by the relay itself.
pub const RELAY_CHAIN: &str = "x-herald-relay-chain";
