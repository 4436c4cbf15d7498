//! Keeps secrets out of the logs, whoever writes the line: our code, or a library at any
//! level (async-nats prints server addresses at debug, hyper and warp trace request parts).
//!
//! Every formatted log line passes through [`Redactor::redact`] on its way to stderr. It
//! replaces the configured secret values (JWT secret, TURN password and secret, NATS
//! password and token, passwords inside the NATS and MongoDB URLs, the encryption keys of
//! `store.encryption_keys`) and anything shaped like
//! a credential: a URL's `user:password@`, a `token=` query parameter (the WebSocket
//! upgrade carries its JWT there) or a `resume=` one (a resume token), and a JWT (three
//! base64url parts, the first two JSON).

use std::borrow::Cow;
use std::io::{self, Write};

use regex::Regex;
use signalgrid_config::Settings;
use tracing_subscriber::fmt::MakeWriter;

/// What replaces a secret in a log line.
pub const REDACTED: &str = "<redacted>";

/// Secrets shorter than this are not searched for (they would mask ordinary words); the
/// settings' rules keep real secrets longer (the JWT secret has at least 16 characters).
const MIN_SECRET_LEN: usize = 4;

/// The secret values and credential shapes to mask.
pub struct Redactor {
    secrets: Vec<String>,
    shapes: Vec<(Regex, &'static str)>,
}

impl Redactor {
    /// Masks `secrets` (exact values) and credential shapes.
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Redactor {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| s.len() >= MIN_SECRET_LEN).collect();
        // As JSON lines (`--log-format json`) and `Debug` output escape them, too.
        let escaped: Vec<String> = secrets
            .iter()
            .flat_map(|s| [serde_json::to_string(s).unwrap_or_default(), format!("{s:?}")])
            .map(|quoted| quoted[1..quoted.len().saturating_sub(1)].to_owned())
            .collect();
        secrets.extend(escaped);
        secrets.sort();
        secrets.dedup();
        // Longest first: a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let shape = |re: &str| Regex::new(re).expect("the credential patterns are valid");
        let shapes = vec![
            (shape(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^\s/@:]*):([^\s/@]+)@"), "${1}${2}:<redacted>@"),
            (shape(r"(?i)([?&](?:token|access_token|jwt|resume)=)[^&\s]+"), "${1}<redacted>"),
            (shape(r"eyJ[A-Za-z0-9_\-]+\.eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*"), "<redacted-jwt>"),
        ];
        Redactor { secrets, shapes }
    }

    /// The secrets in a node's settings.
    pub fn from_settings(s: &Settings) -> Redactor {
        let url_password = |u: &Option<String>| -> Vec<String> {
            u.iter().flat_map(|u| u.split(',')).filter_map(url_secret).collect()
        };
        let values = [
            &s.auth.jwt_secret,
            &s.ice.turn_password,
            &s.ice.turn_secret,
            &s.cluster.nats_password,
            &s.cluster.nats_token,
            &s.resume.secret,
            &s.webhooks.secret,
        ];
        let mut secrets: Vec<String> = values.into_iter().flatten().cloned().collect();
        secrets.extend(url_password(&s.cluster.nats_url));
        secrets.extend(url_password(&s.store.mongodb_uri));
        secrets.extend(encryption_key_secrets(&s.store.encryption_keys));
        Redactor::new(secrets)
    }

    /// `line` with every secret masked.
    pub fn redact<'a>(&self, line: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(line);
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = Cow::Owned(out.replace(s.as_str(), REDACTED));
            }
        }
        for (re, with) in &self.shapes {
            if re.is_match(&out) {
                out = Cow::Owned(re.replace_all(&out, *with).into_owned());
            }
        }
        out
    }
}

/// The secret parts of `store.encryption_keys` (`kid:base64,...`): the whole value, each
/// entry, and each key's base64 (the kids themselves are not secret and stay readable).
fn encryption_key_secrets(v: &Option<String>) -> Vec<String> {
    let Some(v) = v else { return Vec::new() };
    let mut out = vec![v.trim().to_owned()];
    for entry in v.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        out.push(entry.to_owned());
        if let Some((_, key)) = entry.split_once(':') {
            out.push(key.trim().to_owned());
        }
    }
    out
}

/// The password (or the token: a user part alone) of a `scheme://user:password@host` URL.
fn url_secret(url: &str) -> Option<String> {
    let rest = &url[url.find("://")? + 3..];
    let userinfo = &rest[..rest.find('@')?];
    let secret = userinfo.split_once(':').map_or(userinfo, |(_, p)| p);
    (!secret.is_empty()).then(|| secret.to_owned())
}

/// Log output: stderr, each line redacted first.
pub struct RedactingStderr(pub Redactor);

/// One log line's writer.
pub struct RedactingWriter<'a>(&'a Redactor);

impl<'a> MakeWriter<'a> for RedactingStderr {
    type Writer = RedactingWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter(&self.0)
    }
}

impl Write for RedactingWriter<'_> {
    /// Takes the whole buffer (the formatter hands over one event at a time).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        io::stderr().lock().write_all(self.0.redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_values_and_credential_shapes() {
        let r = Redactor::new(["s3cret-value".to_owned(), "ab".to_owned()]);
        assert_eq!(r.redact("x=s3cret-value ab"), "x=<redacted> ab");
        assert_eq!(r.redact("server=nats://u:pw@h:4222"), "server=nats://u:<redacted>@h:4222");
        assert_eq!(r.redact("GET /ws?token=abc.def&x=1"), "GET /ws?token=<redacted>&x=1");
        assert_eq!(
            r.redact("GET /ws?token=a.b&resume=eyJjIjoi.x1&lastSeq=4"),
            "GET /ws?token=<redacted>&resume=<redacted>&lastSeq=4"
        );
        assert_eq!(r.redact("t eyJhbGciOi.eyJzdWIiOi.sig-_1 end"), "t <redacted-jwt> end");
        assert_eq!(r.redact("nothing here"), "nothing here");
        let quoted = Redactor::new([r#"pw"with\quote"#.to_owned()]);
        assert_eq!(quoted.redact(r#"{"p":"pw\"with\\quote"}"#), r#"{"p":"<redacted>"}"#);
    }

    #[test]
    fn finds_the_secrets_of_the_settings() {
        let mut s = Settings::default();
        s.cluster.nats_url = Some("nats://a:nats-pw-1@h:1,nats://tok-2222@h:2".into());
        s.store.mongodb_uri = Some("mongodb://m:mongo-pw-3@h/db".into());
        let r = Redactor::from_settings(&s);
        let line = r.redact("nats-pw-1 tok-2222 mongo-pw-3");
        assert_eq!(line, "<redacted> <redacted> <redacted>");
        let (ka, kb) = ("QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=", "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=");
        s.store.encryption_keys = Some(format!("new:{kb}, old:{ka}"));
        let r = Redactor::from_settings(&s);
        assert_eq!(r.redact(&format!("keys={kb} and {ka}; kid new")), "keys=<redacted> and <redacted>; kid new");
        assert_eq!(r.redact(&format!("all: new:{kb}, old:{ka}")), "all: <redacted>");
    }
}
