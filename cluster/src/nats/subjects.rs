//! Every NATS subject and bucket name a cluster uses, in one place (documented in
//! docs/nats-subjects.md).

use base64::Engine;

/// Names for one cluster.
#[derive(Debug, Clone)]
pub struct Subjects {
    prefix: String,
    cluster: String,
}

/// A room id as a subject token and KV key: base64url without padding, so any room id
/// (dots, spaces, wildcards) is safe in both.
pub fn room_token(room: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(room.as_bytes())
}

/// The room id back from its token.
pub fn room_from_token(token: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).ok()?;
    String::from_utf8(bytes).ok()
}

impl Subjects {
    pub fn new(cluster: &str) -> Subjects {
        Subjects { prefix: format!("signalgrid.{cluster}"), cluster: cluster.to_owned() }
    }

    /// Deliveries to connections of `node`.
    pub fn inbox(&self, node: &str) -> String {
        format!("{}.node.{node}.inbox", self.prefix)
    }

    /// Seat hand-overs to `node` (request/reply): a resume that arrived on another node asks
    /// the seat's node for it (PROTOCOL.md section 6).
    pub fn seat(&self, node: &str) -> String {
        format!("{}.node.{node}.seat", self.prefix)
    }

    /// Membership changes and room-wide frames of `room`.
    pub fn room(&self, room: &str) -> String {
        format!("{}.room.{}", self.prefix, room_token(room))
    }

    /// Node heartbeats.
    pub fn presence(&self) -> String {
        format!("{}.presence", self.prefix)
    }

    /// Admin requests: `nodes`, `rooms`, `room`, `kick`, `close`.
    pub fn admin(&self, verb: &str) -> String {
        format!("{}.admin.{verb}", self.prefix)
    }

    /// Admin request to one node: `drain`.
    pub fn admin_node(&self, node: &str, verb: &str) -> String {
        format!("{}.admin.node.{node}.{verb}", self.prefix)
    }

    /// The JetStream key-value bucket of cluster-wide locks (`lock`: retention purges).
    pub fn locks_bucket(&self) -> String {
        format!("signalgrid_{}_locks", self.cluster)
    }

    /// The JetStream key-value bucket of room membership.
    pub fn rooms_bucket(&self) -> String {
        format!("signalgrid_{}_rooms", self.cluster)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_tokens_are_subject_and_key_safe_and_reversible() {
        for room in ["room-1f2e", "a.b.c", "with space", "x*>y", "ünï"] {
            let t = room_token(room);
            assert!(t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{t}");
            assert_eq!(room_from_token(&t).as_deref(), Some(room));
        }
        let s = Subjects::new("blue");
        assert_eq!(s.inbox("n1"), "signalgrid.blue.node.n1.inbox");
        assert_eq!(s.rooms_bucket(), "signalgrid_blue_rooms");
    }
}
