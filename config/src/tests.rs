use super::*;

#[test]
fn defaults_are_valid() {
    let s = Settings::default();
    s.validate().unwrap();
    assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(s.limits.max_frame_bytes, 65_536);
    assert!(s.auth.jwt_secret.is_none(), "no built-in secret");
}

#[test]
fn seed_env_names_apply() {
    let mut s = Settings::default();
    s.apply_env([
        ("VIDEO_CALL_JWT_SECRET", "0123456789abcdef-secret"),
        ("STUN_SERVER_URL", "stun:a:3478, stun:b:3478"),
        ("TURN_SERVER_URL", "turn:t:3478"),
        ("VIDEO_CALL_RATE_LIMIT", "10"),
        ("SOCKET_CONNECTION_LIMIT", "5"),
        ("AUDIT_LOG_ENABLED", "false"),
        ("SIGNALGRID_LISTEN", "127.0.0.1:0"),
        ("UNRELATED", "x"),
    ])
    .unwrap();
    assert_eq!(s.auth.jwt_secret.as_deref(), Some("0123456789abcdef-secret"));
    assert_eq!(s.ice.stun_urls, vec!["stun:a:3478", "stun:b:3478"]);
    assert_eq!(s.ice.turn_url.as_deref(), Some("turn:t:3478"));
    assert_eq!(s.limits.rest_per_minute, 10);
    assert_eq!(s.limits.max_connections, 5);
    assert!(!s.log.audit_enabled);
    assert_eq!(s.listen.port(), 0);
}

#[test]
fn bad_value_names_the_key_and_variable() {
    let mut s = Settings::default();
    let err = s.apply_env([("SOCKET_CONNECTION_LIMIT", "lots")]).unwrap_err().to_string();
    assert!(err.contains("limits.max_connections"), "{err}");
    assert!(err.contains("SOCKET_CONNECTION_LIMIT"), "{err}");
}

#[test]
fn file_sets_nested_keys_and_rejects_unknown_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sg.toml");
    std::fs::write(
        &path,
        "listen = \"127.0.0.1:9000\"\n[limits]\nmax_frame_bytes = 1024\n[rooms]\ngrace_minutes = 5\n",
    )
    .unwrap();
    let s = Settings::from_file(&path).unwrap();
    assert_eq!(s.listen.port(), 9000);
    assert_eq!(s.limits.max_frame_bytes, 1024);
    assert_eq!(s.rooms.grace_minutes, 5);
    assert_eq!(s.rooms.join_window_minutes, 15, "unset keys keep defaults");

    std::fs::write(&path, "[limits]\nmax_frames = 1\n").unwrap();
    let err = Settings::from_file(&path).unwrap_err().to_string();
    assert!(err.contains("max_frames"), "{err}");
}

#[test]
fn validate_catches_relations() {
    let mut s = Settings::default();
    s.tls.cert_path = Some("c.pem".into());
    assert!(s.validate().unwrap_err().to_string().contains("tls"));
    let mut s = Settings::default();
    s.auth.jwt_secret = Some("short".into());
    assert!(s.validate().unwrap_err().to_string().contains("auth.jwt_secret"));
}

#[test]
fn debug_hides_secrets() {
    let mut s = Settings::default();
    s.auth.jwt_secret = Some("super-secret-value-123".into());
    s.ice.turn_secret = Some("turn-secret-value".into());
    s.cluster.nats_password = Some("nats-pass-value".into());
    s.store.mongodb_uri = Some("mongodb://user:mongo-pass-value@h/db".into());
    s.store.encryption_keys = Some("k1:c2VhbGluZy1rZXktdmFsdWUtMDAwMDAwMDAwMDAwMDA=".into());
    let shown = format!("{s:?}");
    assert!(!shown.contains("c2VhbGluZy1rZXktdmFsdWUtMDAwMDAwMDAwMDAwMDA="));
    assert!(!shown.contains("super-secret-value-123"));
    assert!(!shown.contains("turn-secret-value"));
    assert!(!shown.contains("nats-pass-value"));
    assert!(!shown.contains("mongo-pass-value"));
}

#[test]
fn cluster_and_store_keys() {
    let mut s = Settings::default();
    s.apply_env([
        ("SIGNALGRID_NATS_URL", "nats://127.0.0.1:4222"),
        ("SIGNALGRID_CLUSTER", "blue"),
        ("SIGNALGRID_DEAD_AFTER_MS", "3000"),
        ("SIGNALGRID_MONGODB_URI", "mongodb://127.0.0.1:27017"),
    ])
    .unwrap();
    s.validate().unwrap();
    assert_eq!(s.cluster.nats_url.as_deref(), Some("nats://127.0.0.1:4222"));
    assert_eq!(s.cluster.name, "blue");
    assert_eq!(s.cluster.dead_after_ms, 3000);
    assert_eq!(s.store.mongodb_uri.as_deref(), Some("mongodb://127.0.0.1:27017"));
    s.cluster.name = "a.b".into();
    assert!(s.validate().unwrap_err().to_string().contains("cluster.name"));
}

