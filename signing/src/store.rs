//! Storing release files in `targets/` and signing their statements.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use herald_manifest::{sha256_hex, sign_target, Signature, Signer, TargetPath};
use ring::digest;

use crate::fsutil::{sync_tree, write_atomic};
use crate::layout::Layout;
use crate::Error;

/// A release file stored in `targets/`: its path, length, SHA-256 and release signatures.
pub(crate) type StoredTarget = (TargetPath, u64, String, Vec<Signature>);

/// Files up to this size are read whole, hashed, and written straight under their final
/// name; larger ones are streamed through a temporary file.
const SMALL_FILE: u64 = 4 * 1024 * 1024;

/// Stores one release file in `targets/` under its hash-prefixed name and returns its length
/// and SHA-256 (hex).
///
/// A small file is read whole and written under its final name with `create_new` (one
/// directory operation; the directory scans of a temporary name plus a rename cost more than
/// the copy on some file systems). A file already present under that name is kept when its
/// content matches the name, and replaced through a temporary file otherwise (a leftover of
/// an interrupted run, never referenced by metadata, since metadata is written only after
/// every file is durable). With `link`, the file is hard-linked instead of copied.
fn store_target(
    dest_dir: &Path,
    path: &TargetPath,
    source: &Path,
    link: bool,
    buf: &mut [u8],
) -> Result<(u64, String), Error> {
    let size = fs::metadata(source).map_err(Error::io(source))?.len();
    if size > SMALL_FILE {
        return stream_target(dest_dir, path, source, link, buf);
    }
    let file_name = path.segments().last().unwrap_or_default();
    let data = fs::read(source).map_err(Error::io(source))?;
    let sha = sha256_hex(&data);
    let dest = dest_dir.join(format!("{sha}.{file_name}"));
    let linked = link && fs::hard_link(source, &dest).is_ok();
    if !linked {
        let created = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&dest)
            .and_then(|mut f| f.write_all(&data));
        match created {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let present = fs::read(&dest).map_err(Error::io(&dest))?;
                if sha256_hex(&present) != sha {
                    write_atomic(&dest, &data)?;
                }
            }
            Err(e) => return Err(Error::io(&dest)(e)),
        }
    }
    Ok((data.len() as u64, sha))
}

/// Streams a large file through a temporary name (hard-linked with `link`), hashing it on
/// the way, then renames it to its hash-prefixed name: the name always matches the content.
fn stream_target(
    dest_dir: &Path,
    path: &TargetPath,
    source: &Path,
    link: bool,
    buf: &mut [u8],
) -> Result<(u64, String), Error> {
    let file_name = path.segments().last().unwrap_or_default();
    let tmp = dest_dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let linked = link && fs::hard_link(source, &tmp).is_ok();
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut length: u64 = 0;
    let mut input =
        fs::File::open(if linked { &tmp } else { source }).map_err(Error::io(source))?;
    let mut output = if linked {
        None
    } else {
        Some(fs::File::create(&tmp).map_err(Error::io(&tmp))?)
    };
    loop {
        let n = input.read(buf).map_err(Error::io(source))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        if let Some(out) = output.as_mut() {
            out.write_all(&buf[..n]).map_err(Error::io(&tmp))?;
        }
        length += n as u64;
    }
    drop(output);
    let sha = hex::encode(ctx.finish());
    let dest = dest_dir.join(format!("{sha}.{file_name}"));
    fs::rename(&tmp, &dest).map_err(Error::io(&dest))?;
    Ok((length, sha))
}

/// Files per batch taken by a worker thread.
const BATCH: usize = 512;

