//! Tokens: verifying the platform's JWTs, and minting them (CLI, load generator, tests).
//!
//! HS256 with the shared secret; optionally RS256/ES256 with a configured public key;
//! `alg: none` and any algorithm not configured are refused. Both claim shapes of the
//! contract are accepted. Never logs a token.
//!
//! The registered claims (RFC 7519 §4.1), all time checks with the configured leeway:
//! - `exp` is required (contract §1) and must not have passed (§4.1.4).
//! - `nbf`, when present, must have come (§4.1.5).
//! - `iat`, when present, must be a NumericDate not in the future (§4.1.6 gives it no rule;
//!   a token issued later than now is a clock fault at the issuer or a post-dated token).
//! - `aud`: with `auth.audience` set, required and must name one of its values (§4.1.3);
//!   unset, not checked.
//! - `iss`: with `auth.issuer` set, required and must be one of its values (§4.1.1); unset,
//!   not checked.
//! - `sub` is the user id in the `sub` shape; in the `user` shape `user.id` wins (§4.1.2).
//! - `jti` is not checked (no replay list: tokens are bearer tokens until `exp`).
//!
//! `exp`, `nbf`, `aud` and `iss` are checked by `jsonwebtoken`'s `Validation`; `iat`, which
//! it does not check, here.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use signalgrid_actors::identity::{Identity, Role};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no token")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("cannot load key: {0}")]
    Key(String),
}

/// Checks tokens: signature, algorithm, registered claims (see the module docs), identity.
pub struct Verifier {
    hs256: DecodingKey,
    public: Option<(DecodingKey, Algorithm)>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    leeway: u64,
    /// Accepted `aud` values; empty: `aud` is not checked.
    audience: Vec<String>,
    /// Accepted `iss` values; empty: `iss` is not checked.
    issuer: Vec<String>,
}

#[derive(Deserialize)]
struct UserClaim {
    id: Value,
    role: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    user: Option<UserClaim>,
    sub: Option<String>,
    role: Option<String>,
    name: Option<String>,
    iat: Option<Value>,
}

fn id_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl Verifier {
    pub fn new(secret: &str, leeway_secs: u64) -> Verifier {
        Verifier {
            hs256: DecodingKey::from_secret(secret.as_bytes()),
            public: None,
            leeway: leeway_secs,
            audience: Vec::new(),
            issuer: Vec::new(),
        }
    }

    /// Requires `aud` to name one of `audience` and `iss` to be one of `issuer` (settings
    /// `auth.audience`, `auth.issuer`); an empty list leaves that claim unchecked.
    pub fn with_claims(mut self, audience: &[String], issuer: &[String]) -> Verifier {
        self.audience = audience.to_vec();
        self.issuer = issuer.to_vec();
        self
    }

    /// The registered-claim checks for `alg` (see the module docs).
    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.leeway;
        v.validate_exp = true;
        v.validate_nbf = true;
        let mut required = vec!["exp"];
        if self.audience.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(&self.audience);
            required.push("aud");
        }
        if !self.issuer.is_empty() {
            v.set_issuer(&self.issuer);
            required.push("iss");
        }
        v.set_required_spec_claims(&required);
        v
    }

    /// `iat`, which `Validation` does not check: a NumericDate, not after now + leeway.
    fn check_iat(&self, iat: Option<&Value>) -> Result<(), AuthError> {
        let Some(iat) = iat else { return Ok(()) };
        let at = iat.as_f64().filter(|t| t.is_finite()).ok_or_else(|| invalid("claim iat is not a NumericDate"))?;
        let latest = chrono::Utc::now().timestamp() as f64 + self.leeway as f64;
        if at > latest {
            return Err(invalid("token issued in the future (iat)"));
        }
        Ok(())
    }

    /// Also accepts tokens signed with the private half of this PEM public key.
    pub fn with_public_key(mut self, pem: &[u8], alg: &str) -> Result<Verifier, AuthError> {
        let (key, alg) = match alg {
            "RS256" => (DecodingKey::from_rsa_pem(pem), Algorithm::RS256),
            "ES256" => (DecodingKey::from_ec_pem(pem), Algorithm::ES256),
            other => return Err(AuthError::Key(format!("unsupported algorithm {other}"))),
        };
        self.public = Some((key.map_err(|e| AuthError::Key(e.to_string()))?, alg));
        Ok(self)
    }

    /// The identity a token proves.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        // `alg: none` and unknown algorithms fail here too, as a header that does not parse.
        let header =
            decode_header(token).map_err(|_| invalid("malformed token, or its algorithm is not accepted (alg)"))?;
        let (key, alg) = match (&self.public, header.alg) {
            (_, Algorithm::HS256) => (&self.hs256, Algorithm::HS256),
            (Some((key, alg)), a) if a == *alg => (key, *alg),
            (_, a) => return Err(AuthError::Invalid(format!("algorithm {a:?} not accepted"))),
        };
        let claims = decode::<Claims>(token, key, &self.validation(alg)).map_err(reason)?.claims;
        self.check_iat(claims.iat.as_ref())?;
        let (id, role, name) = match claims.user {
            Some(u) => (id_string(&u.id), u.role.or(claims.role), u.name.or(claims.name)),
            None => (claims.sub.filter(|s| !s.is_empty()), claims.role, claims.name),
        };
        let user_id = id.ok_or_else(|| AuthError::Invalid("no user id (user.id or sub)".into()))?;
        // The seed platform's tokens may carry no role; such a caller is treated as a client
        // (access to a session is decided by its user id, not its role).
        let role = match role.as_deref() {
            None => Role::Client,
            Some(r) => Role::parse(r).ok_or_else(|| AuthError::Invalid(format!("unknown role {r:?}")))?,
        };
        Ok(Identity { user_id, role, name })
    }
}

