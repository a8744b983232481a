//! Helpers for Herald's end-to-end scenarios, which run the real binaries built by
//! `cargo test --workspace` (or `cargo build --workspace`), and for the benchmark programs
//! that start servers ([`servers`]) or sign in to the console ([`console`]).

#![forbid(unsafe_code)]

pub mod console;
pub mod servers;

use std::path::PathBuf;
use std::process::Command;

/// The folder cargo writes binaries to for the profile these tests were built with.
fn bin_dir() -> PathBuf {
    // Integration test executables live in target/<profile>/deps/.
    let exe = std::env::current_exe().expect("the test executable has a path");
    let deps = exe
        .parent()
        .expect("the test executable is in target/<profile>/deps");
    deps.parent()
        .expect("target/<profile>/deps has a parent")
        .to_path_buf()
}

/// A `Command` for one of Herald's binaries (`herald-ca`, `herald-sign`, `herald-update`).
///
/// # Panics
/// If the binary was not built: run the tests with `cargo test --workspace`.
pub fn herald_bin(name: &str) -> Command {
    let path = bin_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is missing: run the tests with `cargo test --workspace`, which builds every binary",
        path.display()
    );
    Command::new(path)
}

/// `herald-ca quickstart` on `data_dir`, both listeners on free loopback ports, its standard
/// output piped (the addresses, tokens and one-time password it prints) and its log dropped.
pub fn quickstart_command(data_dir: &std::path::Path) -> Command {
    let mut command = herald_bin("herald-ca");
    command
        .args([
            "quickstart",
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    command
}
