//! `signalgrid-seed-audit`: writes audit entries into the store the environment configures,
//! exactly as a node would (the same `Store::audit`, sealed with VIDEO_CALL_ENCRYPTION_KEY when
//! it is set; SIGNALGRID_MONGODB_URI for MongoDB), for the `store rotate-key` and
//! `store purge` figures in docs/benchmarks.md ("Encryption at rest").

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use chrono::{Duration, Utc};
use clap::Parser;
use signalgrid_actors::session::{AuditAction, AuditEntry};
use tokio::task::JoinSet;

#[derive(Parser)]
#[command(name = "signalgrid-seed-audit", about = "Write audit entries into the configured store")]
struct Args {
    /// Data directory (as `signalgrid --data-dir`).
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Entries to write.
    #[arg(long, default_value_t = 100_000)]
    count: usize,
    /// Age of the entries in days (400: all past a 30-day retention).
    #[arg(long, default_value_t = 400)]
    days_ago: i64,
    /// Writes in flight.
    #[arg(long, default_value_t = 256)]
    in_flight: usize,
}

#[tokio::main]
async fn main() -> ExitCode {
    let a = Args::parse();
    let mut s = signalgrid::Settings::default();
    if let Err(e) = s.apply_env(std::env::vars()) {
        eprintln!("signalgrid-seed-audit: {e}");
        return ExitCode::from(2);
    }
    s.data_dir = a.data_dir.clone();
    let store = match signalgrid::store::open(&s).await {
        Ok(st) => st,
        Err(e) => {
            eprintln!("signalgrid-seed-audit: {e}");
            return ExitCode::from(2);
        }
    };
    let base = Utc::now() - Duration::days(a.days_ago);
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..a.in_flight.max(1) {
        let (store, next, count) = (store.clone(), next.clone(), a.count);
        tasks.spawn(async move {
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= count {
                    return Ok::<(), String>(());
                }
                let e = AuditEntry {
                    session_id: format!("bench-session-{}", n / 10),
                    user_id: format!("bench-user-{}", n % 100),
                    action: AuditAction::JoinSuccess,
                    timestamp: base + Duration::milliseconds(n as i64),
                    metadata: serde_json::json!({ "userName": format!("Bench User {n}"), "role": "client", "n": n }),
                    ip_address: Some(format!("198.51.{}.{}", (n / 250) % 250, n % 250)),
                    user_agent: Some(format!("Mozilla/5.0 (X11; Linux x86_64) BenchAgent/{n}")),
                };
                store.audit(e).await.map_err(|e| e.to_string())?;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r.map_err(|e| e.to_string()).and_then(|r| r) {
            eprintln!("signalgrid-seed-audit: {e}");
            return ExitCode::FAILURE;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!("wrote {} audit entries in {secs:.2} s ({:.0}/s)", a.count, a.count as f64 / secs);
    ExitCode::SUCCESS
}
