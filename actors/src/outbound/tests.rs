use std::time::Duration;

use super::*;

fn limits() -> SeatLimits {
    SeatLimits { queue: 8, frames: 16, bytes: 1 << 20 }
}

fn text(o: Option<Out>) -> String {
    match o {
        Some(Out::Text(b)) => String::from_utf8(b.to_vec()).unwrap(),
        Some(Out::Close(c)) => format!("close {}", c.code),
        None => "none".into(),
    }
}

fn seq(frame: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(frame).unwrap()["seq"].as_u64().unwrap()
}

#[tokio::test]
async fn frames_are_numbered_and_raw_ones_are_not() {
    let (out, mut rx) = channel(limits());
    out.send_raw(r#"{"event":"connected"}"#.into());
    out.send(r#"{"event":"a","data":{}}"#.into());
    out.send(r#"{"event":"b","data":{}}"#.into());
    out.close(1012, "drain");
    assert_eq!(text(rx.recv().await), r#"{"event":"connected"}"#);
    assert_eq!(text(rx.recv().await), r#"{"event":"a","data":{},"seq":1}"#);
    assert_eq!(seq(&text(rx.recv().await)), 2);
    assert_eq!(text(rx.recv().await), "close 1012");
}

#[tokio::test]
async fn a_resume_replays_what_came_after_last_seq_then_live_frames() {
    let (out, mut rx) = channel(limits());
    for n in 0..5 {
        out.send(format!(r#"{{"n":{n}}}"#));
    }
    for _ in 0..3 {
        rx.recv().await;
    }
    assert!(out.detach(rx.socket()));
    // Sent while away: kept.
    out.send(r#"{"n":5}"#.into());
    let mut rx2 = out.attach(2, "hello".into()).unwrap();
    assert_eq!(text(rx2.recv().await), "hello");
    let got: Vec<u64> = [rx2.recv().await, rx2.recv().await, rx2.recv().await, rx2.recv().await]
        .into_iter()
        .map(|o| seq(&text(o)))
        .collect();
    assert_eq!(got, [3, 4, 5, 6]);
    out.send(r#"{"n":6}"#.into());
    assert_eq!(seq(&text(rx2.recv().await)), 7);
}

#[tokio::test]
async fn ahead_and_overflow_are_refused_and_change_nothing() {
    let small = SeatLimits { queue: 100, frames: 3, bytes: 1 << 20 };
    let (out, rx) = channel(small);
    out.detach(rx.socket());
    for n in 0..3 {
        out.send(format!(r#"{{"n":{n}}}"#));
    }
    assert_eq!(out.attach(4, String::new()).unwrap_err(), ResumeFailure::Ahead);
    // Three owed, three kept: fine so far; the fourth pushes an unsent one out.
    out.send(r#"{"n":3}"#.into());
    assert_eq!(out.attach(0, String::new()).unwrap_err(), ResumeFailure::Overflow);
    assert_eq!(out.attach(3, String::new()).unwrap_err(), ResumeFailure::Overflow, "a frame owed is lost");
}

#[tokio::test]
async fn written_frames_past_the_bound_are_dropped_and_ack_trims() {
    let small = SeatLimits { queue: 100, frames: 2, bytes: 1 << 20 };
    let (out, mut rx) = channel(small);
    for n in 0..4 {
        out.send(format!(r#"{{"n":{n}}}"#));
        rx.recv().await;
    }
    assert_eq!(out.kept().0, 2);
    out.ack(3);
    assert_eq!(out.kept().0, 1);
    out.ack(99);
    assert_eq!(out.kept().0, 0, "an ack past what was written trims only what was written");
    // The client had everything: resuming from 4 loses nothing; from 1 it would.
    out.detach(rx.socket());
    assert_eq!(out.attach(1, String::new()).unwrap_err(), ResumeFailure::Overflow);
    assert!(out.attach(4, String::new()).is_ok());
}

#[tokio::test]
async fn a_replaced_socket_reads_a_close_4001_then_ends() {
    let (out, mut old) = channel(limits());
    out.send("{}".into());
    let mut new = out.attach(0, "hello".into()).unwrap();
    assert_eq!(text(old.recv().await), "close 4001");
    assert_eq!(text(old.recv().await), "none");
    assert_eq!(text(new.recv().await), "hello");
    assert_eq!(seq(&text(new.recv().await)), 1);
    assert!(!out.detach(old.socket()), "the old socket's end does not make the seat away");
}

#[tokio::test]
async fn too_many_unwritten_frames_make_a_slow_consumer() {
    let (out, rx) = channel(SeatLimits { queue: 2, frames: 16, bytes: 1 << 20 });
    assert!(out.send("{}".into()));
    assert!(out.send("{}".into()));
    assert!(!out.send("{}".into()), "third frame does not fit");
    assert!(out.is_overflowed());
    tokio::time::timeout(Duration::from_secs(5), rx.overflow_signal().fired()).await.expect("writer is told");
}

#[tokio::test]
async fn a_claimed_seat_puts_its_history_before_what_waited() {
    let out = claiming(limits());
    out.send(r#"{"e":"late"}"#.into());
    out.install(8, vec![(6, r#"{"e":"x","seq":6}"#.into()), (7, r#"{"e":"y","seq":7}"#.into())]);
    let mut rx = out.attach(5, "hello".into()).unwrap();
    assert_eq!(text(rx.recv().await), "hello");
    assert_eq!(seq(&text(rx.recv().await)), 6);
    assert_eq!(seq(&text(rx.recv().await)), 7);
    assert_eq!(text(rx.recv().await), r#"{"e":"late","seq":8}"#);
}

#[tokio::test]
async fn a_moved_seat_hands_over_its_history_and_forwards() {
    let (out, mut rx) = channel(limits());
    out.send("{}".into());
    out.send("{}".into());
    rx.recv().await;
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let (next, frames) = out.forward(1, Arc::new(move |f| sink.lock().unwrap().push(f))).unwrap();
    assert_eq!(next, 3);
    assert_eq!(frames.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [2]);
    out.send("{\"later\":1}".into());
    assert_eq!(*got.lock().unwrap(), ["{\"later\":1}"]);
    assert_eq!(out.attach(2, String::new()).unwrap_err(), ResumeFailure::Used);
}
