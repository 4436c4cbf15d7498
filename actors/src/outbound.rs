//! A seat's outbound buffer: what its producers (its actor, rooms, relays) send, numbered,
//! kept for replay, and read by whichever socket is attached (PROTOCOL.md section 6).
//!
//! Every frame sent gets the seat's next `seq` (stamped into its JSON) and stays in the
//! buffer until the client acknowledges it (`ack`), a resume says the client has it
//! (`lastSeq`), or the bounds (`SeatLimits`: frames and bytes) push it out. A socket reads
//! from a cursor (the last `seq` it was given). Frames that concern one socket only
//! (`connected`, `NODE_DRAINING`, the close) are *raw*: not numbered, not kept, and placed
//! after the numbered frames sent before them.
//!
//! Never blocks a producer and never grows past its bounds: with a socket attached, more
//! than `SeatLimits::queue` frames not yet written mark the client a slow consumer (its
//! writer is told to disconnect it, as before seats); with none attached, frames past the
//! bounds are dropped and the seat can no longer resume without loss (`Overflow`).
//!
//! A seat that moved to another node forwards what is still sent here (`forward`); one that
//! is arriving from another node holds frames until its history is installed (`claiming`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::seat::ResumeFailure;
use crate::telemetry;

/// One item for a socket's writer.
#[derive(Debug)]
pub enum Out {
    /// A text frame, already encoded (UTF-8).
    Text(Bytes),
    /// Close the socket (after the frames before it). Boxed: a socket is closed once.
    Close(Box<Closing>),
}

/// A close frame's code (RFC 6455 7.4.1) and reason.
#[derive(Debug)]
pub struct Closing {
    pub code: u16,
    pub reason: &'static str,
}

/// The bounds of one seat's buffer.
#[derive(Debug, Clone, Copy)]
pub struct SeatLimits {
    /// Frames not yet written to an attached socket before its client is a slow consumer
    /// (`limits.outbound_queue`).
    pub queue: usize,
    /// Frames kept for replay at most (`resume.buffer_frames`).
    pub frames: usize,
    /// Bytes of frames kept for replay at most (`resume.buffer_bytes`).
    pub bytes: usize,
}

impl SeatLimits {
    /// A buffer that keeps nothing beyond `queue` frames (tests, benches).
    pub fn queue_only(queue: usize) -> SeatLimits {
        SeatLimits { queue, frames: queue, bytes: usize::MAX }
    }
}

type Forward = Arc<dyn Fn(String) + Send + Sync>;

enum Mode {
    /// Frames are numbered and kept here.
    Live,
    /// The seat's history is on its way from another node: frames wait, unnumbered.
    Claiming(Vec<String>),
    /// The seat moved to another node: frames go there.
    Forward(Forward),
}

struct Inner {
    mode: Mode,
    /// The `seq` of the next frame (the first is 1).
    next_seq: u64,
    /// Frames kept: sent, not known to be received. Ascending, contiguous `seq`s.
    frames: VecDeque<(u64, Bytes)>,
    bytes: usize,
    /// Highest `seq` handed to the attached socket's writer.
    written: u64,
    /// The attached socket (0: none) and the last one handed out.
    socket: u64,
    sockets: u64,
    /// Raw items for the attached socket, each after the numbered frame `seq` it follows.
    raw: VecDeque<(u64, Out)>,
    /// The attached socket's client cannot keep up.
    overflowed: bool,
    /// A frame owed to the client was dropped: no resume without loss.
    lost: bool,
    /// A reader found nothing and waits: the next frame wakes it (a busy writer costs no
    /// wake-up per frame).
    parked: bool,
}

struct Shared {
    inner: Mutex<Inner>,
    /// Readers wait on it (every frame, attach, detach).
    wake: Notify,
    /// The overflow signal waits on it.
    kill: Notify,
    limits: SeatLimits,
}

/// Producer side; cheap to clone.
#[derive(Clone)]
pub struct Outbound {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Outbound")
    }
}

