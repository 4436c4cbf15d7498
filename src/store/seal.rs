//! Sealing at rest (PROTOCOL.md section 9): the values signalgrid writes about people are
//! stored as AES-256-GCM ciphertexts under a key id, in both stores.
//!
//! Keys come from `VIDEO_CALL_ENCRYPTION_KEY` (or `store.encryption_keys`): one or more
//! `kid:base64(32 bytes)`, comma-separated; the first one seals, every one opens. A sealed
//! value is text of the form
//!
//! ```text
//! sg1:<kid>:<base64(nonce (12 bytes) || ciphertext || tag (16 bytes))>
//! ```
//!
//! with a random 96-bit nonce per value, and the field's name (`ipAddress`, `userAgent`,
//! `metadata`, `clientName`, `psychologistName`) bound as associated data, so a ciphertext
//! moved to another field does not open. Values without the `sg1:` prefix are plaintext
//! written before keys were set, and read as they are (mixed data during a migration;
//! `signalgrid store rotate-key` seals them).
//!
//! Owns the key ring, sealing and opening. Knows no store: the stores call it on the way in
//! and out, and the domain crate never sees a sealed value. The AEAD is `ring`'s.

use std::collections::HashSet;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use signalgrid_actors::ports::StoreError;
use signalgrid_config::Settings;

/// What starts every sealed value: the format's version, then `:`.
pub const PREFIX: &str = "sg1:";

/// Longest key id accepted (characters).
pub const MAX_KID_LEN: usize = 32;

/// Field names bound as associated data: the contract's names of the sealed fields.
pub mod field {
    pub const IP_ADDRESS: &str = "ipAddress";
    pub const USER_AGENT: &str = "userAgent";
    pub const METADATA: &str = "metadata";
    pub const CLIENT_NAME: &str = "clientName";
    pub const PSYCHOLOGIST_NAME: &str = "psychologistName";
}

/// Why keys could not be taken, or a stored value could not be opened. Every variant names
/// the key id concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// A configured key is malformed: no `kid:`, a bad kid, bad base64, not 32 bytes.
    #[error("encryption key {kid:?} (VIDEO_CALL_ENCRYPTION_KEY / store.encryption_keys): {reason}")]
    BadKey { kid: String, reason: String },
    /// Two configured keys share a kid.
    #[error("encryption key id {0:?} is given twice (VIDEO_CALL_ENCRYPTION_KEY / store.encryption_keys)")]
    DuplicateKid(String),
    /// Stored data is sealed with key ids that are not configured.
    #[error(
        "stored data is sealed with encryption key id(s) {}, not configured: add the key(s) to \
         VIDEO_CALL_ENCRYPTION_KEY (or store.encryption_keys)",
        quoted(.0)
    )]
    UnknownKids(Vec<String>),
    /// A sealed value does not open with its key (another key under that id, or altered data).
    #[error("a sealed {field} does not open with encryption key {kid:?} (wrong key, or altered data)")]
    DoesNotOpen { field: String, kid: String },
    /// A value starts like a sealed one but is not one.
    #[error("a stored {field} starts with {PREFIX:?} but is not a sealed value")]
    Malformed { field: String },
    /// `rotate-key` without keys.
    #[error("no encryption key configured: set VIDEO_CALL_ENCRYPTION_KEY (or store.encryption_keys)")]
    NoKeys,
}

fn quoted(kids: &[String]) -> String {
    kids.iter().map(|k| format!("{k:?}")).collect::<Vec<_>>().join(", ")
}

impl From<SealError> for StoreError {
    fn from(e: SealError) -> StoreError {
        StoreError::Other(e.to_string())
    }
}

struct SealKey {
    kid: String,
    key: LessSafeKey,
}

/// The configured keys, first one sealing. Empty: values are written as plaintext (and
/// plaintext reads as is; a sealed value then fails to open, naming its kid).
#[derive(Default)]
pub struct Keyring {
    keys: Vec<SealKey>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").field("kids", &self.kids().collect::<Vec<_>>()).finish()
    }
}

fn valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= MAX_KID_LEN
        && kid.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The key id of a sealed value (None for plaintext, or a value that is not well formed).
pub fn kid_of(stored: &str) -> Option<&str> {
    let rest = stored.strip_prefix(PREFIX)?;
    let (kid, _) = rest.split_once(':')?;
    Some(kid)
}

