//! Benchmark: a full CRL with N revoked certificates (default 1,000,000), produced by
//! herald-ca and by `openssl ca -gencrl` on the same entries, plus Python `cryptography`
//! loading and verifying Herald's CRL. Prints a table. Not run by CI.
//!
//! ```sh
//! cargo run --release -p herald-ca --example bench-crl -- [N]
//! ```

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::process::Command;
use std::time::Instant;

use herald_ca::store::Revocation;
use herald_ca::Reason;

mod bench_common;

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let ca = bench_common::bench_ca(&dir, addr, addr);

    eprintln!("recording {n} revoked certificates...");
    let start = Instant::now();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let serials = bench_common::record_certs(&ca, n, |i| {
        Some(Revocation {
            revoked_at: now,
            reason: if i % 2 == 0 {
                Reason::KeyCompromise
            } else {
                Reason::Unspecified
            },
        })
    });
    eprintln!("  stored in {:.1} s", start.elapsed().as_secs_f64());

    let rss_before = peak_rss_mib();
    let start = Instant::now();
    let crl = ca.publish_crl().unwrap();
    let herald_secs = start.elapsed().as_secs_f64();
    let herald_rss = peak_rss_mib();
    let crl_path = tmp.path().join("herald.crl");
    std::fs::write(&crl_path, &crl.der).unwrap();

    // The same entries for `openssl ca -gencrl`.
    let odir = tmp.path().join("openssl");
    std::fs::create_dir_all(&odir).unwrap();
    let mut index = String::with_capacity(n * 80);
    for s in &serials {
        index.push_str(&format!(
            "R\t301231000000Z\t251121000000Z,keyCompromise\t{}\tunknown\t/CN=x\n",
            s.to_hex().to_uppercase()
        ));
    }
    std::fs::write(odir.join("index.txt"), index).unwrap();
    std::fs::write(odir.join("crlnumber"), "01\n").unwrap();
    std::fs::write(
        odir.join("ca.cnf"),
        format!(
            "[ca]\ndefault_ca = d\n[d]\ndatabase = {0}/index.txt\ncrlnumber = {0}/crlnumber\n\
             default_md = sha256\ndefault_crl_days = 1\n",
            odir.display()
        ),
    )
    .unwrap();
    let start = Instant::now();
    let status = Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .args(["openssl", "ca", "-gencrl", "-batch", "-config"])
        .arg(odir.join("ca.cnf"))
        .arg("-keyfile")
        .arg(dir.join("intermediate.key"))
        .arg("-cert")
        .arg(dir.join("intermediate.crt"))
        .arg("-out")
        .arg(odir.join("openssl.crl"))
        .output();
    let openssl_secs = start.elapsed().as_secs_f64();
    let (openssl_size, openssl_rss) = match status {
        Ok(out) if out.status.success() => {
            let der = Command::new("openssl")
                .args(["crl", "-outform", "DER", "-in"])
                .arg(odir.join("openssl.crl"))
                .output()
                .map(|o| o.stdout.len())
                .unwrap_or(0);
            let rss_kb: f64 = String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .and_then(|l| l.trim().parse().ok())
                .unwrap_or(0.0);
            (
                format!("{:.1} MB", der as f64 / 1e6),
                format!("{:.0} MiB", rss_kb / 1024.0),
            )
        }
        Ok(out) => {
            eprintln!("openssl failed: {}", String::from_utf8_lossy(&out.stderr));
            ("failed".into(), "-".into())
        }
        Err(e) => (format!("not run ({e})"), "-".into()),
    };

    // Python cryptography loads and verifies Herald's CRL.
    let python = std::env::var("HERALD_TEST_PYTHON").unwrap_or_else(|_| ".venv/bin/python".into());
    let start = Instant::now();
    let py = Command::new(&python)
        .args([
            "-c",
            "import sys; from cryptography import x509\n\
             crl = x509.load_der_x509_crl(open(sys.argv[1],'rb').read())\n\
             inter = x509.load_pem_x509_certificate(open(sys.argv[2],'rb').read())\n\
             assert crl.is_signature_valid(inter.public_key())\n\
             print(len(crl))",
        ])
        .arg(&crl_path)
        .arg(dir.join("intermediate.crt"))
        .output();
    let py_secs = start.elapsed().as_secs_f64();
    let py_result = match py {
        Ok(o) if o.status.success() => {
            format!(
                "{} entries, signature valid",
                String::from_utf8_lossy(&o.stdout).trim()
            )
        }
        Ok(o) => format!("failed: {}", String::from_utf8_lossy(&o.stderr).trim()),
        Err(e) => format!("not run ({e})"),
    };

    println!("CRL with {n} revoked certificates");
    println!("| producer | time | size (DER) | peak memory |");
    println!("|---|---|---|---|");
    println!(
        "| herald-ca | {herald_secs:.2} s | {:.1} MB | {herald_rss:.0} MiB (process; {rss_before:.0} MiB before) |",
        crl.der.len() as f64 / 1e6
    );
    println!("| openssl ca -gencrl | {openssl_secs:.2} s | {openssl_size} | {openssl_rss} |");
    println!("| python cryptography load + verify | {py_secs:.2} s | {py_result} | |");
}
