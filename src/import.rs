//! `medcall import clients FILE`, `medcall import directory FILE` and `medcall import
//! schedule FILE`: load a document
//! into the store the daemon uses, validated whole first, then upserted with progress on
//! a terminal (none in a pipe).

use std::io::IsTerminal;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;

use crate::booking::schedule::{ScheduleCounts, ScheduleDocument};
use crate::config::Config;
use crate::crm::import::ClientsDocument;
use crate::directory::{DirectoryCounts, DirectoryDocument, UpsertCounts};
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

/// Imports the directory document `file` (the one `PUT /admin/directory` takes) in one
/// transaction; on a terminal, a progress bar of the rows written. Prints the counts.
///
/// # Errors
/// The file cannot be read or is not a directory document, an entry is refused (every
/// problem is listed; nothing is written), or the store fails.
pub async fn directory(config: &Config, file: &Path) -> anyhow::Result<DirectoryCounts> {
    let started = Instant::now();
    let path = file.to_path_buf();
    let doc = tokio::task::spawn_blocking(move || -> anyhow::Result<DirectoryDocument> {
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        DirectoryDocument::from_json(&bytes).map_err(|e| {
            anyhow::anyhow!("{} is not a valid directory document: {e}", path.display())
        })
    })
    .await??;
    let store_path = config.store.path.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&store_path)).await??;
    // Drawn only on a terminal: a pipe or a log file gets the summary line alone.
    let bar = std::io::stderr().is_terminal().then(|| {
        let style = indicatif::ProgressStyle::with_template(
            "importing the directory {bar:40} {pos}/{len} rows written",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        indicatif::ProgressBar::new(0).with_style(style)
    });
    let shown = bar.clone();
    let counts = store
        .import_directory_with_progress(doc, move |p| {
            if let Some(bar) = &shown {
                bar.set_length(p.total as u64);
                bar.set_position(p.written as u64);
            }
        })
        .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let counts = counts?;
    eprintln!(
        "imported the directory in {:.2} s: {}",
        started.elapsed().as_secs_f64(),
        summary(&counts)
    );
    Ok(counts)
}

/// Imports the schedule document `file` (the one `PUT /admin/schedule` takes) in one
/// transaction; on a terminal, a progress bar of the entries done. Prints the counts.
///
/// # Errors
/// The file cannot be read or is not a schedule document, an entry is refused (every
/// problem is listed; nothing is written), or the store fails.
pub async fn schedule(config: &Config, file: &Path) -> anyhow::Result<ScheduleCounts> {
    let started = Instant::now();
    let path = file.to_path_buf();
    let doc = tokio::task::spawn_blocking(move || -> anyhow::Result<ScheduleDocument> {
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        ScheduleDocument::from_json(&bytes).map_err(|e| {
            anyhow::anyhow!("{} is not a valid schedule document: {e}", path.display())
        })
    })
    .await??;
    let store_path = config.store.path.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&store_path)).await??;
    // Drawn only on a terminal: a pipe or a log file gets the summary line alone.
    let bar = std::io::stderr().is_terminal().then(|| {
        let style = indicatif::ProgressStyle::with_template(
            "importing the schedule {bar:40} {pos}/{len} entries",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        indicatif::ProgressBar::new(doc.len() as u64).with_style(style)
    });
    let shown = bar.clone();
    let counts = store
        .import_schedule_with_progress(doc, move |p| {
            if let Some(bar) = &shown {
                bar.set_length(p.total as u64);
                bar.set_position(p.done as u64);
            }
        })
        .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let counts = counts?;
    eprintln!(
        "imported the schedule in {:.2} s: {}",
        started.elapsed().as_secs_f64(),
        schedule_summary(&counts)
    );
    Ok(counts)
}

/// `name 1 inserted, 0 updated, 0 unchanged`.
fn kind(name: &str, k: UpsertCounts) -> String {
    format!(
        "{name} {} inserted, {} updated, {} unchanged",
        k.inserted, k.updated, k.unchanged
    )
}

/// `teams 1 inserted, 0 updated, 0 unchanged; users …`.
fn summary(c: &DirectoryCounts) -> String {
    [
        kind("teams", c.teams),
        kind("users", c.users),
        kind("doctors", c.doctors),
        kind("inbound", c.inbound),
    ]
    .join("; ")
}

/// `lpus 1 inserted, 0 updated, 0 unchanged; cells …; patients …`.
fn schedule_summary(c: &ScheduleCounts) -> String {
    [
        kind("lpus", c.lpus),
        kind("cells", c.cells),
        kind("patients", c.patients),
    ]
    .join("; ")
}
