//! `herald-update tuf-client`: the command line used by TUF conformance testing.
//!
//! ```text
//! herald-update tuf-client --metadata-dir D init TRUSTED_ROOT
//! herald-update tuf-client --metadata-url U --metadata-dir D refresh
//! herald-update tuf-client --metadata-url U --metadata-dir D --target-name P \
//!     [--target-name P2 ...] --target-base-url T --target-dir O download
//! ```
//!
//! A target lands in `O` under its path percent-encoded as one file name, so the same path
//! always lands at the same file. A file already there with the verified content is not
//! downloaded again. Downloads are staged in `D` and moved into `O` only once verified.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use herald_manifest::TargetPath;
use url::Url;

use crate::cli::{TufClientArgs, TufClientCommand};
use crate::transport::{HttpsConfig, HttpsTransport};
use crate::tuf::{encode_name, init_trusted_root, system_now, Client, ClientError};

/// Targets downloaded at the same time.
const PARALLEL_DOWNLOADS: usize = 8;

/// Why a `tuf-client` command failed.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // fields are named for what they hold
pub enum TufCliError {
    /// A required option is missing.
    #[error("missing option --{0}")]
    Missing(&'static str),
    /// A URL option is not a URL.
    #[error("--{option} {value:?}: {source}")]
    BadUrl {
        option: &'static str,
        value: String,
        #[source]
        source: url::ParseError,
    },
    /// A target name is not a valid target path.
    #[error("--target-name {0:?}: {1}")]
    BadTarget(String, #[source] herald_manifest::PathError),
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The transport could not be set up.
    #[error(transparent)]
    Transport(#[from] crate::transport::TransportConfigError),
    /// The TUF workflow failed.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// Runs one `tuf-client` command.
pub async fn run(args: &TufClientArgs) -> Result<(), TufCliError> {
    let metadata_dir = args
        .metadata_dir
        .clone()
        .ok_or(TufCliError::Missing("metadata-dir"))?;
    if let TufClientCommand::Init { trusted_root } = &args.command {
        let bytes = std::fs::read(trusted_root).map_err(|source| TufCliError::Io {
            path: trusted_root.clone(),
            source,
        })?;
        init_trusted_root(&metadata_dir, &bytes)?;
        return Ok(());
    }
    let metadata_url = parse_dir_url(
        "metadata-url",
        args.metadata_url
            .as_deref()
            .ok_or(TufCliError::Missing("metadata-url"))?,
    )?;
    let transport = Arc::new(HttpsTransport::new(&HttpsConfig {
        // The conformance harness serves its repositories over plain HTTP on loopback.
        allow_plain_http: true,
        ..HttpsConfig::default()
    })?);
    let mut client = Client::new(transport, metadata_url, metadata_dir.clone());
    client.refresh(system_now()).await?;
    if let TufClientCommand::Download = args.command {
        let base = parse_dir_url(
            "target-base-url",
            args.target_base_url
                .as_deref()
                .ok_or(TufCliError::Missing("target-base-url"))?,
        )?;
        let target_dir = args
            .target_dir
            .clone()
            .ok_or(TufCliError::Missing("target-dir"))?;
        if args.target_name.is_empty() {
            return Err(TufCliError::Missing("target-name"));
        }
        let paths = args
            .target_name
            .iter()
            .map(|name| {
                TargetPath::new(name.as_str()).map_err(|e| TufCliError::BadTarget(name.clone(), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Several downloads at once over the kept-alive connections; any failure fails the
        // command (files already verified stay, nothing unverified is left).
        let client = &client;
        let (base, metadata_dir, target_dir) = (&base, &metadata_dir, &target_dir);
        let downloaded: Vec<Option<(PathBuf, PathBuf)>> =
            futures_util::stream::iter(paths)
                .map(|path| async move {
                    download_one(client, &path, base, metadata_dir, target_dir).await
                })
                .buffer_unordered(PARALLEL_DOWNLOADS)
                .try_collect()
                .await?;
        // Every download verified: make them durable at once, then move them into place.
        let downloaded: Vec<(PathBuf, PathBuf)> = downloaded.into_iter().flatten().collect();
        let staged: Vec<&Path> = downloaded.iter().map(|(s, _)| s.as_path()).collect();
        if !staged.is_empty() {
            crate::fsutil::sync_filesystem(metadata_dir, &staged).map_err(|source| {
                TufCliError::Io {
                    path: metadata_dir.clone(),
                    source,
                }
            })?;
        }
        for (staging, dest) in &downloaded {
            move_into_place(staging, dest, target_dir)?;
        }
    }
    Ok(())
}

/// A URL used as a base: a trailing `/` is added so that joining keeps its last segment.
fn parse_dir_url(option: &'static str, value: &str) -> Result<Url, TufCliError> {
    let with_slash = if value.ends_with('/') {
        value.to_owned()
    } else {
        format!("{value}/")
    };
    Url::parse(&with_slash).map_err(|source| TufCliError::BadUrl {
        option,
        value: value.to_owned(),
        source,
    })
}

/// Downloads and verifies one target into the staging folder; returns the staged file and its
/// destination, or `None` when the destination already holds the verified file.
async fn download_one(
    client: &Client,
    path: &TargetPath,
    base: &Url,
    metadata_dir: &Path,
    target_dir: &Path,
) -> Result<Option<(PathBuf, PathBuf)>, TufCliError> {
    let found = client.find_target(path).await?;
    let file_name = encode_name(path.as_str());
    let dest = target_dir.join(&file_name);
    if client.verify_file(&found, &dest)?.is_some() {
        tracing::info!(target = %path, "already present and verified");
        return Ok(None);
    }
    let staging_dir = metadata_dir.join("downloads");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TufCliError::Io { path, source }
    };
    std::fs::create_dir_all(&staging_dir).map_err(io(&staging_dir))?;
    std::fs::create_dir_all(target_dir).map_err(io(target_dir))?;
    let staging = staging_dir.join(format!("{file_name}.part"));
    client
        .download_target(&found, std::slice::from_ref(base), &staging)
        .await?;
    Ok(Some((staging, dest)))
}

/// Renames a verified download into the target folder (copying it beside the destination
/// first when the two folders are on different file systems).
fn move_into_place(staging: &Path, dest: &Path, target_dir: &Path) -> Result<(), TufCliError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TufCliError::Io { path, source }
    };
    if std::fs::rename(staging, dest).is_err() {
        let name = dest.file_name().unwrap_or_default().to_string_lossy();
        let tmp = target_dir.join(format!(".{name}.tmp"));
        std::fs::copy(staging, &tmp).map_err(io(&tmp))?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io(&tmp))?;
        std::fs::rename(&tmp, dest).map_err(io(dest))?;
        std::fs::remove_file(staging).map_err(io(staging))?;
    }
    Ok(())
}
