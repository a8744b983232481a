//! The layer rule of `herald-ca`, checked on the source tree (in the spirit of rust-analyzer's
//! `tidy` tests): every `crate::` path in a file names its own layer or one below it, and the
//! core names no HTTP or command-line framework. The layers, top to bottom:
//!
//! ```text
//! cli -> server -> http -> core -> store -> model
//! ```
//!
//! `lib.rs` and `main.rs` are the crate's public face and may name any layer.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

/// Top to bottom.
const LAYERS: &[&str] = &["cli", "server", "http", "core", "store", "model"];

/// Crates a layer must not name (as `name::` paths or `use name`).
const FORBIDDEN: &[(&str, &[&str])] = &[
    (
        "core",
        &[
            "axum",
            "hyper",
            "hyper_util",
            "tower",
            "tower_http",
            "clap",
            "rustls",
            "tokio_rustls",
        ],
    ),
    ("store", &["axum", "hyper", "clap", "rustls"]),
    (
        "model",
        &[
            "axum",
            "hyper",
            "clap",
            "rustls",
            "rusqlite",
            "tokio_postgres",
        ],
    ),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without comments and without `#[cfg(test)] mod tests { ... }` blocks (tests may
/// build fixtures from any layer).
fn code_of(text: &str) -> String {
    let mut code = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]\nmod tests {") {
        code.push_str(&rest[..at]);
        let body = &rest[at..];
        let mut depth = 0usize;
        let mut end = body.len();
        for (i, c) in body.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &body[end..];
    }
    code.push_str(rest);
    code.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The layers named by `crate::LAYER` paths in `code`, with the line they are on.
fn named_layers(code: &str) -> Vec<(usize, &'static str)> {
    let mut found = Vec::new();
    for (n, line) in code.lines().enumerate() {
        for layer in LAYERS {
            if line.contains(&format!("crate::{layer}::"))
                || line.contains(&format!("crate::{layer}}}"))
                || line.contains(&format!("crate::{layer};"))
            {
                found.push((n + 1, *layer));
            }
        }
    }
    found
}

fn names_crate(code: &str, krate: &str) -> bool {
    code.lines().any(|line| {
        let line = line.trim_start();
        line.contains(&format!(" {krate}::"))
            || line.contains(&format!("({krate}::"))
            || line.contains(&format!("<{krate}::"))
            || line.contains(&format!("&{krate}::"))
            || line.starts_with(&format!("{krate}::"))
            || line.starts_with(&format!("use {krate}"))
            || line.contains(&format!("[{krate}::"))
    })
}

/// Violations in the tree under `src`: `(file, line, what)`.
fn violations(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut found = Vec::new();
    for file in files {
        let relative = file.strip_prefix(src).unwrap();
        let Some(layer) = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .and_then(|first| LAYERS.iter().position(|l| *l == first))
        else {
            continue;
        };
        let code = code_of(&std::fs::read_to_string(&file).unwrap());
        for (line, named) in named_layers(&code) {
            let rank = LAYERS.iter().position(|l| *l == named).unwrap();
            if rank < layer {
                found.push(format!(
                    "{}:{line}: the {} layer names the higher {named} layer",
                    relative.display(),
                    LAYERS[layer]
                ));
            }
        }
        for (restricted, crates) in FORBIDDEN {
            if LAYERS[layer] != *restricted {
                continue;
            }
            for krate in *crates {
                if names_crate(&code, krate) {
                    found.push(format!(
                        "{}: the {restricted} layer names {krate}",
                        relative.display()
                    ));
                }
            }
        }
    }
    found.sort();
    found
}

#[test]
fn every_import_points_down_and_the_core_names_no_framework() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for layer in LAYERS {
        assert!(
            src.join(layer).is_dir(),
            "the {layer} layer's folder is missing"
        );
    }
    let found = violations(&src);
    assert!(found.is_empty(), "layer violations:\n{}", found.join("\n"));
}

#[test]
fn a_lower_layer_naming_a_higher_one_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let write = |path: &str, text: &str| {
        let path = tmp.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("model/mod.rs", "use crate::store::StoreError;\n");
    write(
        "core/fine.rs",
        "use crate::store::Store;\nuse crate::model::serial::Serial;\n",
    );
    write("core/web.rs", "use axum::Router;\n");
    write(
        "store/mod.rs",
        "// crate::http:: in a comment is fine\n#[cfg(test)]\nmod tests {\n    use crate::core::x;\n}\n",
    );
    write("http/mod.rs", "fn f() { crate::cli::run(); }\n");
    let found = violations(tmp.path());
    assert_eq!(
        found,
        [
            "core/web.rs: the core layer names axum",
            "http/mod.rs:1: the http layer names the higher cli layer",
            "model/mod.rs:1: the model layer names the higher store layer",
        ],
        "{found:#?}"
    );
}
