//! What anonymous clients can make the service do: per-address rate limits on enrollment and
//! renewal (`429` with `Retry-After`), and aggregated auditing of refusals for unknown
//! tokens (one audit entry per source address and interval instead of one per request).
//!
//! Why the limit is on *failed* attempts, with only a generous bound on all requests: a
//! successful enrollment spends a one-time token an operator created, and a successful
//! renewal needs a valid certificate and its key, so honest traffic is bounded by what
//! operators hand out; whoever guesses tokens or replays refused requests fails every time.
//! Failures therefore drain a small bucket per address (default 30, refilled at 60 a minute),
//! and an address whose bucket is empty is answered `429` before any work is done. A site
//! enrolling many endpoints through one address (a NAT, a relay, the enrollment benchmark's
//! 64 clients) is not slowed down, since its requests succeed; all requests of an address
//! are still bounded by a second bucket (default 5,000 per second) so one address cannot
//! monopolise the CPU.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Most addresses tracked at once; beyond it, addresses whose buckets are full again are
/// forgotten first (IPv6 addresses are tracked per /64, so one host cannot fill the table
/// by changing its interface identifier).
const MAX_TRACKED: usize = 65_536;

/// `[enrollment_limits]` of the CA's configuration: per client address, for
/// `POST /api/v1/enroll` and `POST /api/v1/renew`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnrollmentLimits {
    /// Failed authentications (401, 403) an address may make in a burst; 0 disables the
    /// limit on failures.
    pub failed_attempts_burst: u32,
    /// Failed authentications per minute an address regains.
    pub failed_attempts_per_minute: u32,
    /// All requests per second (and burst) of one address; 0 disables it.
    pub requests_per_second: u32,
    /// Seconds over which refusals for unknown tokens from one address are gathered into one
    /// audit entry.
    pub unknown_token_audit_secs: u64,
}

impl Default for EnrollmentLimits {
    fn default() -> Self {
        Self {
            failed_attempts_burst: 30,
            failed_attempts_per_minute: 60,
            requests_per_second: 5_000,
            unknown_token_audit_secs: 60,
        }
    }
}

/// A token bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn full(capacity: f64, now: Instant) -> Self {
        Self {
            tokens: capacity,
            updated: now,
        }
    }

    fn refill(&mut self, capacity: f64, per_sec: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_sec).min(capacity);
        self.updated = now;
    }

    /// Time until one token is available (zero if one is).
    fn wait(&self, per_sec: f64) -> Duration {
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else if per_sec <= 0.0 {
            Duration::from_secs(3600)
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / per_sec)
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Buckets {
    failures: Bucket,
    requests: Bucket,
}

/// The key an address is tracked under: IPv4 as is, IPv6 by its /64 prefix.
fn track_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Per-address token buckets for failed attempts and for all requests.
#[derive(Debug)]
pub struct AddressLimiter {
    limits: EnrollmentLimits,
    state: Mutex<HashMap<IpAddr, Buckets>>,
    limited: AtomicU64,
}

impl AddressLimiter {
    /// A limiter with these limits.
    pub fn new(limits: EnrollmentLimits) -> Self {
        Self {
            limits,
            state: Mutex::new(HashMap::new()),
            limited: AtomicU64::new(0),
        }
    }

    /// The limits.
    pub fn limits(&self) -> &EnrollmentLimits {
        &self.limits
    }

    fn failure_rate(&self) -> (f64, f64) {
        (
            f64::from(self.limits.failed_attempts_burst),
            f64::from(self.limits.failed_attempts_per_minute) / 60.0,
        )
    }

    fn request_rate(&self) -> (f64, f64) {
        let rps = f64::from(self.limits.requests_per_second);
        (rps, rps)
    }

    fn with_buckets<R>(&self, ip: IpAddr, f: impl FnOnce(&mut Buckets, Instant) -> R) -> R {
        let now = Instant::now();
        let (fail_cap, fail_rate) = self.failure_rate();
        let (req_cap, req_rate) = self.request_rate();
        // A poisoned lock only means another request panicked mid-update; the buckets are
        // still usable numbers.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let key = track_key(ip);
        if !state.contains_key(&key) && state.len() >= MAX_TRACKED {
            state.retain(|_, b| {
                b.failures.refill(fail_cap, fail_rate, now);
                b.requests.refill(req_cap, req_rate, now);
                b.failures.tokens < fail_cap || b.requests.tokens < req_cap
            });
            if state.len() >= MAX_TRACKED {
                state.clear();
            }
        }
        let buckets = state.entry(key).or_insert_with(|| Buckets {
            failures: Bucket::full(fail_cap, now),
            requests: Bucket::full(req_cap, now),
        });
        buckets.failures.refill(fail_cap, fail_rate, now);
        buckets.requests.refill(req_cap, req_rate, now);
        f(buckets, now)
    }

    /// Admits a request from `ip`, or says how long it must wait.
    pub fn admit(&self, ip: IpAddr) -> Result<(), Duration> {
        let failures_on = self.limits.failed_attempts_burst > 0;
        let requests_on = self.limits.requests_per_second > 0;
        if !failures_on && !requests_on {
            return Ok(());
        }
        let (_, fail_rate) = self.failure_rate();
        let (_, req_rate) = self.request_rate();
        let verdict = self.with_buckets(ip, |b, _| {
            let mut wait = Duration::ZERO;
            if failures_on {
                wait = wait.max(b.failures.wait(fail_rate));
            }
            if requests_on {
                wait = wait.max(b.requests.wait(req_rate));
            }
            if wait.is_zero() && requests_on {
                b.requests.tokens -= 1.0;
            }
            wait
        });
        if verdict.is_zero() {
            Ok(())
        } else {
            self.limited.fetch_add(1, Ordering::Relaxed);
            Err(verdict)
        }
    }

    /// Counts a refused attempt of `ip` against its failure bucket.
    pub fn record_failure(&self, ip: IpAddr) {
        if self.limits.failed_attempts_burst == 0 {
            return;
        }
        self.with_buckets(ip, |b, _| {
            b.failures.tokens = (b.failures.tokens - 1.0).max(0.0)
        });
    }

    /// Requests answered `429` so far.
    pub fn limited_total(&self) -> u64 {
        self.limited.load(Ordering::Relaxed)
    }
}

/// Refusals for unknown tokens from one source within the current interval.
#[derive(Debug, Clone)]
struct Window {
    first: i64,
    last: i64,
    count: u64,
}

/// An aggregated audit entry: `count` refusals for unknown tokens from `source` between
/// `first` and `last` (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnknownTokenSummary {
    /// The client address (`unknown` without one).
    pub source: String,
    /// How many requests were refused.
    pub count: u64,
    /// Time of the first, Unix seconds.
    pub first: i64,
    /// Time of the last, Unix seconds.
    pub last: i64,
}

