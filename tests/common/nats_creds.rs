//! Decentralised NATS auth for tests: an operator, a system account and an application account
//! signed with real nkeys, a server configuration that trusts them (memory resolver), and user
//! credentials files (`.creds`: a user JWT and its nkey seed) signed by the account, or by a
//! stranger. What `nsc` would generate, made in the test so that nothing is fetched.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use nkeys::KeyPair;
use serde_json::{json, Value};

/// An operator with its accounts, ready to start a server and to issue users.
pub struct NatsOperator {
    operator: KeyPair,
    system: KeyPair,
    account: KeyPair,
    dir: PathBuf,
}

/// A signed NATS JWT: header `ed25519-nkey`, claims, signature by `issuer`.
fn jwt(issuer: &KeyPair, subject: &str, name: &str, nats: Value) -> String {
    let iat = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let claims = json!({
        "jti": uuid::Uuid::new_v4().simple().to_string().to_uppercase(),
        "iat": iat,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{body}");
    let sig = issuer.sign(signing_input.as_bytes()).unwrap();
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// An account's claims; `jetstream` turns on unlimited JetStream storage for it.
fn account_claims(jetstream: bool) -> Value {
    let storage = if jetstream { -1 } else { 0 };
    json!({
        "limits": {
            "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
            "wildcards": true, "conn": -1, "leaf": -1,
            "mem_storage": storage, "disk_storage": storage, "streams": -1, "consumer": -1,
        },
        "default_permissions": { "pub": {}, "sub": {} },
        "type": "account",
        "version": 2,
    })
}

impl NatsOperator {
    /// A fresh operator; files go under `dir`.
    pub fn new(dir: &Path) -> NatsOperator {
        NatsOperator {
            operator: KeyPair::new_operator(),
            system: KeyPair::new_account(),
            account: KeyPair::new_account(),
            dir: dir.to_owned(),
        }
    }

    /// A server configuration file trusting this operator, with both accounts preloaded.
    pub fn server_config(&self) -> PathBuf {
        let op = &self.operator;
        let operator_jwt = jwt(op, &op.public_key(), "sg-test-operator", json!({"type": "operator", "version": 2}));
        let sys = self.system.public_key();
        let acc = self.account.public_key();
        let sys_jwt = jwt(op, &sys, "SYS", account_claims(false));
        let acc_jwt = jwt(op, &acc, "SIGNALGRID", account_claims(true));
        let conf = format!(
            "operator: \"{operator_jwt}\"\nsystem_account: {sys}\nresolver: MEMORY\n\
             resolver_preload: {{\n  {sys}: \"{sys_jwt}\"\n  {acc}: \"{acc_jwt}\"\n}}\n"
        );
        let path = self.dir.join("operator.conf");
        std::fs::write(&path, conf).unwrap();
        path
    }

    /// A `.creds` file for a new user of the application account.
    pub fn user_creds(&self, name: &str) -> PathBuf {
        self.creds_signed_by(&self.account, name)
    }

    /// A `.creds` file for a user of an account the server has never heard of.
    pub fn stranger_creds(&self, name: &str) -> PathBuf {
        self.creds_signed_by(&KeyPair::new_account(), name)
    }

    fn creds_signed_by(&self, account: &KeyPair, name: &str) -> PathBuf {
        let user = KeyPair::new_user();
        let claims = json!({
            "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
            "type": "user", "version": 2,
        });
        let user_jwt = jwt(account, &user.public_key(), name, claims);
        let seed = user.seed().unwrap();
        let creds = format!(
            "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             NKEY Seed printed below can be used to sign and prove identity.\n\
             NKEYs are sensitive and should be treated as secrets.\n\n\
             -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
             *************************************************************\n"
        );
        let path = self.dir.join(format!("{name}.creds"));
        std::fs::write(&path, creds).unwrap();
        path
    }
}
