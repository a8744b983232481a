//! `herald-ca quickstart` starts with no set-up, prints where it listens and answers health
//! checks there (its first line names the plain-HTTP address of OCSP, CRL and health); the
//! repository it serves lives beside its data folder, never in the folder holding the keys.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Child;

use herald_e2e::quickstart_command;

/// Starts `herald-ca quickstart` on `data_dir`; returns it and the first line it printed.
fn start_quickstart(data_dir: &Path) -> (Child, String) {
    let mut child = quickstart_command(data_dir)
        .spawn()
        .expect("quickstart starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let first = BufReader::new(stdout)
        .lines()
        .next()
        .expect("quickstart prints its address")
        .expect("stdout is UTF-8");
    (child, first)
}

#[test]
fn quickstart_repository_is_outside_the_data_folder() {
    let data = tempfile::tempdir().expect("temp dir");
    let data_dir = data.path().join("herald-data");
    let (mut child, _) = start_quickstart(&data_dir);
    child.kill().expect("server stops");
    let _ = child.wait();
    let config = std::fs::read_to_string(data_dir.join("config.toml")).expect("config written");
    let canonical = std::fs::canonicalize(data.path()).expect("temp dir exists");
    let beside = canonical.join("herald-repository");
    let line = config
        .lines()
        .skip_while(|l| l.trim() != "[repository]")
        .find(|l| l.trim_start().starts_with("dir"))
        .expect("[repository] dir configured");
    assert!(
        line.contains(&format!("\"{}\"", beside.display())),
        "repository not beside the data folder: {line}"
    );
    assert!(!data_dir.join("repository").exists());
}

#[test]
fn quickstart_starts_without_setup_and_answers_healthz() {
    let data = tempfile::tempdir().expect("temp dir");
    let data_dir = data.path().join("herald-data");
    let (mut child, first) = start_quickstart(&data_dir);
    let addr = first
        .rsplit("http://")
        .next()
        .expect("address printed")
        .to_owned();

    let mut stream = TcpStream::connect(&addr).expect("server accepts connections");
    write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request sent");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response read");
    child.kill().expect("server stops");
    let _ = child.wait();

    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("ok\n"), "{response}");
    assert!(data_dir.is_dir(), "data folder created");
    assert!(
        data_dir.join("config.toml").is_file(),
        "quickstart initialised a CA"
    );
    let key = std::fs::read_to_string(data_dir.join("intermediate.key")).expect("CA key");
    assert!(
        key.contains("BEGIN ENCRYPTED PRIVATE KEY"),
        "quickstart keys are encrypted"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for secret in ["passphrase", "admin-token", "intermediate.key"] {
            let mode = std::fs::metadata(data_dir.join(secret))
                .expect("secret file exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{secret} is private to its owner");
        }
    }
}

/// Starts quickstart on `data_dir` and returns what it printed up to "Stop with Ctrl-C", then
/// stops it.
fn quickstart_lines(data_dir: &Path) -> Vec<String> {
    let mut child = quickstart_command(data_dir)
        .spawn()
        .expect("quickstart starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("stdout is UTF-8");
        let done = line.starts_with("Stop with Ctrl-C");
        lines.push(line);
        if done {
            break;
        }
    }
    child.kill().expect("server stops");
    let _ = child.wait();
    lines
}

#[test]
fn quickstart_prints_the_console_and_its_one_time_password_once() {
    let data = tempfile::tempdir().expect("temp dir");
    let data_dir = data.path().join("herald-data");
    let first = quickstart_lines(&data_dir);
    let line = |lines: &[String], prefix: &str| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in {lines:#?}"))
            .to_owned()
    };
    let console = line(&first, "console: ");
    assert!(
        console.starts_with("https://127.0.0.1:") && console.ends_with("/ui/"),
        "{console}"
    );
    let account = line(&first, "console account: ");
    let password = account
        .strip_prefix("admin, one-time password: ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("{account}"));
    assert_eq!(password.len(), 23, "{account}");
    let again = quickstart_lines(&data_dir);
    let account = line(&again, "console account: ");
    assert!(
        account.starts_with("admin (one-time password printed"),
        "{account}"
    );
    assert!(
        !again.iter().any(|l| l.contains(password)),
        "the password is shown once"
    );
}
