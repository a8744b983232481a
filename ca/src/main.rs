//! The `herald-ca` binary: parses arguments and calls [`herald_ca::run`].

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = herald_ca::Cli::parse();
    herald_ca::init_logging(&cli.log_level);
    match herald_ca::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}
