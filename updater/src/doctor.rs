//! `herald-update doctor`: checks configuration, clock, DNS, proxy, TLS and reachability of
//! every configured URL, printing one verdict per line.
//!
//! It names the trust anchors and client identity the updater really uses (the enrolled
//! identity when there is one), checks that identity's validity and revocation (in the CA's
//! CRL), and the enroll, renew, OCSP and CRL URLs of its discovery document.

use std::path::Path;
use std::time::Duration;

use der::Decode;
use time::OffsetDateTime;
use url::Url;

use crate::agent::{https_config, tls_sources, AnchorSource, IdentitySource};
use crate::config::Config;
use crate::enroll::IdentityFiles;
use crate::transport::{fetch_bounded, HttpsConfig, HttpsTransport};

/// Largest CRL `doctor` downloads.
const MAX_CRL_BYTES: u64 = 16 * 1024 * 1024;

/// One line of the report.
struct Report {
    failed: usize,
    total: usize,
}

impl Report {
    fn line(&mut self, ok: bool, check: &str, detail: impl std::fmt::Display) {
        self.total += 1;
        if !ok {
            self.failed += 1;
        }
        println!("{:<5} {check}: {detail}", if ok { "ok" } else { "FAIL" });
    }

    fn result<T, E: std::fmt::Display>(&mut self, check: &str, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(err) => {
                self.line(false, check, err);
                None
            }
        }
    }
}

/// Runs every check; returns how many failed.
pub(crate) async fn run(config: &Config) -> usize {
    let mut report = Report {
        failed: 0,
        total: 0,
    };
    let now = OffsetDateTime::now_utc();
    report.line(
        now.year() >= 2025,
        "clock",
        format!("system time {now} (UTC)"),
    );
    for (name, path) in [
        ("install_root", config.install_root.as_ref()),
        ("state_dir", config.state_dir.as_ref()),
        ("trusted_root", config.trusted_root.as_ref()),
    ] {
        match path {
            Some(path) => report.line(path.exists(), name, path.display()),
            None => report.line(false, name, "not configured"),
        }
    }
    let proxy = config
        .proxy
        .clone()
        .or_else(|| std::env::var("HTTPS_PROXY").ok())
        .or_else(|| std::env::var("https_proxy").ok());
    report.line(
        true,
        "proxy",
        proxy.unwrap_or_else(|| "none (direct connections)".into()),
    );
    let Some(transport) = report.result(
        "tls settings",
        https_config(config).map(|c| HttpsTransport::new(&c)),
    ) else {
        return finish(&report);
    };
    let Some(transport) = report.result("tls settings", transport) else {
        return finish(&report);
    };
    let (anchors, identity) = tls_sources(config);
    report.line(true, "tls settings", describe_tls(&anchors, &identity));
    match &identity {
        IdentitySource::Enrolled(files) => check_enrolled(&mut report, config, files).await,
        IdentitySource::Files { cert, .. } => {
            check_certificate(&mut report, cert);
        }
        IdentitySource::None => {}
    }
    let mirrors = match config.mirror_urls() {
        Ok(mirrors) => mirrors,
        Err(err) => {
            report.line(false, "mirrors", err);
            Vec::new()
        }
    };
    for mirror in &mirrors {
        check_url(&mut report, &transport, mirror, "metadata/timestamp.json").await;
    }
    if let Some(status_url) = &config.status_url {
        check_service(&mut report, &transport, "status_url", status_url, true).await;
    }
    finish(&report)
}

fn describe_tls(anchors: &AnchorSource, identity: &IdentitySource) -> String {
    let anchors = match anchors {
        AnchorSource::Bundle(path) => format!("trust anchors {}", path.display()),
        AnchorSource::Enrolled(path) => format!("enrolled root {}", path.display()),
        AnchorSource::System => "system roots".to_owned(),
    };
    let identity = match identity {
        IdentitySource::Files { cert, .. } => format!("client certificate {}", cert.display()),
        IdentitySource::Enrolled(files) => {
            format!("enrolled identity {}", files.identity_pem().display())
        }
        IdentitySource::None => "no client certificate".to_owned(),
    };
    format!("{anchors}, {identity}")
}

