//! `medcall import clients FILE`: loads the clients document into the store the daemon
//! uses, validated whole first, then upserted in batches with progress on a terminal.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;

use crate::config::Config;
use crate::crm::import::ClientsDocument;
use crate::store::{ImportCounts, Store};

/// Rows per transaction.
const BATCH: usize = 10_000;

/// Imports `file`; returns what was written.
///
/// # Errors
/// The file cannot be read or parsed, a value is invalid (every problem is listed), or
/// the store fails.
pub async fn clients(config: &Config, file: &Path) -> anyhow::Result<ImportCounts> {
    let started = Instant::now();
    let path = file.to_path_buf();
    let doc: ClientsDocument =
        tokio::task::spawn_blocking(move || -> anyhow::Result<ClientsDocument> {
            let reader = std::io::BufReader::new(
                std::fs::File::open(&path)
                    .with_context(|| format!("cannot open {}", path.display()))?,
            );
            serde_json::from_reader(reader)
                .with_context(|| format!("{} is not a valid clients document", path.display()))
        })
        .await??;
    let valid = doc.validate().map_err(|problems| {
        anyhow::anyhow!(
            "the document has invalid entries:\n  {}",
            problems.join("\n  ")
        )
    })?;
    let total = valid.clients.len() + valid.contracts.len() + valid.requests.len();
    let store_path = config.store.path.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&store_path)).await??;
    let tty = std::io::stderr().is_terminal();
    let unknown = store.unknown_clients(valid.outside_client_ids()).await?;
    if !unknown.is_empty() {
        anyhow::bail!(
            "the document has invalid entries:\n  {}",
            valid.unknown_client_problems(&unknown).join("\n  ")
        );
    }
    let counts = store
        .import_clients(valid, BATCH, move |c| {
            if tty {
                let done = c.clients + c.contracts + c.requests;
                eprint!(
                    "\rimporting: {done}/{total} ({} clients, {} contracts, {} requests)",
                    c.clients, c.contracts, c.requests
                );
            }
        })
        .await?;
    if tty {
        eprintln!();
    }
    eprintln!(
        "imported {} clients, {} contracts, {} requests in {:.2} s",
        counts.clients,
        counts.contracts,
        counts.requests,
        started.elapsed().as_secs_f64()
    );
    Ok(counts)
}
