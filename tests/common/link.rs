//! A network link that a test can unplug: a TCP relay on a free loopback port in front of a
//! node. Unplugged, it carries nothing either way and tells neither end (no FIN, no RST), as
//! a network outage; the node's heartbeat then gives its sockets up. Plugged back, every
//! connection that lived through the outage is closed towards the browser (its peer is gone,
//! as a stale TCP connection after an outage), and new connections are relayed as before.
#![allow(dead_code)]

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Link {
    /// Where browsers connect (`http://{addr}` stands for the node).
    pub addr: SocketAddr,
    down: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Link {
    /// A link to `target` (a node's address), plugged in.
    pub async fn to(target: SocketAddr) -> Link {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (down, state) = watch::channel(false);
        let task = tokio::spawn(async move {
            while let Ok((near, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    if let Ok(far) = TcpStream::connect(target).await {
                        relay(near, far, state).await;
                    }
                });
            }
        });
        Link { addr, down, task }
    }

    /// The outage starts: nothing passes either way.
    pub fn unplug(&self) {
        self.down.send_replace(true);
    }

    /// The outage ends: connections that lived through it are closed, new ones are relayed.
    pub fn plug(&self) {
        self.down.send_replace(false);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Relays bytes between `near` (the browser) and `far` (the node) until either end closes,
/// or until the end of an outage this connection lived through.
async fn relay(mut near: TcpStream, mut far: TcpStream, mut state: watch::Receiver<bool>) {
    let (mut nb, mut fb) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    let mut outage = *state.borrow_and_update();
    let mut far_open = true;
    loop {
        tokio::select! {
            changed = state.changed() => {
                if changed.is_err() {
                    return;
                }
                let down = *state.borrow_and_update();
                if down {
                    outage = true;
                } else if outage {
                    return; // dropping both streams closes them
                }
            }
            r = near.read(&mut nb) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) if !outage => {
                    if far.write_all(&nb[..n]).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {} // lost in the outage
            },
            r = far.read(&mut fb), if far_open => match r {
                // The node gave up while the link was down: the browser learns it only later.
                Ok(0) | Err(_) if outage => far_open = false,
                Ok(0) | Err(_) => return,
                Ok(n) if !outage => {
                    if near.write_all(&fb[..n]).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
            },
        }
    }
}
