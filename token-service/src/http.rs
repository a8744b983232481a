//! The HTTP side (axum): the enrollment and renewal routes over [`TokenService`], the
//! per-address rate limit, and the answer of a [`Refusal`] with the protocol's one JSON error
//! body ([`herald_wire::ErrorBody`], shared with the authority's API).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};

use herald_wire::{
    EnrollRequest, ErrorBody, RenewRequest, ENROLL_PATH, PROOF_HEADER, RELAY_CHAIN, RENEW_PATH,
};

use crate::guard::AddressLimiter;
use crate::refusal::Refusal;
use crate::service::{Carrier, TokenService};

/// The DER certificate a client presented over mutual TLS; the server puts it in each
/// request's extensions.
#[derive(Debug, Clone)]
pub struct ClientCertificate(pub Arc<Vec<u8>>);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status()).unwrap_or(StatusCode::BAD_REQUEST);
        error_response(status, &self.body())
    }
}

/// An error answer: `status` with the JSON error body.
fn error_response(status: StatusCode, body: &ErrorBody) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_json(),
    )
        .into_response()
}

/// Turns every 4xx/5xx answer that is not already JSON (unknown route or method, body too
/// large, a plain answer forwarded from a repository mirror) into the JSON error body, so
/// that every refusal has one shape. OCSP answers keep their own type.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let keeps_its_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json") || ct.contains("ocsp"));
    if keeps_its_type {
        return response;
    }
    let code = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::NOT_FOUND => "not_found",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    };
    let message = status.canonical_reason().unwrap_or("error");
    let mut answer = error_response(status, &ErrorBody::new(code, message));
    // What the client should do next stays: the methods allowed, when to retry.
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(value) = response.headers().get(&name) {
            answer.headers_mut().insert(name, value.clone());
        }
    }
    answer
}

/// A JSON body, or a 400/415 refusal.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, Refusal> {
    let ct_ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|ct| ct.starts_with("application/json"));
    if !ct_ok {
        return Err(Refusal::new(
            415,
            "unsupported_media_type",
            "send application/json",
        ));
    }
    serde_json::from_slice(body).map_err(|e| Refusal::bad_request("bad_json", e.to_string()))
}

/// `200 OK` with `value` as JSON.
pub(crate) fn json_ok(value: &impl serde::Serialize) -> Response {
    match serde_json::to_string(value) {
        Ok(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Err(e) => Refusal::internal(&e).into_response(),
    }
}

/// Runs a blocking call of the service off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Refusal> + Send + 'static,
) -> Result<T, Refusal> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Refusal::internal(&e))?
}

/// `POST /api/v1/enroll` and `POST /api/v1/renew`, rate-limited per client address by the
/// service's limiter (see [`rate_limited`]), every error answered as JSON ([`json_errors`]).
pub fn routes(service: TokenService) -> Router {
    let limiter = service.limiter().clone();
    let router = Router::new()
        .route(ENROLL_PATH, post(enroll))
        .route(RENEW_PATH, post(renew))
        .with_state(service);
    rate_limited(router, limiter).layer(axum::middleware::from_fn(json_errors))
}

/// The client address the server put in the request's extensions
/// (`Extension(ConnectInfo(peer))`), if any.
fn client_ip(req: &Request) -> Option<IpAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// Applies `limiter` to every route of `router`: a client address whose failure (or request)
/// bucket is empty gets `429 Too Many Requests` with `Retry-After` before any work is done,
/// and every failed authentication (401: unknown token, no client certificate; 403: expired
/// or revoked token or certificate) counts as a failed attempt of its address. Conflicts
/// (409, a token already used, e.g. by a concurrent retry) and malformed requests do not:
/// they need a real token, and are audited one by one. Requests without a known client
/// address pass unlimited.
pub fn rate_limited(router: Router, limiter: Arc<AddressLimiter>) -> Router {
    router.layer(axum::middleware::from_fn_with_state(limiter, limit))
}

async fn limit(State(limiter): State<Arc<AddressLimiter>>, req: Request, next: Next) -> Response {
    let Some(ip) = client_ip(&req) else {
        return next.run(req).await;
    };
    if let Err(wait) = limiter.admit(ip) {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut response = Refusal::new(
            429,
            "rate_limited",
            format!("too many requests from this address; retry in {secs} s"),
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        return response;
    }
    let response = next.run(req).await;
    if matches!(
        response.status(),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
    ) {
        limiter.record_failure(ip);
    }
    response
}

/// Who handed this request over: the TLS client certificate and the relay chain header.
pub fn carrier(
    client: Option<&ClientCertificate>,
    headers: &HeaderMap,
) -> Result<Carrier, Refusal> {
    let relay_chain = match headers.get(RELAY_CHAIN) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| {
                    Refusal::bad_request("bad_relay_chain", "the relay chain is not text")
                })?
                .to_owned(),
        ),
    };
    Ok(Carrier {
        peer: client.map(|c| c.0.clone()),
        relay_chain,
    })
}

async fn enroll(
    State(service): State<TokenService>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    client: Option<Extension<ClientCertificate>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let request: EnrollRequest = parse_json(&headers, &body)?;
    let source = peer.map(|Extension(ConnectInfo(addr))| addr.ip());
    let carrier = carrier(client.as_deref(), &headers)?;
    let issued = blocking(move || service.enroll_from(&carrier, &request, source)).await?;
    Ok(json_ok(&issued))
}

async fn renew(
    State(service): State<TokenService>,
    client: Option<Extension<ClientCertificate>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    // Checks the content type and the shape before any signature is verified.
    let _: RenewRequest = parse_json(&headers, &body)?;
    let carrier = carrier(client.as_deref(), &headers)?;
    let proof = headers.get(PROOF_HEADER).map(|v| v.as_bytes().to_vec());
    let issued = blocking(move || service.renew(&carrier, proof.as_deref(), &body)).await?;
    Ok(json_ok(&issued))
}
