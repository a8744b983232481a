//! Command-line interface of `herald-sign`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Sign Herald release repositories (The Update Framework 1.0 metadata with per-file
/// signatures) in CI.
///
/// A repository folder holds `metadata/` (consistent snapshots: `N.root.json`,
/// `N.targets.json`, `N.snapshot.json`, `timestamp.json`, and `root.json`, a copy of the
/// newest root for bootstrapping clients) and `targets/` (each file stored as
/// `DIR/SHA256.NAME`). Serve both folders from any static HTTPS server, CDN or object store.
///
/// Keys are read from files (`--key FILE`) or environment variables holding PEM text
/// (`--key-env VAR`), never from command-line arguments. Each key signs every role that root
/// lists it for. Encrypted keys are decrypted with the passphrase in the environment variable
/// named by `--passphrase-env` (default HERALD_SIGN_PASSPHRASE).
///
/// Output is deterministic: the same inputs, keys and time give byte-identical metadata. Set
/// the time with `--now` (or HERALD_SIGN_NOW, or SOURCE_DATE_EPOCH).
///
/// Every write is atomic (temporary file, fsync, rename), and metadata is written bottom-up:
/// target files, targets, snapshot, then timestamp last, so an interrupted run never leaves a
/// repository that verifies as something it is not.
///
/// Exit codes: 0 success, 1 failure (bad input, failed verification, I/O error), 2 usage
/// error.
#[derive(Debug, Parser)]
#[command(name = "herald-sign", version, about, long_about, max_term_width = 100)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Where signing keys come from.
#[derive(Debug, Clone, Default, Args)]
pub struct KeyArgs {
    /// A private key file (PKCS#8 PEM, plain or encrypted). Repeat for several keys.
    #[arg(long = "key", value_name = "FILE")]
    pub key_files: Vec<PathBuf>,
    /// An environment variable holding a private key as PEM text (a CI secret). Repeat for
    /// several keys.
    #[arg(long = "key-env", value_name = "VAR")]
    pub key_envs: Vec<String>,
    /// The environment variable holding the passphrase of encrypted keys.
    #[arg(long, value_name = "VAR", default_value = "HERALD_SIGN_PASSPHRASE")]
    pub passphrase_env: String,
}

/// The time used for expiry dates and checks.
#[derive(Debug, Clone, Default, Args)]
pub struct TimeArgs {
    /// Use this time instead of the clock: `YYYY-MM-DDTHH:MM:SSZ` or seconds since the Unix
    /// epoch. Falls back to SOURCE_DATE_EPOCH, then to the clock.
    #[arg(long, env = "HERALD_SIGN_NOW", value_name = "TIME")]
    pub now: Option<String>,
}

/// Public keys and thresholds of the roles, for `init` and `rotate-root`.
#[derive(Debug, Clone, Default, Args)]
pub struct RoleKeyArgs {
    /// Root public key file (SubjectPublicKeyInfo PEM, as written by `keygen`). Repeat.
    #[arg(long, value_name = "FILE")]
    pub root_pub: Vec<PathBuf>,
    /// Targets public key file. Repeat.
    #[arg(long, value_name = "FILE")]
    pub targets_pub: Vec<PathBuf>,
    /// Snapshot public key file. Repeat.
    #[arg(long, value_name = "FILE")]
    pub snapshot_pub: Vec<PathBuf>,
    /// Timestamp public key file. Repeat.
    #[arg(long, value_name = "FILE")]
    pub timestamp_pub: Vec<PathBuf>,
    /// Release (per-file signing) public key file. Repeat. Without any, the repository is
    /// plain TUF with no per-file signatures.
    #[arg(long, value_name = "FILE")]
    pub release_pub: Vec<PathBuf>,
    /// Signatures needed for root.
    #[arg(long, value_name = "N")]
    pub root_threshold: Option<u32>,
    /// Signatures needed for targets.
    #[arg(long, value_name = "N")]
    pub targets_threshold: Option<u32>,
    /// Signatures needed for snapshot.
    #[arg(long, value_name = "N")]
    pub snapshot_threshold: Option<u32>,
    /// Signatures needed for timestamp.
    #[arg(long, value_name = "N")]
    pub timestamp_threshold: Option<u32>,
    /// Release signatures needed on each file.
    #[arg(long, value_name = "N")]
    pub release_threshold: Option<u32>,
}

/// How long new metadata stays valid (`30d`, `12h`, `90m`, `3600s`).
#[derive(Debug, Clone, Args)]
pub struct ExpiryArgs {
    /// Lifetime of new root metadata.
    #[arg(long, value_name = "DURATION", default_value = "365d")]
    pub expires_root: String,
    /// Lifetime of new targets metadata.
    #[arg(long, value_name = "DURATION", default_value = "90d")]
    pub expires_targets: String,
    /// Lifetime of new snapshot metadata.
    #[arg(long, value_name = "DURATION", default_value = "7d")]
    pub expires_snapshot: String,
    /// Lifetime of new timestamp metadata.
    #[arg(long, value_name = "DURATION", default_value = "1d")]
    pub expires_timestamp: String,
}

