//! Update repository hosting: the folder `herald-sign` writes, served read-only over HTTPS
//! at `/repo/` (`[repository]` in config.toml). When `require_client_cert` is set, only clients
//! with a valid, unrevoked certificate of this CA get files: the TLS handshake already refuses
//! revoked certificates, and each request checks again so that a revocation also ends access
//! on connections opened before it.
//!
//! Links: nothing below the repository folder is served through a symbolic link, whether it
//! points inside the folder or out of it. Before a request reaches the file server, every
//! component of its path is checked with `symlink_metadata` (which does not follow links), and
//! a link anywhere on the way answers 404, as an absent file does. The configured folder
//! itself may be a link (the operator's choice). A link swapped in between the check and the
//! open is not covered: the folder is written by the operator and `herald-sign`, not by
//! clients; the check is against a stray or planted link, such as one to the data folder's
//! `passphrase`.
//!
//! The repository needs nothing from this server: any static HTTPS server or CDN serving the
//! same folder works with the updater, because the repository's signed metadata, not the
//! transport, protects its content.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use tower_http::services::ServeDir;

use herald_token_service::ClientCertificate;

use crate::core::config::{RepositorySection, REPO_PATH};
use crate::core::fleet::client_record;
use crate::http::error::ApiError;
use crate::http::{blocking, AppState};

/// The repository folder of `section`, relative paths taken from the data folder.
pub(crate) fn repository_dir(state: &AppState, section: &RepositorySection) -> PathBuf {
    state.authority.layout().dir().join(&section.dir)
}

/// The routes serving the configured repository, if any.
pub(crate) fn routes(state: &AppState) -> Option<Router> {
    let section = state.authority.config().repository.clone()?;
    if section.require_client_cert
        && state.authority.config().server.client_auth == crate::core::config::ClientAuth::None
    {
        tracing::warn!(
            "[repository] require_client_cert is set but [server] client_auth is none: \
             no client sends a certificate, so every repository request is refused"
        );
    }
    let files =
        ServeDir::new(repository_dir(state, &section)).append_index_html_on_directories(false);
    let dir = Arc::new(repository_dir(state, &section));
    let router = Router::new()
        .nest_service(REPO_PATH, files)
        .layer(middleware::from_fn_with_state(dir, refuse_links));
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
    let client = client.map(|c| c.0 .0.clone());
    let checked =
        blocking(move || client_record(&authority, client.as_deref().map(Vec::as_slice)).map(drop))
            .await;
    match checked {
        Ok(()) => next.run(req).await,
        Err(refused) => refused.into_response(),
    }
}

/// Answers 404 for a request whose path passes through a symbolic link below `dir` (see the
/// module documentation); lets every other request through to the file server.
async fn refuse_links(State(dir): State<Arc<PathBuf>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let relative = path.strip_prefix(REPO_PATH).unwrap_or(path).to_owned();
    let dir = Arc::clone(&dir);
    let linked = tokio::task::spawn_blocking(move || passes_through_link(&dir, &relative)).await;
    match linked {
        Ok(false) => next.run(req).await,
        Ok(true) => {
            tracing::warn!(path = %req.uri().path(), "repository path through a link refused");
            StatusCode::NOT_FOUND.into_response()
        }
        Err(e) => ApiError::internal(&e).into_response(),
    }
}

/// True when the URL path `relative` (percent-encoded, as the file server decodes it) names,
/// below `dir`, a symbolic link or something reached through one. A path that does not decode
/// or climbs out with `..` counts as linked (refused); a missing component ends the walk (the
/// file server answers 404).
fn passes_through_link(dir: &Path, relative: &str) -> bool {
    let Ok(decoded) = percent_encoding::percent_decode_str(relative).decode_utf8() else {
        return true;
    };
    let mut current = dir.to_path_buf();
    for component in decoded.split('/').filter(|c| !c.is_empty() && *c != ".") {
        if component == ".." || component.contains('\\') || component.contains('\0') {
            return true;
        }
        current.push(component);
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn links_anywhere_on_the_path_are_found() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        std::fs::create_dir_all(repo.join("targets")).unwrap();
        std::fs::write(repo.join("targets/a.txt"), "a").unwrap();
        std::fs::write(tmp.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("secret"), repo.join("leak")).unwrap();
        std::os::unix::fs::symlink(repo.join("targets/a.txt"), repo.join("inside")).unwrap();
        std::os::unix::fs::symlink(tmp.path(), repo.join("up")).unwrap();
        assert!(!passes_through_link(&repo, "/targets/a.txt"));
        assert!(!passes_through_link(&repo, "/targets/missing.txt"));
        assert!(passes_through_link(&repo, "/leak"));
        assert!(passes_through_link(&repo, "/inside"));
        assert!(passes_through_link(&repo, "/up/secret"));
        assert!(passes_through_link(&repo, "/%6Ceak"));
        assert!(passes_through_link(&repo, "/targets/../leak"));
    }
}