/// The enrolled identity: its certificate, its revocation in the CA's CRL, and the enroll,
/// renew, OCSP and CRL URLs of its discovery document, reached with its own root and key.
async fn check_enrolled(report: &mut Report, config: &Config, files: &IdentityFiles) {
    let serial = check_certificate(report, &files.cert_pem());
    let Some(discovery) = report.result("discovery", files.read_discovery()) else {
        return;
    };
    let transport = std::fs::read(files.ca_pem())
        .and_then(|ca| Ok((ca, std::fs::read(files.identity_pem())?)))
        .map_err(|e| e.to_string())
        .and_then(|(ca, identity)| {
            HttpsTransport::new(&HttpsConfig {
                trust_anchors_pem: Some(ca),
                client_identity_pem: Some(identity),
                proxy: config.proxy.clone(),
                no_proxy: config.no_proxy.clone(),
                // OCSP and CRLs are signed data, served over plain HTTP by convention.
                allow_plain_http: true,
                ..HttpsConfig::default()
            })
            .map_err(|e| e.to_string())
        });
    let Some(transport) = report.result("identity tls", transport) else {
        return;
    };
    for (name, url, https) in [
        ("enroll_url", &discovery.enroll_url, true),
        ("renew_url", &discovery.renew_url, true),
        ("ocsp_url", &discovery.ocsp_url, false),
        ("crl_url", &discovery.crl_url, false),
    ] {
        match url {
            Some(url) => check_service(report, &transport, name, url, https).await,
            None => report.line(false, name, "not in the discovery document"),
        }
    }
    if let (Some(crl_url), Some(serial)) = (&discovery.crl_url, serial) {
        check_revocation(report, &transport, crl_url, &serial).await;
    }
}

/// Prints the certificate's name, serial and validity; fails when it is not valid now.
/// Returns its serial (DER content bytes) when it parses.
fn check_certificate(report: &mut Report, path: &Path) -> Option<Vec<u8>> {
    let pem = report.result(
        "identity",
        std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display())),
    )?;
    let cert = herald_token_client::first_certificate_der(&pem)
        .and_then(|der| x509_cert::Certificate::from_der(&der).ok());
    let Some(cert) = cert else {
        report.line(
            false,
            "identity",
            format!("{}: no certificate", path.display()),
        );
        return None;
    };
    let tbs = &cert.tbs_certificate;
    let unix = |t: &x509_cert::time::Time| {
        OffsetDateTime::from_unix_timestamp(t.to_unix_duration().as_secs() as i64).ok()
    };
    let (Some(start), Some(end)) = (
        unix(&tbs.validity.not_before),
        unix(&tbs.validity.not_after),
    ) else {
        report.line(false, "identity", "validity out of range");
        return None;
    };
    let now = OffsetDateTime::now_utc();
    let serial = herald_wire::Serial::from_der_integer(tbs.serial_number.as_bytes());
    let date = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| t.to_string())
    };
    let (start_text, end_text) = (date(start), date(end));
    report.line(
        true,
        "identity",
        format!("{} (serial {serial}, {})", tbs.subject, path.display()),
    );
    let left = end - now;
    let verdict = if now < start {
        format!("not valid before {start_text}")
    } else if left.is_negative() {
        format!("expired at {end_text}: run `herald-update enroll` again")
    } else if left * 3 < end - start {
        format!(
            "valid until {end_text} ({} days left; renewal due)",
            left.whole_days()
        )
    } else {
        format!("valid until {end_text} ({} days left)", left.whole_days())
    };
    report.line(
        now >= start && !left.is_negative(),
        "identity expiry",
        verdict,
    );
    Some(tbs.serial_number.as_bytes().to_vec())
}

