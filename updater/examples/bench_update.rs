//! Benchmark: `herald-update` against python-tuf's client (and curl + sha256sum as the
//! unsigned floor), in the same run, against the same HTTPS server on loopback.
//!
//! ```text
//! scripts/bench-update            # builds in release mode and runs this program
//! ```
//!
//! Scenarios: (a) one 1 GiB target with a fresh client (metadata, download, verify,
//! install); (b) refresh of repositories of 10,000 and 100,000 targets; (c) 100 targets out of
//! 10,000 (`HERALD_BENCH_SCENARIOS`, e.g. `a` or `bc`, runs only some). Every command runs
//! under `/usr/bin/time` for wall time and peak memory; what the clients write goes to
//! `HERALD_BENCH_DIR` (default: the tmpfs `/dev/shm`), the repositories to `TMPDIR`. The
//! repositories are made by `herald-sign` with per-file release signatures (python-tuf ignores
//! them; herald-update verifies them).
//!
//! Each cell is the median of `HERALD_BENCH_RUNS` runs (default 5), taken in rounds of one run
//! of each tool so that the machine's slower and faster spells fall on every tool alike. The
//! repositories are served by an in-process rustls server; scenario (a) is also served by
//! nginx (with its default settings) when `nginx` is on `PATH`, in a process group of its
//! own, stopped with the whole group; the program fails if any server process is left.
//!
//! `HERALD_BENCH_BASELINE=PATH` names another `herald-update` binary (e.g. the release build
//! of an earlier commit): it runs in every round too, before or after this one by turns, and
//! the table gets its column and the change between the two.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use herald_e2e::servers::ServerProcess;
use support::SignedRepo;

/// Wall time (s) and peak resident memory (MiB) of one command.
#[derive(Clone, Copy)]
struct Measure {
    seconds: f64,
    mib: f64,
}

/// Runs a command under `/usr/bin/time`, failing loudly if it fails.
fn measure(label: &str, program: &Path, args: &[&str], envs: &[(&str, &str)]) -> Measure {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "@@ %e %M"])
        .arg(program)
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .expect("/usr/bin/time runs (apt-get install time)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{label} failed:\n{stderr}");
    let line = stderr.lines().rev().find(|l| l.starts_with("@@ ")).unwrap();
    let mut parts = line[3..].split_whitespace();
    let seconds: f64 = parts.next().unwrap().parse().unwrap();
    let kib: f64 = parts.next().unwrap().parse().unwrap();
    Measure {
        seconds,
        mib: kib / 1024.0,
    }
}

/// Writes `count` small files, or one large file when `count` is 1 and `size` is large.
fn release_folder(dir: &Path, count: usize, size: usize) {
    std::fs::create_dir_all(dir).unwrap();
    if count == 1 {
        let mut file = std::io::BufWriter::new(std::fs::File::create(dir.join("big.bin")).unwrap());
        let mut block = vec![0u8; 1 << 20];
        for (i, byte) in block.iter_mut().enumerate() {
            *byte = (i * 131 % 251) as u8;
        }
        for n in 0..size / block.len() {
            block[0..8].copy_from_slice(&(n as u64).to_le_bytes());
            file.write_all(&block).unwrap();
        }
        return;
    }
    for i in 0..count {
        let sub = dir.join(format!("d{:03}", i % 100));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(
            sub.join(format!("f{i:06}.txt")),
            format!("file {i}\n").repeat(size / 10),
        )
        .unwrap();
    }
}

/// nginx serving `root` over HTTPS with the test server certificate, stopped with its
/// process group on drop.
struct Nginx {
    _server: ServerProcess,
    url: url::Url,
}

