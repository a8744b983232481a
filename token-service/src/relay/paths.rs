//! The request paths a relay accepts. Every upstream URL the relay builds, and every cache
//! key, comes from a path checked here first:
//!
//! - [`refuse_dot_segments`] runs before routing and refuses any path with a `.` or `..`
//!   segment, in any spelling (`%2e`, `.%2E`, `..%2f` ...) or with a backslash, since URL
//!   parsers upstream turn those into "go up" (`/ocsp/../metrics` would reach `/metrics`).
//! - [`canonical_repository_path`] turns the path of a repository file into its one
//!   canonical spelling (each segment decoded, then encoded the same way), refusing empty
//!   segments and anything that decodes to a separator, so `a.json` and `%61.json` are one
//!   file and one cache entry.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::refusal::Refusal;

/// Characters encoded in a canonical repository path: everything but RFC 3986 unreserved.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn bad_path(message: &str) -> Refusal {
    Refusal::bad_request("bad_path", message)
}

/// Middleware: refuses, before anything else sees it, a request whose path has a dot
/// segment or a backslash.
pub(super) async fn refuse_dot_segments(request: Request, next: Next) -> Response {
    match check_no_dot_segments(request.uri().path()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    }
}

/// Refuses `.` and `..` segments, also percent-encoded or formed by an encoded separator,
/// and backslashes (which URL parsers read as `/`).
fn check_no_dot_segments(path: &str) -> Result<(), Refusal> {
    let decoded = percent_decode_str(path).decode_utf8_lossy();
    if decoded.contains('\\') {
        return Err(bad_path("backslashes are not allowed in paths"));
    }
    if decoded.split('/').any(|s| s == "." || s == "..") {
        return Err(bad_path(
            "dot segments ('.', '..', also percent-encoded) are not allowed in paths",
        ));
    }
    Ok(())
}

/// The canonical spelling of a repository file's path (the part after `/repo/N/`, as
/// received): each segment percent-decoded, checked, and encoded again the one way.
pub(super) fn canonical_repository_path(raw: &str) -> Result<String, Refusal> {
    let mut canonical = Vec::new();
    for segment in raw.split('/') {
        let decoded = percent_decode_str(segment)
            .decode_utf8()
            .map_err(|_| bad_path("repository paths must be UTF-8"))?;
        if decoded.is_empty() {
            return Err(bad_path(
                "empty segments are not allowed in repository paths",
            ));
        }
        if decoded == "." || decoded == ".." {
            return Err(bad_path("dot segments are not allowed in repository paths"));
        }
        if decoded.contains(['/', '\\']) || decoded.chars().any(char::is_control) {
            return Err(bad_path(
                "repository path segments must not hold separators or control characters",
            ));
        }
        canonical.push(utf8_percent_encode(&decoded, SEGMENT).to_string());
    }
    Ok(canonical.join("/"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn dot_segments_refused_in_every_spelling() {
        for path in [
            "/ocsp/../metrics",
            "/ocsp/%2e%2e/metrics",
            "/ocsp/.%2E/metrics",
            "/ocsp/%2E./metrics",
            "/ocsp/..%2fmetrics",
            "/ocsp/..%2Fmetrics",
            "/repo/0/./1.root.json",
            "/repo/0/%2e/1.root.json",
            "/repo/0/1.root.json/.",
            "/repo/0/a/..",
            "/ocsp/..\\metrics",
            "/ocsp/%5c..%5cmetrics",
        ] {
            let refusal = check_no_dot_segments(path).expect_err(path);
            assert_eq!(refusal.code(), "bad_path", "{path}");
        }
    }

    #[test]
    fn ordinary_paths_pass() {
        for path in [
            "/ocsp/MEUwQzBBMD8wPTAJBgUrDgMCGgUABBQ+ab//c+d=",
            "/ocsp/",
            "/crl/intermediate.crl",
            "/repo/0/targets/app..tar.gz",
            "/repo/0/1.root.json",
        ] {
            assert!(check_no_dot_segments(path).is_ok(), "{path}");
        }
    }

    #[test]
    fn repository_paths_have_one_spelling() {
        let canonical = canonical_repository_path("targets/app-1.0.tar.gz").unwrap();
        assert_eq!(canonical, "targets/app-1.0.tar.gz");
        for variant in [
            "targets/app-1.0.tar.gz",
            "%74argets/app-1.0.tar.gz",
            "targets/app%2D1%2E0.tar.gz",
            "targets/%61pp-1.0.tar%2egz",
        ] {
            assert_eq!(canonical_repository_path(variant).unwrap(), canonical);
        }
        assert_eq!(canonical_repository_path("a b/c+d").unwrap(), "a%20b/c%2Bd");
    }

    #[test]
    fn bad_repository_paths_refused() {
        for raw in [
            "",
            "a//b",
            "a/",
            "/a",
            "./a",
            "%2e/a",
            "a/%2E%2E/b",
            "a%2fb",
            "a%5Cb",
            "a%00b",
            "a%ffb",
        ] {
            let refusal = canonical_repository_path(raw).expect_err(raw);
            assert_eq!(refusal.code(), "bad_path", "{raw}");
        }
    }
}