/// Stores every release file and signs the target statements, on one worker thread per core.
///
/// Each worker takes the next batch of files (in order), stores each file and signs its
/// statement. On Linux file systems most of the cost of a release is kernel time spent
/// creating files, and it runs in parallel as long as the files land in different folders
/// (ext4 spreads folders over its block groups), so a single file-writing
/// thread would leave the other cores idle. The files are made durable once, after every
/// worker finished and before any metadata names them. The release folder must not change
/// while this runs.
pub(crate) fn store_targets(
    layout: &Layout,
    files: Vec<(TargetPath, PathBuf)>,
    link: bool,
    release: &[&dyn Signer],
) -> Result<Vec<StoredTarget>, Error> {
    let targets_dir = layout.targets_dir();
    fs::create_dir_all(&targets_dir).map_err(Error::io(&targets_dir))?;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let batches: Vec<&[(TargetPath, PathBuf)]> = files.chunks(BATCH).collect();
    let next = AtomicUsize::new(0);
    // A worker that fails moves `next` past the end, so the others stop at their next batch.
    let work = || -> Result<Vec<(usize, Vec<StoredTarget>)>, Error> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut done = Vec::new();
        loop {
            let index = next.fetch_add(1, Ordering::Relaxed);
            let Some(batch) = batches.get(index) else {
                return Ok(done);
            };
            let stored = store_batch(&targets_dir, batch, link, &mut buf).and_then(|mut stored| {
                sign_entries(&mut stored, release)?;
                Ok(stored)
            });
            match stored {
                Ok(stored) => done.push((index, stored)),
                Err(e) => {
                    next.store(batches.len(), Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
    };
    let mut done = std::thread::scope(|scope| -> Result<Vec<_>, Error> {
        let handles: Vec<_> = (0..workers.min(batches.len()))
            .map(|_| scope.spawn(work))
            .collect();
        let mut done = Vec::with_capacity(batches.len());
        for handle in handles {
            let mine = handle
                .join()
                .unwrap_or_else(|_| Err(Error::Repository("a worker thread panicked".into())))?;
            done.extend(mine);
        }
        Ok(done)
    })?;
    let written: Vec<PathBuf> = if cfg!(target_os = "linux") {
        Vec::new() // syncfs makes the whole file system durable at once.
    } else {
        done.iter()
            .flat_map(|(_, batch)| batch)
            .map(|(path, _, sha, _)| targets_dir.join(path.with_hash_prefix(sha)))
            .collect()
    };
    sync_tree(&targets_dir, &written)?;
    done.sort_unstable_by_key(|(index, _)| *index);
    Ok(done.into_iter().flat_map(|(_, batch)| batch).collect())
}

/// Stores one batch of release files, creating their folders as needed.
fn store_batch(
    targets_dir: &Path,
    files: &[(TargetPath, PathBuf)],
    link: bool,
    buf: &mut [u8],
) -> Result<Vec<StoredTarget>, Error> {
    let mut stored = Vec::with_capacity(files.len());
    let mut current_dir: Option<PathBuf> = None;
    for (path, source) in files {
        let dest_dir = match path.as_str().rsplit_once('/') {
            Some((dir, _)) => targets_dir.join(dir),
            None => targets_dir.to_path_buf(),
        };
        if current_dir.as_ref() != Some(&dest_dir) {
            fs::create_dir_all(&dest_dir).map_err(Error::io(&dest_dir))?;
            current_dir = Some(dest_dir.clone());
        }
        let (length, sha) = store_target(&dest_dir, path, source, link, buf)?;
        stored.push((path.clone(), length, sha, Vec::new()));
    }
    Ok(stored)
}

/// Adds the release signatures to each stored target.
fn sign_entries(stored: &mut [StoredTarget], release: &[&dyn Signer]) -> Result<(), Error> {
    if release.is_empty() {
        return Ok(());
    }
    for (path, length, sha, sigs) in stored {
        *sigs = sign_target(release, path, *length, sha).map_err(|e| Error::Key {
            origin: "release key".into(),
            reason: e.to_string(),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use herald_manifest::{target_statement, Ed25519Signer};

    fn release_signer() -> Ed25519Signer {
        let pem = include_str!("../../keys-example/signing/release.key.pem");
        crate::keys::parse_private_key_pem(pem, "release.key.pem", None).unwrap()
    }

    /// `count` release files in folders of 100, with their target paths.
    fn release_files(dir: &Path, count: usize) -> Vec<(TargetPath, PathBuf)> {
        (0..count)
            .map(|i| {
                let rel = format!("d{}/f{i:05}.txt", i / 100);
                let source = dir.join(&rel);
                fs::create_dir_all(source.parent().unwrap()).unwrap();
                fs::write(&source, format!("file {i}\n")).unwrap();
                (TargetPath::new(rel).unwrap(), source)
            })
            .collect()
    }

    #[test]
    fn every_file_stored_and_signed_in_release_order_across_batches() {
        let tmp = tempfile::tempdir().unwrap();
        let files = release_files(&tmp.path().join("release"), BATCH * 3 + 7);
        let layout = Layout::new(&tmp.path().join("repo"));
        let signer = release_signer();
        let stored = store_targets(&layout, files.clone(), false, &[&signer]).unwrap();
        assert_eq!(stored.len(), files.len());
        let key = signer.public_key().verifying_key().unwrap();
        for ((path, length, sha, sigs), (want, source)) in stored.iter().zip(&files) {
            assert_eq!(path, want);
            let bytes = fs::read(source).unwrap();
            assert_eq!(*length, bytes.len() as u64);
            assert_eq!(*sha, sha256_hex(&bytes));
            let copy = layout.targets_dir().join(path.with_hash_prefix(sha));
            assert_eq!(fs::read(copy).unwrap(), bytes);
            assert_eq!(sigs.len(), 1);
            let sig = hex::decode(&sigs[0].sig).unwrap();
            assert!(key.verify(&target_statement(path, *length, sha), &sig));
        }
    }

    #[test]
    fn missing_release_file_fails_the_whole_release() {
        let tmp = tempfile::tempdir().unwrap();
        let files = release_files(&tmp.path().join("release"), BATCH * 3);
        let gone = files[BATCH * 2 + 5].1.clone();
        fs::remove_file(&gone).unwrap();
        let layout = Layout::new(&tmp.path().join("repo"));
        let signer = release_signer();
        match store_targets(&layout, files, false, &[&signer]) {
            Err(Error::Io { path, .. }) => assert_eq!(path, gone),
            other => panic!(
                "expected an I/O error for {}, got {other:?}",
                gone.display()
            ),
        }
    }
}
