//! Checking relayed frames by the per-sender counter in their payload: which arrived, which
//! arrived twice, and which never did (PROTOCOL.md section 6: a resume must neither lose nor
//! repeat a frame).

/// Largest counter accepted (a bigger one is a bad frame, not a reason to allocate).
pub const MAX_COUNTER: u64 = 1 << 32;

/// The counters one receiver has seen from its one sender, as a bitset.
#[derive(Debug, Default)]
pub struct Seen {
    bits: Vec<u64>,
    /// Frames whose counter had been seen already.
    pub duplicates: u64,
    /// Distinct counters seen.
    pub distinct: u64,
}

impl Seen {
    /// Records counter `c`; false if it was seen before (counted as a duplicate) or is
    /// out of range (`MAX_COUNTER` or more).
    pub fn insert(&mut self, c: u64) -> bool {
        if c >= MAX_COUNTER {
            return false;
        }
        let (word, bit) = ((c / 64) as usize, 1u64 << (c % 64));
        if word >= self.bits.len() {
            self.bits.resize(word + 1, 0);
        }
        if self.bits[word] & bit != 0 {
            self.duplicates += 1;
            return false;
        }
        self.bits[word] |= bit;
        self.distinct += 1;
        true
    }

    pub fn contains(&self, c: u64) -> bool {
        self.bits.get((c / 64) as usize).is_some_and(|w| w & (1u64 << (c % 64)) != 0)
    }
}

/// What became of one sender's frames.
#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
pub struct Tally {
    /// Never arrived, though a later frame written on the same socket did, or the socket
    /// they were written on stayed up: the server had them and did not deliver them.
    pub lost: u64,
    /// Never arrived, and were the last ones written on a socket that was then lost: the
    /// node may never have read them (client to server has no resume, so these are in doubt,
    /// not proof of a server-side loss).
    pub unsent: u64,
}

/// Classifies the counters `0..sent` a sender wrote. `boundaries` are the counters at which
/// the sender began writing on a new socket (ascending); every socket but the last was lost.
pub fn tally(seen: &Seen, sent: u64, boundaries: &[u64]) -> Tally {
    let mut t = Tally::default();
    let mut starts = vec![0];
    starts.extend(boundaries.iter().copied().filter(|&b| b > 0 && b <= sent));
    starts.dedup();
    for (i, &start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(sent);
        let socket_lost = i + 1 < starts.len();
        // The highest counter of this socket that arrived: everything after it on a lost
        // socket may never have reached the node.
        let tail_from =
            if socket_lost { (start..end).rev().find(|&c| seen.contains(c)).map_or(start, |c| c + 1) } else { end };
        for c in start..end {
            if !seen.contains(c) {
                if c >= tail_from {
                    t.unsent += 1;
                } else {
                    t.lost += 1;
                }
            }
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(cs: &[u64]) -> Seen {
        let mut s = Seen::default();
        for &c in cs {
            s.insert(c);
        }
        s
    }

    #[test]
    fn a_counter_seen_twice_is_a_duplicate() {
        let mut s = seen(&[0, 1, 2]);
        assert!(!s.insert(1));
        assert!(s.insert(3));
        assert_eq!((s.duplicates, s.distinct), (1, 4));
    }

    #[test]
    fn everything_arrived() {
        assert_eq!(tally(&seen(&[0, 1, 2, 3]), 4, &[]), Tally::default());
        assert_eq!(tally(&seen(&[0, 1, 2, 3]), 4, &[2]), Tally::default());
    }

    #[test]
    fn a_gap_or_a_missing_end_on_a_socket_that_stayed_up_is_lost() {
        assert_eq!(tally(&seen(&[0, 2, 3]), 4, &[]), Tally { lost: 1, unsent: 0 });
        assert_eq!(tally(&seen(&[0, 1]), 4, &[]), Tally { lost: 2, unsent: 0 });
    }

    #[test]
    fn the_end_of_a_lost_socket_is_in_doubt_but_a_gap_before_it_is_lost() {
        // Socket 1 wrote 0..5 and was lost; 1 is missing before 3 arrived (lost), 4 is its
        // unconfirmed end. Socket 2 wrote 5..8, all arrived.
        let t = tally(&seen(&[0, 2, 3, 5, 6, 7]), 8, &[5]);
        assert_eq!(t, Tally { lost: 1, unsent: 1 });
        // A lost socket none of whose frames arrived: all in doubt.
        assert_eq!(tally(&seen(&[0, 1, 4]), 5, &[2, 4]), Tally { lost: 0, unsent: 2 });
    }
}
