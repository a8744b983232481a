//! The `herald-sign` binary: parses arguments and calls [`herald_signing::run`].

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = herald_signing::Cli::parse();
    match herald_signing::run(cli) {
        Ok(()) => ExitCode::from(herald_signing::EXIT_OK),
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}
