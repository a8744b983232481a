//! A checked target path.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Why a string is not a valid target path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Empty path.
    #[error("target path is empty")]
    Empty,
    /// Starts with `/`.
    #[error("target path {0:?} is absolute")]
    Absolute(String),
    /// Contains `\`.
    #[error("target path {0:?} contains a backslash")]
    Backslash(String),
    /// Contains NUL.
    #[error("target path {0:?} contains a NUL byte")]
    Nul(String),
    /// Contains an empty segment (`a//b`, trailing `/`).
    #[error("target path {0:?} has an empty segment")]
    EmptySegment(String),
    /// Contains a `.` or `..` segment.
    #[error("target path {0:?} has a `.` or `..` segment")]
    DotSegment(String),
    /// Contains another control character (canonical JSON would write it raw, which JSON
    /// parsers refuse).
    #[error("target path {0:?} contains a control character")]
    Control(String),
    /// Starts with a Windows drive letter (`C:`).
    #[error("target path {0:?} starts with a drive letter")]
    Drive(String),
}

/// A target path as listed in targets metadata: `/`-separated, relative, with no `.` or `..`
/// segment, no empty segment, no backslash, no NUL or other control character and no drive
/// prefix, so that joining it
/// to an install root can never leave that root.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct TargetPath(String);

impl TargetPath {
    /// Checks `path`.
    pub fn new(path: impl Into<String>) -> Result<Self, PathError> {
        let path = path.into();
        if path.is_empty() {
            return Err(PathError::Empty);
        }
        if path.starts_with('/') {
            return Err(PathError::Absolute(path));
        }
        if path.contains('\\') {
            return Err(PathError::Backslash(path));
        }
        if path.contains('\0') {
            return Err(PathError::Nul(path));
        }
        if path.chars().any(char::is_control) {
            return Err(PathError::Control(path));
        }
        let bytes = path.as_bytes();
        if bytes.len() >= 2 && bytes[1] == b':' && bytes[0].is_ascii_alphabetic() {
            return Err(PathError::Drive(path));
        }
        for segment in path.split('/') {
            match segment {
                "" => return Err(PathError::EmptySegment(path)),
                "." | ".." => return Err(PathError::DotSegment(path)),
                _ => {}
            }
        }
        Ok(TargetPath(path))
    }

    /// The path as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `/`-separated segments.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The path below the folder `dir` (written with its trailing `/`, e.g. `releases/8/`),
    /// when this path lies under it; `None` otherwise. What follows whole segments of a valid
    /// path keeps every rule but one, which is checked again: it may start with a drive
    /// letter (`releases/8/C:x` gives `C:x`, refused).
    pub fn below(&self, dir: &str) -> Option<Result<TargetPath, PathError>> {
        if !dir.ends_with('/') {
            return None;
        }
        let rest = self.0.strip_prefix(dir)?;
        let bytes = rest.as_bytes();
        if bytes.len() >= 2 && bytes[1] == b':' && bytes[0].is_ascii_alphabetic() {
            return Some(Err(PathError::Drive(rest.to_owned())));
        }
        Some(Ok(TargetPath(rest.to_owned())))
    }

    /// The path with the file name prefixed by `hash.`, as consistent snapshots store targets
    /// (`a/b.txt` becomes `a/HASH.b.txt`).
    pub fn with_hash_prefix(&self, hash: &str) -> String {
        match self.0.rsplit_once('/') {
            Some((dir, name)) => format!("{dir}/{hash}.{name}"),
            None => format!("{hash}.{}", self.0),
        }
    }
}

impl fmt::Display for TargetPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TargetPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        TargetPath::new(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn valid_paths_accepted() {
        for p in ["a", "a/b.txt", "dir/sub/file-1.0.tar.gz", "..a", "a.."] {
            assert_eq!(TargetPath::new(p).unwrap().as_str(), p);
        }
    }

    #[test]
    fn path_traversal_rejected() {
        assert!(matches!(
            TargetPath::new("../etc/passwd"),
            Err(PathError::DotSegment(_))
        ));
        assert!(matches!(
            TargetPath::new("a/../../b"),
            Err(PathError::DotSegment(_))
        ));
        assert!(matches!(
            TargetPath::new("a/./b"),
            Err(PathError::DotSegment(_))
        ));
    }

    #[test]
    fn absolute_path_rejected() {
        assert!(matches!(
            TargetPath::new("/etc/passwd"),
            Err(PathError::Absolute(_))
        ));
        assert!(matches!(TargetPath::new("C:/x"), Err(PathError::Drive(_))));
    }

    #[test]
    fn backslash_rejected() {
        assert!(matches!(
            TargetPath::new("a\\b"),
            Err(PathError::Backslash(_))
        ));
    }

    #[test]
    fn empty_segment_rejected() {
        assert!(matches!(TargetPath::new(""), Err(PathError::Empty)));
        assert!(matches!(
            TargetPath::new("a//b"),
            Err(PathError::EmptySegment(_))
        ));
        assert!(matches!(
            TargetPath::new("a/"),
            Err(PathError::EmptySegment(_))
        ));
    }

    #[test]
    fn nul_rejected() {
        assert!(matches!(TargetPath::new("a\0b"), Err(PathError::Nul(_))));
        assert!(matches!(
            TargetPath::new("a\nb"),
            Err(PathError::Control(_))
        ));
    }

    #[test]
    fn hash_prefix_goes_on_file_name() {
        let p = TargetPath::new("a/b.txt").unwrap();
        assert_eq!(p.with_hash_prefix("ff"), "a/ff.b.txt");
        assert_eq!(TargetPath::new("c").unwrap().with_hash_prefix("ff"), "ff.c");
    }

    #[test]
    fn the_path_below_a_folder_is_a_valid_path() {
        let p = TargetPath::new("releases/8/lib/x.so").unwrap();
        assert_eq!(
            p.below("releases/8/").unwrap().unwrap().as_str(),
            "lib/x.so"
        );
        assert!(p.below("releases/80/").is_none());
        assert!(p.below("releases/8").is_none(), "a folder ends with /");
        let drive = TargetPath::new("releases/8/C:x").unwrap();
        assert!(matches!(
            drive.below("releases/8/"),
            Some(Err(PathError::Drive(_)))
        ));
    }

    #[test]
    fn deserialize_checks_path() {
        assert!(serde_json::from_str::<TargetPath>("\"../x\"").is_err());
    }
}
