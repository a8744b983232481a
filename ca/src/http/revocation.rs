//! The public revocation routes: OCSP (GET and POST), the CRL and the CA certificates, with
//! HTTP caching headers from the responses' own validity, and `/metrics`; and
//! [`OcspFront`], which answers OCSP requests ahead of the router with the routes' own
//! answers.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::core::admin::Role;
use crate::core::authority::{Authority, ISSUER_ID};
use crate::core::ocsp::{OcspAnswer, MAX_REQUEST_BYTES};
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
            Body::from(Bytes::from_owner(ArcBytes(answer.der))),
        )
            .into_response(),
    }
}

/// Shares the response bytes (kept in the pre-signed cache, or just signed) with the HTTP
/// body without copying.
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
    ocsp_get_response(&state.authority, req.uri().path(), &headers)
}

/// The answer to `GET /ocsp/{base64}`.
fn ocsp_get_response(authority: &Authority, path: &str, headers: &HeaderMap) -> Response {
    // Use the raw path, not the router's decoded parameter: the request may contain '/' and
    // '%2F' alike, and '+' must stay '+'.
    let raw = path.strip_prefix("/ocsp/").unwrap_or("");
    let answer = match crate::core::ocsp::decode_get_path(raw) {
        Some(der) => authority.ocsp_respond(&der),
        // Not base64 at all: answer like a garbage DER request.
        None => authority.ocsp_respond(&[]),
    };
    ocsp_response(headers, answer)
}

/// Answers OCSP requests ahead of the router, without its layers (routing, the JSON error
/// layer, extractors): `GET /ocsp/{base64}`, and `POST /ocsp` or `/ocsp/` whose
/// `Content-Length` is within the request limit. The answers are the routes' own, byte for
/// byte. Any other request, including every OCSP request the router would refuse (another
/// method, no or too large a length), goes to the router.
#[derive(Clone)]
pub(crate) struct OcspFront {
    authority: Arc<Authority>,
}

/// The OCSP requests [`OcspFront`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OcspFrontRoute {
    /// `GET /ocsp/{base64}`.
    Get,
    /// `POST /ocsp` with a body of known length within the limit.
    Post,
}

impl OcspFront {
    pub(crate) fn new(authority: Arc<Authority>) -> Self {
        Self { authority }
    }

    /// Which route this request takes, if this path answers it.
    pub(crate) fn route<B>(req: &axum::http::Request<B>) -> Option<OcspFrontRoute> {
        let path = req.uri().path();
        match *req.method() {
            Method::GET if path.len() > "/ocsp/".len() && path.starts_with("/ocsp/") => {
                Some(OcspFrontRoute::Get)
            }
            Method::POST
                if (path == "/ocsp" || path == "/ocsp/")
                    && !req.headers().contains_key(header::TRANSFER_ENCODING)
                    && req
                        .headers()
                        .get(header::CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<usize>().ok())
                        .is_some_and(|len| len <= MAX_REQUEST_BYTES) =>
            {
                Some(OcspFrontRoute::Post)
            }
            _ => None,
        }
    }

