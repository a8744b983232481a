//! Command-line interface of `herald-update`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Keep an endpoint enrolled and up to date: install only files listed in a signed
/// manifest, each one individually signature-verified, downloaded over HTTPS.
///
/// When the repository carries a signed rollout policy, the endpoint follows one channel and
/// installs the release the policy gives it (by its name and group, read from its own
/// certificate).
///
/// After a crash at any instant the installed set is the old release or the new one, never a
/// mix. Exit codes: 0 success, 1 failure, 2 usage error or a command not provided by this
/// version (`tuf-client` exits exactly 0 or 1).
#[derive(Debug, Parser)]
#[command(
    name = "herald-update",
    version,
    about,
    long_about,
    max_term_width = 100
)]
pub struct Cli {
    /// Configuration file (TOML); see the README for every setting.
    #[arg(long, global = true, env = "HERALD_UPDATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log level: trace, debug, info, warn or error (overrides the configuration file).
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// A `herald-update` command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Enroll this endpoint: generate a key pair locally, trade a one-time token and a
    /// certificate request for a client certificate, pinning the server's root.
    Enroll {
        /// The server (or relay) URL; only https:// is accepted.
        #[arg(long)]
        server: String,
        /// The one-time enrollment token.
        #[arg(long, env = "HERALD_ENROLL_TOKEN")]
        token: String,
        /// SHA-256 fingerprint of the Herald root certificate, in hex (colons allowed). The
        /// server's root must match it, or nothing is sent.
        #[arg(long)]
        root_fingerprint: String,
        /// Where to keep the identity (`STATE_DIR/identity/`); default: `state_dir` of the
        /// configuration file.
        #[arg(long, env = "HERALD_UPDATE_STATE_DIR")]
        state_dir: Option<PathBuf>,
    },
    /// Renew this endpoint's certificate with the CA that issued it, proving the current
    /// identity: when it is in the last third of its life (as `run` does), or at once with
    /// `--force`, e.g. after an operator moved the endpoint to another group, which its next
    /// certificate carries.
    Renew {
        /// Renew now, however long the certificate is still valid.
        #[arg(long)]
        force: bool,
    },
    /// Show what an update would change, without installing.
    Check {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Update once: refresh metadata, decide which release this endpoint should have (the
    /// repository's signed rollout policy, this endpoint's `hold`, releases it refused),
    /// download, verify, run the `pre_install` hooks, install, then the `post_install` hooks and
    /// the health check; a failing one rolls back to the previous release, which exits 1 and
    /// is reported `rolled_back`, and that release is not tried again until a newer one.
    Apply,
    /// Run as a service: poll at the configured interval with jitter, renew the certificate
    /// before expiry, report status.
    Run,
    /// Show the installed release, last check and last error, and, for a repository with a
    /// rollout policy, the channel, the release being rolled out and where this endpoint
    /// stands with it (installed, pending, failed, rolled_back, held) and why.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Go back to the previously installed release. The next cycle installs what the
    /// repository offers again; set `hold = true` in the configuration to stay.
    Rollback,
    /// Check DNS, proxy, TLS, reachability of every configured URL and clock sanity; name the
    /// trust anchors and client identity really used, and for an enrolled identity check its
    /// expiry, its revocation (in the CA's CRL) and its enroll, renew, OCSP and CRL URLs.
    Doctor,
    /// Install from an offline bundle made by `herald-sign bundle`, with the same verification.
    ImportBundle {
        /// The bundle zip file.
        file: PathBuf,
    },
    /// The standard TUF conformance-testing client command line.
    TufClient(TufClientArgs),
}

/// Options of `herald-update tuf-client`; they may come in any order before the subcommand.
#[derive(Debug, Args)]
pub struct TufClientArgs {
    /// Folder holding trusted metadata.
    #[arg(long)]
    pub metadata_dir: Option<PathBuf>,
    /// Base URL of the metadata.
    #[arg(long)]
    pub metadata_url: Option<String>,
    /// Target path to download (repeatable).
    #[arg(long)]
    pub target_name: Vec<String>,
    /// Base URL of the targets.
    #[arg(long)]
    pub target_base_url: Option<String>,
    /// Folder to download targets into.
    #[arg(long)]
    pub target_dir: Option<PathBuf>,
    /// The operation.
    #[command(subcommand)]
    pub command: TufClientCommand,
}

/// A `tuf-client` operation.
#[derive(Debug, Subcommand)]
pub enum TufClientCommand {
    /// Store a trusted root (no network).
    Init {
        /// The trusted root metadata file.
        trusted_root: PathBuf,
    },
    /// Refresh top-level metadata.
    Refresh,
    /// Refresh, then download the named targets.
    Download,
}

impl Command {
    /// The command's name as typed on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Enroll { .. } => "enroll",
            Command::Renew { .. } => "renew",
            Command::Check { .. } => "check",
            Command::Apply => "apply",
            Command::Run => "run",
            Command::Status { .. } => "status",
            Command::Rollback => "rollback",
            Command::Doctor => "doctor",
            Command::ImportBundle { .. } => "import-bundle",
            Command::TufClient(_) => "tuf-client",
        }
    }
}