impl Keyring {
    /// Reads `kid:base64,kid:base64,...` (spaces around entries ignored; empty: no keys).
    /// Errors name the kid: an entry without `:`, a kid that is empty, longer than 32
    /// characters or not of `[A-Za-z0-9_.-]`, base64 that does not decode, a key that is not
    /// 32 bytes, a kid given twice.
    pub fn parse(spec: &str) -> Result<Keyring, SealError> {
        let mut keys = Vec::new();
        let mut seen = HashSet::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let Some((kid, b64)) = entry.split_once(':') else {
                // Never echo the entry: it may be a bare key.
                return Err(SealError::BadKey { kid: String::new(), reason: "expected kid:base64".into() });
            };
            let kid = kid.trim();
            let bad = |reason: String| SealError::BadKey { kid: kid.to_owned(), reason };
            if !valid_kid(kid) {
                return Err(bad(format!("a key id is 1 to {MAX_KID_LEN} characters of A-Z a-z 0-9 _ . -")));
            }
            if !seen.insert(kid.to_owned()) {
                return Err(SealError::DuplicateKid(kid.to_owned()));
            }
            let bytes = B64.decode(b64.trim()).map_err(|e| bad(format!("not base64 ({e})")))?;
            if bytes.len() != 32 {
                return Err(bad(format!("{} bytes; AES-256 needs 32 (openssl rand -base64 32)", bytes.len())));
            }
            let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| bad("rejected by AES-256-GCM".into()))?;
            keys.push(SealKey { kid: kid.to_owned(), key: LessSafeKey::new(key) });
        }
        Ok(Keyring { keys })
    }

    /// The key ring of the settings (`store.encryption_keys`).
    pub fn from_settings(s: &Settings) -> Result<Arc<Keyring>, SealError> {
        Ok(Arc::new(Keyring::parse(s.store.encryption_keys.as_deref().unwrap_or(""))?))
    }

    /// Whether any key is configured (values are then written sealed).
    pub fn is_enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The kid that seals (the first configured).
    pub fn current_kid(&self) -> Option<&str> {
        self.keys.first().map(|k| k.kid.as_str())
    }

    /// Every configured kid, the sealing one first.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.kid.as_str())
    }

    /// Of `kids` (found in stored data), those not configured, sorted; an error naming
    /// them when there are any.
    pub fn check_known<'a>(&self, kids: impl IntoIterator<Item = &'a str>) -> Result<(), SealError> {
        let mut unknown: Vec<String> =
            kids.into_iter().filter(|k| !self.kids().any(|c| c == *k)).map(str::to_owned).collect();
        unknown.sort();
        unknown.dedup();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(SealError::UnknownKids(unknown))
        }
    }

    /// `plain` sealed with the first key, bound to `field`; `plain` itself without keys.
    pub fn seal(&self, field: &str, plain: &str) -> String {
        let Some(k) = self.keys.first() else { return plain.to_owned() };
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).expect("the system's random source works");
        let mut buf = plain.as_bytes().to_vec();
        k.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(field.as_bytes()), &mut buf)
            .expect("AES-GCM seals any value shorter than 64 GB");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        format!("{PREFIX}{}:{}", k.kid, B64.encode(out))
    }

    /// [`Keyring::seal`] of an optional value.
    pub fn seal_opt(&self, field: &str, plain: Option<&str>) -> Option<String> {
        plain.map(|p| self.seal(field, p))
    }

    /// The plaintext of a stored value: a sealed one opened with its key (bound to
    /// `field`), plaintext as it is. Errors: the kid is not configured (`UnknownKids`), the
    /// value does not open (`DoesNotOpen`), or it is not well formed (`Malformed`). Never
    /// returns anything but the value that was sealed.
    pub fn open(&self, field: &str, stored: &str) -> Result<String, SealError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else { return Ok(stored.to_owned()) };
        let malformed = || SealError::Malformed { field: field.to_owned() };
        let (kid, b64) = rest.split_once(':').ok_or_else(malformed)?;
        let Some(k) = self.keys.iter().find(|k| k.kid == kid) else {
            return Err(SealError::UnknownKids(vec![kid.to_owned()]));
        };
        let mut bytes = B64.decode(b64).map_err(|_| malformed())?;
        if bytes.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(malformed());
        }
        let nonce = Nonce::try_assume_unique_for_key(&bytes[..NONCE_LEN]).map_err(|_| malformed())?;
        let does_not_open = || SealError::DoesNotOpen { field: field.to_owned(), kid: kid.to_owned() };
        let plain = k
            .key
            .open_within(nonce, Aad::from(field.as_bytes()), &mut bytes, NONCE_LEN..)
            .map_err(|_| does_not_open())?;
        String::from_utf8(plain.to_vec()).map_err(|_| does_not_open())
    }

    /// [`Keyring::open`] of an optional value.
    pub fn open_opt(&self, field: &str, stored: Option<&str>) -> Result<Option<String>, SealError> {
        stored.map(|s| self.open(field, s)).transpose()
    }

    /// Whether `stored` is not sealed with the first key yet (plaintext, or another kid):
    /// what `rotate-key` rewrites. Always false without keys.
    pub fn needs_reseal(&self, stored: &str) -> bool {
        match self.current_kid() {
            None => false,
            Some(current) => kid_of(stored) != Some(current),
        }
    }

    /// `stored` opened and sealed again with the first key, or None when it is sealed with
    /// it already. Errors as [`Keyring::open`].
    pub fn reseal(&self, field: &str, stored: &str) -> Result<Option<String>, SealError> {
        if !self.needs_reseal(stored) {
            return Ok(None);
        }
        Ok(Some(self.seal(field, &self.open(field, stored)?)))
    }
}

