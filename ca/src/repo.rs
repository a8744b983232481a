//! Update repository hosting: the folder `herald-sign` writes, served read-only over HTTPS
//! at `/repo/` (`[repository]` in config.toml). When `require_client_cert` is set, only clients
//! with a valid, unrevoked certificate of this CA get files: the TLS handshake already refuses
//! revoked certificates, and each request checks again so that a revocation also ends access
//! on connections opened before it.
//!
//! The repository needs nothing from this server: any static HTTPS server or CDN serving the
//! same folder works with the updater, because the repository's signed metadata, not the
//! transport, protects its content.

use std::path::PathBuf;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use tower_http::services::ServeDir;

use herald_token_service::ClientCertificate;

use crate::api::AppState;
use crate::config::RepositorySection;

/// The URL path the repository is served under.
pub(crate) const REPO_PATH: &str = "/repo";

/// The repository folder of `section`, relative paths taken from the data folder.
pub(crate) fn repository_dir(state: &AppState, section: &RepositorySection) -> PathBuf {
    state.authority.layout().dir().join(&section.dir)
}

/// The routes serving the configured repository, if any.
pub(crate) fn routes(state: &AppState) -> Option<Router> {
    let section = state.authority.config().repository.clone()?;
    if section.require_client_cert
        && state.authority.config().server.client_auth == crate::config::ClientAuth::None
    {
        tracing::warn!(
            "[repository] require_client_cert is set but [server] client_auth is none: \
             no client sends a certificate, so every repository request is refused"
        );
    }
    let files =
        ServeDir::new(repository_dir(state, &section)).append_index_html_on_directories(false);
    let router = Router::new().nest_service(REPO_PATH, files);
    Some(if section.require_client_cert {
        router.layer(middleware::from_fn_with_state(
            state.clone(),
            require_client,
        ))
    } else {
        router
    })
}

/// Lets a request through only with a known, unrevoked client certificate.
async fn require_client(
    State(state): State<AppState>,
    client: Option<Extension<ClientCertificate>>,
    req: Request,
    next: Next,
) -> Response {
    let authority = state.authority.clone();
    let checked = tokio::task::spawn_blocking(move || {
        crate::fleet::client_record(&authority, client.as_deref()).map(drop)
    })
    .await;
    match checked {
        Ok(Ok(())) => next.run(req).await,
        Ok(Err(refused)) => refused.into_response(),
        Err(e) => crate::api::ApiError::internal(&e).into_response(),
    }
}