    /// The answer to a request [`OcspFront::route`] chose.
    pub(crate) async fn answer<B>(
        &self,
        route: OcspFrontRoute,
        req: axum::http::Request<B>,
    ) -> Response
    where
        B: HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        let mut response = self.respond(route, req).await;
        // As the router does for every route: the length of a body of known size.
        let size = HttpBody::size_hint(response.body()).exact();
        if let Some(size) =
            size.filter(|_| !response.headers().contains_key(header::CONTENT_LENGTH))
        {
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
        }
        response
    }

    async fn respond<B>(&self, route: OcspFrontRoute, req: axum::http::Request<B>) -> Response
    where
        B: HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        match route {
            OcspFrontRoute::Get => {
                ocsp_get_response(&self.authority, req.uri().path(), req.headers())
            }
            OcspFrontRoute::Post => {
                let (parts, body) = req.into_parts();
                match axum::body::to_bytes(Body::new(body), MAX_REQUEST_BYTES).await {
                    Ok(body) => ocsp_response(&parts.headers, self.authority.ocsp_respond(&body)),
                    // The body broke off: what the route answers then.
                    Err(_) => ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        StatusCode::BAD_REQUEST
                            .canonical_reason()
                            .unwrap_or("error"),
                    )
                    .into_response(),
                }
            }
        }
    }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    use axum::http::HeaderName;
    use base64::Engine;
    use der::Decode;
    use tower::ServiceExt;

    use crate::core::authority::{init, InitOptions, KeyAccess};
    use crate::core::config::DataLayout;
    use crate::core::keys::{CaKeyType, KeyProtection};
    use crate::core::ocsp::test_requests::sha1_request;
    use crate::http::{public_router, AppState};
    use crate::model::serial::Serial;
    use crate::store::{write_tx, CertRecord, SqliteStore};

    /// A CA with one issued certificate; its serial.
    fn authority() -> (tempfile::TempDir, Arc<Authority>, Serial) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ca");
        let addr = "127.0.0.1:9".parse().unwrap();
        init(
            &dir,
            &InitOptions {
                name: "Front".into(),
                key_type: CaKeyType::EcdsaP256,
                protection: KeyProtection::InsecureUnencrypted,
                listen: addr,
                http_listen: Some(addr),
                public_url: "http://ca.example".into(),
                tls_names: vec!["localhost".into()],
                name_domain: "endpoints.herald.internal".into(),
            },
            &|_, layout| Ok(Arc::new(SqliteStore::open(&layout.database())?)),
        )
        .unwrap();
        let store = SqliteStore::open(&DataLayout::new(&dir).database()).unwrap();
        let authority =
            Authority::open(&dir, &KeyAccess { passphrase: None }, Arc::new(store)).unwrap();
        let serial = Serial::from_bytes(&[0x5a; 16]);
        write_tx(authority.store(), |tx| {
            tx.insert_certificate(&CertRecord {
                serial: serial.clone(),
                issuer: ISSUER_ID.into(),
                name: "front-1".into(),
                profile: "endpoint".into(),
                not_before: 0,
                not_after: i64::MAX,
                issued_at: 0,
                der: vec![0],
                revocation: None,
            })
        })
        .unwrap();
        (tmp, Arc::new(authority), serial)
    }

    /// An OCSP request for `serial` (SHA-1 CertID), with `nonce` if given.
    fn ocsp_request(authority: &Authority, serial: &Serial, nonce: Option<&[u8]>) -> Vec<u8> {
        sha1_request(authority.intermediate_der(), serial.as_bytes(), nonce)
    }

    fn request(method: Method, uri: &str, headers: &[(HeaderName, &str)], body: &[u8]) -> Request {
        let mut builder = axum::http::Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(name, *value);
        }
        builder.body(Body::from(body.to_vec())).unwrap()
    }

    /// Status, headers (but the max-age, which counts seconds down) and body.
    async fn parts(response: Response) -> (StatusCode, Vec<(String, String)>, Bytes) {
        let status = response.status();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                let v = v.to_str().unwrap();
                // max-age counts seconds down: left out.
                let v = match v.split_once(", ") {
                    Some((max_age, rest)) if max_age.starts_with("max-age=") => rest,
                    _ => v,
                };
                (k.to_string(), v.to_owned())
            })
            .collect();
        (
            status,
            headers,
            axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap(),
        )
    }

    #[tokio::test]
    async fn ocsp_front_answers_as_the_router_does() {
        let (_tmp, authority, serial) = authority();
        let router = public_router(AppState::new(authority.clone()));
        let front = OcspFront::new(authority.clone());
        let plain = ocsp_request(&authority, &serial, None);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&plain);
        let len = plain.len().to_string();
        let ocsp_type = (header::CONTENT_TYPE, "application/ocsp-request");
        let mut same = vec![
            request(Method::GET, &format!("/ocsp/{b64}"), &[], b""),
            request(
                Method::GET,
                &format!("/ocsp/{}", b64.replace('/', "%2F")),
                &[],
                b"",
            ),
            request(Method::GET, "/ocsp/!!!", &[], b""),
            request(
                Method::POST,
                "/ocsp",
                &[ocsp_type.clone(), (header::CONTENT_LENGTH, &len)],
                &plain,
            ),
            request(
                Method::POST,
                "/ocsp/",
                &[(header::CONTENT_LENGTH, &len)],
                &plain,
            ),
            request(
                Method::POST,
                "/ocsp",
                &[(header::CONTENT_LENGTH, "3")],
                b"abc",
            ),
        ];
        // The pre-signed response's ETag, for a conditional request.
        let (_, headers, _) = parts(
            front
                .answer(
                    OcspFrontRoute::Post,
                    request(Method::POST, "/ocsp", &[], &plain),
                )
                .await,
        )
        .await;
        let etag = headers.iter().find(|(k, _)| k == "etag").unwrap().1.clone();
        same.push(request(
            Method::GET,
            &format!("/ocsp/{b64}"),
            &[(header::IF_NONE_MATCH, &etag)],
            b"",
        ));
        for req in same {
            let described = format!("{} {}", req.method(), req.uri());
            let (method, uri, headers) = (
                req.method().clone(),
                req.uri().clone(),
                req.headers().clone(),
            );
            let body = axum::body::to_bytes(req.into_body(), usize::MAX)
                .await
                .unwrap();
            let rebuild = || {
                let mut r = axum::http::Request::builder()
                    .method(method.clone())
                    .uri(uri.clone())
                    .body(Body::from(body.clone()))
                    .unwrap();
                *r.headers_mut() = headers.clone();
                r
            };
            let route = OcspFront::route(&rebuild())
                .unwrap_or_else(|| panic!("{described} is answered ahead of the router"));
            let ahead = parts(front.answer(route, rebuild()).await).await;
            let routed = parts(router.clone().oneshot(rebuild()).await.unwrap()).await;
            assert_eq!(ahead, routed, "{described}");
        }

        // A nonce: signed afresh by both, the nonce echoed, never cached.
        let with_nonce = ocsp_request(&authority, &serial, Some(&[4; 16]));
        let len = with_nonce.len().to_string();
        let post = || {
            request(
                Method::POST,
                "/ocsp",
                &[(header::CONTENT_LENGTH, &len)],
                &with_nonce,
            )
        };
        let (status, headers, body) = parts(front.answer(OcspFrontRoute::Post, post()).await).await;
        let (routed_status, routed_headers, routed_body) =
            parts(router.clone().oneshot(post()).await.unwrap()).await;
        // (ECDSA signatures differ in length by a byte or two.)
        let without_length = |headers: &[(String, String)]| -> Vec<(String, String)> {
            headers
                .iter()
                .filter(|(k, _)| k != "content-length")
                .cloned()
                .collect()
        };
        assert_eq!(
            (status, without_length(&headers)),
            (routed_status, without_length(&routed_headers))
        );
        assert!(headers.contains(&("cache-control".into(), "no-store".into())));
        for body in [body, routed_body] {
            let response = x509_ocsp::OcspResponse::from_der(&body).unwrap();
            let basic = x509_ocsp::BasicOcspResponse::from_der(
                response.response_bytes.unwrap().response.as_bytes(),
            )
            .unwrap();
            assert_eq!(
                basic.tbs_response_data.nonce().unwrap().0.as_bytes(),
                [4; 16]
            );
        }

        // What the router refuses (or serves otherwise) stays with the router.
        for (method, uri, headers) in [
            (Method::GET, "/ocsp/", vec![]),
            (Method::HEAD, &*format!("/ocsp/{b64}"), vec![]),
            (Method::PUT, "/ocsp", vec![(header::CONTENT_LENGTH, "3")]),
            (Method::POST, "/ocspx", vec![(header::CONTENT_LENGTH, "3")]),
            (Method::POST, "/ocsp", vec![]),
            (
                Method::POST,
                "/ocsp",
                vec![(header::CONTENT_LENGTH, "8193")],
            ),
            (Method::POST, "/ocsp", vec![(header::CONTENT_LENGTH, "x")]),
            (
                Method::POST,
                "/ocsp",
                vec![
                    (header::CONTENT_LENGTH, "3"),
                    (header::TRANSFER_ENCODING, "chunked"),
                ],
            ),
        ] {
            let described = format!("{method} {uri} {headers:?}");
            assert_eq!(
                OcspFront::route(&request(method, uri, &headers, b"abc")),
                None,
                "{described}"
            );
        }
    }
}
