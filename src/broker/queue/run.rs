//! A run of paged messages kept as one entry: consecutive sequence numbers, none redelivered or
//! due to expire, all persisted or all transient. A backlog published without a consumer is one
//! long run, so its places cost a few bytes in all instead of an entry per message (40 bytes
//! each: 40 MiB for a million, in a 1 M-message S6 over a third of the broker's resident
//! memory). Sizes are kept once while every body has the same, one `u32` each otherwise.

use std::collections::VecDeque;

use super::ready::Ready;

#[derive(Debug)]
pub(super) struct PagedRun {
    first: u64,
    count: usize,
    persisted: bool,
    sizes: Sizes,
}

#[derive(Debug)]
enum Sizes {
    Same(u32),
    Each(VecDeque<u32>),
}

impl PagedRun {
    /// A run of `a` followed by `b`, when both can be members and `b` comes right after `a`.
    pub(super) fn pair(a: &Ready, b: &Ready) -> Option<PagedRun> {
        let (first, persisted, size) = member_of(a)?;
        let mut run = PagedRun { first, count: 1, persisted, sizes: Sizes::Same(size) };
        run.extend(b).then_some(run)
    }

    /// Takes `r` in as the next member: true when it is paged, neither redelivered nor
    /// expiring, as persisted as the others, and numbered right after the last.
    pub(super) fn extend(&mut self, r: &Ready) -> bool {
        let Some((seq, persisted, size)) = member_of(r) else { return false };
        if seq != self.first + self.count as u64 || persisted != self.persisted {
            return false;
        }
        match &mut self.sizes {
            Sizes::Same(s) if *s == size => {}
            Sizes::Same(s) => {
                let mut each: VecDeque<u32> = std::iter::repeat_n(*s, self.count).collect();
                each.push_back(size);
                self.sizes = Sizes::Each(each);
            }
            Sizes::Each(each) => each.push_back(size),
        }
        self.count += 1;
        true
    }

    pub(super) fn len(&self) -> usize {
        self.count
    }

    pub(super) fn first_seq(&self) -> u64 {
        self.first
    }

    fn size(&self, i: usize) -> u32 {
        match &self.sizes {
            Sizes::Same(s) => *s,
            Sizes::Each(each) => each[i],
        }
    }

    /// Member `i` (counted from the first) as a paged entry of its own.
    pub(super) fn member(&self, i: usize) -> Ready {
        debug_assert!(i < self.count);
        Ready::Paged {
            seq: self.first + i as u64,
            redelivered: false,
            persisted: self.persisted,
            expires_at: None,
            size: self.size(i),
        }
    }

    /// Takes the first member out; the run must not be empty.
    pub(super) fn pop_front(&mut self) -> Ready {
        assert!(self.count > 0, "pop_front on an empty run");
        let r = self.member(0);
        self.first += 1;
        self.count -= 1;
        if let Sizes::Each(each) = &mut self.sizes {
            each.pop_front();
        }
        r
    }

    /// Keeps the members numbered below `seq` and returns the others as a run of their own
    /// (`None` if there are none). `seq` is above the first member's: the run keeps one.
    pub(super) fn split_at_seq(&mut self, seq: u64) -> Option<PagedRun> {
        debug_assert!(seq > self.first, "a split would leave the run empty");
        let keep = seq.saturating_sub(self.first).min(self.count as u64) as usize;
        if keep == self.count {
            return None;
        }
        let sizes = match &mut self.sizes {
            Sizes::Same(s) => Sizes::Same(*s),
            Sizes::Each(each) => Sizes::Each(each.split_off(keep)),
        };
        let tail =
            PagedRun { first: self.first + keep as u64, count: self.count - keep, persisted: self.persisted, sizes };
        self.count = keep;
        Some(tail)
    }
}

/// Sequence number, persisted and size of `r` if it can join a run.
fn member_of(r: &Ready) -> Option<(u64, bool, u32)> {
    match *r {
        Ready::Paged { seq, redelivered: false, persisted, expires_at: None, size } => Some((seq, persisted, size)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paged(seq: u64, size: u32) -> Ready {
        Ready::Paged { seq, redelivered: false, persisted: true, expires_at: None, size }
    }

    fn seqs_and_sizes(run: &PagedRun) -> Vec<(u64, u64)> {
        (0..run.len()).map(|i| (run.member(i).seq(), run.member(i).size())).collect()
    }

    #[test]
    fn only_consecutive_plain_paged_messages_join() {
        let mut run = PagedRun::pair(&paged(5, 10), &paged(6, 10)).unwrap();
        assert!(!run.extend(&paged(8, 10)), "a gap");
        assert!(!run.extend(&Ready::Paged { seq: 7, redelivered: true, persisted: true, expires_at: None, size: 1 }));
        assert!(!run.extend(&Ready::Paged {
            seq: 7,
            redelivered: false,
            persisted: true,
            expires_at: Some(9),
            size: 1
        }));
        assert!(!run.extend(&Ready::Paged { seq: 7, redelivered: false, persisted: false, expires_at: None, size: 1 }));
        assert!(run.extend(&paged(7, 10)));
        assert_eq!(seqs_and_sizes(&run), vec![(5, 10), (6, 10), (7, 10)]);
        assert!(PagedRun::pair(&paged(5, 10), &paged(7, 10)).is_none());
    }

    #[test]
    fn sizes_are_kept_per_member_once_they_differ() {
        let mut run = PagedRun::pair(&paged(1, 10), &paged(2, 10)).unwrap();
        assert!(run.extend(&paged(3, 30)));
        assert!(run.extend(&paged(4, 40)));
        assert_eq!(seqs_and_sizes(&run), vec![(1, 10), (2, 10), (3, 30), (4, 40)]);
        assert_eq!(run.pop_front().size(), 10);
        let tail = run.split_at_seq(4).unwrap();
        assert_eq!(seqs_and_sizes(&run), vec![(2, 10), (3, 30)]);
        assert_eq!(seqs_and_sizes(&tail), vec![(4, 40)]);
        assert!(run.split_at_seq(9).is_none(), "nothing at or above 9");
        let mut same = PagedRun::pair(&paged(1, 10), &paged(2, 10)).unwrap();
        assert!(same.extend(&paged(3, 10)));
        let tail = same.split_at_seq(2).unwrap();
        assert_eq!((seqs_and_sizes(&same), seqs_and_sizes(&tail)), (vec![(1, 10)], vec![(2, 10), (3, 10)]));
    }
}
