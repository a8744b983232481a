//! Storing release files in `targets/` and signing their statements.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

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

/// Files per batch handed to a signing thread.
const BATCH: usize = 512;

/// A batch of stored targets, numbered to restore the order afterwards.
type Batch = (usize, Vec<StoredTarget>);

/// Stores every release file and signs the target statements, in a pipeline.
///
/// Files are copied by this thread: concurrent file creation on one file system is slower,
/// not faster, on common Linux file systems (journal contention). Each batch of stored files
/// goes to a signing thread (one per core), so signing overlaps the file work. The release
/// folder must not change while this runs.
pub(crate) fn store_targets(
    layout: &Layout,
    files: Vec<(TargetPath, PathBuf)>,
    link: bool,
    release: &[&dyn Signer],
) -> Result<Vec<StoredTarget>, Error> {
    let targets_dir = layout.targets_dir();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let total = files.len();
    let batches = std::thread::scope(|scope| -> Result<Vec<Batch>, Error> {
        let mut senders = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (tx, rx) = mpsc::channel::<Batch>();
            senders.push(tx);
            handles.push(scope.spawn(move || -> Result<Vec<Batch>, Error> {
                let mut done = Vec::new();
                for (index, mut batch) in rx {
                    sign_entries(&mut batch, release)?;
                    done.push((index, batch));
                }
                Ok(done)
            }));
        }
        let stored = store_files(&targets_dir, files, link, |index, batch| {
            // A closed channel means that worker failed; its error is reported below.
            let _ = senders[index % senders.len()].send((index, batch));
        });
        drop(senders);
        let mut batches = Vec::new();
        for handle in handles {
            let done = handle
                .join()
                .unwrap_or_else(|_| Err(Error::Repository("a signing thread panicked".into())))?;
            batches.extend(done);
        }
        stored?;
        Ok(batches)
    })?;
    let mut batches = batches;
    batches.sort_unstable_by_key(|(index, _)| *index);
    let mut out = Vec::with_capacity(total);
    for (_, batch) in batches {
        out.extend(batch);
    }
    Ok(out)
}

/// Stores the files one by one, handing each full batch to `emit`, then makes them durable
/// before any metadata can refer to them.
fn store_files(
    targets_dir: &Path,
    files: Vec<(TargetPath, PathBuf)>,
    link: bool,
    mut emit: impl FnMut(usize, Vec<StoredTarget>),
) -> Result<(), Error> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut batch = Vec::with_capacity(BATCH);
    let mut index = 0;
    // Only needed where there is no syncfs (one fsync per file there).
    let mut written = Vec::new();
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
        let (length, sha) = store_target(&dest_dir, &path, &source, link, &mut buf)?;
        if !cfg!(target_os = "linux") {
            written.push(targets_dir.join(path.with_hash_prefix(&sha)));
        }
        batch.push((path, length, sha, Vec::new()));
        if batch.len() == BATCH {
            emit(
                index,
                std::mem::replace(&mut batch, Vec::with_capacity(BATCH)),
            );
            index += 1;
        }
    }
    if !batch.is_empty() {
        emit(index, batch);
    }
    fs::create_dir_all(targets_dir).map_err(Error::io(targets_dir))?;
    sync_tree(targets_dir, &written)
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
