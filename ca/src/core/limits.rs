//! Bounds on what one client of a listener can hold: connections and deadlines (enforced by
//! the server's connection governor; configured in `[server]` or on the command line).

use std::time::Duration;

/// Default [`Limits::max_connections`].
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default [`Limits::max_connections_per_client`].
pub(crate) const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 256;
/// Default [`Limits::handshake_timeout`], seconds.
pub(crate) const DEFAULT_HANDSHAKE_TIMEOUT_SECS: u64 = 10;
/// Default [`Limits::header_timeout`], seconds.
pub(crate) const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 10;
/// Default [`Limits::request_timeout`], seconds.
pub(crate) const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 30;
/// Default [`Limits::min_response_rate`], bytes per second.
pub(crate) const DEFAULT_MIN_RESPONSE_RATE: u64 = 1024;

/// Bounds on what one client can hold.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Simultaneous connections per listener; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Simultaneous connections per client address (IPv6: per /64); more are closed at once.
    pub max_connections_per_client: usize,
    /// Time to complete a TLS handshake.
    pub handshake_timeout: Duration,
    /// Time to send a request's headers, and the idle time allowed between requests.
    pub header_timeout: Duration,
    /// Time to send a request's body once its headers arrived, and (separately) to take its
    /// response.
    pub request_timeout: Duration,
    /// Response bytes per second that extend [`Self::request_timeout`] by one second each.
    pub min_response_rate: u64,
    /// Largest request head (request line plus headers), bytes.
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_client: DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
            handshake_timeout: Duration::from_secs(DEFAULT_HANDSHAKE_TIMEOUT_SECS),
            header_timeout: Duration::from_secs(DEFAULT_HEADER_TIMEOUT_SECS),
            request_timeout: Duration::from_secs(DEFAULT_REQUEST_TIMEOUT_SECS),
            min_response_rate: DEFAULT_MIN_RESPONSE_RATE,
            max_header_bytes: 16 * 1024,
        }
    }
}

impl Limits {
    /// The limits with every count and duration at least 1 (0 would stop the listener) and
    /// the per-client cap no larger than the global one.
    pub fn sane(mut self) -> Self {
        let one_sec = Duration::from_secs(1);
        self.max_connections = self.max_connections.max(1);
        self.max_connections_per_client = self
            .max_connections_per_client
            .clamp(1, self.max_connections);
        self.handshake_timeout = self.handshake_timeout.max(one_sec);
        self.header_timeout = self.header_timeout.max(one_sec);
        self.request_timeout = self.request_timeout.max(one_sec);
        self.min_response_rate = self.min_response_rate.max(1);
        self
    }
}
