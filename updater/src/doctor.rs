//! `herald-update doctor`: checks configuration, clock, DNS, proxy, TLS and reachability of
//! every configured URL, printing one verdict per line.

use std::time::Duration;

use time::OffsetDateTime;
use url::Url;

use crate::agent::https_config;
use crate::config::Config;
use crate::transport::{fetch_bounded, HttpsTransport};

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
    report.line(true, "tls settings", describe_tls(config));
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
        match Url::parse(status_url) {
            Ok(url) => {
                check_dns(&mut report, &url).await;
            }
            Err(err) => report.line(false, "status_url", err),
        }
    }
    finish(&report)
}

fn describe_tls(config: &Config) -> String {
    let anchors = config.ca_bundle.as_ref().map_or_else(
        || "system roots".to_owned(),
        |p| format!("trust anchors {}", p.display()),
    );
    let identity = match &config.client_cert {
        Some(cert) => format!("client certificate {}", cert.display()),
        None => "no client certificate".into(),
    };
    format!("{anchors}, {identity}")
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
