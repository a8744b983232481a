//! Every binary explains its commands, and a failing command exits with a one-line message,
//! never a panic.

use herald_e2e::herald_bin;

fn help_of(bin: &str) -> String {
    let out = herald_bin(bin).arg("--help").output().expect("binary runs");
    assert!(out.status.success(), "{bin} --help failed");
    String::from_utf8(out.stdout).expect("help is UTF-8")
}

#[test]
fn herald_ca_help_lists_its_commands() {
    let help = help_of("herald-ca");
    for cmd in [
        "init",
        "serve",
        "quickstart",
        "token",
        "cert",
        "crl",
        "relay",
        "audit",
        "fleet",
        "admin",
    ] {
        assert!(
            help.contains(&format!("\n  {cmd} ")),
            "missing {cmd}:\n{help}"
        );
    }
}

#[test]
fn herald_sign_help_lists_its_commands() {
    let help = help_of("herald-sign");
    for cmd in [
        "keygen",
        "init",
        "release",
        "sign",
        "timestamp",
        "rotate-root",
        "verify",
        "bundle",
        "rollout",
        "status",
    ] {
        assert!(
            help.contains(&format!("\n  {cmd} ")),
            "missing {cmd}:\n{help}"
        );
    }
}

#[test]
fn herald_update_help_lists_its_commands() {
    let help = help_of("herald-update");
    for cmd in [
        "enroll",
        "renew",
        "check",
        "apply",
        "run",
        "status",
        "rollback",
        "doctor",
        "import-bundle",
        "tuf-client",
    ] {
        assert!(
            help.contains(&format!("\n  {cmd} ")),
            "missing {cmd}:\n{help}"
        );
    }
}

#[test]
fn tuf_client_failure_exits_1_with_one_line() {
    let out = herald_bin("herald-update")
        .args(["tuf-client", "--metadata-dir", "md", "refresh"])
        .output()
        .expect("binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line expected: {stderr}");
    assert!(stderr.contains("--metadata-url"), "{stderr}");
}

#[test]
fn usage_error_exits_2_for_every_binary() {
    for bin in ["herald-ca", "herald-sign", "herald-update"] {
        let out = herald_bin(bin)
            .arg("no-such-command")
            .output()
            .expect("binary runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bin}: {stderr}");
        assert!(!stderr.contains("panicked"), "{bin}: {stderr}");
    }
}