/// What one `rotate-key` batch (or a whole run) did, in values (fields), and rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RotateCounts {
    /// Rows (audit entries, sessions) read.
    pub rows: u64,
    /// Rows written back (at least one value changed).
    pub rows_changed: u64,
    /// Values sealed with another key, now sealed with the first.
    pub resealed: u64,
    /// Plaintext values, now sealed.
    pub sealed: u64,
}

impl std::ops::AddAssign for RotateCounts {
    fn add_assign(&mut self, o: RotateCounts) {
        self.rows += o.rows;
        self.rows_changed += o.rows_changed;
        self.resealed += o.resealed;
        self.sealed += o.sealed;
    }
}

impl RotateCounts {
    /// Counts a value that [`Keyring::reseal`] rewrote (was it sealed before?).
    pub fn note(&mut self, before: &str) {
        if kid_of(before).is_some() {
            self.resealed += 1;
        } else {
            self.sealed += 1;
        }
    }
}

/// One batch of `rotate-key` over one kind of row.
#[derive(Debug, Clone, Default)]
pub struct RotateBatch {
    pub counts: RotateCounts,
    /// Where the next batch starts (the last row id read); None when no row was left.
    pub next: Option<String>,
}

/// The kinds of rows a store seals, each walked by `rotate-key` in id order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    /// Audit entries: `ipAddress`, `userAgent`, `metadata`.
    Audit,
    /// Signalgrid's own copies of sessions (the embedded store): the participants' names.
    Sessions,
}

impl Rows {
    pub fn as_str(self) -> &'static str {
        match self {
            Rows::Audit => "audit entries",
            Rows::Sessions => "sessions",
        }
    }
}

/// What a store that seals offers `rotate-key` (src/store_cli.rs). Each batch is one
/// atomic write of rows read in id order after `after`; a row already sealed with the first
/// key is left as it is, so a batch run twice changes nothing the second time.
#[async_trait::async_trait]
pub trait Reseal: Send + Sync {
    /// The kinds of rows this store seals.
    fn rows(&self) -> &'static [Rows];
    /// Re-seals up to `max` rows of `rows` after the row id `after`.
    async fn reseal_batch(&self, rows: Rows, after: Option<String>, max: usize) -> Result<RotateBatch, StoreError>;
    /// How many values are still not sealed with the first key (a full scan).
    async fn not_current(&self) -> Result<u64, StoreError>;
    /// Forgets the kids other than the first one in the store's list of kids in use (called
    /// once `not_current` found none left); returns the ones forgotten.
    async fn retire_other_kids(&self) -> Result<Vec<String>, StoreError>;
    /// Clears what the store itself keeps of values it replaced, where it can (the embedded
    /// store empties its write-ahead log). Called at the end of a complete rotation.
    async fn scrub(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kid: &str, byte: u8) -> String {
        format!("{kid}:{}", B64.encode([byte; 32]))
    }

