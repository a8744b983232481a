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
        /// Publish the release to this channel (`stable`, `beta`, ...) under a signed rollout
        /// policy: its files become the targets `releases/N/...` (N is the new targets
        /// version, the release's number), it becomes the channel's current release, and
        /// endpoints following the channel install it when the rollout plan (--pilot-group,
        /// --percent) includes them; the others keep the channel's previous release. Widen,
        /// pause or abort it with `herald-sign rollout`.
        #[arg(long, value_name = "CHANNEL", value_parser = channel_arg, conflicts_with = "prune")]
        channel: Option<String>,
        /// A group that gets the release at once (a pilot group). Repeat for several.
        #[arg(long = "pilot-group", value_name = "GROUP", value_parser = group_arg, requires = "channel")]
        pilot_groups: Vec<String>,
        /// Share of the channel's other endpoints that get the release: `0%` to `100%` (two
        /// decimals at most, e.g. `0.5%`). Default 100%.
        #[arg(long, value_name = "PERCENT", value_parser = percent_arg, requires = "channel")]
        percent: Option<u32>,
        /// A TOML file of commands the release asks endpoints to run (`pre_install`,
        /// `post_install`, `health_check`: each a list of program and arguments;
        /// `timeout_secs`), signed with the policy. Endpoints run them only when their
        /// configuration sets `allow_release_hooks = true`, after their own hooks.
        #[arg(long, value_name = "FILE", requires = "channel")]
        hooks: Option<PathBuf>,
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
    /// Steer the rollout of a channel's current release, or hold and pin endpoints: each
    /// action (but `status`) publishes a new targets version carrying the changed signed
    /// policy, then snapshot and timestamp (targets, snapshot and timestamp keys needed).
    /// Endpoints evaluate the policy themselves; a mirror or relay cannot change it, and an
    /// older step cannot be replayed (versions only grow).
    #[command(subcommand)]
    Rollout(RolloutCommand),
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

/// The repository and signing options of a `rollout` action that publishes.
#[derive(Debug, Clone, Args)]
pub struct PublishArgs {
    /// The repository folder.
    #[arg(long)]
    pub repo: PathBuf,
    /// Signing keys (targets, snapshot and timestamp keys).
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Expiry of each role.
    #[command(flatten)]
    pub expiry: ExpiryArgs,
    /// Time.
    #[command(flatten)]
    pub time: TimeArgs,
}

/// Endpoints and groups named by `hold`, `unhold`, `pin` and `unpin`.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = true)]
pub struct SelectArgs {
    /// An endpoint, by name (its certificate's common name, e.g. `LAPTOP-ACME-0042`).
    /// Repeat for several.
    #[arg(long = "endpoint", value_name = "NAME")]
    pub endpoints: Vec<String>,
    /// A group. Repeat for several.
    #[arg(long = "group", value_name = "GROUP", value_parser = group_arg)]
    pub groups: Vec<String>,
}

/// Where `advance` reads the fleet's progress, and the failure rate it accepts.
#[derive(Debug, Clone, Args)]
pub struct FleetArgs {
    /// Refuse to widen unless the fleet's reports allow it: the base URL of the Herald CA
    /// (`https://ca.example.com:8443`), whose `GET /api/v1/fleet/releases` (auditor role)
    /// counts each endpoint's latest report. Requires --max-failure-rate, --admin-token-file
    /// and --ca-cert.
    #[arg(long, value_name = "URL", requires_all = ["max_failure_rate", "admin_token_file", "ca_cert"])]
    pub fleet_url: Option<String>,
    /// The highest failure rate accepted (e.g. `2%`): endpoints that failed or rolled back
    /// the channel's current release, over those that installed, failed or rolled it back,
    /// in every group. Above it, `advance` exits 1 and publishes nothing.
    #[arg(long, value_name = "PERCENT", value_parser = percent_arg, requires = "fleet_url")]
    pub max_failure_rate: Option<u32>,
    /// A file holding an admin token with at least the auditor role.
    #[arg(long, value_name = "FILE", requires = "fleet_url")]
    pub admin_token_file: Option<PathBuf>,
    /// The CA's root certificate (PEM), the only trust anchor for the fleet URL.
    #[arg(long, value_name = "FILE", requires = "fleet_url")]
    pub ca_cert: Option<PathBuf>,
}

