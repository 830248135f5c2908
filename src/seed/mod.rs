//! `order-gateway seed`: realistic order lifecycles produced to Kafka.

use std::path::PathBuf;

use crate::config::Config;

/// Options of `seed`.
#[derive(Debug, Clone, clap::Args)]
pub struct SeedArgs {
    /// How many orders to generate.
    #[arg(long)]
    pub orders: u64,
    /// Seed of the generator: the same seed gives the same orders and events.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Events per second at most (0: as fast as Kafka takes them).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Write the final OrderView of every order as JSON lines to this file.
    #[arg(long)]
    pub truth: Option<PathBuf>,
}

/// Runs `seed`.
pub async fn run(_config: &Config, _args: &SeedArgs) -> anyhow::Result<()> {
    anyhow::bail!("seed is being written")
}
