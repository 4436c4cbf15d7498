//! `signalgrid store rotate-key`: re-seals every value about people with the first
//! configured key, in batches (PROTOCOL.md section 9; docs/security.md "Rotating a key").
//!
//! Resumable: each batch is one atomic write of rows read in id order, and rows already
//! sealed with the first key are left alone, so a run that was stopped (killed, or
//! `--max-batches`) is completed by running it again. Safe while nodes serve: what they
//! write meanwhile is sealed with their first key (start them with the new key first); a
//! final scan finds anything still under another kid and goes round again.
//!
//! Paced ([`crate::store::pace`]): on the embedded store, batches are small and followed by
//! a pause as long as the batch (`--max-duty 0.5`), so that nodes writing to the same file
//! get the write lock in between.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use signalgrid_config::Settings;

use crate::store::pace::{Pace, Pacer};
use crate::store::seal::{Reseal, RotateCounts, Rows};

/// Rows per batch on the embedded store unless `--batch-size` says otherwise: one write
/// transaction of about 2 ms (docs/benchmarks.md "Encryption at rest"), the longest a node
/// sharing the file waits for its own write.
pub const EMBEDDED_BATCH: usize = 250;

/// Rows per batch on MongoDB unless `--batch-size` says otherwise.
pub const MONGODB_BATCH: usize = 1000;

/// Flags of `store rotate-key`.
#[derive(Args)]
pub struct RotateArgs {
    /// Rows per batch (one write transaction on the embedded store; one read and its
    /// updates on MongoDB). Default: 250 on the embedded store, 1000 on MongoDB.
    #[arg(long, value_name = "ROWS")]
    batch_size: Option<usize>,
    /// The largest share of the time batches may hold the store, from 0.01 to 1: after each
    /// batch it pauses batch time × (1 − D) / D, at least 2 ms (1: no pause). Nodes sharing an
    /// embedded store file write in the pauses. Default: 0.5 on the embedded store, 1 on
    /// MongoDB.
    #[arg(long, value_name = "D", value_parser = parse_duty)]
    max_duty: Option<f64>,
    /// Stop after this many batches (to spread the work out); run again to go on. Exit
    /// status 3 when it stopped before the end.
    #[arg(long, value_name = "N")]
    max_batches: Option<u64>,
}

/// Full passes over the rows before giving up on values that keep arriving under another
/// kid (a node still sealing with an older first key).
const MAX_PASSES: usize = 3;

/// Exit status of a run stopped by `--max-batches` before it was done.
const STOPPED: u8 = 3;

/// `--max-duty`'s value: a fraction from 0.01 to 1 (clap prints the error and exits 2).
pub fn parse_duty(v: &str) -> Result<f64, String> {
    let d: f64 = v.parse().map_err(|_| format!("{v:?} is not a number"))?;
    Pace::new(d).map(|p| p.max_duty()).map_err(|e| e.to_string())
}

/// The printed pacing: `paused 1.20 s, batches at most 50% of the time`.
pub fn pacing(paused: Duration, pace: Pace) -> String {
    format!("paused {:.3} s, batches at most {:.0}% of the time", paused.as_secs_f64(), pace.max_duty() * 100.0)
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("signalgrid: {msg}");
    ExitCode::from(2)
}

/// Whether a pass finished or was stopped by the batch limit.
enum Pass {
    Done,
    Stopped,
}

/// What a run does: the flags resolved against the store's defaults.
struct Plan {
    batch_size: usize,
    max_batches: Option<u64>,
}

/// One pass over every kind of row; prints a line per kind.
async fn pass(store: &dyn Reseal, a: &Plan, pacer: &mut Pacer, batches: &mut u64) -> Result<Pass, String> {
    for &rows in store.rows() {
        let started = Instant::now();
        let paused_before = pacer.paused();
        let mut total = RotateCounts::default();
        let mut after = None;
        let mut stopped = false;
        loop {
            if a.max_batches.is_some_and(|m| *batches >= m) {
                stopped = true;
                break;
            }
            let batch_started = Instant::now();
            let b = store.reseal_batch(rows, after.clone(), a.batch_size).await.map_err(|e| e.to_string())?;
            let held = batch_started.elapsed();
            *batches += 1;
            total += b.counts;
            match b.next {
                Some(n) if b.counts.rows as usize >= a.batch_size => after = Some(n),
                _ => break,
            }
            pacer.rest(held).await;
        }
        report(rows, &total, started, pacer.paused() - paused_before, pacer.pace());
        if stopped {
            return Ok(Pass::Stopped);
        }
    }
    Ok(Pass::Done)
}

fn report(rows: Rows, c: &RotateCounts, started: Instant, paused: Duration, pace: Pace) {
    let secs = started.elapsed().as_secs_f64();
    let rate = if secs > 0.0 { c.rows as f64 / secs } else { 0.0 };
    println!(
        "{}: {} read, {} rewritten ({} values re-sealed, {} sealed from plaintext) in {secs:.2} s ({rate:.0} rows/s; {})",
        rows.as_str(),
        c.rows,
        c.rows_changed,
        c.resealed,
        c.sealed,
        pacing(paused, pace)
    );
}

/// Runs `store rotate-key`; prints counts per kind of row, then the kids retired.
pub async fn rotate_key(s: &Settings, a: RotateArgs) -> ExitCode {
    let mongodb = s.store.mongodb_uri.is_some();
    let plan = Plan {
        batch_size: a.batch_size.unwrap_or(if mongodb { MONGODB_BATCH } else { EMBEDDED_BATCH }),
        max_batches: a.max_batches,
    };
    if plan.batch_size == 0 {
        return fail("--batch-size must be at least 1");
    }
    let pace = match Pace::or_default(a.max_duty, Pace::default_for(s)) {
        Ok(p) => p,
        Err(e) => return fail(format!("--max-duty: {e}")),
    };
    let mut pacer = Pacer::new(pace);
    let keys = match crate::store::seal::Keyring::from_settings(s) {
        Ok(k) => k,
        Err(e) => return fail(e),
    };
    let Some(kid) = keys.current_kid().map(str::to_owned) else {
        return fail(crate::store::seal::SealError::NoKeys);
    };
    let store = match crate::store::open_reseal(s).await {
        Ok(st) => st,
        Err(e) => return fail(e),
    };
    let mut batches = 0;
    for _ in 0..MAX_PASSES {
        match pass(&*store, &plan, &mut pacer, &mut batches).await {
            Ok(Pass::Done) => {}
            Ok(Pass::Stopped) => {
                println!("stopped after {batches} batches (--max-batches); run rotate-key again to finish");
                return ExitCode::from(STOPPED);
            }
            Err(e) => return fail(e),
        }
        match store.not_current().await {
            Ok(0) => {
                let retired = match store.retire_other_kids().await {
                    Ok(r) => r,
                    Err(e) => return fail(e),
                };
                if let Err(e) = store.scrub().await {
                    return fail(e);
                }
                println!("every value is sealed with key {kid:?}");
                if !retired.is_empty() {
                    println!(
                        "key ids no longer in use (may be removed from the configuration): {}",
                        retired.join(", ")
                    );
                }
                return ExitCode::SUCCESS;
            }
            Ok(n) => println!("{n} rows are still not sealed with key {kid:?} (written meanwhile); going round again"),
            Err(e) => return fail(e),
        }
    }
    fail(format!(
        "rows keep arriving sealed with another key after {MAX_PASSES} passes: is a node still running with \
         another first key? Restart every node with {kid:?} first, then run rotate-key again"
    ))
}
