//! The relay's cache of upstream answers (CRLs, OCSP responses, CA certificates, repository
//! files), bounded in bytes, and the forwarding that fills it.
//!
//! Keys are the canonical upstream URL (see [`super::paths`]), so spellings of one path share
//! one entry. When an entry does not fit, expired entries go first, then those that expire
//! soonest. An answer larger than the whole bound is never held: it is streamed from the
//! upstream to the client as it arrives.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use super::{bad_gateway, upstream_err, CachePolicy, Relay};

/// Default bound on the bytes the cache holds.
pub const DEFAULT_CACHE_MAX_BYTES: usize = 128 * 1024 * 1024;

/// Bytes counted for each entry besides its key and body (map slot, headers, timestamps), so
/// that many small entries are bounded too.
const ENTRY_OVERHEAD: usize = 512;

/// Method, URL and body of a cacheable request.
pub(super) type CacheKey = (Method, String, Vec<u8>);

/// A cached upstream answer.
#[derive(Clone)]
pub(super) struct Cached {
    pub(super) status: StatusCode,
    pub(super) headers: Vec<(header::HeaderName, HeaderValue)>,
    pub(super) body: Bytes,
    pub(super) until: Instant,
}

impl Cached {
    fn cost(key: &CacheKey, body_len: usize) -> usize {
        key.1.len() + key.2.len() + body_len + ENTRY_OVERHEAD
    }
}

impl IntoResponse for Cached {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body).into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

#[derive(Default)]
struct Entries {
    map: HashMap<CacheKey, Cached>,
    bytes: usize,
}

impl Entries {
    fn remove(&mut self, key: &CacheKey) {
        if let Some(old) = self.map.remove(key) {
            self.bytes = self.bytes.saturating_sub(Cached::cost(key, old.body.len()));
        }
    }
}

/// Upstream answers, at most `max_bytes` of them.
pub(super) struct ResponseCache {
    max_bytes: usize,
    entries: Mutex<Entries>,
}

impl ResponseCache {
    /// An empty cache holding at most `max_bytes`.
    pub(super) fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            entries: Mutex::new(Entries::default()),
        }
    }

    /// The largest body an entry may have.
    fn max_body(&self) -> usize {
        self.max_bytes.saturating_sub(ENTRY_OVERHEAD)
    }

    /// The unexpired answer for `key`.
    fn get(&self, key: &CacheKey) -> Option<Cached> {
        let entries = self.entries.lock().ok()?;
        entries
            .map
            .get(key)
            .filter(|c| Instant::now() < c.until)
            .cloned()
    }

    /// Stores an answer, evicting expired then soonest-expiring entries to make room; an
    /// answer larger than the whole cache is not stored.
    fn insert(&self, key: CacheKey, value: Cached) {
        let cost = Cached::cost(&key, value.body.len());
        if cost > self.max_bytes {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        entries.remove(&key);
        if entries.bytes + cost > self.max_bytes {
            let now = Instant::now();
            let expired: Vec<CacheKey> = entries
                .map
                .iter()
                .filter(|(_, c)| c.until <= now)
                .map(|(k, _)| k.clone())
                .collect();
            for k in &expired {
                entries.remove(k);
            }
        }
        if entries.bytes + cost > self.max_bytes {
            let mut by_expiry: Vec<(Instant, CacheKey)> = entries
                .map
                .iter()
                .map(|(k, c)| (c.until, k.clone()))
                .collect();
            by_expiry.sort_by_key(|(until, _)| *until);
            for (_, k) in by_expiry {
                if entries.bytes + cost <= self.max_bytes {
                    break;
                }
                entries.remove(&k);
            }
        }
        entries.bytes += cost;
        entries.map.insert(key, value);
    }

    /// Bytes held (keys, bodies and per-entry overhead).
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.entries.lock().map(|e| e.bytes).unwrap_or(0)
    }
}