/// A socket's reading end of a seat's buffer.
pub struct SeatReader {
    shared: Arc<Shared>,
    socket: u64,
    ended: bool,
}

impl std::fmt::Debug for SeatReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SeatReader({})", self.socket)
    }
}

/// Stamps `seq` into an encoded `{...}` frame: `{"event":..,"data":..,"seq":N}`.
fn stamp(mut frame: String, seq: u64) -> Bytes {
    use std::fmt::Write;
    if frame.ends_with('}') {
        frame.pop();
        let sep = if frame.trim_end().ends_with('{') { "" } else { "," };
        let _ = write!(frame, "{sep}\"seq\":{seq}}}");
    }
    Bytes::from(frame)
}

impl Inner {
    fn base(&self) -> u64 {
        self.frames.front().map_or(self.next_seq, |(s, _)| *s)
    }

    fn push(&mut self, frame: String, limits: &SeatLimits) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let b = stamp(frame, seq);
        self.bytes += b.len();
        self.frames.push_back((seq, b));
        while self.frames.len() > limits.frames || (self.bytes > limits.bytes && self.frames.len() > 1) {
            let Some((s, b)) = self.frames.pop_front() else { break };
            self.bytes -= b.len();
            if s > self.written {
                // Never given to any socket: the client cannot have it. With a socket
                // attached, its client is too far behind: a slow consumer.
                if !self.lost {
                    telemetry::seat_buffer_overflow();
                }
                self.lost = true;
                self.written = s;
                if self.socket != 0 {
                    self.overflowed = true;
                }
            }
        }
    }

    /// Whether a socket that processed every frame up to `last_seq` can take the seat: it is
    /// here (`Used` otherwise), was sent that much (`Ahead`), and nothing after it is gone
    /// (`Overflow`).
    fn can_resume(&self, last_seq: u64) -> Result<(), ResumeFailure> {
        if !matches!(self.mode, Mode::Live) {
            return Err(ResumeFailure::Used);
        }
        if last_seq > self.next_seq - 1 {
            return Err(ResumeFailure::Ahead);
        }
        if self.lost || last_seq + 1 < self.base() {
            return Err(ResumeFailure::Overflow);
        }
        Ok(())
    }

    fn trim_to(&mut self, seq: u64) {
        while self.frames.front().is_some_and(|(s, _)| *s <= seq) {
            if let Some((_, b)) = self.frames.pop_front() {
                self.bytes -= b.len();
            }
        }
    }
}

/// Makes a seat's buffer with a socket attached from the start (a new connection).
pub fn channel(limits: SeatLimits) -> (Outbound, SeatReader) {
    let inner = Inner {
        mode: Mode::Live,
        next_seq: 1,
        frames: VecDeque::new(),
        bytes: 0,
        written: 0,
        socket: 1,
        sockets: 1,
        raw: VecDeque::new(),
        overflowed: false,
        lost: false,
        parked: false,
    };
    let shared = Arc::new(Shared { inner: Mutex::new(inner), wake: Notify::new(), kill: Notify::new(), limits });
    (Outbound { shared: shared.clone() }, SeatReader { shared, socket: 1, ended: false })
}

/// Makes the buffer of a seat that arrives from another node: frames wait until
/// [`Outbound::install`] puts its history first. No socket is attached yet.
pub fn claiming(limits: SeatLimits) -> Outbound {
    let (out, _) = channel(limits);
    {
        let mut i = out.lock();
        i.mode = Mode::Claiming(Vec::new());
        i.socket = 0;
    }
    out
}