fn invalid(reason: &str) -> AuthError {
    AuthError::Invalid(reason.to_owned())
}

/// Says which check refused the token, naming the claim (the `reason` a 401 carries).
fn reason(e: jsonwebtoken::errors::Error) -> AuthError {
    match e.kind() {
        ErrorKind::ExpiredSignature => invalid("token expired (exp)"),
        ErrorKind::ImmatureSignature => invalid("token not valid yet (nbf)"),
        ErrorKind::InvalidAudience => invalid("audience not accepted (aud)"),
        ErrorKind::InvalidIssuer => invalid("issuer not accepted (iss)"),
        ErrorKind::MissingRequiredClaim(c) => AuthError::Invalid(format!("missing claim {c}")),
        ErrorKind::InvalidClaimFormat(c) => AuthError::Invalid(format!("claim {c} is not a NumericDate")),
        ErrorKind::InvalidSignature => invalid("bad signature"),
        ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
            invalid("malformed token")
        }
        _ => AuthError::Invalid(e.to_string()),
    }
}

#[derive(Serialize)]
struct MintClaims<'a> {
    sub: &'a str,
    role: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    iat: i64,
    exp: i64,
}

/// Makes an HS256 token in the `sub` shape, valid for `ttl_secs`.
pub fn mint(secret: &str, user_id: &str, role: Role, name: Option<&str>, ttl_secs: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = MintClaims { sub: user_id, role: role.as_str(), name, iat: now, exp: now + ttl_secs };
    encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes()))
        .expect("HS256 signing with a byte secret cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use serde_json::json;

    const SECRET: &str = "test-secret-0123456789";

    fn sign(claims: Value) -> String {
        encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
    }

    fn exp() -> i64 {
        chrono::Utc::now().timestamp() + 600
    }

    #[test]
    fn both_claim_shapes() {
        let v = Verifier::new(SECRET, 0);
        let a =
            v.verify(&sign(json!({"user": {"id": "u1", "role": "psychologist", "name": "Dr"}, "exp": exp()}))).unwrap();
        assert_eq!((a.user_id.as_str(), a.role), ("u1", Role::Psychologist));
        let b = v.verify(&sign(json!({"sub": "u2", "role": "admin", "exp": exp()}))).unwrap();
        assert_eq!((b.user_id.as_str(), b.role), ("u2", Role::Admin));
        let c = v.verify(&mint(SECRET, "u3", Role::Client, Some("Ann"), 60)).unwrap();
        assert_eq!(c.name.as_deref(), Some("Ann"));
    }

    #[test]
    fn refuses_bad_tokens() {
        let v = Verifier::new(SECRET, 0);
        let expired = sign(json!({"sub": "u", "role": "client", "exp": chrono::Utc::now().timestamp() - 120}));
        assert!(v.verify(&expired).is_err());
        assert!(v.verify(&sign(json!({"sub": "u", "role": "client"}))).is_err(), "exp is required");
        let other = encode(
            &Header::new(Algorithm::HS256),
            &json!({"sub": "u", "exp": exp()}),
            &EncodingKey::from_secret(b"another-secret-000000"),
        )
        .unwrap();
        assert!(v.verify(&other).is_err(), "bad signature");
        assert!(v.verify(&sign(json!({"sub": "u", "role": "king", "exp": exp()}))).is_err());
        assert!(v.verify("not.a.token").is_err());
        // alg: none, with the payload of a valid token.
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let none = format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(json!({"sub": "u", "role": "admin", "exp": exp()}).to_string())
        );
        assert!(v.verify(&none).is_err());
        let hs384 = encode(
            &Header::new(Algorithm::HS384),
            &json!({"sub": "u", "exp": exp()}),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert!(v.verify(&hs384).is_err(), "algorithm mismatch");
    }

    #[test]
    fn es256_with_a_configured_public_key() {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let private = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
        let token =
            encode(&Header::new(Algorithm::ES256), &json!({"sub": "u9", "role": "client", "exp": exp()}), &private)
                .unwrap();
        let hs_only = Verifier::new(SECRET, 0);
        assert!(hs_only.verify(&token).is_err(), "ES256 refused without a public key");
        let v = Verifier::new(SECRET, 0).with_public_key(pair.public_key_pem().as_bytes(), "ES256").unwrap();
        assert_eq!(v.verify(&token).unwrap().user_id, "u9");
        // HS256 tokens keep working beside it.
        assert!(v.verify(&sign(json!({"sub": "u", "exp": exp()}))).is_ok());
        // A token from another key pair is refused.
        let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let forged = encode(
            &Header::new(Algorithm::ES256),
            &json!({"sub": "u9", "exp": exp()}),
            &EncodingKey::from_ec_pem(other.serialize_pem().as_bytes()).unwrap(),
        )
        .unwrap();
        assert!(v.verify(&forged).is_err());
    }

    #[test]
    fn leeway_applies_to_exp() {
        let t = sign(json!({"sub": "u", "exp": chrono::Utc::now().timestamp() - 10}));
        assert!(Verifier::new(SECRET, 0).verify(&t).is_err());
        assert!(Verifier::new(SECRET, 60).verify(&t).is_ok());
    }

    #[test]
    fn registered_claims_follow_rfc_7519() {
        let now = chrono::Utc::now().timestamp();
        let open = Verifier::new(SECRET, 30);
        let msg = |v: &Verifier, c: Value| v.verify(&sign(c)).map(|_| ()).map_err(|e| e.to_string());
        assert!(msg(&open, json!({"sub": "u", "exp": exp(), "nbf": now + 3600})).unwrap_err().contains("(nbf)"));
        assert!(msg(&open, json!({"sub": "u", "exp": exp(), "nbf": now + 10})).is_ok(), "within the leeway");
        assert!(msg(&open, json!({"sub": "u", "exp": exp(), "nbf": "soon"})).unwrap_err().contains("nbf"));
        assert!(msg(&open, json!({"sub": "u", "exp": exp(), "iat": now + 3600})).unwrap_err().contains("(iat)"));
        assert!(msg(&open, json!({"sub": "u", "exp": exp(), "iat": "yesterday"})).unwrap_err().contains("iat"));
        assert!(msg(&open, json!({"sub": "u", "exp": exp(), "iat": now - 86_400})).is_ok());
        assert!(msg(&open, json!({"sub": "u", "exp": exp(), "aud": "anything", "iss": "anyone"})).is_ok());

        let strict = Verifier::new(SECRET, 30).with_claims(&["sg".into(), "video".into()], &["https://p".into()]);
        let ok = |aud: Value| json!({"sub": "u", "exp": exp(), "aud": aud, "iss": "https://p"});
        assert!(msg(&strict, ok(json!("video"))).is_ok());
        assert!(msg(&strict, ok(json!(["other", "sg"]))).is_ok(), "an array naming one accepted value");
        assert!(msg(&strict, ok(json!("other"))).unwrap_err().contains("(aud)"));
        assert!(msg(&strict, ok(json!(["other"]))).unwrap_err().contains("(aud)"));
        assert!(msg(&strict, json!({"sub": "u", "exp": exp(), "iss": "https://p"})).unwrap_err().contains("aud"));
        assert!(msg(&strict, json!({"sub": "u", "exp": exp(), "aud": "sg"})).unwrap_err().contains("iss"));
        let other_iss = json!({"sub": "u", "exp": exp(), "aud": "sg", "iss": "https://q"});
        assert!(msg(&strict, other_iss).unwrap_err().contains("(iss)"));
        assert!(msg(&strict, json!({"sub": "u", "aud": "sg", "iss": "https://p"})).unwrap_err().contains("exp"));
        let old = json!({"sub": "u", "exp": now - 3600, "aud": "sg", "iss": "https://p"});
        assert!(msg(&strict, old).unwrap_err().contains("(exp)"));
    }
}
