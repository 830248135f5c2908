//! The `order-gateway` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use order_gateway::{app::AppState, config::Config, http, telemetry};

/// The binary's allocator: see `order_gateway::Allocator`.
#[global_allocator]
static ALLOCATOR: order_gateway::Allocator = order_gateway::Allocator;

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
    /// Print the `sha256:` hash of an API key for `[[auth.keys]]`; with no key
    /// given, make a new random one and print both.
    HashKey {
        /// The key to hash; read from standard input when it is "-".
        key: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Needs no configuration: hashing a key must work before one exists.
    if let Command::HashKey { key } = &cli.command {
        return hash_key(key.as_deref());
    }
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("order-gateway: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::CheckConfig => {
            if let Err(e) = order_gateway::backends::check_config(&config) {
                eprintln!("order-gateway: invalid configuration: {e:#}");
                return ExitCode::from(2);
            }
            print!("{}", config.to_masked_toml());
            for w in config.warnings() {
                eprintln!("order-gateway: warning: {w}");
            }
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
        Command::HashKey { .. } => unreachable!("handled before the configuration is loaded"),
        Command::Serve => {
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("order-gateway: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(serve(config, cli.config)) {
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
    let _log = telemetry::init_logging(&config.log);
    warn_about(config);
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

async fn serve(config: Config, config_path: Option<PathBuf>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let _log = telemetry::init_logging(&config.log);
    warn_about(&config);
    let metrics = telemetry::init_metrics()?;
    let spans = telemetry::trace::install(&config.tracing, &telemetry::trace::instance_id())?;
    let listen = config.server.listen;
    let listener = bind(listen).map_err(|e| anyhow::anyhow!("cannot listen on {listen} (server.listen): {e}"))?;
    let admin_listener = match config.admin.listen.as_str() {
        "" => None,
        addr => Some(
            addr.parse()
                .map_err(std::io::Error::other)
                .and_then(bind)
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (admin.listen): {e}"))?,
        ),
    };
    let mut state = AppState::new(config, Some(metrics))?;
    state.config_path = config_path;
    let state = Arc::new(state);
    telemetry::names::describe_cache();
    telemetry::names::init_serve_series();
    order_gateway::events::stream::spawn(&state.config, state.cache.clone(), state.hub.clone(), state.decoder.clone())?;
    spawn_rate_limit_pruning(state.clone());

    // SIGHUP re-reads the configuration; a bad one is logged and changes nothing.
    let mut hup = signal(SignalKind::hangup())?;
    let reloading = state.clone();
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            let _ = reloading.reload();
        }
    });

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let admin = admin_listener.map(|l| {
        tracing::info!(listen = %l.local_addr().map(|a| a.to_string()).unwrap_or_default(), "admin endpoints on their own listener");
        tokio::spawn(http::serve(l, state.clone(), http::Surface::Admin, stopped()))
    });
    let delay = state.config.server.shutdown_delay;
    let lifecycle = state.clone();
    tokio::spawn(async move {
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        let delayed = tokio::select! {
            _ = term.recv() => !delay.is_zero(),
            _ = int.recv() => false,
        };
        // Fail readiness first, keep serving: whoever routes to this replica
        // learns it is leaving before it stops listening.
        lifecycle.draining.store(true, std::sync::atomic::Ordering::Relaxed);
        if delayed {
            tracing::info!(
                delay_secs = delay.as_secs_f64(),
                "SIGTERM: readiness now 503 \"draining\"; still serving until the delay ends"
            );
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = term.recv() => tracing::info!("second SIGTERM: skipping the rest of the delay"),
                _ = int.recv() => tracing::info!("SIGINT: skipping the rest of the delay"),
            }
        }
        tracing::info!("shutdown: no longer accepting connections");
        let _ = stop_tx.send(true);
    });
    tracing::info!(listen = %listener.local_addr()?, version = env!("CARGO_PKG_VERSION"), "order-gateway serving");
    http::serve(listener, state, http::Surface::Main, stopped()).await?;
    if let Some(a) = admin {
        a.await??;
    }
    if let Some(spans) = spans {
        spans.flush().await;
    }
    tracing::info!("order-gateway stopped");
    Ok(())
}

/// Connections the kernel completes before `accept` takes them. A burst of
/// new connections (a client opening thousands at once) overflows the
/// standard library's 128, and the kernel then drops handshakes, so a probe
/// arriving behind the burst waits for a SYN retransmission (1 s, then 3 s).
/// The kernel caps it at net.core.somaxconn.
const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `addr` with [`LISTEN_BACKLOG`].
fn bind(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Drops idle clients' rate-limit buckets every `rate_limit.prune_interval`
/// (read anew each time, so a reload changes it) and publishes the count.
fn spawn_rate_limit_pruning(state: Arc<AppState>) {
    tokio::spawn(async move {
        loop {
            let interval = state.live().config.rate_limit.prune_interval;
            tokio::time::sleep(interval).await;
            let limits = state.live().edge.limits.clone();
            let left = tokio::task::spawn_blocking(move || limits.prune()).await.unwrap_or(0);
            metrics::gauge!(order_gateway::telemetry::names::RATE_LIMIT_CLIENTS).set(left as f64);
        }
    });
}

/// `hash-key`: prints the hash of the given key, or a new key and its hash.
fn hash_key(key: Option<&str>) -> ExitCode {
    use order_gateway::edge::auth::hash_key;
    let key = match key {
        Some("-") => {
            let mut line = String::new();
            if let Err(e) = std::io::stdin().read_line(&mut line) {
                eprintln!("order-gateway: hash-key: cannot read the key from standard input: {e}");
                return ExitCode::from(2);
            }
            line.trim_end_matches(['\r', '\n']).to_string()
        }
        Some(k) => k.to_string(),
        None => {
            // Two v4 UUIDs: 244 bits from the operating system's generator.
            let key = format!("ogw_{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
            println!("key  = {key}");
            println!("hash = {}", hash_key(&key));
            return ExitCode::SUCCESS;
        }
    };
    if key.len() < 16 {
        eprintln!("order-gateway: hash-key: the key holds {} characters; use at least 16 (run `order-gateway hash-key` without a key to make one)", key.len());
        return ExitCode::from(2);
    }
    println!("{}", hash_key(&key));
    ExitCode::SUCCESS
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

/// Logs what `check-config` warns about, at every start.
fn warn_about(config: &Config) {
    for w in config.warnings() {
        tracing::warn!(warning = %w, "configuration");
    }
}
