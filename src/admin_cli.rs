//! `signalgrid admin …`: the operator's view of a cluster over NATS, as tables or JSON.

use std::process::ExitCode;

use serde_json::json;
use signalgrid_cluster::nats::{AdminClient, ClusterError};
use signalgrid_config::Settings;

/// One admin request.
pub enum Request {
    Nodes,
    Rooms,
    Room(String),
    Kick(String),
    Close(String),
    Drain(String),
}

fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: Vec<String>| {
        cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ").trim_end().to_owned()
    };
    let mut out = vec![line(headers.iter().map(|h| h.to_string()).collect())];
    out.extend(rows.into_iter().map(line));
    out.join("\n")
}

async fn answer(s: &Settings, json_out: bool, req: Request) -> Result<String, ClusterError> {
    let admin = AdminClient::connect(&s.cluster).await?;
    let render = |v: serde_json::Value, text: String| if json_out { v.to_string() } else { text };
    Ok(match req {
        Request::Nodes => {
            let nodes = admin.nodes().await?;
            let rows = nodes
                .iter()
                .map(|n| {
                    vec![
                        n.node_id.clone(),
                        n.address.clone(),
                        n.connections.to_string(),
                        n.rooms.to_string(),
                        format!("{}s", n.uptime_secs),
                        n.version.clone(),
                        if n.draining { "yes".into() } else { "no".into() },
                    ]
                })
                .collect();
            render(
                json!(nodes),
                table(&["NODE", "ADDRESS", "CONNECTIONS", "ROOMS", "UPTIME", "VERSION", "DRAINING"], rows),
            )
        }
        Request::Rooms => {
            let rooms = admin.rooms().await?;
            let rows = rooms.iter().map(|r| vec![r.room_id.clone(), r.members.to_string()]).collect();
            render(json!(rooms), table(&["ROOM", "MEMBERS"], rows))
        }
        Request::Room(id) => {
            let members = admin.room(&id).await?;
            let rows = members
                .iter()
                .map(|m| {
                    vec![
                        m.conn_id.to_string(),
                        m.user_id.clone(),
                        m.user_name.clone(),
                        m.user_role.clone(),
                        m.node_id.to_string(),
                    ]
                })
                .collect();
            render(
                json!({ "roomId": id, "members": members }),
                table(&["SOCKET", "USER", "NAME", "ROLE", "NODE"], rows),
            )
        }
        Request::Kick(conn) => {
            let v = admin.kick(&conn).await?;
            let text = format!("kicked {conn} on {}", v["node"].as_str().unwrap_or("?"));
            render(v, text)
        }
        Request::Close(room) => {
            let v = admin.close(&room).await?;
            render(v, format!("closed {room}"))
        }
        Request::Drain(node) => {
            let v = admin.drain(&node).await?;
            render(v, format!("{node} is draining"))
        }
    })
}

pub async fn run(s: &Settings, json_out: bool, req: Request) -> ExitCode {
    if s.cluster.nats_url.is_none() {
        eprintln!("signalgrid: admin needs --nats-url (or SIGNALGRID_NATS_URL)");
        return ExitCode::from(2);
    }
    match answer(s, json_out, req).await {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(ClusterError::NoAnswer) => {
            eprintln!("signalgrid: no node answered (unknown id, or no node of cluster {:?} is up)", s.cluster.name);
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("signalgrid: {e}");
            ExitCode::from(2)
        }
    }
}
