//! Command line of `signalgrid-load`.

use clap::Parser;

/// Load generator for a signalgrid node (or two): makes sessions and rooms over REST, opens
/// WebSocket connections in room pairs, measures connect and join latency, then relays
/// `ice-candidate` frames inside each pair and reports throughput and relay latency as one
/// JSON object on stdout. Every phase has a time limit; the run stops by itself.
#[derive(Parser, Debug, Clone)]
#[command(name = "signalgrid-load", version)]
pub struct Args {
    /// Base URL of a node, e.g. http://127.0.0.1:8080 (loopback only). Give it two or more
    /// times (up to 8) to spread the pairs over the nodes: pair i has its client side on URL
    /// i mod n and its psychologist side on URL (i + 1) mod n, so every pair crosses nodes
    /// and each node holds an equal share of sides. REST calls go to the first.
    #[arg(long = "url", required = true, num_args = 1, action = clap::ArgAction::Append)]
    pub urls: Vec<String>,

    /// The node's JWT secret (VIDEO_CALL_JWT_SECRET); tokens are minted with it.
    #[arg(long, env = "VIDEO_CALL_JWT_SECRET", hide_env_values = true)]
    pub secret: String,

    /// WebSocket connections to open (rounded up to an even number: two per room).
    #[arg(long, default_value_t = 200)]
    pub connections: usize,

    /// Target total relay rate in messages/s across all pairs and both directions;
    /// 0 sends as fast as the window allows.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,

    /// Seconds of relaying.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,

    /// Messages a connection may have in flight (sent, not yet delivered or refused). Keep it
    /// below the server's per-connection outbound queue (SIGNALGRID_OUTBOUND_QUEUE, 256).
    #[arg(long, default_value_t = 64)]
    pub window: u64,

    /// Bytes of padding in every candidate payload (a real ICE candidate is ~150 bytes).
    #[arg(long, default_value_t = 120)]
    pub pad: usize,

    /// Connections being opened (connect + join) at once.
    #[arg(long, default_value_t = 200)]
    pub concurrency: usize,

    /// REST requests in flight at once while creating sessions and rooms.
    #[arg(long, default_value_t = 8)]
    pub rest_concurrency: usize,

    /// Only connect and join (and measure memory); no relay.
    #[arg(long)]
    pub idle: bool,

    /// Seconds to hold the idle connections after they all joined, before measuring the
    /// server's memory again (lets it settle).
    #[arg(long, default_value_t = 1)]
    pub settle: u64,

    /// PID of a server; give it once per node. Their VmRSS (added up) is read before
    /// connecting and once everything joined, and their CPU time over the relay phase gives
    /// `relay_cpu.server_cores` and `relay_cpu.server_us_per_delivered`.
    #[arg(long = "server-pid", value_name = "PID", num_args = 1, action = clap::ArgAction::Append)]
    pub server_pids: Vec<u32>,

    /// Seconds to wait after the relay phase for messages still in flight.
    #[arg(long, default_value_t = 3)]
    pub drain: u64,

    /// Upper bound, in seconds, for each of: creating sessions, opening connections.
    #[arg(long, default_value_t = 120)]
    pub setup_timeout: u64,

    /// Worker threads of the generator's runtime (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,

    /// Send `ack {seq}` after every this many frames from the server, as the web client
    /// does, so that a seat's replay buffer stays small; 0 never acknowledges.
    #[arg(long, default_value_t = 32)]
    pub ack_every: u64,

    /// During the relay phase, signal the node of `--fault-node-pid`: `drain` (SIGTERM:
    /// NODE_DRAINING, close 1012, seats kept) or `kill` (SIGKILL). Its clients resume on
    /// the other `--url`; the report's `resume` object says how that went.
    #[arg(long, value_enum, requires_all = ["fault_node_pid"])]
    pub fault: Option<crate::resume::FaultKind>,

    /// PID of the node `--fault` signals.
    #[arg(long, value_name = "PID")]
    pub fault_node_pid: Option<u32>,

    /// Seconds into the relay phase at which `--fault` strikes.
    #[arg(long, default_value_t = 5)]
    pub fault_after: u64,

    /// During the relay phase (from its second second), drop this many sockets without a
    /// close frame, each resuming at once on the next `--url` (the same node with one URL,
    /// the other with two); the report's `resume.resume_latency` times them.
    #[arg(long, default_value_t = 0)]
    pub resume_churn: usize,

