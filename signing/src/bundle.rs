//! `herald-sign bundle`: one zip with metadata and targets for air-gapped sites.

use std::fs;
use std::io::Write;
use std::path::Path;

use time::OffsetDateTime;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use crate::check::verify_repository;
use crate::fsutil::{read, sync_dir, temp_name, walk_files};
use crate::layout::Layout;
use crate::Error;

/// Verifies the repository, then writes `out` atomically: entries `metadata/...` and
/// `targets/...`, sorted, with fixed dates and permissions so that the same repository
/// always gives the same bytes.
pub(crate) fn bundle(repo: &Path, out: &Path, now: OffsetDateTime) -> Result<(), Error> {
    let summary = verify_repository(repo, None, now)?;
    let layout = Layout::new(repo);
    let tmp = temp_name(out);
    let zip_error = |e: zip::result::ZipError| Error::Io {
        path: out.to_path_buf(),
        source: std::io::Error::other(e),
    };
    let result = (|| -> Result<(), Error> {
        let file = fs::File::create(&tmp).map_err(Error::io(&tmp))?;
        let mut zip = ZipWriter::new(file);
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .last_modified_time(DateTime::default())
            .unix_permissions(0o644);
        for (prefix, dir) in [
            ("metadata", layout.metadata_dir()),
            ("targets", layout.targets_dir()),
        ] {
            if !dir.exists() {
                continue;
            }
            for (rel, path) in walk_files(&dir)? {
                zip.start_file(format!("{prefix}/{rel}"), options)
                    .map_err(zip_error)?;
                zip.write_all(&read(&path)?).map_err(Error::io(out))?;
            }
        }
        let file = zip.finish().map_err(zip_error)?;
        file.sync_all().map_err(Error::io(&tmp))?;
        fs::rename(&tmp, out).map_err(Error::io(out))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_dir(crate::fsutil::parent(out)?)?;
    println!("wrote {} ({summary})", out.display());
    Ok(())
}
