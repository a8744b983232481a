//! The public revocation routes: OCSP (GET and POST), the CRL and the CA certificates, with
//! HTTP caching headers from the responses' own validity, and `/metrics`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::core::admin::Role;
use crate::core::authority::ISSUER_ID;
use crate::core::ocsp::OcspAnswer;
use crate::http::error::ApiError;
use crate::http::{authenticate, blocking, AppState};
use crate::model::time::http_date;

/// A response from a builder, or 500 if one of its headers could not be encoded.
fn built(response: Result<Response, axum::http::Error>) -> Response {
    response.unwrap_or_else(|e| ApiError::internal(&e).into_response())
}

pub(super) async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if state.authority.config().metrics.require_token {
        if let Err(e) = authenticate(&state, &headers, Role::Auditor) {
            return e.into_response();
        }
    }
    let m = &state.authority.metrics;
    let crl_number = state.authority.published_crl_number();
    let mut out = String::new();
    for (name, help, value) in [
        (
            "herald_ca_certificates_issued_total",
            "Certificates issued by this process.",
            m.issued.load(Ordering::Relaxed),
        ),
        (
            "herald_ca_certificates_revoked_total",
            "Certificates revoked by this process.",
            m.revoked.load(Ordering::Relaxed),
        ),
        (
            "herald_ca_crls_produced_total",
            "CRLs produced by this process.",
            m.crls.load(Ordering::Relaxed),
        ),
        (
            "herald_ca_ocsp_cached_total",
            "OCSP requests answered from the pre-signed cache.",
            m.ocsp_cached.load(Ordering::Relaxed),
        ),
        (
            "herald_ca_ocsp_signed_total",
            "OCSP responses signed on request.",
            m.ocsp_signed.load(Ordering::Relaxed),
        ),
        (
            "herald_ca_ocsp_refused_total",
            "OCSP requests refused (malformed, unauthorized).",
            m.ocsp_refused.load(Ordering::Relaxed),
        ),
        (
            "herald_ca_enrollments_unknown_token_total",
            "Enrollments refused for an unknown token (audited in aggregate per source).",
            state.enrollment.unknown_token_refusals(),
        ),
        (
            "herald_ca_rate_limited_total",
            "Enrollment and renewal requests answered 429 (per-address limits).",
            state.enrollment.limiter().limited_total(),
        ),
    ] {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
        ));
    }
    out.push_str(&format!(
        "# HELP herald_ca_crl_number Number of the current CRL.\n# TYPE herald_ca_crl_number gauge\nherald_ca_crl_number {crl_number}\n"
    ));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

fn cached_response(
    headers: &HeaderMap,
    content_type: &'static str,
    body: Body,
    etag: &str,
    this_update: i64,
    next_update: i64,
) -> Response {
    let now = crate::model::time::now_unix();
    let max_age = (next_update - now).max(0);
    let mut builder = Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(header::ETAG, etag)
        .header(header::LAST_MODIFIED, http_date(this_update))
        .header(header::EXPIRES, http_date(next_update))
        .header(
            header::CACHE_CONTROL,
            format!("max-age={max_age}, public, no-transform, must-revalidate"),
        );
    if not_modified(headers, etag) {
        builder = builder.status(StatusCode::NOT_MODIFIED);
        return built(builder.body(Body::empty()));
    }
    built(builder.body(body))
}

fn ocsp_response(headers: &HeaderMap, answer: OcspAnswer) -> Response {
    match answer.cache {
        Some(c) => cached_response(
            headers,
            "application/ocsp-response",
            Body::from(Bytes::from_owner(ArcBytes(answer.der))),
            &c.etag,
            c.this_update,
            c.next_update,
        ),
        None => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/ocsp-response"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            answer.der.to_vec(),
        )
            .into_response(),
    }
}

/// Shares the cached response bytes with the HTTP body without copying.
struct ArcBytes(Arc<[u8]>);

impl AsRef<[u8]> for ArcBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

pub(super) async fn ocsp_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = state.authority.ocsp_respond(&body);
    ocsp_response(&headers, answer)
}

pub(super) async fn ocsp_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    req: Request,
) -> Response {
    // Use the raw path, not the router's decoded parameter: the request may contain '/' and
    // '%2F' alike, and '+' must stay '+'.
    let path = req.uri().path();
    let raw = path.strip_prefix("/ocsp/").unwrap_or("");
    let answer = match crate::core::ocsp::decode_get_path(raw) {
        Some(der) => state.authority.ocsp_respond(&der),
        // Not base64 at all: answer like a garbage DER request.
        None => state.authority.ocsp_respond(&[]),
    };
    ocsp_response(&headers, answer)
}

pub(super) async fn crl(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    if file != format!("{ISSUER_ID}.crl") {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such CRL",
        ));
    }
    let authority = state.authority.clone();
    let crl = blocking(move || authority.current_crl()).await?;
    Ok(cached_response(
        &headers,
        "application/pkix-crl",
        Body::from(crl.der.clone()),
        &crl.etag,
        crl.this_update,
        crl.next_update,
    ))
}

pub(super) async fn ca_cert(
    State(state): State<AppState>,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    let der = match file.as_str() {
        "root.crt" => state.authority.root_der().to_vec(),
        "intermediate.crt" => state.authority.intermediate_der().to_vec(),
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such certificate",
            ))
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/pkix-cert"),
            (header::CACHE_CONTROL, "max-age=86400, public"),
        ],
        der,
    )
        .into_response())
}
