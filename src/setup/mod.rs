//! `order-gateway setup`: topics, schemas, Elasticsearch template/index/aliases, ClickHouse tables.

use crate::config::Config;

/// Options of `setup`.
#[derive(Debug, Clone, clap::Args)]
pub struct SetupArgs {
    /// Roll the write alias over when the configured conditions are met, and
    /// delete indices wholly older than the hot window.
    #[arg(long)]
    pub rollover: bool,
}

/// Runs `setup`.
pub async fn run(_config: &Config, _args: &SetupArgs) -> anyhow::Result<()> {
    anyhow::bail!("setup is being written")
}
