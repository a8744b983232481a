//! Unpacking zip archives (offline bundles, zip targets) safely.
//!
//! Every entry is checked before anything is written: its name must be a valid target path
//! (relative, no `..`, no backslash, no NUL, no drive letter), it must not be a link, and
//! the count, the total declared size and each entry's compression ratio
//! are bounded (zip bombs). While writing, no entry may produce more bytes than it declared.
//! (The zip reader keeps one entry per name, so an archive cannot smuggle a second copy of a
//! file past these checks.)

use std::collections::BTreeSet;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use herald_manifest::TargetPath;

/// Bounds on an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZipLimits {
    /// Most entries. Default 200,000.
    pub max_entries: usize,
    /// Largest total uncompressed size. Default 64 GiB.
    pub max_total_size: u64,
    /// Largest ratio of uncompressed to compressed size for one entry. Default 1,000.
    pub max_ratio: u64,
}

impl Default for ZipLimits {
    fn default() -> Self {
        ZipLimits {
            max_entries: 200_000,
            max_total_size: 64 * 1024 * 1024 * 1024,
            max_ratio: 1000,
        }
    }
}

/// Why an archive was refused.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // fields are named for what they hold
pub enum ZipCheckError {
    /// The archive is not a readable zip file.
    #[error("not a valid zip archive: {0}")]
    Archive(#[from] zip::result::ZipError),
    /// An entry name is not a safe relative path.
    #[error("entry {name:?}: {source}")]
    BadName {
        name: String,
        #[source]
        source: herald_manifest::PathError,
    },
    /// An entry name is not UTF-8.
    #[error("entry #{0}: name is not UTF-8")]
    NameEncoding(usize),
    /// An entry is a symbolic link.
    #[error("entry {0:?}: links are not allowed")]
    Link(String),
    /// Two entries have the same name.
    #[error("entry {0:?}: appears twice")]
    Duplicate(String),
    /// Too many entries.
    #[error("{found} entries; at most {limit} allowed")]
    TooManyEntries { found: usize, limit: usize },
    /// The declared sizes add up to too much.
    #[error("uncompressed size exceeds {limit} bytes")]
    TooLarge { limit: u64 },
    /// An entry compresses suspiciously well.
    #[error("entry {name:?}: compression ratio above {limit}:1 (zip bomb?)")]
    Ratio { name: String, limit: u64 },
    /// An entry produced more bytes than it declared.
    #[error("entry {0:?}: more data than declared")]
    Overflow(String),
    /// Writing an entry failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A checked file entry: its index in the archive, its path and declared size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedEntry {
    pub(crate) index: usize,
    /// The entry's path.
    pub path: TargetPath,
    /// Its declared uncompressed size.
    pub size: u64,
}

/// Checks every entry of an archive without extracting anything.
pub fn check_archive<R: Read + Seek>(
    archive: &mut zip::ZipArchive<R>,
    limits: &ZipLimits,
) -> Result<Vec<CheckedEntry>, ZipCheckError> {
    if archive.len() > limits.max_entries {
        return Err(ZipCheckError::TooManyEntries {
            found: archive.len(),
            limit: limits.max_entries,
        });
    }
    let mut seen = BTreeSet::new();
    let mut total: u64 = 0;
    let mut entries = Vec::new();
    for index in 0..archive.len() {
        let entry = archive.by_index_raw(index)?;
        let name = std::str::from_utf8(entry.name_raw())
            .map_err(|_| ZipCheckError::NameEncoding(index))?
            .to_owned();
        if entry.is_symlink() {
            return Err(ZipCheckError::Link(name));
        }
        if entry.is_dir() {
            // Folders are created as needed; still refuse a dangerous name.
            let trimmed = name.trim_end_matches('/');
            TargetPath::new(trimmed).map_err(|source| ZipCheckError::BadName {
                name: name.clone(),
                source,
            })?;
            continue;
        }
        let path = TargetPath::new(name.as_str()).map_err(|source| ZipCheckError::BadName {
            name: name.clone(),
            source,
        })?;
        if !seen.insert(name.clone()) {
            return Err(ZipCheckError::Duplicate(name));
        }
        let size = entry.size();
        total = total.saturating_add(size);
        if total > limits.max_total_size {
            return Err(ZipCheckError::TooLarge {
                limit: limits.max_total_size,
            });
        }
        if size > 4096 && size / entry.compressed_size().max(1) > limits.max_ratio {
            return Err(ZipCheckError::Ratio {
                name,
                limit: limits.max_ratio,
            });
        }
        entries.push(CheckedEntry { index, path, size });
    }
    Ok(entries)
}

/// Checks the archive at `zip_path`, then extracts it into `dest` (which must not exist yet:
/// it is created, so nothing else is in it).
pub fn extract_checked(
    zip_path: &Path,
    dest: &Path,
    limits: &ZipLimits,
) -> Result<Vec<CheckedEntry>, ZipCheckError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ZipCheckError::Io { path, source }
    };
    let file = std::fs::File::open(zip_path).map_err(io(zip_path))?;
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file))?;
    let entries = check_archive(&mut archive, limits)?;
    std::fs::create_dir(dest).map_err(io(dest))?;
    for entry in &entries {
        let out_path = dest.join(entry.path.as_str());
        if let Some(parent) = out_path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let mut reader = archive.by_index(entry.index)?.take(entry.size + 1);
        let mut out = std::fs::File::create(&out_path).map_err(io(&out_path))?;
        let written = std::io::copy(&mut reader, &mut out).map_err(io(&out_path))?;
        if written > entry.size {
            return Err(ZipCheckError::Overflow(entry.path.to_string()));
        }
        out.flush().map_err(io(&out_path))?;
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use zip::write::SimpleFileOptions;

    fn archive(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, data) in entries {
            zip.start_file(*name, SimpleFileOptions::default()).unwrap();
            zip.write_all(data).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    fn check(bytes: Vec<u8>) -> Result<Vec<CheckedEntry>, ZipCheckError> {
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))?;
        check_archive(&mut archive, &ZipLimits::default())
    }

    #[test]
    fn path_traversal_in_zip_entries_is_refused() {
        for name in [
            "../evil",
            "a/../../evil",
            "/etc/passwd",
            "a\\b",
            "C:/x",
            "a//b",
        ] {
            let err = check(archive(&[(name, b"x")])).unwrap_err();
            assert!(
                matches!(err, ZipCheckError::BadName { .. }),
                "{name}: {err}"
            );
        }
    }

    #[test]
    fn symlink_entry_is_refused() {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        zip.add_symlink("link", "/etc/passwd", SimpleFileOptions::default())
            .unwrap();
        let bytes = zip.finish().unwrap().into_inner();
        assert!(matches!(check(bytes), Err(ZipCheckError::Link(_))));
    }

    #[test]
    fn zip_bomb_is_refused() {
        let zeros = vec![0u8; 8 * 1024 * 1024];
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("bomb", options).unwrap();
        zip.write_all(&zeros).unwrap();
        let bytes = zip.finish().unwrap().into_inner();
        assert!(matches!(check(bytes), Err(ZipCheckError::Ratio { .. })));
    }

    #[test]
    fn too_many_entries_are_refused() {
        let bytes = archive(&[("a", b"1"), ("b", b"2"), ("c", b"3")]);
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        let limits = ZipLimits {
            max_entries: 2,
            ..ZipLimits::default()
        };
        assert!(matches!(
            check_archive(&mut archive, &limits),
            Err(ZipCheckError::TooManyEntries { found: 3, .. })
        ));
    }

    #[test]
    fn valid_archive_extracts_into_a_new_folder_only() {
        let dir = tempfile::tempdir().unwrap();
        let zip_path = dir.path().join("b.zip");
        std::fs::write(
            &zip_path,
            archive(&[("metadata/1.root.json", b"{}"), ("t/x", b"x")]),
        )
        .unwrap();
        let dest = dir.path().join("out");
        let entries = extract_checked(&zip_path, &dest, &ZipLimits::default()).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(std::fs::read(dest.join("t/x")).unwrap(), b"x");
        // A second extraction into the same folder is refused rather than mixed.
        assert!(extract_checked(&zip_path, &dest, &ZipLimits::default()).is_err());
    }
}
