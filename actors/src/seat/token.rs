//! Resume tokens: `<payload>.<mac>`, both base64url without padding; the payload is JSON
//! `{"c": socketId, "n": nodeId, "u": userId, "g": generation}` and the MAC an HMAC-SHA256
//! (RFC 2104) over the payload's text with the cluster's resume key. Any node can check a
//! token without asking the one that issued it (that node may be dead); single use comes
//! from the generation, which the seat's holder bumps with every `connected`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::ResumeFailure;
use crate::{ConnId, NodeId};

type HmacSha256 = Hmac<Sha256>;

/// What a resume token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    /// The seat (its `socketId`).
    #[serde(rename = "c")]
    pub conn_id: ConnId,
    /// The node that held the seat when the token was issued.
    #[serde(rename = "n")]
    pub node_id: NodeId,
    #[serde(rename = "u")]
    pub user_id: String,
    /// Which `connected` issued it: only the seat's current generation resumes.
    #[serde(rename = "g")]
    pub generation: u64,
}

/// The key resume tokens are signed with.
#[derive(Clone)]
pub struct ResumeKeys {
    key: Vec<u8>,
}

impl std::fmt::Debug for ResumeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResumeKeys(<secret>)")
    }
}

impl ResumeKeys {
    /// Keys from a secret every node of the cluster shares.
    pub fn from_secret(secret: &[u8]) -> ResumeKeys {
        // A key of its own, derived so that a resume token never works as anything else.
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
        mac.update(b"signalgrid resume token v1");
        ResumeKeys { key: mac.finalize().into_bytes().to_vec() }
    }

    /// A random key for this process alone (no shared secret configured).
    pub fn random() -> ResumeKeys {
        let a = uuid::Uuid::new_v4();
        let b = uuid::Uuid::new_v4();
        ResumeKeys::from_secret(&[a.as_bytes().as_slice(), b.as_bytes().as_slice()].concat())
    }

    fn mac(&self, payload: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(payload.as_bytes());
        mac
    }

    /// A token for `claims`.
    pub fn issue(&self, claims: &TokenClaims) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize"));
        let tag = URL_SAFE_NO_PAD.encode(self.mac(&payload).finalize().into_bytes());
        format!("{payload}.{tag}")
    }

    /// The claims of a token this cluster issued. `Unknown` for anything else (malformed,
    /// another key, altered); the MAC is compared in constant time.
    pub fn verify(&self, token: &str) -> Result<TokenClaims, ResumeFailure> {
        let (payload, tag) = token.split_once('.').ok_or(ResumeFailure::Unknown)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| ResumeFailure::Unknown)?;
        self.mac(payload).verify_slice(&tag).map_err(|_| ResumeFailure::Unknown)?;
        let json = URL_SAFE_NO_PAD.decode(payload).map_err(|_| ResumeFailure::Unknown)?;
        serde_json::from_slice(&json).map_err(|_| ResumeFailure::Unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> TokenClaims {
        TokenClaims { conn_id: "c1".into(), node_id: "n1".into(), user_id: "u1".into(), generation: 3 }
    }

    #[test]
    fn a_token_verifies_with_its_key_only() {
        let keys = ResumeKeys::from_secret(b"a shared secret of the cluster");
        let t = keys.issue(&claims());
        assert_eq!(keys.verify(&t), Ok(claims()));
        assert_eq!(ResumeKeys::from_secret(b"another secret").verify(&t), Err(ResumeFailure::Unknown));
        assert_eq!(ResumeKeys::random().verify(&t), Err(ResumeFailure::Unknown));
    }

    #[test]
    fn altered_or_garbage_tokens_are_unknown() {
        let keys = ResumeKeys::from_secret(b"k");
        let t = keys.issue(&claims());
        let (payload, tag) = t.split_once('.').unwrap();
        let forged = TokenClaims { generation: 4, ..claims() };
        let forged = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        for bad in ["", ".", "abc", &format!("{forged}.{tag}"), &format!("{payload}.x{tag}"), payload] {
            assert_eq!(keys.verify(bad), Err(ResumeFailure::Unknown), "{bad}");
        }
    }
}
