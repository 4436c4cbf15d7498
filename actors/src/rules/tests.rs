//! Property tests of the join rules, the time window's edges and the duration calculation.

use super::*;
use crate::identity::Role;
use crate::session::Party;
use chrono::TimeZone;
use proptest::prelude::*;

fn session(status: SessionStatus, pay: PaymentStatus, kind: SessionType) -> Session {
    let date = Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap();
    Session {
        id: "0123456789abcdef01234567".into(),
        client: Party { id: "client-1".into(), name: "C".into() },
        psychologist: Party { id: "psy-1".into(), name: "P".into() },
        session_date: date,
        duration_minutes: 50,
        session_type: kind,
        status,
        payment_status: pay,
        meeting_link: Some("room-1".into()),
        is_video_call: true,
        video_call_started: None,
        video_call_ended: None,
        call_duration: None,
        recording_enabled: false,
        recording_url: None,
        last_accessed_at: None,
        access_count: 0,
        created_at: date,
        waiting_room: false,
    }
}

fn who(id: &str, role: Role) -> Identity {
    Identity { user_id: id.into(), role, name: None }
}

fn status() -> impl Strategy<Value = SessionStatus> {
    prop_oneof![
        Just(SessionStatus::Scheduled),
        Just(SessionStatus::InProgress),
        Just(SessionStatus::Completed),
        Just(SessionStatus::Cancelled)
    ]
}
fn payment() -> impl Strategy<Value = PaymentStatus> {
    prop_oneof![
        Just(PaymentStatus::Paid),
        Just(PaymentStatus::Pending),
        Just(PaymentStatus::Failed),
        Just(PaymentStatus::Refunded)
    ]
}
fn caller() -> impl Strategy<Value = Identity> {
    prop_oneof![
        Just(who("client-1", Role::Client)),
        Just(who("psy-1", Role::Psychologist)),
        Just(who("stranger", Role::Client)),
        Just(who("other-psy", Role::Psychologist)),
        Just(who("ops", Role::Admin)),
    ]
}

/// The contract's table, written out independently of `check_session`'s code.
fn expected(s: &Session, w: &Identity, offset_min: i64, others: usize, p: &JoinPolicy) -> Result<(), ErrorCode> {
    let participant = w.user_id == "client-1" || w.user_id == "psy-1" || w.role == Role::Admin;
    let bypass = w.role == Role::Admin && p.admin_bypass;
    if !participant {
        Err(ErrorCode::Forbidden)
    } else if matches!(s.status, SessionStatus::Completed | SessionStatus::Cancelled) {
        Err(ErrorCode::SessionClosed)
    } else if !bypass && s.payment_status != PaymentStatus::Paid {
        Err(ErrorCode::PaymentRequired)
    } else if !bypass && (offset_min < -p.window_before_minutes || offset_min > 50 + p.grace_after_minutes) {
        Err(ErrorCode::OutsideTimeWindow)
    } else if others >= capacity(s.session_type, p) {
        Err(ErrorCode::RoomFull)
    } else {
        Ok(())
    }
}

proptest! {
    #[test]
    fn join_rules_follow_the_table_in_order(
        st in status(), pay in payment(), w in caller(),
        group in any::<bool>(), offset_min in -120i64..200, others in 0usize..12,
        bypass in any::<bool>(),
    ) {
        let kind = if group { SessionType::Group } else { SessionType::Individual };
        let s = session(st, pay, kind);
        let p = JoinPolicy { admin_bypass: bypass, ..JoinPolicy::default() };
        let now = s.session_date + Duration::minutes(offset_min);
        let got = check_can_join(&s.id, Some(&s), &w, now, &p, others);
        prop_assert_eq!(got, expected(&s, &w, offset_min, others, &p));
    }

    #[test]
    fn only_paid_sessions_open(pay in payment(), offset_min in -15i64..=80) {
        let s = session(SessionStatus::Scheduled, pay, SessionType::Individual);
        let now = s.session_date + Duration::minutes(offset_min);
        let got = check_session(&s, &who("client-1", Role::Client), now, &JoinPolicy::default());
        prop_assert_eq!(got.is_ok(), pay == PaymentStatus::Paid);
    }

    #[test]
    fn window_edges_are_inclusive_to_the_millisecond(before in 0i64..60, grace in 0i64..60, dur in 0i64..120) {
        let mut s = session(SessionStatus::Scheduled, PaymentStatus::Paid, SessionType::Individual);
        s.duration_minutes = dur;
        let p = JoinPolicy { window_before_minutes: before, grace_after_minutes: grace, ..JoinPolicy::default() };
        let c = who("psy-1", Role::Psychologist);
        let (opens, closes) = join_window(&s, &p);
        prop_assert_eq!(opens, s.session_date - Duration::minutes(before));
        prop_assert_eq!(closes, s.session_date + Duration::minutes(dur + grace));
        let ms = Duration::milliseconds(1);
        prop_assert_eq!(check_session(&s, &c, opens, &p), Ok(()));
        prop_assert_eq!(check_session(&s, &c, closes, &p), Ok(()));
        prop_assert_eq!(check_session(&s, &c, opens - ms, &p), Err(ErrorCode::OutsideTimeWindow));
        prop_assert_eq!(check_session(&s, &c, closes + ms, &p), Err(ErrorCode::OutsideTimeWindow));
    }

    #[test]
    fn duration_rounds_half_up_and_is_never_negative(ms in -10_000_000i64..10_000_000) {
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let d = call_duration_minutes(start, start + Duration::milliseconds(ms));
        prop_assert!(d >= 0);
        if ms <= 0 {
            prop_assert_eq!(d, 0);
        } else {
            let exact = ms as f64 / 60_000.0;
            prop_assert!((d as f64 - exact).abs() <= 0.5);
            let frac = (ms % 60_000) as f64 / 60_000.0;
            if frac >= 0.5 { prop_assert_eq!(d, ms / 60_000 + 1) } else { prop_assert_eq!(d, ms / 60_000) }
        }
    }

    #[test]
    fn minutes_until_is_a_ceiling(secs in -7200i64..7200) {
        let date = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        let m = minutes_until(date, date - Duration::seconds(secs));
        if secs <= 0 { prop_assert_eq!(m, 0) } else { prop_assert_eq!(m, (secs + 59) / 60) }
    }

    #[test]
    fn session_ids_must_be_24_hex(s in "[0-9a-fA-F]{24}", bad in "[0-9a-z]{0,30}") {
        prop_assert!(valid_session_id(&s));
        let bad_is_valid = bad.len() == 24 && bad.bytes().all(|b| b.is_ascii_hexdigit());
        prop_assert_eq!(valid_session_id(&bad), bad_is_valid);
    }
}

#[test]
fn malformed_id_and_missing_session_come_first() {
    let w = who("client-1", Role::Client);
    let now = Utc::now();
    let p = JoinPolicy::default();
    assert_eq!(check_can_join("nope", None, &w, now, &p, 0), Err(ErrorCode::InvalidSessionId));
    assert_eq!(check_can_join("0123456789abcdef01234567", None, &w, now, &p, 0), Err(ErrorCode::SessionNotFound));
}

#[test]
fn duration_examples() {
    let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    assert_eq!(call_duration_minutes(t, t + Duration::seconds(29)), 0);
    assert_eq!(call_duration_minutes(t, t + Duration::seconds(30)), 1);
    assert_eq!(call_duration_minutes(t, t + Duration::seconds(45 * 60 + 29)), 45);
    assert_eq!(call_duration_minutes(t, t + Duration::seconds(45 * 60 + 30)), 46);
}
