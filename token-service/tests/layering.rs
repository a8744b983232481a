//! The token service's modules form layers: each module uses only modules of lower layers
//! (and its own submodules), so the token logic never depends on the HTTP framework and the
//! HTTP layer never on the relay. Read from the source, as a tidy check.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

/// Bottom first. A module may use modules of lower layers only.
const LAYERS: &[&[&str]] = &[
    &["token", "guard", "refusal"],
    &["service"],
    &["http"],
    &["relay"],
];

/// The lowest layer allowed to use the HTTP server framework.
const FIRST_HTTP_LAYER: usize = 2;

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// Every source file but `lib.rs`, with its top-level module (`relay/cache.rs` is `relay`).
fn sources() -> Vec<(String, PathBuf)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    files
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n != "lib.rs"))
        .map(|p| {
            let relative = p.strip_prefix(&src).unwrap();
            let first = relative.components().next().unwrap().as_os_str();
            let module = first.to_string_lossy().trim_end_matches(".rs").to_owned();
            (module, p)
        })
        .collect()
}

/// The code of a file without comments.
fn code(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| line.split("//").next().unwrap_or("").to_owned())
        .collect()
}

/// The module named right after each `crate::` in `line`.
fn crate_paths(line: &str) -> Vec<String> {
    line.match_indices("crate::")
        .map(|(at, _)| {
            line[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

#[test]
fn every_crate_import_points_down() {
    let mut violations = Vec::new();
    for (module, path) in sources() {
        let own = layer_of(&module).unwrap_or_else(|| {
            panic!(
                "{}: module {module} is in no layer of LAYERS",
                path.display()
            )
        });
        for (n, line) in code(&path).iter().enumerate() {
            for used in crate_paths(line) {
                let ok = used == module || layer_of(&used).is_some_and(|layer| layer < own);
                if !ok {
                    violations.push(format!(
                        "{}:{}: {module} uses crate::{used}",
                        path.display(),
                        n + 1
                    ));
                }
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn only_http_and_relay_use_the_http_server_framework() {
    let mut violations = Vec::new();
    for (module, path) in sources() {
        let below_http = layer_of(&module).is_some_and(|layer| layer < FIRST_HTTP_LAYER);
        for (n, line) in code(&path).iter().enumerate() {
            if below_http && line.contains("axum") {
                violations.push(format!("{}:{}: {module} uses axum", path.display(), n + 1));
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}
