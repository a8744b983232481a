//! `herald-update tuf-client`, the TUF conformance command line, against repositories made
//! with python-tuf's Metadata API and served over HTTP on loopback.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::Output;

use support::{PyRepo, RequestLog};

const BIN: &str = env!("CARGO_BIN_EXE_herald-update");

/// A client with its own metadata and target folders.
struct TufClient {
    dir: tempfile::TempDir,
    metadata_url: String,
    targets_url: String,
}

impl TufClient {
    /// Serves `repo` and initialises a client with its first root.
    async fn new(repo: &PyRepo) -> Self {
        Self::serving(repo, support::dir_router(&repo.published())).await
    }

    /// Serves `repo` by raw request paths (escapes kept) and initialises a client; the log
    /// holds every path the client asked for.
    async fn logged(repo: &PyRepo) -> (Self, RequestLog) {
        let log = RequestLog::default();
        let router = support::raw_dir_router(&repo.published(), log.clone());
        (Self::serving(repo, router).await, log)
    }

    /// Serves `repo` with `router` and initialises a client with its first root.
    async fn serving(repo: &PyRepo, router: axum::Router) -> Self {
        let base = support::serve_http(router).await;
        let client = TufClient {
            dir: tempfile::tempdir().unwrap(),
            metadata_url: base.join("metadata").unwrap().to_string(),
            targets_url: base.join("targets").unwrap().to_string(),
        };
        let root = repo.metadata("1.root.json");
        let md = client.md();
        let out = client
            .run_with(
                &[],
                &["--metadata-dir", &md, "init", root.to_str().unwrap()],
            )
            .await;
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        client
    }

    fn md(&self) -> String {
        self.dir.path().join("md").to_str().unwrap().to_owned()
    }

    /// A file of the metadata folder.
    fn stored(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.path().join("md").join(name)).unwrap()
    }

    fn out_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("out")
    }

    async fn refresh(&self) -> Output {
        let md = self.md();
        let args = [
            "--metadata-url",
            &self.metadata_url,
            "--metadata-dir",
            &md,
            "refresh",
        ];
        self.run_with(&[], &args).await
    }

    async fn download(&self, names: &[&str]) -> Output {
        self.download_with(&[], names).await
    }

    async fn download_with(&self, prefix: &[&str], names: &[&str]) -> Output {
        let out_dir = self.out_dir();
        let md = self.md();
        let mut args = vec!["--metadata-url", &self.metadata_url, "--metadata-dir", &md];
        for name in names {
            args.extend(["--target-name", name]);
        }
        args.extend([
            "--target-base-url",
            &self.targets_url,
            "--target-dir",
            out_dir.to_str().unwrap(),
            "download",
        ]);
        self.run_with(prefix, &args).await
    }

    /// Runs `PREFIX... herald-update tuf-client ARGS...` off the async runtime.
    async fn run_with(&self, prefix: &[&str], args: &[&str]) -> Output {
        let mut command = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = std::process::Command::new(first);
                c.args(rest).arg(BIN);
                c
            }
            None => std::process::Command::new(BIN),
        };
        command.arg("tuf-client").args(args);
        tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap()
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_exit(out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "stderr: {}", stderr(out));
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test]
async fn refreshes_and_downloads_from_python_tuf_repository_with_delegations() {
    let repo = PyRepo::new(&[]);
    repo.run(&["add-target", "app/tool.bin", "tool v1"]);
    repo.run(&["delegate", "team", "team/*"]);
    repo.run(&["add-target", "team/data.txt", "team data", "--role", "team"]);
    let client = TufClient::new(&repo).await;

    assert_exit(&client.refresh().await, 0);
    assert_exit(
        &client.download(&["app/tool.bin", "team/data.txt"]).await,
        0,
    );
    assert_eq!(
        files_in(&client.out_dir()),
        vec!["app%2Ftool.bin".to_owned(), "team%2Fdata.txt".to_owned()]
    );
    let tool = std::fs::read(client.out_dir().join("app%2Ftool.bin")).unwrap();
    assert_eq!(tool, b"tool v1");

    // Already present and verified: not fetched again (the server no longer has it).
    std::fs::remove_dir_all(repo.published().join("targets/app")).unwrap();
    assert_exit(&client.download(&["app/tool.bin"]).await, 0);
}

#[tokio::test]
async fn plain_names_without_consistent_snapshots() {
    let repo = PyRepo::new(&["--no-consistent"]);
    repo.run(&["add-target", "readme.txt", "hello"]);
    let client = TufClient::new(&repo).await;
    assert_exit(&client.download(&["readme.txt"]).await, 0);
    assert_eq!(
        std::fs::read(client.out_dir().join("readme.txt")).unwrap(),
        b"hello"
    );
}