#[test]
fn audience_and_issuer_from_env_and_file() {
    let mut s = Settings::default();
    assert!(s.auth.audience.is_empty() && s.auth.issuer.is_empty(), "unset by default: not checked");
    s.apply_env([("SIGNALGRID_JWT_AUDIENCE", "signalgrid, video"), ("SIGNALGRID_JWT_ISSUER", "https://platform.test")])
        .unwrap();
    assert_eq!(s.auth.audience, vec!["signalgrid", "video"]);
    assert_eq!(s.auth.issuer, vec!["https://platform.test"]);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sg.toml");
    std::fs::write(&path, "[auth]\naudience = \"signalgrid\"\nissuer = [\"a\", \"b\"]\n").unwrap();
    let s = Settings::from_file(&path).unwrap();
    assert_eq!(s.auth.audience, vec!["signalgrid"]);
    assert_eq!(s.auth.issuer, vec!["a", "b"]);

    std::fs::write(&path, "[auth]\naudience = [\"\"]\n").unwrap();
    let err = Settings::from_file(&path).unwrap().validate().unwrap_err().to_string();
    assert!(err.contains("auth.audience"), "{err}");
}

#[test]
fn byte_budget_keys_and_rule() {
    let mut s = Settings::default();
    s.apply_env([("SIGNALGRID_WS_BYTES_RATE", "1000"), ("SIGNALGRID_WS_BURST_BYTES", "70000")]).unwrap();
    s.validate().unwrap();
    assert_eq!((s.limits.ws_bytes_per_sec, s.limits.ws_burst_bytes), (1000, 70_000));
    // One frame of the largest accepted size must fit in the byte burst.
    s.limits.max_frame_bytes = 70_001;
    assert!(s.validate().unwrap_err().to_string().contains("limits.ws_burst_bytes"));
}

#[test]
fn urls_lose_their_passwords_in_debug_output() {
    assert_eq!(redact_url("nats://u:pw@h:4222,nats://h2:4222"), "nats://u:<redacted>@h:4222,nats://h2:4222");
    assert_eq!(redact_url("nats://tok@h:4222"), "nats://<redacted>@h:4222");
    assert_eq!(redact_url("mongodb://h/db?x=1"), "mongodb://h/db?x=1");
    let mut s = Settings::default();
    s.cluster.nats_url = Some("nats://u:hunter2-secret@h:4222".into());
    assert!(!format!("{s:?}").contains("hunter2-secret"));
}

#[test]
fn proxy_addresses_are_addresses_or_ranges() {
    let mut s = Settings::default();
    s.set("http.proxy_addresses", "10.0.0.0/8, 192.0.2.7,2001:db8::/32", "test").unwrap();
    let [net, one, v6] = s.http.proxy_addresses[..] else { panic!("three ranges") };
    assert!(net.contains("10.200.1.2".parse().unwrap()));
    assert!(net.contains("::ffff:10.1.1.1".parse().unwrap()));
    assert!(!net.contains("11.0.0.1".parse().unwrap()));
    assert!(one.contains("192.0.2.7".parse().unwrap()) && !one.contains("192.0.2.8".parse().unwrap()));
    assert!(v6.contains("2001:db8::1".parse().unwrap()) && !v6.contains("2001:db9::1".parse().unwrap()));
    assert!("0.0.0.0/0".parse::<AddressRange>().unwrap().contains("8.8.8.8".parse().unwrap()));
    assert!(s.set("http.proxy_addresses", "10.0.0.0/33", "test").is_err());
    assert!(s.set("http.proxy_addresses", "lb.example", "test").is_err());
    let toml: Settings = toml::from_str("[http]\nproxy_addresses = [\"10.0.0.1\"]").unwrap();
    assert_eq!(toml.http.proxy_addresses.len(), 1);
}