/// A `herald-sign` command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate an Ed25519 signing key: PKCS#8 PEM private key (mode 0600) and
    /// SubjectPublicKeyInfo PEM public key (`OUT.pub`). Prints the key ID.
    Keygen {
        /// Where to write the private key; the public key goes to the same path plus `.pub`.
        #[arg(long)]
        out: PathBuf,
        /// Encrypt the private key (PBES2, PBKDF2-SHA256, AES-256-CBC) with the passphrase in
        /// this environment variable.
        #[arg(long, value_name = "VAR")]
        encrypt_env: Option<String>,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// Create a new repository: root metadata version 1 with keys and thresholds per role,
    /// signed by the root keys given with --key / --key-env.
    Init {
        /// The repository folder (created if missing; must not hold metadata yet).
        #[arg(long)]
        repo: PathBuf,
        /// Role keys and thresholds (thresholds default to 1).
        #[command(flatten)]
        roles: RoleKeyArgs,
        /// Signing keys.
        #[command(flatten)]
        keys: KeyArgs,
        /// Expiry of each role.
        #[command(flatten)]
        expiry: ExpiryArgs,
        /// Time.
        #[command(flatten)]
        time: TimeArgs,
    },
    /// Add or update targets from a release folder: per-file release signatures, new targets,
    /// snapshot and timestamp metadata. At least one targets key is required (and enough
    /// release keys when root declares them). If the keys given do not reach the targets
    /// threshold, or include no snapshot or timestamp key, only the new targets metadata is
    /// written: collect the other signatures with `sign --role targets`, then publish with
    /// `timestamp --with-snapshot`.
    Release {
        /// The repository folder.
        #[arg(long)]
        repo: PathBuf,
        /// The folder holding the release's files (paths inside it become target paths).
        #[arg(long)]
        from: PathBuf,
        /// Drop targets that are not in the release folder (default: keep them).
        #[arg(long)]
        prune: bool,
        /// Hard-link release files into `targets/` instead of copying them (same file system
        /// only; falls back to copying). Much faster for large releases, but the release folder
        /// must then never be modified in place: it shares its files with the repository.
        #[arg(long)]
        link: bool,
        /// Signing keys (targets, snapshot, timestamp and release keys).
        #[command(flatten)]
        keys: KeyArgs,
        /// Expiry of each role.
        #[command(flatten)]
        expiry: ExpiryArgs,
        /// Time.
        #[command(flatten)]
        time: TimeArgs,
    },
    /// Add signatures to a role's newest metadata (threshold signing by several people). A
    /// root that does not yet meet its thresholds is kept in `staged/` and published into
    /// `metadata/` by the signature that completes it.
    Sign {
        /// The repository folder.
        #[arg(long)]
        repo: PathBuf,
        /// The role to sign: root, targets, snapshot or timestamp.
        #[arg(long)]
        role: String,
        /// Signing keys.
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Publish a new timestamp (for a cron job), and with --with-snapshot a new snapshot of
    /// the newest targets first.
    Timestamp {
        /// The repository folder.
        #[arg(long)]
        repo: PathBuf,
        /// Also write a new snapshot listing the newest targets metadata.
        #[arg(long)]
        with_snapshot: bool,
        /// Signing keys (timestamp, and snapshot with --with-snapshot).
        #[command(flatten)]
        keys: KeyArgs,
        /// Expiry of each role.
        #[command(flatten)]
        expiry: ExpiryArgs,
        /// Time.
        #[command(flatten)]
        time: TimeArgs,
    },
    /// Publish a new root version, with the role keys and thresholds given replacing the
    /// current ones (roles not mentioned keep theirs). It must be signed by a threshold of the
    /// old root keys and a threshold of the new ones; until then it waits in `staged/`.
    RotateRoot {
        /// The repository folder.
        #[arg(long)]
        repo: PathBuf,
        /// New role keys and thresholds.
        #[command(flatten)]
        roles: RoleKeyArgs,
        /// Signing keys (old and new root keys).
        #[command(flatten)]
        keys: KeyArgs,
        /// Expiry of each role.
        #[command(flatten)]
        expiry: ExpiryArgs,
        /// Time.
        #[command(flatten)]
        time: TimeArgs,
    },
    /// Check a whole repository offline: the root chain from version 1 (or --root), every
    /// metadata file, every target's length, hash and release signatures, and that every
    /// file belongs. Exits 1 with a one-line message on any fault.
    Verify {
        /// The repository folder.
        #[arg(long)]
        repo: PathBuf,
        /// A trusted root file to start from instead of the repository's `1.root.json`.
        #[arg(long, value_name = "FILE")]
        root: Option<PathBuf>,
        /// Print the result as JSON (`{"ok": true, ...}` or `{"ok": false, "error": ...}`).
        #[arg(long)]
        json: bool,
        /// Time.
        #[command(flatten)]
        time: TimeArgs,
    },
    /// Verify the repository, then pack `metadata/` and `targets/` into one zip for
    /// air-gapped sites (deterministic: sorted entries, fixed dates).
    Bundle {
        /// The repository folder.
        #[arg(long)]
        repo: PathBuf,
        /// The zip file to write.
        #[arg(long)]
        out: PathBuf,
        /// Time.
        #[command(flatten)]
        time: TimeArgs,
    },
    /// Show the version and expiry of every role.
    Status {
        /// The repository folder.
        #[arg(long)]
        repo: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Time.
        #[command(flatten)]
        time: TimeArgs,
    },
}