#[tokio::test]
async fn follows_root_rotations_and_key_rotations() {
    let repo = PyRepo::new(&[]);
    repo.run(&["add-target", "a.txt", "a"]);
    let client = TufClient::new(&repo).await;
    assert_exit(&client.refresh().await, 0);
    repo.run(&["rotate", "root"]);
    repo.run(&["rotate", "timestamp"]);
    repo.run(&["rotate", "snapshot"]);
    repo.run(&["rotate", "targets"]);
    assert_exit(&client.refresh().await, 0);
    let stored = std::fs::read_to_string(Path::new(&client.md()).join("root.json")).unwrap();
    assert!(
        stored.contains("\"version\": 5"),
        "newest root stored: {stored}"
    );
    assert_exit(&client.download(&["a.txt"]).await, 0);
}

#[tokio::test]
async fn expired_timestamp_exits_1() {
    let repo = PyRepo::new(&[]);
    let client = TufClient::new(&repo).await;
    assert_exit(&client.refresh().await, 0);
    repo.run(&["expire", "timestamp"]);
    let out = client.refresh().await;
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("expired"), "{}", stderr(&out));
}

#[tokio::test]
async fn faked_clock_past_expiry_exits_1() {
    let repo = PyRepo::new(&[]);
    let client = TufClient::new(&repo).await;
    assert_exit(&client.refresh().await, 0);
    // The client reads the system clock through the C library, so faketime moves it: to 400
    // days after this process's own clock (an absolute time, so the step stays 400 days even
    // when the whole suite already runs under faketime).
    let later = time::OffsetDateTime::now_utc() + time::Duration::days(400);
    let format =
        time::macros::format_description!("@[year]-[month]-[day] [hour]:[minute]:[second]");
    let at = later.format(&format).unwrap();
    let out = client
        .download_with(&["env", "TZ=UTC", "faketime", "-f", &at], &[])
        .await;
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("expired"), "{}", stderr(&out));
}

#[tokio::test]
async fn tampered_target_exits_1_and_leaves_nothing_in_target_dir() {
    let repo = PyRepo::new(&["--no-consistent"]);
    repo.run(&["add-target", "payload.bin", "the real payload"]);
    std::fs::write(
        repo.published().join("targets/payload.bin"),
        "the evil payload",
    )
    .unwrap();
    let client = TufClient::new(&repo).await;
    let out = client.download(&["payload.bin"]).await;
    assert_exit(&out, 1);
    assert!(
        files_in(&client.out_dir()).is_empty(),
        "no unverified byte in the target dir"
    );
}

#[tokio::test]
async fn unlisted_target_exits_1() {
    let repo = PyRepo::new(&[]);
    let client = TufClient::new(&repo).await;
    let out = client.download(&["not/listed.bin"]).await;
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("not listed"), "{}", stderr(&out));
}

#[tokio::test]
async fn usage_error_exits_1() {
    let repo = PyRepo::new(&[]);
    let client = TufClient::new(&repo).await;
    let md = client.md();
    let out = client
        .run_with(&[], &["--metadata-dir", &md, "no-such-command"])
        .await;
    assert_exit(&out, 1);
    let out = client
        .run_with(&[], &["--metadata-dir", &md, "refresh"])
        .await;
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("--metadata-url"), "{}", stderr(&out));
}

#[tokio::test]
async fn same_version_timestamp_with_other_content_keeps_the_trusted_timestamp() {
    let repo = PyRepo::new(&[]);
    repo.run(&["add-target", "a.txt", "a"]);
    let (client, log) = TufClient::logged(&repo).await;
    assert_exit(&client.refresh().await, 0);
    let trusted = client.stored("timestamp.json");
    // Republished at the same version, naming snapshot version 100.
    repo.run(&["timestamp-same-version", "100"]);
    assert_ne!(
        std::fs::read(repo.metadata("timestamp.json")).unwrap(),
        trusted
    );
    assert_exit(&client.refresh().await, 0);
    assert_eq!(
        client.stored("timestamp.json"),
        trusted,
        "trusted timestamp kept"
    );
    let paths = log.paths();
    assert!(
        !paths.iter().any(|p| p.ends_with("/100.snapshot.json")),
        "the snapshot the new timestamp names was not fetched: {paths:?}"
    );
    assert_exit(&client.download(&["a.txt"]).await, 0);
}