/// Gathers refusals for unknown tokens per source and interval.
#[derive(Debug)]
pub(crate) struct UnknownTokenLog {
    interval: i64,
    windows: Mutex<HashMap<String, Window>>,
    total: AtomicU64,
}

impl UnknownTokenLog {
    pub(crate) fn new(interval_secs: u64) -> Self {
        Self {
            interval: i64::try_from(interval_secs.max(1)).unwrap_or(i64::MAX),
            windows: Mutex::new(HashMap::new()),
            total: AtomicU64::new(0),
        }
    }

    /// Counts one refusal from `source` at `now`.
    pub(crate) fn record(&self, source: &str, now: i64) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let window = windows.entry(source.to_owned()).or_insert(Window {
            first: now,
            last: now,
            count: 0,
        });
        window.count += 1;
        window.first = window.first.min(now);
        window.last = window.last.max(now);
    }

    /// Takes the windows whose interval is over at `now` (all of them with `all`).
    pub(crate) fn take_due(&self, now: i64, all: bool) -> Vec<UnknownTokenSummary> {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let due: Vec<String> = windows
            .iter()
            .filter(|(_, w)| all || now - w.first >= self.interval)
            .map(|(source, _)| source.clone())
            .collect();
        let mut out: Vec<UnknownTokenSummary> = due
            .into_iter()
            .filter_map(|source| {
                windows.remove(&source).map(|w| UnknownTokenSummary {
                    source,
                    count: w.count,
                    first: w.first,
                    last: w.last,
                })
            })
            .collect();
        out.sort_by(|a, b| a.source.cmp(&b.source));
        out
    }

    pub(crate) fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(burst: u32, per_minute: u32, rps: u32) -> AddressLimiter {
        AddressLimiter::new(EnrollmentLimits {
            failed_attempts_burst: burst,
            failed_attempts_per_minute: per_minute,
            requests_per_second: rps,
            unknown_token_audit_secs: 60,
        })
    }

    #[test]
    fn failures_drain_the_bucket_successes_do_not() {
        let l = limiter(3, 1, 0);
        let a: IpAddr = "192.0.2.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let b: IpAddr = "192.0.2.2".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        for _ in 0..100 {
            assert_eq!(l.admit(a), Ok(()), "successes are not limited");
        }
        for _ in 0..3 {
            assert_eq!(l.admit(a), Ok(()));
            l.record_failure(a);
        }
        let wait = l.admit(a).err().unwrap_or_default();
        assert!(wait > Duration::from_secs(50), "{wait:?}");
        assert_eq!(l.admit(b), Ok(()), "other addresses unaffected");
        assert_eq!(l.limited_total(), 1);
    }

    #[test]
    fn requests_bounded_per_address_and_ipv6_per_prefix() {
        let l = limiter(0, 0, 5);
        let one: IpAddr = "2001:db8::1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let two: IpAddr = "2001:db8::2".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        for _ in 0..5 {
            assert_eq!(l.admit(one), Ok(()));
        }
        assert!(l.admit(two).is_err(), "same /64");
    }

    #[test]
    fn unknown_tokens_gathered_per_source_and_interval() {
        let log = UnknownTokenLog::new(60);
        for t in 0..1000 {
            log.record("192.0.2.7", 1_000 + t % 30);
        }
        log.record("192.0.2.8", 1_010);
        assert!(log.take_due(1_059, false).is_empty());
        let due = log.take_due(1_070, false);
        assert_eq!(due.len(), 2);
        assert_eq!(
            (due[0].count, due[0].first, due[0].last),
            (1000, 1_000, 1_029)
        );
        assert!(log.take_due(2_000, true).is_empty());
        assert_eq!(log.total(), 1001);
    }
}
