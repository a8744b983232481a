//! Herald's endpoint agent: it enrolls the endpoint, follows the TUF client workflow over
//! HTTPS, installs only files listed in a verified manifest and individually signed, keeps the
//! previous release for rollback and reports status. The `herald-update` binary is a thin
//! wrapper around [`run`].

#![forbid(unsafe_code)]

pub mod agent;
mod cli;
mod commands;
pub mod config;
mod doctor;
pub mod download;
pub mod enroll;
mod fsutil;
mod hashing;
pub mod hooks;
pub mod install;
pub mod rollout;
pub(crate) mod safefs;
pub mod transport;
pub mod tuf;
pub mod tuf_cli;
pub mod zipcheck;

pub use cli::{Cli, Command, TufClientArgs, TufClientCommand};

/// Exit code for success.
pub const EXIT_OK: u8 = 0;
/// Exit code for a failure of the requested operation.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for a usage error (`tuf-client` uses 1 instead).
pub const EXIT_USAGE: u8 = 2;

/// Errors that end a `herald-update` run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `tuf-client` command failed.
    #[error("tuf-client: {0}")]
    TufClient(#[from] tuf_cli::TufCliError),
    /// The configuration could not be read.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// A service command failed.
    #[error(transparent)]
    Command(#[from] commands::CommandError),
    /// The async runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

impl Error {
    /// The documented process exit code for this error: every failure of a command exits 1
    /// (usage errors exit 2, except under `tuf-client`, which exits 1 for every failure as
    /// TUF conformance testing requires; see `main.rs`).
    pub fn exit_code(&self) -> u8 {
        EXIT_FAILURE
    }
}

/// Runs one `herald-update` command.
pub fn run(cli: &Cli) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    match &cli.command {
        Command::TufClient(args) => {
            init_logging(cli.log_level.as_deref().unwrap_or("warn"));
            Ok(runtime.block_on(tuf_cli::run(args))?)
        }
        _ => {
            // Enrollment can run before any configuration exists.
            let config = match (&cli.command, cli.config.as_deref()) {
                (Command::Enroll { .. }, None) => config::Config::default(),
                (_, path) => config::Config::load(path)?,
            };
            let level = cli
                .log_level
                .as_deref()
                .or(config.log_level.as_deref())
                .unwrap_or("info");
            init_logging(level);
            Ok(runtime.block_on(commands::run(cli, config))?)
        }
    }
}

/// Installs the global log subscriber: plain lines on standard error at `level`.
fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
