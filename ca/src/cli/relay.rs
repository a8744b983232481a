//! `herald-ca relay`: a site relay between endpoints and the CA (see the token service's
//! relay), served by this binary's HTTPS server.

use std::sync::Arc;
use std::time::Duration;

use herald_token_service::relay::{enroll_relay, relay_routes, Relay, RelayOptions, RelayState};

use crate::cli::args::RelayArgs;
use crate::cli::Error;
use crate::server;

/// `herald-ca relay`: enrolls the relay if needed, fetches the upstream's CRL (then keeps it
/// fresh), then serves the relay routes over HTTPS (client certificates asked for, verified
/// against the pinned root, optional; repository files need one) until Ctrl-C or SIGTERM.
pub(crate) async fn run_relay(args: &RelayArgs) -> Result<(), Error> {
    let state = RelayState::new(&args.state_dir);
    if let Some(name) = enroll_relay(
        &args.upstream,
        args.token.as_deref(),
        &args.root_fingerprint,
        &state,
    )
    .await?
    {
        eprintln!("relay enrolled as {name}");
    }
    let options = RelayOptions {
        public_url: relay_public_url(args)?,
        repository_ttl: Duration::from_secs(args.repository_ttl_secs),
        cache_max_bytes: args.cache_max_bytes,
    };
    let relay = Arc::new(Relay::open(&args.upstream, &state, &options)?);
    let crl_refresher = relay
        .keep_revocation_fresh(Duration::from_secs(args.crl_refresh_secs.max(1)))
        .await;
    let tls = server::relay_tls_config(&args.tls_cert, &args.tls_key, relay.root_pem())?;
    let listener = server::bind_relay(args.listen).await?;
    eprintln!(
        "relay listening on https://{} for {}",
        listener.local_addr().unwrap_or(args.listen),
        args.upstream
    );
    server::serve_relay(listener, tls, relay_routes(relay), args.limits.limits()).await;
    crl_refresher.abort();
    Ok(())
}

/// The relay's public HTTPS base URL: `--public-url`, else the first DNS name of its TLS
/// certificate with the port it listens on.
fn relay_public_url(args: &RelayArgs) -> Result<String, Error> {
    if let Some(url) = &args.public_url {
        return Ok(url.clone());
    }
    let usage = |why: String| {
        Error::Config(format!(
            "{}: {why}; give --public-url https://NAME:PORT",
            args.tls_cert.display()
        ))
    };
    let pem = std::fs::read(&args.tls_cert).map_err(|e| usage(e.to_string()))?;
    let der = rustls_pemfile::certs(&mut pem.as_slice())
        .next()
        .ok_or_else(|| usage("no certificate".into()))?
        .map_err(|e| usage(e.to_string()))?;
    let name =
        first_dns_name(&der).ok_or_else(|| usage("no DNS name in the certificate".into()))?;
    Ok(format!("https://{name}:{}", args.listen.port()))
}

/// The first dNSName of a certificate's subjectAltName extension.
fn first_dns_name(der: &[u8]) -> Option<String> {
    use x509_cert::der::Decode as _;
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    let (_, san) = cert
        .tbs_certificate
        .get::<x509_cert::ext::pkix::SubjectAltName>()
        .ok()??;
    san.0.into_iter().find_map(|name| match name {
        x509_cert::ext::pkix::name::GeneralName::DnsName(dns) => Some(dns.to_string()),
        _ => None,
    })
}
