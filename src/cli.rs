//! The command line: `serve`, `token`, `session create`, `admin`, `audit export`,
//! `store purge`, `store rotate-key`. A thin layer: it resolves settings
//! (defaults < `--config` file < environment < flags) and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use clap::{Args, Parser, Subcommand};
use signalgrid_actors::identity::Role;
use signalgrid_actors::ports::Store;
use signalgrid_actors::session::{NewSession, Party, PaymentStatus, SessionStatus, SessionType};
use signalgrid_config::Settings;

use crate::server::Server;

#[derive(Parser)]
#[command(name = "signalgrid", version, about = "WebRTC signaling for therapy video calls")]
pub struct Cli {
    /// TOML settings file (see docs/configuration.md).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long, global = true, value_name = "FORMAT")]
    log_format: Option<String>,
    /// Data directory of the embedded store.
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node: REST + WebSocket signaling on the embedded store.
    Serve(ServeArgs),
    /// Mint a JWT with the configured secret, for trying things out.
    Token(TokenArgs),
    /// Sessions in the configured store.
    Session {
        #[command(subcommand)]
        command: SessionCommand,
    },
    /// Operate a cluster over NATS: list nodes and rooms, kick, close, drain.
    Admin(AdminArgs),
    /// The audit trail in the configured store.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Maintenance of the configured store.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Print every matching entry, newest first, one JSON object per line (what
    /// `GET /api/audit?format=ndjson` answers). Records one `audit_read` entry.
    Export(crate::audit_cli::ExportArgs),
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Delete audit entries older than retention.audit_days, in paced batches; print how
    /// many.
    Purge(crate::audit_cli::PurgeArgs),
    /// Re-seal every sealed or plaintext value about people with the first key of
    /// VIDEO_CALL_ENCRYPTION_KEY, in paced batches; resumable; print counts.
    RotateKey(crate::store_cli::RotateArgs),
}

#[derive(Args)]
struct AdminArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Nodes with their load.
    Nodes,
    /// Rooms with members.
    Rooms,
    /// A room's participants and their nodes.
    Room { room_id: String },
    /// Disconnect a connection (by socketId).
    Kick { conn_id: String },
    /// Disconnect every member of a room.
    Close { room_id: String },
    /// Drain a node: it stops taking joins, tells its clients NODE_DRAINING and exits.
    Drain { node_id: String },
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Without a JWT secret, make one up (development only).
    #[arg(long)]
    dev: bool,
    /// Certificate chain (PEM) for HTTPS/WSS.
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) for HTTPS/WSS.
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// This node's id (default: made up at start).
    #[arg(long, value_name = "ID")]
    node_id: Option<String>,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// MongoDB connection string (mongodb:// or mongodb+srv://); default: the embedded store.
    #[arg(long, value_name = "URI")]
    mongodb_uri: Option<String>,
    /// MongoDB database name (default: signalgrid).
    #[arg(long, value_name = "NAME")]
    mongodb_database: Option<String>,
}

/// Where the cluster's NATS is (serve and admin).
#[derive(Args)]
struct ClusterArgs {
    /// NATS server URL(s), comma-separated; makes this node part of a cluster.
    #[arg(long, value_name = "URL")]
    nats_url: Option<String>,
    /// Cluster name: nodes with the same name form one cluster (default: default).
    #[arg(long = "cluster", value_name = "NAME")]
    cluster_name: Option<String>,
}

#[derive(Args)]
struct TokenArgs {
    /// User id (the `sub` claim).
    #[arg(long)]
    user: String,
    /// client, psychologist or admin.
    #[arg(long)]
    role: String,
    /// Display name.
    #[arg(long)]
    name: Option<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl: i64,
}

#[derive(Subcommand)]
enum SessionCommand {
    /// Create a session and print its id.
    Create(CreateArgs),
}