#[tokio::test]
async fn targets_listed_with_only_sha512_or_only_sha384_download_and_verify() {
    let repo = PyRepo::new(&[]);
    repo.run(&[
        "add-target",
        "a.bin",
        "listed by SHA-512",
        "--hashes",
        "sha512",
    ]);
    repo.run(&[
        "add-target",
        "b.bin",
        "listed by SHA-384",
        "--hashes",
        "sha384",
    ]);
    repo.run(&[
        "add-target",
        "c.bin",
        "listed by both",
        "--hashes",
        "sha384,sha512",
    ]);
    let client = TufClient::new(&repo).await;
    assert_exit(&client.download(&["a.bin", "b.bin", "c.bin"]).await, 0);
    let read = |name: &str| std::fs::read(client.out_dir().join(name)).unwrap();
    assert_eq!(read("a.bin"), b"listed by SHA-512");
    assert_eq!(read("b.bin"), b"listed by SHA-384");
    assert_eq!(read("c.bin"), b"listed by both");
    // Already present and verified by those hashes: not fetched again.
    std::fs::remove_dir_all(repo.published().join("targets")).unwrap();
    assert_exit(&client.download(&["a.bin", "b.bin", "c.bin"]).await, 0);
}

#[tokio::test]
async fn target_matching_its_sha256_but_not_its_listed_sha512_is_refused() {
    let repo = PyRepo::new(&[]);
    repo.run(&[
        "add-target",
        "payload.bin",
        "payload",
        "--hashes",
        "sha256,sha512",
        "--corrupt-hash",
        "sha512",
    ]);
    let client = TufClient::new(&repo).await;
    let out = client.download(&["payload.bin"]).await;
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("SHA-512 mismatch"),
        "{}",
        stderr(&out)
    );
    assert!(
        files_in(&client.out_dir()).is_empty(),
        "no unverified byte in the target dir"
    );
}

#[tokio::test]
async fn target_listed_with_only_unsupported_hashes_exits_1_with_clear_error() {
    let repo = PyRepo::new(&[]);
    repo.run(&["add-target", "x.bin", "x", "--hashes", "blake2b"]);
    let client = TufClient::new(&repo).await;
    let out = client.download(&["x.bin"]).await;
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("none of the listed hash algorithms (blake2b) is supported"),
        "{}",
        stderr(&out)
    );
}

/// The published metadata file `name` with its first signature listed a second time.
fn repeat_first_signature(repo: &PyRepo, name: &str) {
    let path = repo.metadata(name);
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let signatures = doc["signatures"].as_array_mut().unwrap();
    let first = signatures[0].clone();
    signatures.push(first);
    std::fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
}

#[tokio::test]
async fn metadata_with_a_repeated_signature_keyid_is_rejected_and_not_persisted() {
    let repo = PyRepo::new(&[]);
    let client = TufClient::new(&repo).await;
    assert_exit(&client.refresh().await, 0);
    let snapshot = client.stored("snapshot.json");
    // Snapshot 3 listing its one signature twice.
    repo.run(&["publish"]);
    repeat_first_signature(&repo, "3.snapshot.json");
    let out = client.refresh().await;
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("more than once"), "{}", stderr(&out));
    assert_eq!(client.stored("snapshot.json"), snapshot, "not persisted");
    // Timestamp 4 listing its one signature twice.
    repo.run(&["publish"]);
    repeat_first_signature(&repo, "timestamp.json");
    let out = client.refresh().await;
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("more than once"), "{}", stderr(&out));
    let stored: serde_json::Value =
        serde_json::from_slice(&client.stored("timestamp.json")).unwrap();
    assert_eq!(
        stored["signed"]["version"], 3,
        "the rejected timestamp 4 did not replace the trusted timestamp 3"
    );
}

#[tokio::test]
async fn delegated_role_names_needing_escaping_are_fetched_percent_encoded() {
    for (role, encoded) in [
        ("?", "%3F"),
        ("#", "%23"),
        ("/delegatedrole", "%2Fdelegatedrole"),
        ("../delegatedrole", "..%2Fdelegatedrole"),
    ] {
        let repo = PyRepo::new(&[]);
        repo.run(&["delegate", role, "*"]);
        repo.run(&["add-target", "target", "delegated data", "--role", role]);
        let (client, log) = TufClient::logged(&repo).await;
        assert_exit(&client.download(&["target"]).await, 0);
        assert_eq!(
            std::fs::read(client.out_dir().join("target")).unwrap(),
            b"delegated data",
            "{role}"
        );
        // The URL carries the encoded name (version 2: delegated, then given the target).
        let wanted = format!("/metadata/2.{encoded}.json");
        let paths = log.paths();
        assert!(paths.contains(&wanted), "{role}: {wanted} in {paths:?}");
        // The local copy is one file in the metadata folder, nothing beside it.
        assert!(
            files_in(Path::new(&client.md())).contains(&format!("{encoded}.json")),
            "{role}: {:?}",
            files_in(Path::new(&client.md()))
        );
        assert_eq!(files_in(client.dir.path()), ["md", "out"], "{role}");
        // A second lookup through the stored role works from the local copy.
        assert_exit(&client.download(&["target"]).await, 0);
    }
}
