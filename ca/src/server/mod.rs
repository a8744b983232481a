//! The servers: HTTPS (rustls) with everything, and the optional plain-HTTP listener for OCSP
//! and CRL, and the relay's listener. Every listener admits and bounds its connections with
//! the shared [`crate::server::governor`]: connection caps per listener and per client address, and
//! deadlines for the TLS handshake, request headers, idle keep-alive and whole requests.

pub(crate) mod governor;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::net::TcpListener;

use herald_token_service::ClientCertificate;

use crate::core::authority::Authority;
use crate::core::config::ClientAuth;
use crate::core::keys;
use crate::core::limits::Limits;
use crate::http::{full_router, public_router, AppState, OcspFront};
use crate::server::governor::Governor;

/// Server errors.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // fields are named for what they hold
pub enum ServeError {
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The TLS configuration could not be built.
    #[error("TLS set-up failed: {0}")]
    Tls(String),
    /// The server's key could not be read.
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    /// The server stopped with an I/O error.
    #[error("server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Bound listeners, before serving.
#[derive(Debug)]
pub(crate) struct Bound {
    https: TcpListener,
    http: Option<TcpListener>,
}

impl Bound {
    /// The HTTPS address.
    pub(crate) fn https_addr(&self) -> SocketAddr {
        self.https
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }
    /// The plain-HTTP address, if any.
    pub(crate) fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|l| l.local_addr().ok())
    }
}

async fn listen(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Listen { addr, source })
}

/// Binds the listeners.
pub(crate) async fn bind(https: SocketAddr, http: Option<SocketAddr>) -> Result<Bound, ServeError> {
    let https = listen(https).await?;
    let http = match http {
        Some(addr) => Some(listen(addr).await?),
        None => None,
    };
    Ok(Bound { https, http })
}

/// Serves until Ctrl-C or SIGTERM.
pub(crate) async fn serve(authority: Authority, bound: Bound) -> Result<(), ServeError> {
    let authority = Arc::new(authority);
    let limits = authority.config().server.limits();
    let tls = tls_config(&authority)?;
    let state = AppState::new(authority.clone());
    // Publish a CRL at start if none is current, then keep CRL and OCSP fresh.
    {
        let authority = authority.clone();
        match tokio::task::spawn_blocking(move || authority.refresh()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "the first CRL/OCSP refresh failed"),
            Err(e) => tracing::error!(error = %e, "the first refresh task failed"),
        }
    }
    let refresher = tokio::spawn(refresh_loop(authority.clone()));
    let ocsp = OcspFront::new(authority.clone());
    let https = tokio::spawn(accept_loop(
        bound.https,
        Some(tokio_rustls::TlsAcceptor::from(Arc::new(tls))),
        full_router(state.clone()),
        Some(ocsp.clone()),
        limits.clone(),
    ));
    let metrics = match authority.config().metrics.listen {
        Some(addr) => Some(tokio::spawn(accept_loop(
            listen(addr).await?,
            None,
            crate::http::metrics_router(state.clone()),
            None,
            limits.clone(),
        ))),
        None => None,
    };
    let http = bound.http.map(|listener| {
        tokio::spawn(accept_loop(
            listener,
            None,
            public_router(state.clone()),
            Some(ocsp),
            limits.clone(),
        ))
    });
    tracing::info!("herald-ca serving");
    shutdown_signal().await;
    tracing::info!("shutting down");
    refresher.abort();
    https.abort();
    for h in [http, metrics].into_iter().flatten() {
        h.abort();
    }
    Ok(())
}

/// Refreshes every second, and at once when the store reports a status change made by
/// another server (PostgreSQL LISTEN/NOTIFY).
async fn refresh_loop(authority: Arc<Authority>) {
    loop {
        let a = authority.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || {
            a.store().wait_status_change(Duration::from_secs(1));
        })
        .await
        {
            tracing::error!(error = %e, "waiting for a status change failed");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let a = authority.clone();
        match tokio::task::spawn_blocking(move || a.refresh()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "CRL/OCSP refresh failed"),
            Err(e) => tracing::error!(error = %e, "refresh task failed"),
        }
    }
}

