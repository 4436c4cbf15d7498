//! ICE settings handed to clients: the STUN list, and TURN with static or time-limited
//! credentials (the TURN REST convention: username `<expiry>:<userId>`, credential
//! base64(HMAC-SHA1(secret, username))).

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha1::Sha1;
use signalgrid_config::IceSettings;

/// The `GET /api/video-calls/config` body for `user_id` at unix time `now`.
pub fn ice_config(cfg: &IceSettings, user_id: &str, now: i64) -> Value {
    let mut servers: Vec<Value> = cfg.stun_urls.iter().map(|u| json!({ "urls": u })).collect();
    let mut ttl = None;
    if let Some(url) = &cfg.turn_url {
        if let Some(secret) = &cfg.turn_secret {
            let ttl_secs = cfg.turn_ttl_secs as i64;
            let username = format!("{}:{}", now + ttl_secs, user_id);
            servers
                .push(json!({ "urls": url, "username": username, "credential": turn_credential(secret, &username) }));
            ttl = Some(ttl_secs);
        } else if let (Some(u), Some(p)) = (&cfg.turn_username, &cfg.turn_password) {
            servers.push(json!({ "urls": url, "username": u, "credential": p }));
        } else {
            servers.push(json!({ "urls": url }));
        }
    }
    let mut body = json!({ "iceServers": servers });
    if let Some(ttl) = ttl {
        body["ttl"] = json!(ttl);
    }
    body
}

/// base64(HMAC-SHA1(secret, username)).
pub fn turn_credential(secret: &str, username: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any size");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2202_hmac_sha1_vector() {
        // RFC 2202 test case 2: key "Jefe", data "what do ya want for nothing?".
        let expected =
            base64::engine::general_purpose::STANDARD.encode(hex_bytes("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"));
        assert_eq!(turn_credential("Jefe", "what do ya want for nothing?"), expected);
    }

    fn hex_bytes(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn time_limited_turn() {
        let cfg = IceSettings {
            turn_url: Some("turn:t:3478".into()),
            turn_secret: Some("s3cret".into()),
            turn_ttl_secs: 600,
            ..IceSettings::default()
        };
        let v = ice_config(&cfg, "u1", 1_000);
        assert_eq!(v["ttl"], 600);
        let turn = &v["iceServers"][1];
        assert_eq!(turn["username"], "1600:u1");
        assert_eq!(turn["credential"], turn_credential("s3cret", "1600:u1"));
    }

    #[test]
    fn static_turn_and_stun() {
        let cfg = IceSettings {
            stun_urls: vec!["stun:a".into(), "stun:b".into()],
            turn_url: Some("turn:t".into()),
            turn_username: Some("user".into()),
            turn_password: Some("pass".into()),
            ..IceSettings::default()
        };
        let v = ice_config(&cfg, "u1", 0);
        assert_eq!(v["iceServers"].as_array().unwrap().len(), 3);
        assert_eq!(v["iceServers"][2]["credential"], "pass");
        assert!(v.get("ttl").is_none());
    }
}