#[derive(Args)]
struct CreateArgs {
    #[arg(long)]
    client_id: String,
    #[arg(long, default_value = "Client")]
    client_name: String,
    #[arg(long)]
    psychologist_id: String,
    #[arg(long, default_value = "Psychologist")]
    psychologist_name: String,
    /// Start time, RFC 3339 (default: now).
    #[arg(long, value_name = "DATE")]
    date: Option<String>,
    /// Minutes from now to the start (instead of --date).
    #[arg(long, value_name = "MINUTES", allow_hyphen_values = true)]
    starts_in: Option<i64>,
    #[arg(long, default_value_t = 50)]
    duration: i64,
    /// Individual or Group.
    #[arg(long = "type", default_value = "Individual")]
    session_type: String,
    /// paid, pending, failed or refunded.
    #[arg(long, default_value = "paid")]
    payment: String,
}

fn apply_cluster_args(s: &mut Settings, a: &ClusterArgs) {
    if let Some(u) = &a.nats_url {
        s.cluster.nats_url = Some(u.clone());
    }
    if let Some(c) = &a.cluster_name {
        s.cluster.name = c.clone();
    }
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("signalgrid: {msg}");
    ExitCode::from(2)
}

fn settings(cli: &Cli) -> Result<Settings, String> {
    let mut s = match &cli.config {
        Some(p) => Settings::from_file(p).map_err(|e| e.to_string())?,
        None => Settings::default(),
    };
    s.apply_env(std::env::vars()).map_err(|e| e.to_string())?;
    if let Some(f) = &cli.log_format {
        s.set("log.format", f, "--log-format").map_err(|e| e.to_string())?;
    }
    if let Some(d) = &cli.data_dir {
        s.data_dir = d.clone();
    }
    if let Command::Admin(a) = &cli.command {
        apply_cluster_args(&mut s, &a.cluster);
    }
    if let Command::Serve(a) = &cli.command {
        if let Some(l) = &a.listen {
            s.set("listen", l, "--listen").map_err(|e| e.to_string())?;
        }
        if let Some(c) = &a.tls_cert {
            s.tls.cert_path = Some(c.clone());
        }
        if let Some(k) = &a.tls_key {
            s.tls.key_path = Some(k.clone());
        }
        if let Some(n) = &a.node_id {
            s.node_id = Some(n.clone());
        }
        apply_cluster_args(&mut s, &a.cluster);
        if let Some(u) = &a.mongodb_uri {
            s.store.mongodb_uri = Some(u.clone());
        }
        if let Some(d) = &a.mongodb_database {
            s.store.mongodb_database = d.clone();
        }
    }
    s.validate().map_err(|e| e.to_string())?;
    Ok(s)
}

pub async fn run() -> ExitCode {
    let cli = Cli::parse();
    let s = match settings(&cli) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    match cli.command {
        Command::Serve(a) => serve(s, a.dev).await,
        Command::Token(a) => token(&s, a),
        Command::Session { command: SessionCommand::Create(a) } => create_session(&s, a).await,
        Command::Admin(a) => crate::admin_cli::run(&s, a.json, a.command.into()).await,
        Command::Audit { command: AuditCommand::Export(a) } => crate::audit_cli::export(&s, a).await,
        Command::Store { command: StoreCommand::Purge(a) } => crate::audit_cli::purge(&s, a).await,
        Command::Store { command: StoreCommand::RotateKey(a) } => crate::store_cli::rotate_key(&s, a).await,
    }
}

