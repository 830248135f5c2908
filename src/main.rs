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
    /// Create topics, register schemas, create Elasticsearch and ClickHouse objects (idempotent).
    Setup(order_gateway::setup::SetupArgs),
    /// Produce realistic order lifecycles to Kafka.
    Seed(order_gateway::seed::SeedArgs),
    /// Project the order topics into Elasticsearch and ClickHouse until SIGTERM.
    Ingest(order_gateway::ingest::IngestArgs),
    /// Exit 0 when the gateway at `server.listen` answers /healthz (for container health checks).
    Healthcheck,
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
        Command::Healthcheck => match healthcheck(config.server.listen) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("order-gateway: healthcheck of {}: {e}", config.server.listen);
                ExitCode::FAILURE
            }
        },
        Command::Setup(args) => run_tool(&config, |c| async move { order_gateway::setup::run(&c, &args).await }),
        Command::Seed(args) => run_tool(&config, |c| async move { order_gateway::seed::run(&c, &args).await }),
        Command::Ingest(args) => run_tool(&config, |c| async move { order_gateway::ingest::run(&c, &args).await }),
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

/// Runs a pipeline command on a fresh runtime; errors go to stderr, exit 1.
fn run_tool<F, Fut>(config: &Config, f: F) -> ExitCode
where
    F: FnOnce(Config) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    telemetry::init_logging(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("order-gateway: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(f(config.clone())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("order-gateway: {e:#}");
            ExitCode::FAILURE
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
    telemetry::names::describe_cache();
    order_gateway::events::stream::spawn(&state.config, state.cache.clone(), state.decoder.clone())?;
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

/// A dependency-free probe: container images need no curl for their health check.
fn healthcheck(listen: std::net::SocketAddr) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let timeout = std::time::Duration::from_secs(3);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    if &head[..] == b"HTTP/1.1 200" {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("unexpected answer {:?}", String::from_utf8_lossy(&head))))
    }
}
