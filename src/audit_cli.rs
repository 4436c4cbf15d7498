//! `signalgrid audit export` and `signalgrid store purge [--dry-run]`, which open the
//! configured store directly (like `session create`), and the retention task `serve` starts
//! (see [`crate::store::retention`]).

use std::process::ExitCode;
use std::sync::Arc;

use chrono::Utc;
use clap::Args;
use signalgrid_actors::session::AuditAction;
use signalgrid_config::Settings;
use tokio::sync::watch;

use crate::app::App;
use crate::http::audit::{entry_json, filters_json, parse_time, read_entry};
use crate::store::pace::{Pace, Pacer};
use crate::store::retention::{self, Purger, LOCK_KEY, LOCK_TTL};

/// The filters of `GET /api/audit`, as flags.
#[derive(Args)]
pub struct ExportArgs {
    #[arg(long, value_name = "ID")]
    session_id: Option<String>,
    #[arg(long, value_name = "ID")]
    user_id: Option<String>,
    /// join_attempt, join_success, call_start, call_end, error, audit_read, ...
    #[arg(long)]
    action: Option<String>,
    /// Oldest timestamp included, ISO 8601.
    #[arg(long, value_name = "DATE")]
    from: Option<String>,
    /// Newest timestamp included, ISO 8601.
    #[arg(long, value_name = "DATE")]
    to: Option<String>,
}

/// Entries read from the store per batch.
const EXPORT_BATCH: usize = 500;

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("signalgrid: {msg}");
    ExitCode::from(2)
}

/// Prints every matching entry as NDJSON, newest first, in batches; records one
/// `audit_read` (user `cli`, metadata `via: cli` and the filters) first.
pub async fn export(s: &Settings, a: ExportArgs) -> ExitCode {
    use std::io::Write;
    let mut filter =
        signalgrid_actors::session::AuditFilter { session_id: a.session_id, user_id: a.user_id, ..Default::default() };
    if let Some(v) = &a.action {
        let Some(act) = AuditAction::parse(v) else { return fail(format!("--action {v:?} is not an audit action")) };
        filter.action = Some(act);
    }
    for (flag, v, slot) in [("--from", &a.from, &mut filter.from), ("--to", &a.to, &mut filter.to)] {
        if let Some(v) = v {
            let Some(t) = parse_time(v) else { return fail(format!("{flag} {v:?} is not an ISO 8601 date-time")) };
            *slot = Some(t);
        }
    }
    let store = match crate::store::open(s).await {
        Ok(st) => st,
        Err(e) => return fail(e),
    };
    let metadata = serde_json::json!({ "filters": filters_json(&filter), "format": "ndjson", "via": "cli" });
    if s.log.audit_enabled {
        if let Err(e) = store.audit(read_entry("cli", &filter, metadata, None, None)).await {
            return fail(format!("cannot record the audit_read entry, so nothing is exported: {e}"));
        }
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut after = None;
    loop {
        let page = match store.audit_page(&filter, after.as_ref(), EXPORT_BATCH).await {
            Ok(p) => p,
            Err(e) => return fail(e),
        };
        for e in &page.entries {
            if writeln!(out, "{}", entry_json(e)).is_err() {
                return ExitCode::from(1);
            }
        }
        match page.next {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    if out.flush().is_err() {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// Flags of `store purge`.
#[derive(Args)]
pub struct PurgeArgs {
    /// Count what would go; delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// The largest share of the time batches may hold the store, from 0.01 to 1: after each
    /// batch it pauses batch time × (1 − D) / D, at least 2 ms (1: no pause). Nodes sharing an
    /// embedded store file write in the pauses. Default: 0.5 on the embedded store, 1 on
    /// MongoDB.
    #[arg(long, value_name = "D", value_parser = crate::store_cli::parse_duty)]
    max_duty: Option<f64>,
}

/// Purges (or counts, with `dry_run`) the audit entries past `retention.audit_days` in
/// batches of `retention.purge_batch`, paced by `--max-duty`, and prints `would remove N`
/// or `removed N in T s (paused P s, batches at most D% of the time)`. Takes no cluster
/// lock: purging is idempotent, and an operator running it means it.
pub async fn purge(s: &Settings, a: PurgeArgs) -> ExitCode {
    let dry_run = a.dry_run;
    let pace = match Pace::or_default(a.max_duty, Pace::default_for(s)) {
        Ok(p) => p,
        Err(e) => return fail(format!("--max-duty: {e}")),
    };
    let mut pacer = Pacer::new(pace);
    let started = std::time::Instant::now();
    let store = match crate::store::open_for_maintenance(s).await {
        Ok(st) => st,
        Err(e) => return fail(e),
    };
    let Some(before) = retention::cutoff(s.retention.audit_days, Utc::now()) else {
        println!(
            "{} 0 (retention.audit_days is 0: entries are kept forever)",
            if dry_run { "would remove" } else { "removed" }
        );
        return ExitCode::SUCCESS;
    };
    let res = if dry_run {
        retention::expired(&*store, before).await
    } else {
        retention::purge_before(&*store, before, s.retention.purge_batch, &mut pacer, None).await
    };
    match res {
        Ok(n) if dry_run => println!("would remove {n}"),
        Ok(n) => println!(
            "removed {n} in {:.2} s ({})",
            started.elapsed().as_secs_f64(),
            crate::store_cli::pacing(pacer.paused(), pace)
        ),
        Err(e) => return fail(e),
    }
    if let Err(e) = store.flush().await {
        return fail(e);
    }
    ExitCode::SUCCESS
}

/// A node's running retention task.
pub struct RetentionTask {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RetentionTask {
    /// Stops it (releasing the cluster lock if held).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Starts the node's periodic purge: under the cluster's `retention` lock when clustered.
/// With `audit_days` 0 it only keeps no lock and removes nothing.
pub async fn start_retention(app: &Arc<App>) -> RetentionTask {
    let lease = match &app.cluster {
        Some(c) if app.settings.retention.audit_days > 0 || app.settings.retention.webhook_days > 0 => {
            match c.lease(LOCK_KEY, LOCK_TTL).await {
                Ok(l) => Some(l),
                Err(e) => {
                    tracing::warn!(error = %e, "retention lock unavailable; this node will not purge");
                    None
                }
            }
        }
        _ => None,
    };
    let (stop, stopped) = watch::channel(false);
    let clustered_without_lock = app.cluster.is_some() && lease.is_none();
    let purger = Purger {
        store: app.store.clone(),
        settings: app.settings.retention.clone(),
        pace: Pace::default_for(&app.settings),
        lease,
    };
    let task = tokio::spawn(async move {
        if clustered_without_lock {
            return;
        }
        purger.run(stopped).await
    });
    RetentionTask { stop, task }
}
