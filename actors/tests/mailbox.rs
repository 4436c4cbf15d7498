//! The actors' mailboxes: ractor's unbounded channel, which signalgrid's vendored ractor
//! builds on flume so that it is allocated on first use (vendor/ractor/VENDORED.md). These
//! check that it keeps the semantics ractor relies on from tokio's channel: order, batches,
//! a close that drops what is queued and refuses more, an end once every sender is gone,
//! and, through a real actor, that calls queued to an actor that stops fail instead of
//! hanging.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ractor::concurrency::mpsc_unbounded;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

/// Bound on every await here; a hang is a failure, not a wait.
const BOUND: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_mailbox_keeps_order_and_hands_out_batches() {
    let (tx, mut rx) = mpsc_unbounded::<u32>();
    for i in 1..=25 {
        tx.send(i).expect("open mailbox takes a message");
    }
    let mut batch = Vec::new();
    let n = tokio::time::timeout(BOUND, rx.recv_many(&mut batch, 10)).await.expect("batch");
    assert_eq!(n, 10);
    assert_eq!(batch, (1..=10).collect::<Vec<_>>());
    assert_eq!(tokio::time::timeout(BOUND, rx.recv()).await.expect("one"), Some(11));
    assert_eq!(rx.try_recv().ok(), Some(12));
    let mut rest = Vec::new();
    let n = tokio::time::timeout(BOUND, rx.recv_many(&mut rest, 100)).await.expect("rest");
    assert_eq!(n, 13, "a batch takes what is queued, up to the limit");
    assert_eq!(rest, (13..=25).collect::<Vec<_>>());
    assert!(rx.try_recv().is_err(), "nothing left");
    assert_eq!(rx.recv_many(&mut rest, 0).await, 0, "a limit of 0 moves nothing");
}

#[tokio::test]
async fn a_waiting_receiver_is_woken_by_a_send_from_another_task() {
    let (tx, mut rx) = mpsc_unbounded::<&'static str>();
    let waiter = tokio::spawn(async move { rx.recv().await });
    tokio::task::yield_now().await;
    tx.send("hello").expect("send");
    let got = tokio::time::timeout(BOUND, waiter).await.expect("woken").expect("task");
    assert_eq!(got, Some("hello"));
}

/// Counts its drops.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn closing_a_mailbox_drops_what_is_queued_and_refuses_more() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = mpsc_unbounded::<Counted>();
    for _ in 0..3 {
        assert!(tx.send(Counted(dropped.clone())).is_ok());
    }
    assert!(!tx.is_closed());
    rx.close();
    assert_eq!(dropped.load(Ordering::SeqCst), 3, "the queue is dropped at the close, senders still alive");
    assert!(tx.is_closed());
    let refused = tx.send(Counted(dropped.clone())).expect_err("a closed mailbox refuses");
    drop(refused);
    assert_eq!(dropped.load(Ordering::SeqCst), 4, "the refused message comes back to the sender");
    assert!(rx.try_recv().is_err());
    assert!(tokio::time::timeout(BOUND, rx.recv()).await.expect("no wait").is_none());
}

#[tokio::test]
async fn a_mailbox_ends_once_every_sender_is_gone_and_it_is_empty() {
    let (tx, mut rx) = mpsc_unbounded::<u8>();
    let tx2 = tx.clone();
    assert!(tx.same_channel(&tx2));
    tx.send(1).expect("send");
    drop(tx);
    drop(tx2);
    assert_eq!(tokio::time::timeout(BOUND, rx.recv()).await.expect("queued"), Some(1));
    assert_eq!(tokio::time::timeout(BOUND, rx.recv()).await.expect("end"), None);
}

/// An actor that holds its first message until told, then stops.
struct Stopper;

enum StopperMsg {
    /// Wait for the oneshot, then stop.
    HoldThenStop(tokio::sync::oneshot::Receiver<()>),
    /// Answered only if the actor is still running.
    Ask(RpcReplyPort<u32>),
}

impl Actor for Stopper {
    type Msg = StopperMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<StopperMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(&self, me: ActorRef<StopperMsg>, msg: StopperMsg, _: &mut ()) -> Result<(), ActorProcessingErr> {
        match msg {
            StopperMsg::HoldThenStop(go) => {
                let _ = go.await;
                me.stop(None);
            }
            StopperMsg::Ask(reply) => {
                let _ = reply.send(7);
            }
        }
        Ok(())
    }
}

#[tokio::test]
async fn calls_queued_to_an_actor_that_stops_fail_instead_of_hanging() {
    let (actor, handle) = Actor::spawn(None, Stopper, ()).await.expect("spawn");
    let (go, hold) = tokio::sync::oneshot::channel();
    actor.send_message(StopperMsg::HoldThenStop(hold)).expect("hold");
    // Queued behind the held message: the actor stops before it reads them.
    let mut answers = Vec::new();
    for _ in 0..5 {
        let (reply, answer) = ractor::concurrency::oneshot();
        actor.send_message(StopperMsg::Ask(reply.into())).expect("queued");
        answers.push(answer);
    }
    go.send(()).expect("actor holds");
    tokio::time::timeout(BOUND, handle).await.expect("actor stops").expect("task");
    for answer in answers {
        // The caller still holds the actor's reference (and so a sender of its mailbox):
        // only the close at the actor's exit can drop the queued reply ports.
        let got = tokio::time::timeout(BOUND, answer).await.expect("a queued call ends when the actor stops");
        assert!(got.is_err(), "stopped before it was read, so never answered");
    }
    assert!(actor.send_message(StopperMsg::Ask(ractor::concurrency::oneshot().0.into())).is_err());
}