#[test]
fn connections_must_fit_in_the_open_files_limit() {
    let mut s = Settings::default();
    s.limits.max_connections = 1000;
    s.check_open_files(1000 + NON_SOCKET_FILES).unwrap();
    let err = s.check_open_files(1000 + NON_SOCKET_FILES - 1).unwrap_err().to_string();
    assert!(err.contains("limits.max_connections") && err.contains("SOCKET_CONNECTION_LIMIT"), "{err}");
    assert!(err.contains("1000 connections") && err.contains(&format!("of {}", 999 + NON_SOCKET_FILES)), "{err}");
    let err = s.check_open_files(10).unwrap_err().to_string();
    assert!(err.contains("at most 0"), "{err}");
}

#[test]
fn drain_batches_and_connect_rate() {
    let mut s = Settings::default();
    assert_eq!((s.drain.batch_size, s.drain.batch_interval_ms), (500, 500));
    assert_eq!((s.limits.connect_rate, s.limits.connect_burst), (1000.0, 2000));
    s.apply_env([
        ("SIGNALGRID_DRAIN_BATCH_SIZE", "5"),
        ("SIGNALGRID_DRAIN_BATCH_INTERVAL_MS", "60000"),
        ("SIGNALGRID_CONNECT_RATE", "0.5"),
        ("SIGNALGRID_CONNECT_BURST", "2"),
    ])
    .unwrap();
    s.validate().unwrap();
    assert_eq!((s.drain.batch_size, s.drain.batch_interval_ms), (5, 60_000));
    assert_eq!((s.limits.connect_rate, s.limits.connect_burst), (0.5, 2));

    let toml: Settings =
        toml::from_str("[drain]\nbatch_size = 7\n[limits]\nconnect_rate = 20\nconnect_burst = 9").unwrap();
    assert_eq!((toml.drain.batch_size, toml.drain.batch_interval_ms), (7, 500));
    assert_eq!((toml.limits.connect_rate, toml.limits.connect_burst), (20.0, 9));

    s.drain.batch_size = 0;
    assert!(s.validate().unwrap_err().to_string().contains("drain.batch_size"));
    s.drain.batch_size = 1;
    for bad in [0.0, 0.0009, -1.0, f64::NAN, f64::INFINITY] {
        s.limits.connect_rate = bad;
        assert!(s.validate().unwrap_err().to_string().contains("limits.connect_rate"), "{bad}");
    }
    s.limits.connect_rate = 1.0;
    for bad in [0, 1_000_001] {
        s.limits.connect_burst = bad;
        assert!(s.validate().unwrap_err().to_string().contains("limits.connect_burst"), "{bad}");
    }
}

#[test]
fn webhook_keys_and_rules() {
    let mut s = Settings::default();
    assert!(!s.webhooks.enabled());
    assert_eq!((s.webhooks.max_age_secs, s.webhooks.retry_initial_ms), (86_400, 1_000));
    s.apply_env([
        ("SIGNALGRID_WEBHOOK_URLS", "https://a.test/hooks, http://b.test/h"),
        ("SIGNALGRID_WEBHOOK_SECRET", "whsec-0123456789abcdef"),
        ("SIGNALGRID_WEBHOOK_MAX_AGE_SECS", "3600"),
        ("SIGNALGRID_WEBHOOK_RETRY_INITIAL_MS", "10"),
        ("SIGNALGRID_WEBHOOK_RETRY_MAX_MS", "100"),
        ("SIGNALGRID_WEBHOOK_TIMEOUT_MS", "500"),
        ("SIGNALGRID_WEBHOOK_MAX_WAITING", "7"),
        ("SIGNALGRID_WEBHOOK_POLL_MS", "20"),
        ("SIGNALGRID_WEBHOOK_RETENTION_DAYS", "3"),
    ])
    .unwrap();
    s.validate().unwrap();
    assert_eq!(s.webhooks.urls, vec!["https://a.test/hooks", "http://b.test/h"]);
    assert_eq!(s.webhooks.max_waiting, 7);
    assert_eq!(s.retention.webhook_days, 3);
    assert!(!format!("{:?}", s.webhooks).contains("whsec-0123456789abcdef"), "the secret stays out of Debug");
    let bad = |f: &dyn Fn(&mut Settings), key: &str| {
        let mut t = s.clone();
        f(&mut t);
        let err = t.validate().unwrap_err().to_string();
        assert!(err.contains(key), "{err}");
    };
    bad(&|t| t.webhooks.secret = None, "webhooks.secret");
    bad(&|t| t.webhooks.secret = Some("short".into()), "webhooks.secret");
    bad(&|t| t.webhooks.urls = vec!["ftp://x".into()], "webhooks.urls");
    bad(&|t| t.webhooks.retry_max_ms = 5, "webhooks.retry_max_ms");
    bad(&|t| t.webhooks.timeout_ms = 0, "webhooks.timeout_ms");
}