/// Downloads the CRL and fails when it lists `serial` or is past its nextUpdate.
async fn check_revocation(
    report: &mut Report,
    transport: &HttpsTransport,
    url: &str,
    serial: &[u8],
) {
    let Ok(url) = Url::parse(url) else {
        return;
    };
    let Some(bytes) = report.result(
        "revocation",
        fetch_bounded(transport, &url, MAX_CRL_BYTES).await,
    ) else {
        return;
    };
    let Some(crl) = report.result(
        "revocation",
        x509_cert::crl::CertificateList::from_der(&bytes).map_err(|e| format!("{url}: {e}")),
    ) else {
        return;
    };
    let list = &crl.tbs_cert_list;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    if let Some(next) = &list.next_update {
        let next = next.to_unix_duration().as_secs() as i64;
        if next < now {
            report.line(
                false,
                "revocation",
                format!("{url}: CRL past its nextUpdate"),
            );
            return;
        }
    }
    let revoked = list
        .revoked_certificates
        .iter()
        .flatten()
        .any(|r| r.serial_number.as_bytes() == serial);
    if revoked {
        report.line(
            false,
            "revocation",
            format!("identity revoked (listed in {url})"),
        );
    } else {
        report.line(true, "revocation", format!("identity not listed in {url}"));
    }
}

/// DNS, scheme and reachability of a service URL: any HTTP answer below 500 means the server
/// was reached over a verified channel (a POST-only endpoint answers 405 to HEAD).
async fn check_service(
    report: &mut Report,
    transport: &HttpsTransport,
    name: &str,
    text: &str,
    https_required: bool,
) {
    let url = match Url::parse(text) {
        Ok(url) => url,
        Err(err) => return report.line(false, name, format!("{text}: {err}")),
    };
    if https_required && url.scheme() != "https" {
        return report.line(false, name, format!("{url}: not https://"));
    }
    if !check_dns(report, &url).await {
        return;
    }
    match transport.probe(&url).await {
        Ok(status) => report.line(status < 500, name, format!("{url} (HTTP {status})")),
        Err(err) => report.line(false, name, err),
    }
}

async fn check_dns(report: &mut Report, url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        report.line(url.scheme() == "file", "dns", format!("{url}: no host"));
        return false;
    };
    let port = url.port_or_known_default().unwrap_or(443);
    let lookup = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::lookup_host((host, port)),
    )
    .await;
    match lookup {
        Ok(Ok(addrs)) => {
            let addrs: Vec<String> = addrs.map(|a| a.ip().to_string()).collect();
            report.line(true, "dns", format!("{host} -> {}", addrs.join(", ")));
            true
        }
        Ok(Err(err)) => {
            report.line(false, "dns", format!("{host}: {err}"));
            false
        }
        Err(_) => {
            report.line(false, "dns", format!("{host}: no answer within 10 s"));
            false
        }
    }
}

async fn check_url(report: &mut Report, transport: &HttpsTransport, base: &Url, file: &str) {
    if base.scheme() != "file" && !check_dns(report, base).await {
        return;
    }
    let Ok(url) = base.join(file) else {
        report.line(false, "reach", format!("{base}{file}: invalid URL"));
        return;
    };
    match fetch_bounded(transport, &url, 16 * 1024).await {
        Ok(bytes) => report.line(true, "reach", format!("{url} ({} bytes)", bytes.len())),
        Err(err) => report.line(false, "reach", err),
    }
    if let Ok(Some(date)) = transport.server_date(&url).await {
        let skew = (OffsetDateTime::now_utc() - date).whole_seconds().abs();
        report.line(
            skew < 300,
            "clock skew",
            format!("{skew} s against {}", url.host_str().unwrap_or_default()),
        );
    }
}

fn finish(report: &Report) -> usize {
    if report.failed == 0 {
        println!("verdict: all {} checks passed", report.total);
    } else {
        println!(
            "verdict: {} of {} checks failed",
            report.failed, report.total
        );
    }
    report.failed
}
