//! The `ringwall` binary: parse the command line, load the configuration, run the engine.
//!
//! `ringwall check` validates and exits; `ringwall reload` checks, then signals the running
//! process named by the pid file; `ringwall --demo` first starts two built-in origins;
//! otherwise the proxy runs until SIGINT or SIGTERM (SIGHUP reloads), drains, and exits 0.

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
    match cli.command {
        Some(Command::Check) => {
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
        Some(Command::Reload) => {
            return signal_running(&cli, signal_hook::consts::SIGHUP, "reload")
        }
        Some(Command::Upgrade) => {
            return signal_running(&cli, signal_hook::consts::SIGUSR2, "upgrade")
        }
        None => {}
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
    // The same loading at start and at every reload.
    let load = loader(&cli, demo_origins.clone());
    let config = match load() {
        Ok(config) => Arc::new(config),
        Err(e) => {
            eprintln!("ringwall: {e}");
            return ExitCode::FAILURE;
        }
    };
    let log_level = init_logging(&config.log_level);

    let shutdown = Shutdown::new();
    let (signals_tx, signals) = crossbeam_channel::unbounded();
    if let Err(e) = shutdown.install_signal_handlers(signals_tx) {
        tracing::error!("cannot install signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    let pid_file = config.pid_file.clone();
    let workers = config.engine.workers;
    let schemes: Vec<&str> = config
        .listeners
        .iter()
        .map(|l| l.protocol.scheme())
        .collect();
    let reloads = server::Reloads {
        signals,
        load,
        log_level,
    };
    let result = server::run(&config, &shutdown, reloads, |ready| {
        for (addr, scheme) in ready.addrs.iter().zip(&schemes) {
            tracing::info!("listening on {scheme}://{addr}");
        }
        if let Some(admin) = ready.admin {
            tracing::info!("admin listener on http://{admin}");
        }
        tracing::info!("{workers} workers, I/O driver: {}", ready.driver);
        if let Some(path) = &pid_file {
            if let Err(e) = std::fs::write(path, format!("{}\n", std::process::id())) {
                tracing::error!("cannot write the pid file {}: {e}", path.display());
            }
        }
        if let Some(origins) = &demo_origins {
            print_demo_banner(ready.addrs[0], origins);
        }
    });
    if let Some(path) = &pid_file {
        remove_own_pid_file(path);
    }
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

/// Loads the configuration the command line names (with the demo origins, under `--demo`).
fn loader(cli: &Cli, demo_origins: Option<Vec<std::net::SocketAddr>>) -> server::Loader {
    let cli = cli.clone();
    Box::new(move || match &demo_origins {
        Some(addrs) => config::load_demo(&cli, addrs.clone()),
        None => config::load(&cli),
    })
}

/// Removes the pid file if it is this process's: a process started after this one (a binary
/// upgrade) may have written its own.
fn remove_own_pid_file(path: &std::path::Path) {
    let ours = std::fs::read_to_string(path)
        .is_ok_and(|text| text.trim() == std::process::id().to_string());
    if ours {
        let _ = std::fs::remove_file(path);
    }
}

/// `ringwall reload`: checks the configuration as the running process will read it, then
/// sends `signal` to the process named by the pid file.
fn signal_running(cli: &Cli, signal: i32, what: &str) -> ExitCode {
    let loaded = match cli.config {
        Some(_) => config::load(cli).map(Some),
        None => Ok(None),
    };
    let config = match loaded {
        Ok(config) => config,
        Err(e) => {
            eprintln!("ringwall: {what} not sent: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(pid_file) = cli
        .pid_file
        .clone()
        .or_else(|| config.and_then(|c| c.pid_file))
    else {
        eprintln!(
            "ringwall: {what}: which process? Pass --pid-file FILE (the running ringwall's \
             --pid-file or pid_file), or the --config that names it"
        );
        return ExitCode::FAILURE;
    };
    let pid = match std::fs::read_to_string(&pid_file) {
        Ok(text) => text.trim().parse::<i32>().map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let pid = match pid {
        Ok(pid) => pid,
        Err(e) => {
            eprintln!(
                "ringwall: {what}: cannot read a process id from {}: {e}",
                pid_file.display()
            );
            return ExitCode::FAILURE;
        }
    };
    match ringwall_runtime::signal_process(pid, signal) {
        Ok(()) => {
            println!("ringwall: {what} sent to process {pid}; its log says how it went");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ringwall: {what}: cannot signal process {pid}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Starts logging at `level`; returns what sets another level (a reload that changes it).
fn init_logging(level: &str) -> server::LogLevel {
    let filter =
        |level: &str| tracing_subscriber::EnvFilter::new(format!("{level},ringwall={level}"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(level))
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_filter_reloading();
    let handle = builder.reload_handle();
    builder.init();
    Box::new(move |level: &str| {
        if let Err(e) = handle.reload(filter(level)) {
            tracing::error!("cannot change the log level to {level}: {e}");
        }
    })
}

fn print_demo_banner(addr: std::net::SocketAddr, origins: &[std::net::SocketAddr]) {
    let origins: Vec<String> = origins.iter().map(ToString::to_string).collect();
    println!(
        "\nringwall demo: http://{addr} → built-in origins {} (power of two choices)\n\n\
         try:\n  curl -i http://{addr}/hello            # run it a few times: both origins answer\n  \
         curl -i http://{addr}/stream           # a chunked response streamed through\n  \
         curl -i -d 'some body' http://{addr}/upload\n\n\
         Ctrl-C stops it (in-flight requests finish first).\n",
        origins.join(" and ")
    );
}