    #[test]
    fn seals_and_opens_with_any_configured_key() {
        let a = Keyring::parse(&key("a", 1)).unwrap();
        let sealed = a.seal(field::IP_ADDRESS, "192.0.2.7");
        assert!(sealed.starts_with("sg1:a:"), "{sealed}");
        assert!(!sealed.contains("192.0.2.7"));
        assert_ne!(sealed, a.seal(field::IP_ADDRESS, "192.0.2.7"), "a fresh nonce per value");
        let ba = Keyring::parse(&format!("{}, {}", key("b", 2), key("a", 1))).unwrap();
        assert_eq!(ba.current_kid(), Some("b"));
        assert_eq!(ba.open(field::IP_ADDRESS, &sealed).unwrap(), "192.0.2.7");
        assert_eq!(ba.reseal(field::IP_ADDRESS, &sealed).unwrap().as_deref().map(kid_of), Some(Some("b")));
        let resealed = ba.seal(field::IP_ADDRESS, "x");
        assert_eq!(ba.reseal(field::IP_ADDRESS, &resealed).unwrap(), None, "sealed with the first key already");
    }

    #[test]
    fn plaintext_reads_as_is_and_is_sealed_by_a_reseal() {
        let a = Keyring::parse(&key("a", 1)).unwrap();
        assert_eq!(a.open(field::USER_AGENT, "curl/8").unwrap(), "curl/8");
        assert!(a.needs_reseal("curl/8"));
        let none = Keyring::default();
        assert_eq!(none.seal(field::USER_AGENT, "curl/8"), "curl/8");
        assert!(!none.needs_reseal("curl/8"));
    }

    #[test]
    fn a_value_that_does_not_open_is_an_error_naming_the_kid() {
        let a = Keyring::parse(&key("a", 1)).unwrap();
        let sealed = a.seal(field::CLIENT_NAME, "Ada");
        assert_eq!(
            a.open(field::PSYCHOLOGIST_NAME, &sealed),
            Err(SealError::DoesNotOpen { field: "psychologistName".into(), kid: "a".into() }),
            "bound to its field"
        );
        let other_a = Keyring::parse(&key("a", 9)).unwrap();
        assert!(matches!(other_a.open(field::CLIENT_NAME, &sealed), Err(SealError::DoesNotOpen { .. })));
        let b = Keyring::parse(&key("b", 2)).unwrap();
        let err = b.open(field::CLIENT_NAME, &sealed).unwrap_err();
        assert_eq!(err, SealError::UnknownKids(vec!["a".into()]));
        assert!(Keyring::default().open(field::CLIENT_NAME, &sealed).unwrap_err().to_string().contains("a"));
        let mut tampered = sealed.clone().into_bytes();
        // A character inside the base64 (the last ones may hold padding bits, which the
        // decoder refuses as malformed rather than failing to open).
        let at = "sg1:a:".len() + 8;
        tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(matches!(a.open(field::CLIENT_NAME, &tampered), Err(SealError::DoesNotOpen { .. })));
        assert!(matches!(a.open(field::CLIENT_NAME, "sg1:a:!!"), Err(SealError::Malformed { .. })));
    }

    #[test]
    fn bad_keys_are_named() {
        let err = |spec: &str| Keyring::parse(spec).unwrap_err();
        assert!(matches!(err("k1:AAAA"), SealError::BadKey { kid, .. } if kid == "k1"), "3 bytes");
        assert!(err("k1:AAAA").to_string().contains("3 bytes"));
        assert!(
            matches!(err("k2:not base64!"), SealError::BadKey { kid, reason } if kid == "k2" && reason.contains("base64"))
        );
        assert_eq!(err(&format!("{},{}", key("k3", 1), key("k3", 2))), SealError::DuplicateKid("k3".into()));
        assert!(matches!(err(&B64.encode([1u8; 32])), SealError::BadKey { .. }), "no kid");
        assert!(matches!(err(&key("a b", 1)), SealError::BadKey { .. }));
        assert!(!Keyring::parse(" ").unwrap().is_enabled());
        let k = Keyring::parse(&key("k", 1)).unwrap();
        assert_eq!(k.check_known(["k", "x", "w", "x"]), Err(SealError::UnknownKids(vec!["w".into(), "x".into()])));
        assert_eq!(k.check_known(["k"]), Ok(()));
    }
}
