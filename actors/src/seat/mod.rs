//! Seats: a member's place on a node that outlives its socket (PROTOCOL.md section 6).
//!
//! A seat is the ConnectionActor (see `connection`) and its `Outbound` buffer: the buffer
//! numbers every frame (`seq`), keeps what was sent until the client acknowledges it or the
//! bounds say so, and keeps accepting frames while no socket is attached. A socket attaches
//! to a seat when it connects and again on every resume; when it goes without a clean close
//! the seat is *away* for the resume window. This module holds what the seat's pieces share:
//! the resume tokens and the reasons a resume fails.

mod token;

pub use token::{ResumeKeys, TokenClaims};

use serde::{Deserialize, Serialize};

/// Why a resume failed: `RESUME_FAILED`'s `details.reason` (PROTOCOL.md section 10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResumeFailure {
    /// The seat's window ran out (or it left): nothing to resume.
    #[error("the resume window has passed")]
    Expired,
    /// Not a token this cluster issued.
    #[error("unknown resume token")]
    Unknown,
    /// The token was used already (each `connected` brings a new one).
    #[error("resume token already used")]
    Used,
    /// The token belongs to another user than the connecting one.
    #[error("resume token of another user")]
    WrongUser,
    /// `lastSeq` is past the last frame the seat was sent.
    #[error("lastSeq is ahead of what was sent")]
    Ahead,
    /// Frames owed to the client are no longer buffered.
    #[error("frames owed are beyond the buffer's bound")]
    Overflow,
}

impl ResumeFailure {
    /// The contract's `details.reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            ResumeFailure::Expired => "expired",
            ResumeFailure::Unknown => "unknown",
            ResumeFailure::Used => "used",
            ResumeFailure::WrongUser => "wrong_user",
            ResumeFailure::Ahead => "ahead",
            ResumeFailure::Overflow => "overflow",
        }
    }
}
