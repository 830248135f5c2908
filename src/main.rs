//! The `order-gateway` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use order_gateway::{app::AppState, config::Config, http, telemetry};

/// order-gateway: the read layer of the Order Management System.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file layered over the built-in defaults (config/default.toml).
    #[arg(long, global = true, env = "ORDER_GATEWAY_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API.
    Serve,
    /// Validate the configuration and print it, secrets masked.
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("order-gateway: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::CheckConfig => {
            print!("{}", config.to_masked_toml());
            ExitCode::SUCCESS
        }
        Command::Serve => {
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("order-gateway: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(serve(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "order-gateway stopped");
                    eprintln!("order-gateway: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    telemetry::init_logging(&config.log);
    let metrics = telemetry::init_metrics()?;
    let listen = config.server.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen} (server.listen): {e}"))?;
    let state = Arc::new(AppState::new(config, Some(metrics))?);
    tracing::info!(listen = %listener.local_addr()?, version = env!("CARGO_PKG_VERSION"), "order-gateway serving");
    http::serve(listener, state, shutdown_signal()).await?;
    tracing::info!("order-gateway stopped");
    Ok(())
}

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let which = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = which, "shutdown requested");
}
