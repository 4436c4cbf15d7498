//! A request body with a deadline for the whole body (`http.body_timeout_ms`), counted from
//! the moment its head was read. Not per byte: a client trickling one byte at a time is cut
//! when the deadline passes, and the handler reading it sees an error (the REST edge answers
//! 400 and hyper closes the connection, since the body was not read to its end).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::Sleep;

/// What reading a body can fail with: the client's connection broke, or the deadline passed.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body: {0}")]
    Read(#[from] hyper::Error),
    #[error("request body not received within {0:?}")]
    Deadline(Duration),
}

/// `Incoming`, cut at a deadline.
pub struct DeadlineBody {
    inner: Incoming,
    limit: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl DeadlineBody {
    /// `inner`, which must arrive in full within `limit` from now.
    pub fn new(inner: Incoming, limit: Duration) -> DeadlineBody {
        DeadlineBody { inner, limit, deadline: Box::pin(tokio::time::sleep(limit)) }
    }
}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(BodyError::from)));
        }
        if self.inner.is_end_stream() {
            return Poll::Ready(None);
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyError::Deadline(self.limit)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
