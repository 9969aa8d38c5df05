//! The `ringwall-load` binary: parses the command line and hands it to the library.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = ringwall_load::cli::Cli::parse();
    match ringwall_load::cli::execute(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ringwall-load: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