/// A `herald-sign rollout` action.
#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Widen the rollout of a channel's current release: a larger share (--percent) and/or
    /// more pilot groups (--pilot-group). Never narrows; refuses a paused rollout. With
    /// --fleet-url, first refuses (exit 1) when the release's failure rate is above
    /// --max-failure-rate, so a CI pipeline can advance on a schedule.
    Advance {
        /// The channel.
        #[arg(long, value_parser = channel_arg)]
        channel: String,
        /// The new share of the channel's endpoints (at least the current one).
        #[arg(long, value_name = "PERCENT", value_parser = percent_arg)]
        percent: Option<u32>,
        /// A group to add to the pilot groups. Repeat for several.
        #[arg(long = "pilot-group", value_name = "GROUP", value_parser = group_arg)]
        pilot_groups: Vec<String>,
        /// Fleet check.
        #[command(flatten)]
        fleet: FleetArgs,
        /// Repository and keys.
        #[command(flatten)]
        publish: PublishArgs,
    },
    /// Pause the rollout of a channel's current release: endpoints that installed it keep
    /// it, no other endpoint installs it until `resume`.
    Pause {
        /// The channel.
        #[arg(long, value_parser = channel_arg)]
        channel: String,
        /// Repository and keys.
        #[command(flatten)]
        publish: PublishArgs,
    },
    /// Resume a paused rollout.
    Resume {
        /// The channel.
        #[arg(long, value_parser = channel_arg)]
        channel: String,
        /// Repository and keys.
        #[command(flatten)]
        publish: PublishArgs,
    },
    /// Abort the rollout of a channel's current release: publish the channel's previous
    /// release as its current one, to every endpoint (a new signed version pointing at the
    /// old content), and drop the aborted release.
    Abort {
        /// The channel.
        #[arg(long, value_parser = channel_arg)]
        channel: String,
        /// Repository and keys.
        #[command(flatten)]
        publish: PublishArgs,
    },
    /// Hold endpoints or groups at the release they have, whatever their channel does.
    Hold {
        /// Who.
        #[command(flatten)]
        select: SelectArgs,
        /// Repository and keys.
        #[command(flatten)]
        publish: PublishArgs,
    },
    /// Release endpoints or groups from a hold.
    Unhold {
        /// Who.
        #[command(flatten)]
        select: SelectArgs,
        /// Repository and keys.
        #[command(flatten)]
        publish: PublishArgs,
    },
    /// Pin endpoints or groups to a listed release (installed if they do not have it).
    Pin {
        /// The release (a number `herald-sign rollout status` lists).
        #[arg(long)]
        release: u64,
        /// Who.
        #[command(flatten)]
        select: SelectArgs,
        /// Repository and keys.
        #[command(flatten)]
        publish: PublishArgs,
    },
    /// Remove endpoints or groups from every pin.
    Unpin {
        /// Who.
        #[command(flatten)]
        select: SelectArgs,
        /// Repository and keys.
        #[command(flatten)]
        publish: PublishArgs,
    },
    /// Make a group follow a channel (endpoints whose configuration names no channel follow
    /// their group's; `stable` by default).
    Follow {
        /// The group.
        #[arg(long, value_parser = group_arg)]
        group: String,
        /// The channel.
        #[arg(long, value_parser = channel_arg)]
        channel: String,
        /// Repository and keys.
        #[command(flatten)]
        publish: PublishArgs,
    },
    /// Show the signed rollout policy of the newest targets metadata (reads only).
    Status {
        /// The repository folder.
        #[arg(long)]
        repo: PathBuf,
        /// Print the policy as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// A group name ([`herald_wire::Group`]).
fn group_arg(text: &str) -> Result<String, String> {
    herald_wire::Group::new(text)
        .map(|group| group.as_str().to_owned())
        .map_err(|e| e.to_string())
}

/// A channel name ([`herald_manifest::rollout::is_valid_channel`]).
fn channel_arg(text: &str) -> Result<String, String> {
    if herald_manifest::rollout::is_valid_channel(text) {
        Ok(text.to_owned())
    } else {
        Err(herald_manifest::rollout::CHANNEL_NAME_RULE.to_owned())
    }
}

/// A share of the fleet (`10%`, `0.5%`) in basis points.
fn percent_arg(text: &str) -> Result<u32, String> {
    herald_manifest::rollout::parse_percent(text)
        .ok_or_else(|| "expected a percentage from 0% to 100%, at most two decimals".into())
}
