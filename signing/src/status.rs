//! `herald-sign status`: versions and expiries of every role.

use std::path::Path;

use herald_manifest::{tuf_time, Envelope};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::fsutil::read;
use crate::layout::{parse_envelope, Layout};
use crate::Error;

/// One role's state as shown by `status`.
fn role_state(file: &str, env: &Envelope, now: OffsetDateTime) -> Value {
    let expires = env
        .signed()
        .get("expires")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let expired = tuf_time::parse(&expires).map_or(true, |t| now >= t);
    json!({
        "file": file,
        "version": env.version(),
        "expires": expires,
        "expired": expired,
        "signatures": env.signatures().len(),
    })
}

/// Prints the newest version, expiry and signature count of each role, and whatever waits
/// in `staged/`. Reads only; verification is `herald-sign verify`.
pub(crate) fn status(repo: &Path, as_json: bool, now: OffsetDateTime) -> Result<(), Error> {
    let layout = Layout::new(repo);
    let mut roles = serde_json::Map::new();
    for role in ["root", "targets", "snapshot"] {
        if let Some((v, bytes)) = layout.newest(role)? {
            let file = format!("metadata/{v}.{role}.json");
            let env = parse_envelope(&file, &bytes)?;
            roles.insert(role.into(), role_state(&file, &env, now));
        }
    }
    for (key, path, file) in [
        (
            "timestamp",
            layout.metadata("timestamp.json"),
            "metadata/timestamp.json",
        ),
        (
            "staged-timestamp",
            layout.staged_dir().join("timestamp.json"),
            "staged/timestamp.json",
        ),
    ] {
        if path.exists() {
            let env = parse_envelope(file, &read(&path)?)?;
            roles.insert(key.into(), role_state(file, &env, now));
        }
    }
    if roles.is_empty() {
        return Err(Error::Repository(format!(
            "{}: no metadata; run `herald-sign init` first",
            repo.display()
        )));
    }
    let report = json!({ "now": tuf_time::format(now), "roles": roles });
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
        return Ok(());
    }
    println!(
        "{:<18} {:>8} {:<22} {:>5}  file",
        "role", "version", "expires", "sigs"
    );
    for (name, state) in &roles {
        println!(
            "{:<18} {:>8} {:<22} {:>5}  {}{}",
            name,
            state["version"],
            state["expires"].as_str().unwrap_or_default(),
            state["signatures"],
            state["file"].as_str().unwrap_or_default(),
            if state["expired"] == true {
                "  EXPIRED"
            } else {
                ""
            }
        );
    }
    Ok(())
}
