//! The wire types stay free of any HTTP client, server or runtime: whoever speaks the protocol
//! can depend on them without linking a framework.

#![allow(clippy::unwrap_used)]

/// The only dependencies allowed.
const ALLOWED: &[&str] = &["hex", "serde", "serde_json", "thiserror"];

#[test]
fn wire_types_depend_on_serde_thiserror_and_hex_only() {
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    let mut in_dependencies = false;
    let mut found = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_dependencies = line.ends_with("dependencies]");
        } else if in_dependencies && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['=', '.']).next().unwrap().trim();
            found.push(name.to_owned());
        }
    }
    let extra: Vec<&String> = found
        .iter()
        .filter(|name| !ALLOWED.contains(&name.as_str()))
        .collect();
    assert!(extra.is_empty(), "herald-wire depends on {extra:?}");
    assert!(!found.is_empty(), "no dependency section read");
}