/// The headers of an upstream answer that the relay passes on.
pub(super) fn kept_headers(
    headers: &reqwest::header::HeaderMap,
) -> Vec<(header::HeaderName, HeaderValue)> {
    headers
        .iter()
        .filter(|(name, _)| {
            [
                header::CONTENT_TYPE,
                header::CACHE_CONTROL,
                header::ETAG,
                header::LAST_MODIFIED,
                header::EXPIRES,
            ]
            .contains(name)
        })
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

/// An answer whose body is streamed from the upstream: `first` (already read), then the rest.
fn streamed(
    status: StatusCode,
    mut headers: Vec<(header::HeaderName, HeaderValue)>,
    length: Option<u64>,
    first: Vec<Bytes>,
    rest: reqwest::Response,
) -> Response {
    if let Some(length) = length {
        headers.push((header::CONTENT_LENGTH, HeaderValue::from(length)));
    }
    let body = futures_util::stream::iter(first.into_iter().map(Ok))
        .chain(rest.bytes_stream())
        .map(|chunk| {
            chunk.map_err(|e| {
                tracing::warn!(error = %e, "upstream failed while streaming an answer");
                e
            })
        });
    let mut response = Response::new(Body::from_stream(body));
    *response.status_mut() = status;
    for (name, value) in headers {
        response.headers_mut().insert(name, value);
    }
    response
}

impl Relay {
    /// Forwards a cacheable request: answers from the cache if it holds an unexpired copy;
    /// otherwise asks the upstream and caches a successful answer for as long as `policy`
    /// decides from its headers. Answers that cannot be cached or are larger than the cache
    /// are streamed through without being held.
    pub(super) async fn forward_cached(
        &self,
        method: Method,
        url: String,
        body: Bytes,
        extra: Vec<(&'static str, String)>,
        policy: CachePolicy<'_>,
    ) -> Response {
        let key = (method.clone(), url, body.to_vec());
        if let Some(hit) = self.cache.get(&key) {
            return hit.into_response();
        }
        let mut request = self.files_client.request(method, &key.1).body(body);
        for (name, value) in extra {
            request = request.header(name, value);
        }
        let mut response = match request.send().await {
            Ok(r) => r,
            Err(e) => return bad_gateway(upstream_err(&key.1, e)).into_response(),
        };
        let status =
            StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let headers = kept_headers(response.headers());
        let length = response.content_length();
        let ttl = policy(response.headers()).filter(|t| !t.is_zero());
        let limit = self.cache.max_body();
        let fits = length.is_none_or(|l| l <= limit as u64);
        let Some(ttl) = ttl.filter(|_| status.is_success() && fits) else {
            return streamed(status, headers, length, Vec::new(), response);
        };
        // Read up to the bound; past it, stream what was read and the rest.
        let mut chunks = Vec::new();
        let mut read = 0usize;
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    read += chunk.len();
                    chunks.push(chunk);
                    if read > limit {
                        return streamed(status, headers, length, chunks, response);
                    }
                }
                Ok(None) => break,
                Err(e) => return bad_gateway(upstream_err(&key.1, e)).into_response(),
            }
        }
        let answer = Cached {
            status,
            headers,
            body: Bytes::from(chunks.concat()),
            until: Instant::now() + ttl,
        };
        self.cache.insert(key, answer.clone());
        answer.into_response()
    }
}

/// How long the upstream lets an answer be cached: `max-age` of `Cache-Control` (the CA sets
/// it to the time left until nextUpdate), nothing for `no-store`.
pub(super) fn max_age(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::CACHE_CONTROL)?.to_str().ok()?;
    if value.contains("no-store") || value.contains("private") {
        return None;
    }
    value
        .split(',')
        .find_map(|d| d.trim().strip_prefix("max-age="))
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(url: &str) -> CacheKey {
        (Method::GET, url.to_owned(), Vec::new())
    }

    fn answer(len: usize, ttl: Duration) -> Cached {
        Cached {
            status: StatusCode::OK,
            headers: Vec::new(),
            body: Bytes::from(vec![7u8; len]),
            until: Instant::now() + ttl,
        }
    }

    #[test]
    fn cache_stays_within_its_byte_bound() {
        let cache = ResponseCache::new(10_000);
        for i in 0..100u64 {
            cache.insert(
                key(&format!("https://m/{i}")),
                answer(1_000, Duration::from_secs(60 + i)),
            );
            assert!(cache.bytes() <= 10_000, "{} bytes held", cache.bytes());
        }
        // The soonest-expiring went first; the latest stays.
        assert!(cache.get(&key("https://m/99")).is_some());
        assert!(cache.get(&key("https://m/0")).is_none());
    }

    #[test]
    fn expired_entries_go_first() {
        let cache = ResponseCache::new(4_000);
        cache.insert(key("https://m/old"), answer(1_000, Duration::ZERO));
        cache.insert(key("https://m/a"), answer(1_000, Duration::from_secs(60)));
        cache.insert(key("https://m/b"), answer(1_000, Duration::from_secs(60)));
        assert!(cache.get(&key("https://m/a")).is_some());
        assert!(cache.get(&key("https://m/b")).is_some());
        assert!(cache.bytes() <= 4_000);
    }

    #[test]
    fn answers_larger_than_the_cache_are_not_held() {
        let cache = ResponseCache::new(4_000);
        cache.insert(key("https://m/big"), answer(5_000, Duration::from_secs(60)));
        assert!(cache.get(&key("https://m/big")).is_none());
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn replacing_an_entry_does_not_count_it_twice() {
        let cache = ResponseCache::new(100_000);
        for _ in 0..10 {
            cache.insert(
                key("https://m/same"),
                answer(1_000, Duration::from_secs(60)),
            );
        }
        assert_eq!(cache.bytes(), Cached::cost(&key("https://m/same"), 1_000));
    }
}
