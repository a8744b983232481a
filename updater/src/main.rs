//! The `herald-update` binary: parses arguments and calls [`herald_updater::run`].

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match herald_updater::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // `tuf-client` exits exactly 1 on any failure, usage errors included.
            let tuf_client = std::env::args().any(|a| a == "tuf-client");
            let _ = err.print();
            return match (err.use_stderr(), tuf_client) {
                (false, _) => ExitCode::SUCCESS,
                (true, true) => ExitCode::from(herald_updater::EXIT_FAILURE),
                (true, false) => ExitCode::from(herald_updater::EXIT_USAGE),
            };
        }
    };
    if let Err(err) = herald_updater::run(&cli) {
        eprintln!("error: {err}");
        return ExitCode::from(err.exit_code());
    }
    ExitCode::SUCCESS
}