impl Outbound {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends a frame: numbered, kept, and written to the attached socket if there is one.
    /// Returns false if the client is too slow (then it is being disconnected; the frame is
    /// kept for a resume if the bounds allow).
    pub fn send(&self, frame: String) -> bool {
        let mut i = self.lock();
        match &mut i.mode {
            Mode::Live => {}
            Mode::Claiming(waiting) => {
                if waiting.len() < self.shared.limits.frames {
                    waiting.push(frame);
                } else {
                    i.lost = true;
                }
                return true;
            }
            Mode::Forward(f) => {
                let f = f.clone();
                drop(i);
                f(frame);
                return true;
            }
        }
        let was = i.overflowed;
        i.push(frame, &self.shared.limits);
        if i.socket != 0 && (i.overflowed || i.next_seq - 1 - i.written > self.shared.limits.queue as u64) {
            let first = !was;
            i.overflowed = true;
            drop(i);
            if first {
                telemetry::slow_consumer();
                self.shared.kill.notify_waiters();
            }
            return false;
        }
        let wake = i.socket != 0 && std::mem::take(&mut i.parked);
        drop(i);
        if wake {
            self.shared.wake.notify_waiters();
        }
        true
    }

    /// Sends a frame to the attached socket only, after the frames sent so far: not
    /// numbered, not kept. False (dropped) when no socket is attached.
    pub fn send_raw(&self, frame: String) -> bool {
        self.push_raw(Out::Text(Bytes::from(frame)))
    }

    /// Closes the attached socket after the frames sent so far.
    pub fn close(&self, code: u16, reason: &'static str) -> bool {
        self.push_raw(Out::Close(Box::new(Closing { code, reason })))
    }

    fn push_raw(&self, item: Out) -> bool {
        let mut i = self.lock();
        if i.socket == 0 {
            return false;
        }
        let after = i.next_seq - 1;
        i.raw.push_back((after, item));
        drop(i);
        self.shared.wake.notify_waiters();
        true
    }

    /// Whether the seat is between nodes: moved away (its frames are forwarded) or arriving
    /// (its frames wait for its history). Either way a frame for it goes into this buffer.
    pub fn is_moving(&self) -> bool {
        matches!(self.lock().mode, Mode::Forward(_) | Mode::Claiming(_))
    }

    /// True once the attached socket's client fell too far behind.
    pub fn is_overflowed(&self) -> bool {
        self.lock().overflowed
    }

    /// The client has every frame up to `seq`: they need not be kept.
    pub fn ack(&self, seq: u64) {
        let mut i = self.lock();
        let upto = seq.min(i.written);
        i.trim_to(upto);
    }

    /// Whether a socket that has processed every frame up to `last_seq` could attach (the
    /// checks of `attach`, changing nothing).
    pub fn check_resume(&self, last_seq: u64) -> Result<(), ResumeFailure> {
        let i = self.lock();
        i.can_resume(last_seq)
    }

    /// Attaches a new socket that has processed every frame up to `last_seq` (a resume; the
    /// old socket, if any, reads a close 4001 next). `hello` (the `connected` frame) goes
    /// first, then every kept frame after `last_seq`, then live ones.
    pub fn attach(&self, last_seq: u64, hello: String) -> Result<SeatReader, ResumeFailure> {
        let mut i = self.lock();
        i.can_resume(last_seq)?;
        i.trim_to(last_seq);
        telemetry::replayed((i.next_seq - 1 - last_seq) as usize);
        i.written = last_seq;
        i.sockets += 1;
        i.socket = i.sockets;
        i.raw.clear();
        i.raw.push_back((last_seq, Out::Text(Bytes::from(hello))));
        i.overflowed = false;
        let socket = i.socket;
        drop(i);
        self.shared.wake.notify_waiters();
        Ok(SeatReader { shared: self.shared.clone(), socket, ended: false })
    }

    /// The socket `socket` is gone; true if it was the attached one (the seat is now away).
    pub fn detach(&self, socket: u64) -> bool {
        let mut i = self.lock();
        if i.socket != socket || socket == 0 {
            return false;
        }
        i.socket = 0;
        i.raw.clear();
        i.overflowed = false;
        true
    }

    /// The attached socket (0: none).
    pub fn socket(&self) -> u64 {
        self.lock().socket
    }