impl Nginx {
    fn start(work: &Path, root: &Path) -> Option<Nginx> {
        let dir = work.join("nginx");
        std::fs::create_dir_all(&dir).unwrap();
        let pki = support::write_pki(&dir);
        let (chain, key) = (pki.cert, pki.key);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        std::fs::write(
            dir.join("nginx.conf"),
            format!(
                "daemon off; master_process off; worker_processes 1;\n\
                 error_log {dir}/error.log; pid {dir}/nginx.pid;\n\
                 events {{ worker_connections 64; }}\n\
                 http {{ access_log off; client_body_temp_path {dir}; proxy_temp_path {dir};\n\
                 fastcgi_temp_path {dir}; uwsgi_temp_path {dir}; scgi_temp_path {dir};\n\
                 server {{ listen 127.0.0.1:{port} ssl; root {root};\n\
                 ssl_certificate {chain}; ssl_certificate_key {key}; }} }}\n",
                dir = dir.display(),
                root = root.display(),
                chain = chain.display(),
                key = key.display(),
            ),
        )
        .unwrap();
        let server = ServerProcess::spawn(
            "nginx",
            Command::new("nginx")
                .arg("-p")
                .arg(&dir)
                .arg("-c")
                .arg(dir.join("nginx.conf"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null()),
        )
        .ok()?;
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                let url = url::Url::parse(&format!("https://localhost:{port}/")).unwrap();
                return Some(Nginx {
                    _server: server,
                    url,
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("nginx did not start; see {}/error.log", dir.display());
    }
}

fn build_repo(work: &Path, name: &str, count: usize, size: usize) -> SignedRepo {
    let repo = SignedRepo::new();
    let folder = work.join(format!("release-{name}"));
    release_folder(&folder, count, size);
    repo.release_dir(
        &folder,
        &herald_keys_example::signing::private_key("release"),
        &[],
    );
    std::fs::remove_dir_all(&folder).unwrap();
    eprintln!("built repository {name}");
    repo
}

struct Bench {
    herald: PathBuf,
    /// Another herald-update binary measured in the same rounds (`HERALD_BENCH_BASELINE`).
    baseline: Option<PathBuf>,
    python: PathBuf,
    script: PathBuf,
    ca: String,
    work: PathBuf,
    runs: usize,
}

impl Bench {
    fn envs(&self) -> Vec<(&str, &str)> {
        vec![
            ("SSL_CERT_FILE", self.ca.as_str()),
            ("REQUESTS_CA_BUNDLE", self.ca.as_str()),
        ]
    }

    fn fresh(&self, name: &str) -> PathBuf {
        let dir = self.work.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The header of the table [`Bench::compare`] prints rows of.
    fn print_header(&self) {
        if self.baseline.is_some() {
            println!(
                "| scenario | herald-update | herald-update (baseline) | change against the baseline | python-tuf | speed-up (medians) | speed-up per round | curl + sha256sum |"
            );
            println!("|---|---|---|---|---|---|---|---|");
        } else {
            println!(
                "| scenario | herald-update | python-tuf | speed-up (medians) | speed-up per round | curl + sha256sum |"
            );
            println!("|---|---|---|---|---|---|");
        }
    }

    /// Runs herald-update, the baseline herald-update (when given), python-tuf and (when
    /// given) the unsigned floor `runs` times each, in rounds of one run of each, and prints
    /// their medians by wall time as a table row. Interleaving puts a slower or faster spell
    /// of the machine on every tool alike instead of on whichever happened to run then.
    fn compare(
        &self,
        scenario: &str,
        herald: impl Fn(&Path) -> Measure,
        python: impl Fn() -> Measure,
        floor: Option<&dyn Fn() -> Measure>,
    ) {
        let mut runs: [Vec<Measure>; 4] = Default::default();
        for round in 0..self.runs {
            // The two herald-update builds take turns at going first in a round.
            match &self.baseline {
                Some(baseline) if round % 2 == 1 => {
                    runs[3].push(herald(baseline));
                    runs[0].push(herald(&self.herald));
                }
                Some(baseline) => {
                    runs[0].push(herald(&self.herald));
                    runs[3].push(herald(baseline));
                }
                None => runs[0].push(herald(&self.herald)),
            }
            runs[1].push(python());
            if let Some(floor) = floor {
                runs[2].push(floor());
            }
        }
        // The speed-up of each round, herald-update and python-tuf measured back to back.
        let rounds: Vec<f64> = runs[0]
            .iter()
            .zip(&runs[1])
            .map(|(h, p)| p.seconds / h.seconds)
            .collect();
        let lowest = rounds.iter().copied().fold(f64::INFINITY, f64::min);
        let highest = rounds.iter().copied().fold(0.0, f64::max);
        let [herald, python, floor, baseline] = runs.map(|mut all| {
            all.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
            all.get(all.len() / 2).copied()
        });
        let (herald, python) = (herald.unwrap(), python.unwrap());
        let floor = floor.map_or_else(
            || "-".to_owned(),
            |f| format!("{:.2} s / {:.0} MiB", f.seconds, f.mib),
        );
        let baseline = baseline.map_or_else(String::new, |b| {
            format!(
                " {:.2} s / {:.0} MiB | time {:+.0}%, peak memory {:+.0}% |",
                b.seconds,
                b.mib,
                (herald.seconds / b.seconds - 1.0) * 100.0,
                (herald.mib / b.mib - 1.0) * 100.0,
            )
        });
        println!(
            "| {scenario} | {:.2} s / {:.0} MiB |{baseline} {:.2} s / {:.0} MiB | {:.1}x | {lowest:.1}x to {highest:.1}x | {floor} |",
            herald.seconds,
            herald.mib,
            python.seconds,
            python.mib,
            python.seconds / herald.seconds,
        );
    }

    fn herald_tuf_client(
        &self,
        herald: &Path,
        base: &url::Url,
        repo: &SignedRepo,
        targets: &[String],
    ) -> Measure {
        let dir = self.fresh("herald-client");
        let md = dir.join("md");
        let root = repo.path().join("metadata/1.root.json");
        let init = Command::new(herald)
            .args([
                "tuf-client",
                "--metadata-dir",
                md.to_str().unwrap(),
                "init",
                root.to_str().unwrap(),
            ])
            .status()
            .unwrap();
        assert!(init.success());
        let meta = base.join("metadata/").unwrap().to_string();
        let tgt = base.join("targets/").unwrap().to_string();
        let out = dir.join("out");
        let mut args = vec![
            "tuf-client",
            "--metadata-url",
            &meta,
            "--metadata-dir",
            md.to_str().unwrap(),
        ];
        for t in targets {
            args.extend(["--target-name", t]);
        }
        if targets.is_empty() {
            args.push("refresh");
        } else {
            args.extend([
                "--target-base-url",
                &tgt,
                "--target-dir",
                out.to_str().unwrap(),
                "download",
            ]);
        }
        measure("herald-update tuf-client", herald, &args, &self.envs())
    }

    fn herald_apply(&self, herald: &Path, base: &url::Url, repo: &SignedRepo) -> Measure {
        let dir = self.fresh("herald-apply");
        let config = dir.join("update.toml");
        std::fs::write(
            &config,
            format!(
                "install_root = {:?}\nstate_dir = {:?}\nmirrors = [{:?}]\ntrusted_root = {:?}\nca_bundle = {:?}\nrequire_release_signatures = true\nlog_level = \"warn\"\n",
                dir.join("install"),
                dir.join("state"),
                base.as_str(),
                repo.path().join("metadata/1.root.json"),
                self.ca,
            ),
        )
        .unwrap();
        measure(
            "herald-update apply",
            herald,
            &["--config", config.to_str().unwrap(), "apply"],
            &[],
        )
    }

    fn python_tuf(&self, base: &url::Url, repo: &SignedRepo, targets: &[String]) -> Measure {
        let dir = self.fresh("python-client");
        let meta = base.join("metadata/").unwrap().to_string();
        let tgt = base.join("targets/").unwrap().to_string();
        let root = repo.path().join("metadata/1.root.json");
        let md = dir.join("md");
        let out = dir.join("out");
        let mut args = vec![
            self.script.to_str().unwrap(),
            md.to_str().unwrap(),
            &meta,
            &tgt,
            out.to_str().unwrap(),
            root.to_str().unwrap(),
        ];
        args.extend(targets.iter().map(String::as_str));
        measure("python-tuf", &self.python, &args, &self.envs())
    }

    fn curl_sha256(&self, url: &url::Url) -> Measure {
        let dir = self.fresh("curl");
        let out = dir.join("big.bin");
        let script = format!(
            "curl -sS --fail --cacert {} -o {} {} && sha256sum {} >/dev/null",
            self.ca,
            out.display(),
            url,
            out.display()
        );
        measure(
            "curl + sha256sum",
            Path::new("/bin/sh"),
            &["-c", &script],
            &[],
        )
    }
}

fn main() {
    let exe = std::env::current_exe().unwrap();
    let herald = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("herald-update");
    assert!(
        herald.is_file(),
        "build it first: cargo build --release --bin herald-update"
    );
    let baseline = std::env::var_os("HERALD_BENCH_BASELINE").map(PathBuf::from);
    if let Some(baseline) = &baseline {
        assert!(baseline.is_file(), "{} is not a file", baseline.display());
    }
    herald_e2e::servers::stop_all_on_signal();
    let runs: usize = std::env::var("HERALD_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let work = std::env::temp_dir().join("herald-bench-update");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    // What the clients write goes to memory (tmpfs) unless HERALD_BENCH_DIR says otherwise,
    // so the table compares the programs, not the disk: herald-update makes every install
    // durable (fsync), which on a disk is bounded by its write speed; python-tuf and curl
    // do not sync.
    let clients = std::env::var_os("HERALD_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let shm = Path::new("/dev/shm");
            if shm.is_dir() {
                shm.to_path_buf()
            } else {
                std::env::temp_dir()
            }
        })
        .join("herald-bench-clients");
    let _ = std::fs::remove_dir_all(&clients);
    std::fs::create_dir_all(&clients).unwrap();
    let bench = Bench {
        herald,
        baseline,
        python: support::python(),
        script: Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bench_python_client.py"),
        ca: support::write_pki(&clients)
            .root
            .to_str()
            .unwrap()
            .to_owned(),
        work: clients.clone(),
        runs,
    };

    // HERALD_BENCH_SCENARIOS picks scenarios, e.g. "a" or "bc" (default: all).
    let scenarios = std::env::var("HERALD_BENCH_SCENARIOS").unwrap_or_else(|_| "abc".into());
    let wanted = |s: char| scenarios.contains(s);
    // A repository that no chosen scenario needs is built with one small file.
    let size = |needed: bool, n: usize| if needed { n } else { 1 };
    let big = build_repo(&work, "big", 1, size(wanted('a'), 1 << 30));
    let r10k = build_repo(&work, "10k", size(wanted('b') || wanted('c'), 10_000), 40);
    let r100k = build_repo(&work, "100k", size(wanted('b'), 100_000), 40);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let serve = |repo: &SignedRepo| {
        runtime.block_on(support::serve_https(support::dir_router(&repo.path())))
    };
    let (big_url, url_10k, url_100k) = (serve(&big), serve(&r10k), serve(&r100k));

    let big_name = vec!["big.bin".to_owned()];
    let hundred: Vec<String> = (0..100)
        .map(|i| format!("d{:03}/f{:06}.txt", (i * 97) % 100, i * 97))
        .collect();
    bench.print_header();
    if wanted('a') {
        let big_target = std::fs::read_dir(big.path().join("targets"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let file_url = |base: &url::Url| {
            base.join("targets/")
                .unwrap()
                .join(big_target.file_name().unwrap().to_str().unwrap())
                .unwrap()
        };
        let nginx = Nginx::start(&work, &big.path());
        let mut servers = vec![("the in-process rustls server", big_url.clone())];
        match &nginx {
            Some(nginx) => servers.insert(0, ("nginx", nginx.url.clone())),
            None => {
                eprintln!("nginx is not installed: scenario (a) only against the in-process server")
            }
        }
        for (server, url) in servers {
            let floor = || bench.curl_sha256(&file_url(&url));
            bench.compare(
                &format!("(a) 1 GiB target, fresh client (apply), served by {server}"),
                |herald| bench.herald_apply(herald, &url, &big),
                || bench.python_tuf(&url, &big, &big_name),
                Some(&floor),
            );
        }
    }
    if wanted('b') {
        bench.compare(
            "(b) refresh, 10,000 targets",
            |herald| bench.herald_tuf_client(herald, &url_10k, &r10k, &[]),
            || bench.python_tuf(&url_10k, &r10k, &[]),
            None,
        );
        bench.compare(
            "(b) refresh, 100,000 targets",
            |herald| bench.herald_tuf_client(herald, &url_100k, &r100k, &[]),
            || bench.python_tuf(&url_100k, &r100k, &[]),
            None,
        );
    }
    if wanted('c') {
        bench.compare(
            "(c) 100 targets out of 10,000",
            |herald| bench.herald_tuf_client(herald, &url_10k, &r10k, &hundred),
            || bench.python_tuf(&url_10k, &r10k, &hundred),
            None,
        );
    }
    if let Err(left) = herald_e2e::servers::check_none_left(&[&work, &clients]) {
        eprintln!("{left}");
        panic!("server processes were left running after the benchmark");
    }
    let _ = std::fs::remove_dir_all(&work);
    let _ = std::fs::remove_dir_all(&clients);
}
