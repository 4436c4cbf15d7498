//! WebSocket frames: `{"event": "<name>", "data": {...}}` text frames.
//!
//! Owns decoding client events (with the contract's BAD_REQUEST / UNKNOWN_EVENT distinction)
//! and encoding server events. Offer, answer and candidate payloads stay raw JSON text: they
//! are relayed byte for byte, never parsed into a model.
//! Must not: check sizes (the socket edge does that before decoding) or apply rules.

mod decode;
mod encode;

pub use decode::{decode, ClientEvent, DecodeError, MediaState, RelayKind, CHAT_MAX_CHARS};
pub use encode::{relay_frame, Participant, Resumed, ServerFrame, Waiter};

#[cfg(test)]
mod tests;
