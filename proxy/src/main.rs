//! The `ringwall` binary: parse the command line, load the configuration, run the engine.
//!
//! `ringwall check` validates and exits; `ringwall --demo` first starts two built-in origins;
//! otherwise the proxy runs until SIGINT or SIGTERM, drains, and exits 0.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use ringwall::cli::{Cli, Command};
use ringwall::{config, demo, server};
use ringwall_runtime::Shutdown;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Check) = cli.command {
        return match config::check(&cli) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ringwall: {e}");
                ExitCode::FAILURE
            }
        };
    }

    let demo_origins = if cli.demo {
        match demo::start_origins(2) {
            Ok(addrs) => Some(addrs),
            Err(e) => {
                eprintln!("ringwall: cannot start the demo origins: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let loaded = match &demo_origins {
        Some(addrs) => config::load_demo(&cli, addrs.clone()),
        None => config::load(&cli),
    };
    let config = match loaded {
        Ok(config) => Arc::new(config),
        Err(e) => {
            eprintln!("ringwall: {e}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(&config.log_level);

    let shutdown = Shutdown::new();
    if let Err(e) = shutdown.install_signal_handlers() {
        tracing::error!("cannot install signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    let workers = config.engine.workers;
    let schemes: Vec<&str> = config
        .listeners
        .iter()
        .map(|l| l.protocol.scheme())
        .collect();
    let result = server::run(config.clone(), &shutdown, |bound, driver| {
        for (addr, scheme) in bound.iter().zip(&schemes) {
            tracing::info!("listening on {scheme}://{addr}");
        }
        tracing::info!("{workers} workers, I/O driver: {driver}");
        if let Some(origins) = &demo_origins {
            print_demo_banner(bound[0], origins);
        }
    });
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::new(format!("{level},ringwall={level}"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

fn print_demo_banner(addr: std::net::SocketAddr, origins: &[std::net::SocketAddr]) {
    let origins: Vec<String> = origins.iter().map(ToString::to_string).collect();
    println!(
        "\nringwall demo: http://{addr} → built-in origins {} (round robin)\n\n\
         try:\n  curl -i http://{addr}/hello            # run it a few times: both origins answer\n  \
         curl -i http://{addr}/stream           # a chunked response streamed through\n  \
         curl -i -d 'some body' http://{addr}/upload\n\n\
         Ctrl-C stops it (in-flight requests finish first).\n",
        origins.join(" and ")
    );
}