    /// Dropped sockets resuming at once, at most (`--resume-churn`).
    #[arg(long, default_value_t = 10)]
    pub resume_inflight: usize,

    /// Run the webhook receiver on this loopback address (e.g. 127.0.0.1:18300; port 0 picks
    /// one) and report what it received (`webhooks` in the report). The nodes must have it
    /// in `webhooks.urls` (SIGNALGRID_WEBHOOK_URLS=http://127.0.0.1:18300/hooks).
    #[arg(long, value_name = "ADDR")]
    pub webhook_listen: Option<std::net::SocketAddr>,

    /// The receiver answers 503 from the start until the relay or call phase is over (and 2 s
    /// more, for the last leaves), then 204: the report's `webhooks.outage` times the
    /// delivery of everything that waited.
    #[arg(long, requires = "webhook_listen")]
    pub webhook_outage: bool,

    /// Seconds to wait, after the last call or relay, for every room's `room.finished` at the
    /// receiver.
    #[arg(long, default_value_t = 120)]
    pub webhook_wait: u64,

    /// Call churn instead of the relay: start this many calls a second for `--duration`
    /// seconds (one session and room each, made beforehand; `--connections` is ignored),
    /// each held `--call-hold-ms` and then left by both sides.
    #[arg(long, default_value_t = 0)]
    pub calls_per_sec: u64,

    /// How long both sides of a churned call stay joined, in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub call_hold_ms: u64,

    /// Pretty-print the JSON report.
    #[arg(long)]
    pub pretty: bool,
}

impl Args {
    /// Rejects settings that would make the run unbounded or meaningless.
    pub fn check(&mut self) -> Result<(), String> {
        if self.urls.len() > 8 {
            return Err("--url may be given at most 8 times".into());
        }
        if self.calls_per_sec > 0 {
            if self.calls_per_sec > 1_000 || self.idle || self.fault.is_some() || self.resume_churn > 0 {
                return Err(
                    "--calls-per-sec is 1..=1000 and goes with neither --idle, --fault nor --resume-churn".into()
                );
            }
            if self.call_hold_ms > 60_000 {
                return Err("--call-hold-ms <= 60000".into());
            }
            self.connections = (2 * self.calls_per_sec * self.duration).try_into().unwrap_or(usize::MAX);
        }
        if self.webhook_wait > 600 {
            return Err("--webhook-wait <= 600".into());
        }
        if self.connections < 2 {
            return Err("--connections must be at least 2".into());
        }
        if self.connections > 20_000 {
            return Err("--connections is capped at 20000 (the open-files limit here)".into());
        }
        self.connections += self.connections % 2;
        if self.duration == 0 || self.duration > 600 {
            return Err("--duration must be 1..=600 seconds".into());
        }
        if self.window == 0 || self.window > 4096 {
            return Err("--window must be 1..=4096".into());
        }
        if self.concurrency == 0 || self.rest_concurrency == 0 {
            return Err("concurrency must be at least 1".into());
        }
        if self.pad > 60_000 {
            return Err("--pad must stay under the server's frame limit".into());
        }
        if self.drain > 60 || self.settle > 600 || self.setup_timeout > 1800 {
            return Err("--drain <= 60, --settle <= 600, --setup-timeout <= 1800".into());
        }
        if self.fault.is_some() && self.idle {
            return Err("--fault needs the relay phase (not --idle)".into());
        }
        if self.fault.is_some() && self.fault_after >= self.duration {
            return Err("--fault-after must be less than --duration".into());
        }
        if self.resume_churn > 0 && (self.idle || self.resume_inflight == 0) {
            return Err("--resume-churn needs the relay phase and --resume-inflight >= 1".into());
        }
        if self.resume_churn > 1_000_000 || self.resume_inflight > 10_000 {
            return Err("--resume-churn <= 1000000, --resume-inflight <= 10000".into());
        }
        Ok(())
    }

    /// The fault to inject, if any.
    pub fn fault(&self) -> Option<crate::resume::Fault> {
        Some(crate::resume::Fault {
            kind: self.fault?,
            pid: self.fault_node_pid?,
            after: std::time::Duration::from_secs(self.fault_after),
        })
    }

    /// The sockets to drop, if any.
    pub fn churn(&self) -> Option<crate::resume::Churn> {
        (self.resume_churn > 0)
            .then_some(crate::resume::Churn { count: self.resume_churn, inflight: self.resume_inflight })
    }

    pub fn pairs(&self) -> usize {
        self.connections / 2
    }
}