async fn serve(mut s: Settings, dev: bool) -> ExitCode {
    if let Err(e) = crate::telemetry::init_logs(&s.log, crate::redact::Redactor::from_settings(&s)) {
        return fail(e);
    }
    let open_files = match raise_open_files() {
        Ok(n) => n,
        Err(e) => return fail(format!("cannot read or raise the open-files limit (RLIMIT_NOFILE): {e}")),
    };
    if let Err(e) = s.check_open_files(open_files) {
        return fail(e);
    }
    if s.auth.jwt_secret.is_none() {
        if !dev {
            return fail(
                "no JWT secret: set VIDEO_CALL_JWT_SECRET (or auth.jwt_secret in --config), or run with --dev",
            );
        }
        let secret = format!("dev-{}", uuid::Uuid::new_v4().simple());
        eprintln!("==========================================================================");
        eprintln!(" WARNING: --dev and no JWT secret: made one up for this run only:");
        eprintln!("   VIDEO_CALL_JWT_SECRET={secret}");
        eprintln!(" Tokens signed by your platform will NOT verify. Never use this in production.");
        eprintln!("==========================================================================");
        s.auth.jwt_secret = Some(secret);
    }
    let store: Arc<dyn Store> = match crate::store::open(&s).await {
        Ok(st) => st,
        Err(e) => return fail(e),
    };
    let listener = match crate::server::bind(s.listen) {
        Ok(l) => l,
        Err(e) => return fail(format!("cannot listen on {}: {e}", s.listen)),
    };
    let server = match Server::start(s, listener, store).await {
        Ok(srv) => srv,
        Err(e) => return fail(e),
    };
    eprintln!("signalgrid listening on {}", server.addr());
    let retention = crate::audit_cli::start_retention(&server.app).await;
    tokio::select! {
        _ = shutdown_signal() => tracing::info!("shutdown signal received; draining"),
        _ = server.drain_requested() => tracing::info!("drain requested by an operator; draining"),
    }
    retention.stop().await;
    server.shutdown().await;
    ExitCode::SUCCESS
}

/// Raises the soft open-files limit (RLIMIT_NOFILE) to the hard one, logs both figures and
/// returns the limit now in force (a count of file descriptors). A node holds one socket per
/// connection; distributions start processes with a soft limit of 1,024.
fn raise_open_files() -> std::io::Result<u64> {
    let (soft, hard) = rlimit::Resource::NOFILE.get()?;
    let now = rlimit::increase_nofile_limit(hard)?;
    tracing::info!(from = soft, to = now, hard, "open-files limit (RLIMIT_NOFILE) raised to {now}");
    Ok(now)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn token(s: &Settings, a: TokenArgs) -> ExitCode {
    let Some(secret) = s.auth.jwt_secret.as_deref() else {
        return fail("no JWT secret: set VIDEO_CALL_JWT_SECRET (or auth.jwt_secret in --config)");
    };
    let Some(role) = Role::parse(&a.role) else {
        return fail(format!("--role must be client, psychologist or admin (got {:?})", a.role));
    };
    println!("{}", crate::auth::mint(secret, &a.user, role, a.name.as_deref(), a.ttl));
    ExitCode::SUCCESS
}

async fn create_session(s: &Settings, a: CreateArgs) -> ExitCode {
    let date: DateTime<Utc> = match (&a.date, a.starts_in) {
        (Some(d), _) => match DateTime::parse_from_rfc3339(d) {
            Ok(d) => d.with_timezone(&Utc),
            Err(e) => return fail(format!("--date {d:?}: {e}")),
        },
        (None, Some(m)) => Utc::now() + Duration::minutes(m),
        (None, None) => Utc::now(),
    };
    let (Some(kind), Some(pay)) = (SessionType::parse(&a.session_type), PaymentStatus::parse(&a.payment)) else {
        return fail("--type must be Individual or Group; --payment one of paid, pending, failed, refunded");
    };
    if !(1..=1440).contains(&a.duration) {
        return fail("--duration must be 1 to 1440 minutes");
    }
    let store = match crate::store::open(s).await {
        Ok(st) => st,
        Err(e) => return fail(e),
    };
    let new = NewSession {
        client: Party { id: a.client_id, name: a.client_name },
        psychologist: Party { id: a.psychologist_id, name: a.psychologist_name },
        session_date: date,
        duration_minutes: a.duration,
        session_type: kind,
        payment_status: pay,
        status: SessionStatus::Scheduled,
        waiting_room: s.rooms.waiting_room,
    };
    match store.create_session(new).await {
        Ok(sess) => {
            println!("{}", sess.id);
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

impl From<AdminCommand> for crate::admin_cli::Request {
    fn from(c: AdminCommand) -> Self {
        use crate::admin_cli::Request as R;
        match c {
            AdminCommand::Nodes => R::Nodes,
            AdminCommand::Rooms => R::Rooms,
            AdminCommand::Room { room_id } => R::Room(room_id),
            AdminCommand::Kick { conn_id } => R::Kick(conn_id),
            AdminCommand::Close { room_id } => R::Close(room_id),
            AdminCommand::Drain { node_id } => R::Drain(node_id),
        }
    }
}