/// Admits connections on `listener` and serves `router` on them, OCSP requests first through
/// `ocsp` (the listeners whose router has the OCSP routes).
async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: axum::Router,
    ocsp: Option<OcspFront>,
    limits: Limits,
) {
    let governor = Governor::new(limits);
    while let Some(admitted) = governor.accept(&listener).await {
        let router = router.clone();
        let ocsp = ocsp.clone();
        let tls = tls.clone();
        let limits = governor.limits().clone();
        tokio::spawn(async move {
            let _slot = admitted.slot;
            let peer = admitted.peer;
            let activity = admitted.stream.activity();
            // Each request carries the client's address (per-address limits, audit of refusals).
            let router = router.layer(axum::Extension(axum::extract::ConnectInfo(peer)));
            let Some(acceptor) = tls else {
                return governor::serve_http(admitted.stream, activity, router, ocsp, &limits)
                    .await;
            };
            match governor::within_handshake_deadline(&limits, acceptor.accept(admitted.stream))
                .await
            {
                Some(Ok(tls_stream)) => {
                    // The verified client certificate, for renewal over mutual TLS.
                    let router = match tls_stream.get_ref().1.peer_certificates() {
                        Some([first, ..]) => router
                            .layer(axum::Extension(ClientCertificate(Arc::new(first.to_vec())))),
                        _ => router,
                    };
                    governor::serve_http(tls_stream, activity, router, ocsp, &limits).await
                }
                Some(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                None => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

fn tls_config(authority: &Arc<Authority>) -> Result<rustls::ServerConfig, ServeError> {
    let layout = authority.layout();
    let tls_err = |e: &dyn std::fmt::Display| ServeError::Tls(e.to_string());
    let chain_pem = std::fs::read(layout.cert("tls"))?;
    let chain: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut chain_pem.as_slice()).collect::<Result<_, _>>()?;
    let key = keys::read_key(&layout.key("tls"), authority.key_passphrase())?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(&e))?;
    let builder = match authority.config().server.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        mode => {
            let mut roots = rustls::RootCertStore::empty();
            for der in [authority.root_der(), authority.intermediate_der()] {
                roots
                    .add(CertificateDer::from(der.to_vec()))
                    .map_err(|e| tls_err(&e))?;
            }
            let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let inner = if mode == ClientAuth::Optional {
                inner.allow_unauthenticated()
            } else {
                inner
            };
            let inner = inner.build().map_err(|e| tls_err(&e))?;
            builder.with_client_cert_verifier(Arc::new(RevocationCheckingVerifier {
                inner,
                authority: authority.clone(),
            }))
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| tls_err(&e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Verifies client certificates with WebPKI, then refuses revoked ones by asking the store.
#[derive(Debug)]
struct RevocationCheckingVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    authority: Arc<Authority>,
}

impl ClientCertVerifier for RevocationCheckingVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let serial = herald_token_client::certificate_serial(end_entity.as_ref()).ok_or(
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding),
        )?;
        match self.authority.is_revoked(&serial) {
            Ok(false) => Ok(verified),
            Ok(true) => {
                tracing::info!(%serial, "refused a revoked client certificate");
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::Revoked,
                ))
            }
            Err(e) => {
                tracing::error!(error = %e, "revocation lookup failed; refusing the client");
                Err(rustls::Error::General(
                    "revocation status unavailable".into(),
                ))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The relay's HTTPS listener on `addr`.
pub(crate) async fn bind_relay(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    listen(addr).await
}

/// Serves `routes` (the relay's) over HTTPS on `listener` until Ctrl-C or SIGTERM.
pub(crate) async fn serve_relay(
    listener: TcpListener,
    tls: rustls::ServerConfig,
    routes: axum::Router,
    limits: Limits,
) {
    let serving = tokio::spawn(accept_loop(
        listener,
        Some(tokio_rustls::TlsAcceptor::from(Arc::new(tls))),
        routes,
        None,
        limits,
    ));
    shutdown_signal().await;
    serving.abort();
}

/// The relay's TLS configuration: its certificate chain and key from the PEM files
/// `tls_cert` and `tls_key`; client certificates asked for, verified against `root_pem`,
/// optional (repository files need one).
pub(crate) fn relay_tls_config(
    tls_cert: &std::path::Path,
    tls_key: &std::path::Path,
    root_pem: &str,
) -> Result<rustls::ServerConfig, ServeError> {
    let tls_err = |e: &dyn std::fmt::Display| ServeError::Tls(e.to_string());
    let chain_pem = std::fs::read(tls_cert)?;
    let chain: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut chain_pem.as_slice()).collect::<Result<_, _>>()?;
    let key_pem = std::fs::read(tls_key)?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())?
        .ok_or_else(|| tls_err(&format!("no private key in {}", tls_key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut root_pem.as_bytes()) {
        roots.add(cert?).map_err(|e| tls_err(&e))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| tls_err(&e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| tls_err(&e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