    /// Hands the seat's history over (to another node) and forwards whatever is sent here
    /// from now on with `forward`: the frames after `last_seq` and the next `seq`.
    pub fn forward(&self, last_seq: u64, forward: Forward) -> Result<(u64, Vec<(u64, String)>), ResumeFailure> {
        let mut i = self.lock();
        i.can_resume(last_seq)?;
        i.trim_to(last_seq);
        let frames = i.frames.drain(..).map(|(s, b)| (s, String::from_utf8(b.to_vec()).unwrap_or_default())).collect();
        i.bytes = 0;
        i.mode = Mode::Forward(forward);
        i.socket = 0;
        i.raw.clear();
        let next = i.next_seq;
        drop(i);
        self.shared.wake.notify_waiters();
        Ok((next, frames))
    }

    /// Installs a seat's history from its old node (`frames` already numbered) and numbers
    /// what waited meanwhile after it. The seat then waits for its socket (`attach`).
    pub fn install(&self, next_seq: u64, frames: Vec<(u64, String)>) {
        let mut i = self.lock();
        let waiting = match std::mem::replace(&mut i.mode, Mode::Live) {
            Mode::Claiming(w) => w,
            _ => Vec::new(),
        };
        i.next_seq = next_seq;
        i.written = frames.first().map_or(next_seq - 1, |(s, _)| s - 1);
        for (s, f) in frames {
            i.bytes += f.len();
            i.frames.push_back((s, Bytes::from(f)));
        }
        let limits = self.shared.limits;
        for f in waiting {
            i.push(f, &limits);
        }
    }

    /// Frames kept right now and their bytes (metrics, tests).
    pub fn kept(&self) -> (usize, usize) {
        let i = self.lock();
        (i.frames.len(), i.bytes)
    }
}

impl SeatReader {
    /// The next item for this socket; None once another socket replaced it or it was
    /// detached (a replaced socket reads a close 4001 first).
    pub async fn recv(&mut self) -> Option<Out> {
        let shared = self.shared.clone();
        loop {
            let notified = shared.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(item) = self.take() {
                return item;
            }
            notified.await;
        }
    }

    /// An item ready right now (for batching writes).
    pub fn try_recv(&mut self) -> Option<Out> {
        self.take_now(false).flatten()
    }

    /// Some(item) when there is an answer now; None when the reader must wait (it is then
    /// marked parked, so that the next frame wakes it).
    fn take(&mut self) -> Option<Option<Out>> {
        self.take_now(true)
    }

    fn take_now(&mut self, park: bool) -> Option<Option<Out>> {
        if self.ended {
            return Some(None);
        }
        let mut i = self.shared.inner.lock().unwrap_or_else(|p| p.into_inner());
        if i.socket != self.socket {
            self.ended = true;
            // Replaced by a resume on another socket (detached sockets stop reading first).
            return Some(Some(Out::Close(Box::new(Closing { code: 4001, reason: "resumed elsewhere" }))));
        }
        if i.raw.front().is_some_and(|(after, _)| *after <= i.written) {
            let item = i.raw.pop_front().map(|(_, o)| Some(o));
            if i.raw.is_empty() {
                // Raw items are rare (a `connected` per attach, a close): keep no room for them.
                i.raw = VecDeque::new();
            }
            return item;
        }
        let next = i.written + 1;
        let base = i.base();
        if next >= base && next < i.next_seq {
            if let Some(b) = i.frames.get((next - base) as usize).map(|(_, b)| b.clone()) {
                i.written = next;
                return Some(Some(Out::Text(b)));
            }
        }
        // Under the same lock as the check: a frame sent after it sees the flag.
        i.parked |= park;
        None
    }

    /// A handle that completes when the client falls too far behind.
    pub fn overflow_signal(&self) -> OverflowSignal {
        OverflowSignal(self.shared.clone())
    }

    /// Which socket this is (for `Outbound::detach`).
    pub fn socket(&self) -> u64 {
        self.socket
    }
}

/// Completes when the attached socket's client is a slow consumer.
#[derive(Clone)]
pub struct OverflowSignal(Arc<Shared>);

impl OverflowSignal {
    pub async fn fired(&self) {
        loop {
            let notified = self.0.kill.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.0.inner.lock().unwrap_or_else(|p| p.into_inner()).overflowed {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests;
