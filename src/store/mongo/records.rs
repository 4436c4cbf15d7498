//! Call records (start, end, access, audit entry) on the MongoDB store: written directly
//! while MongoDB answers and nothing waits in the outbox, else queued in the outbox
//! ([`super::replay`]) and answered from a bounded cache of the sessions this node last saw.

use chrono::{DateTime, Utc};
use signalgrid_actors::ports::{EndOutcome, StoreError};
use signalgrid_actors::rules::call_duration_minutes;
use signalgrid_actors::session::{AuditEntry, Session, SessionStatus};

use super::super::outbox::OutboxOp;
use super::{docs, Inner};

/// Sessions remembered for answering call records while MongoDB is away.
const CACHE_MAX: usize = 10_000;

impl Inner {
    pub(super) fn remember(&self, s: &Session) {
        let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if c.len() >= CACHE_MAX && !c.contains_key(&s.id) {
            c.clear();
        }
        c.insert(s.id.clone(), s.clone());
    }

    pub(super) fn cached(&self, id: &str) -> Option<Session> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    /// `Store::mark_started`.
    pub(super) async fn mark_started(&self, id: &str, at: DateTime<Utc>) -> Result<Option<Session>, StoreError> {
        let cause = match self.write_or_queue(self.db.mark_started(id, at)).await? {
            Ok(s) => {
                s.iter().for_each(|s| self.remember(s));
                return Ok(s);
            }
            Err(e) => e,
        };
        let op = OutboxOp::Start { session_id: id.to_owned(), at_ms: at.timestamp_millis() };
        // Without a session seen before, the record still queues but the caller hears 503.
        let Some(mut s) = self.cached(id) else {
            self.queue(op, cause.clone())?;
            return Err(cause);
        };
        self.queue(op, cause)?;
        s.video_call_started.get_or_insert(at);
        if !matches!(s.status, SessionStatus::Completed | SessionStatus::Cancelled) {
            s.status = SessionStatus::InProgress;
        }
        self.remember(&s);
        Ok(Some(s))
    }

    /// `Store::mark_ended`.
    pub(super) async fn mark_ended(&self, id: &str, at: DateTime<Utc>) -> Result<Option<EndOutcome>, StoreError> {
        let cause = match self.write_or_queue(self.db.mark_ended(id, at)).await? {
            Ok(out) => {
                if let Some(EndOutcome::Ended(s)) = &out {
                    self.remember(s);
                }
                return Ok(out);
            }
            Err(e) => e,
        };
        let op = OutboxOp::End { session_id: id.to_owned(), at_ms: at.timestamp_millis() };
        // Only a call this node saw start can be answered without MongoDB. The end is queued
        // all the same, so the record is not lost (replayed, it changes nothing if the call
        // never started or has ended already); the caller hears 503.
        let Some(mut s) = self.cached(id).filter(|s| s.video_call_started.is_some()) else {
            self.queue(op, cause.clone())?;
            return Err(cause);
        };
        if s.video_call_ended.is_none() {
            self.queue(op, cause)?;
            let started = s.video_call_started.unwrap_or(at);
            s.video_call_ended = Some(at);
            s.call_duration = Some(call_duration_minutes(started, at));
            s.status = SessionStatus::Completed;
            self.remember(&s);
        }
        Ok(Some(EndOutcome::Ended(s)))
    }

    /// `Store::touch`.
    pub(super) async fn touch(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let cause = match self.write_or_queue(self.db.touch(id, at)).await? {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        self.queue(OutboxOp::Touch { session_id: id.to_owned(), at_ms: at.timestamp_millis() }, cause)?;
        if let Some(mut s) = self.cached(id) {
            s.last_accessed_at = Some(s.last_accessed_at.map_or(at, |t| t.max(at)));
            s.access_count += 1;
            self.remember(&s);
        }
        Ok(())
    }

    /// `Store::audit`.
    pub(super) async fn audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        let op = docs::audit_op(&entry, self.db.keys());
        let cause = match self.write_or_queue(self.db.audit(&op)).await? {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        self.queue(op, cause)
    }
}
