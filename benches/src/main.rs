//! `signalgrid-load`: the load generator. See `--help` and docs/benchmarks.md.

mod calls;
mod cli;
mod conn;
mod relay;
mod rest;
mod resume;
mod stats;
mod tally;
mod target;
mod webhook;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use cli::Args;
use conn::Joined;
use rest::PairSpec;
use stats::{CpuReport, Errors, Latency, Report};
use target::Target;

fn main() -> ExitCode {
    let mut args = Args::parse();
    if let Err(e) = args.check() {
        eprintln!("signalgrid-load: {e}");
        return ExitCode::from(2);
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = args.threads {
        rt.worker_threads(n.max(1));
    }
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("signalgrid-load: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let origin = Instant::now();
    let pretty = args.pretty;
    let res = rt.block_on(run(args, origin));
    rt.shutdown_timeout(Duration::from_secs(2));
    match res {
        Ok(report) => {
            let text = if pretty { serde_json::to_string_pretty(&report) } else { serde_json::to_string(&report) };
            println!("{}", text.expect("report serializes"));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("signalgrid-load: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Setup failures as codes; the first free-text one is also printed.
fn setup_errors(errors: Vec<String>, into: &mut Errors) {
    let mut told = false;
    for e in errors {
        let code = e.trim_start_matches("SETUP_");
        if !code.is_empty() && code.chars().all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit()) {
            into.add(format!("SETUP_{code}"), 1);
        } else {
            if !told {
                eprintln!("signalgrid-load: setup: {code}");
                told = true;
            }
            into.add("SETUP_IO", 1);
        }
    }
}

struct Opened {
    pairs: Vec<(Joined, Joined)>,
    connect_ns: Vec<u64>,
    join_ns: Vec<u64>,
    errors: Errors,
}

/// Opens both sides of every pair, `concurrency` connections at a time, within `limit`.
async fn open_all(specs: &[PairSpec], targets: &[Target], concurrency: usize, limit: Duration) -> Opened {
    let gate = Arc::new(Semaphore::new(concurrency));
    let mut set = JoinSet::new();
    for (i, spec) in specs.iter().enumerate() {
        let (client_at, psy_at) = sides_of(i, targets.len());
        let sides = [(client_at, &spec.client_token), (psy_at, &spec.psy_token)];
        for (side, (at, token)) in sides.into_iter().enumerate() {
            let (url, token) = (targets[at].ws_url(token), token.clone());
            let (room, gate) = (spec.room_id.clone(), gate.clone());
            set.spawn(async move {
                let _permit = gate.acquire_owned().await;
                (i, side, conn::open(&url, &token, at, &room).await)
            });
        }
    }
    let mut slots: Vec<[Option<Joined>; 2]> = (0..specs.len()).map(|_| [None, None]).collect();
    let mut out = Opened {
        pairs: Vec::new(),
        connect_ns: Vec::with_capacity(specs.len() * 2),
        join_ns: Vec::with_capacity(specs.len() * 2),
        errors: Errors::default(),
    };
    let end = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(end, set.join_next()).await {
            Ok(Some(Ok((i, side, Ok(j))))) => {
                out.connect_ns.push(j.connect_ns);
                out.join_ns.push(j.join_ns);
                slots[i][side] = Some(j);
            }
            Ok(Some(Ok((_, _, Err(code))))) => out.errors.add(code, 1),
            Ok(Some(Err(_))) => out.errors.add("OPEN_TASK_FAILED", 1),
            Ok(None) => break,
            Err(_) => {
                out.errors.add("OPEN_PHASE_TIMEOUT", set.len() as u64);
                set.abort_all();
                break;
            }
        }
    }
    for [a, b] in slots {
        match (a, b) {
            (Some(a), Some(b)) => out.pairs.push((a, b)),
            (None, None) => {}
            _ => out.errors.add("PAIR_INCOMPLETE", 1),
        }
    }
    out
}

/// The `--url` indexes of pair `i`'s client side and psychologist side among `n` nodes: the
/// pairs go round the nodes, and the two sides of a pair sit on neighbouring nodes
/// (`i % n` and `(i + 1) % n`), so with two or more nodes every pair crosses nodes and every
/// node holds the same number of sides (within one).
fn sides_of(i: usize, n: usize) -> (usize, usize) {
    (i % n, (i + 1) % n)
}

/// Closes every socket (close frame), each within 2 s.
async fn close_all(pairs: Vec<(Joined, Joined)>) {
    let closing = pairs.into_iter().flat_map(|(a, b)| [a, b]).map(|mut j| async move {
        let _ = tokio::time::timeout(Duration::from_secs(2), j.ws.close(None)).await;
    });
    futures_util::future::join_all(closing).await;
}

async fn run(args: Args, origin: Instant) -> Result<Report, String> {
    let mut targets = Vec::new();
    for u in &args.urls {
        targets.push(Target::parse(u).await?);
    }
    let mut report = Report {
        mode: if args.calls_per_sec > 0 {
            "calls"
        } else if args.idle {
            "idle"
        } else {
            "relay"
        },
        urls: args.urls.clone(),
        connections_requested: args.connections,
        ..Report::default()
    };
    let mut errors = Errors::default();
    let hooks = match args.webhook_listen {
        Some(addr) => Some(webhook::Receiver::start(addr, args.webhook_outage).await?),
        None => None,
    };
    if let Some(h) = &hooks {
        eprintln!("signalgrid-load: webhook receiver on http://{}/hooks", h.addr);
    }
    let tag = format!("{:x}", chrono::Utc::now().timestamp_millis());
    let ttl = (2 * args.setup_timeout + args.duration + args.settle + args.drain + 600) as i64;
    let limit = Duration::from_secs(args.setup_timeout);

    let t = Instant::now();
    let setup = rest::setup(&targets[0], &args.secret, &tag, args.pairs(), args.rest_concurrency, ttl);
    let (specs, failed) =
        tokio::time::timeout(limit, setup).await.map_err(|_| "creating sessions and rooms timed out")?;
    report.setup_secs = t.elapsed().as_secs_f64();
    setup_errors(failed, &mut errors);
    if specs.is_empty() {
        return Err(format!("no session could be set up: {:?}", errors.0));
    }

    let rooms: Vec<String> = specs.iter().map(|s| s.room_id.clone()).collect();
    if args.calls_per_sec > 0 {
        let hold = Duration::from_millis(args.call_hold_ms);
        let (rooms, actions, calls) = calls::run(specs, &targets, args.calls_per_sec, hold, &mut errors).await;
        report.calls = Some(calls);
        if let Some(h) = &hooks {
            report.webhooks = Some(hooks_done(h, &args, &rooms, &actions, &mut errors).await);
        }
        report.errors = errors.0;
        return Ok(report);
    }

    report.rss_before_kib = stats::rss_kib_sum(&args.server_pids);
    let t = Instant::now();
    let opened = open_all(&specs, &targets, args.concurrency, limit).await;
    report.open_secs = t.elapsed().as_secs_f64();
    errors.merge(opened.errors);
    report.connect_latency = Latency::of_values(&opened.connect_ns);
    report.join_latency = Latency::of_values(&opened.join_ns);
    report.pairs = opened.pairs.len();
    report.connections = opened.pairs.len() * 2;
    let pairs = opened.pairs;

    if !args.server_pids.is_empty() {
        tokio::time::sleep(Duration::from_secs(args.settle)).await;
        report.rss_after_kib = stats::rss_kib_sum(&args.server_pids);
        if let (Some(a), Some(b)) = (report.rss_before_kib, report.rss_after_kib) {
            if report.connections > 0 {
                let per = (b as f64 - a as f64) / report.connections as f64;
                report.kib_per_connection = Some((per * 100.0).round() / 100.0);
            }
        }
    }

    if args.idle || pairs.is_empty() {
        close_all(pairs).await;
    } else {
        let plan = relay::Plan {
            rate: args.rate,
            window: args.window,
            pad: args.pad,
            duration: Duration::from_secs(args.duration),
            drain: Duration::from_secs(args.drain),
            origin,
            ack_every: args.ack_every,
            targets: targets.clone(),
            fault: args.fault(),
            churn: args.churn(),
        };
        let pids = &args.server_pids;
        let (wall, me, server) = (Instant::now(), stats::cpu_secs(None), stats::cpu_secs_sum(pids));
        let machine = stats::machine_busy_secs();
        let (relay, resume, relay_errors) = relay::run(pairs, plan).await;
        report.resume = Some(resume);
        let secs = wall.elapsed().as_secs_f64();
        let cores = |used: Option<f64>| used.map(|u| (u / secs * 100.0).round() / 100.0);
        let machine = machine.zip(stats::machine_busy_secs()).map(|(a, b)| b - a);
        let server_used = server.zip(stats::cpu_secs_sum(pids)).map(|(a, b)| b - a);
        let me_used = me.zip(stats::cpu_secs(None)).map(|(a, b)| b - a);
        report.relay_cpu = Some(CpuReport {
            machine_cores: cores(machine).unwrap_or_default(),
            generator_cores: cores(me_used).unwrap_or_default(),
            server_cores: cores(server_used),
            server_us_per_delivered: server_used
                .filter(|_| relay.delivered > 0)
                .map(|u| (u * 1e6 / relay.delivered as f64 * 100.0).round() / 100.0),
            server_pids: pids.len(),
        });
        errors.merge(relay_errors);
        report.relay = Some(relay);
    }
    if let Some(h) = &hooks {
        report.webhooks = Some(hooks_done(h, &args, &rooms, &webhook::Actions::default(), &mut errors).await);
    }
    report.errors = errors.0;
    Ok(report)
}

/// After the last call or relay: ends the outage (if any, 2 s later, so that the last
/// leaves are queued), waits (bounded by `--webhook-wait`) for every room's `room.finished`,
/// and reports.
async fn hooks_done(
    h: &webhook::Receiver,
    args: &Args,
    rooms: &[String],
    actions: &webhook::Actions,
    errors: &mut Errors,
) -> webhook::WebhookReport {
    if args.webhook_outage {
        tokio::time::sleep(Duration::from_secs(2)).await;
        h.end_outage();
    }
    if !h.until_finished(rooms, Duration::from_secs(args.webhook_wait)).await {
        errors.add("WEBHOOK_WAIT_TIMEOUT", 1);
    }
    h.report(actions, rooms)
}

#[cfg(test)]
mod tests {
    use super::sides_of;

    #[test]
    fn pairs_cross_nodes_and_every_node_holds_an_equal_share() {
        assert_eq!(sides_of(0, 1), (0, 0));
        assert_eq!(sides_of(7, 1), (0, 0));
        for n in 2..=4 {
            let mut per_node = vec![0; n];
            for i in 0..(n * 10) {
                let (c, p) = sides_of(i, n);
                assert_ne!(c, p, "pair {i} of {n} nodes crosses nodes");
                per_node[c] += 1;
                per_node[p] += 1;
            }
            assert!(per_node.iter().all(|k| *k == 20), "{n} nodes: {per_node:?}");
        }
    }
}
