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
    let done = std::thread::scope(|scope| -> Result<Vec<(usize, Vec<StoredTarget>)>, Error> {
        let handles: Vec<_> = (0..workers.min(batches.len()))
            .map(|_| {
                scope.spawn(|| -> Result<Vec<(usize, Vec<StoredTarget>)>, Error> {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut done = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(batch) = batches.get(index) else {
                            return Ok(done);
                        };
                        let mut stored = store_batch(&targets_dir, batch, link, &mut buf)?;
                        sign_entries(&mut stored, release)?;
                        done.push((index, stored));
                    }
                })
            })
            .collect();
        let mut done = Vec::with_capacity(batches.len());
        for handle in handles {
            let mine = handle
                .join()
                .unwrap_or_else(|_| Err(Error::Repository("a worker thread panicked".into())));
            match mine {
                Ok(mine) => done.extend(mine),
                Err(e) => {
                    // Stop the others at their next batch; they are joined when the scope ends.
                    next.store(batches.len(), Ordering::Relaxed);
                    return Err(e);
                }
            }
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
    let mut done = done;
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
