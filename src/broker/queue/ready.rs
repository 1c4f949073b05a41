//! The ready messages of a queue: one FIFO per priority level (one level unless the queue has
//! `x-max-priority`), with the counts the queue needs at hand — length, body bytes (for
//! `x-max-length-bytes`), how many bodies are in memory (for the memory window) and what its
//! transient ones count against the broker's memory budget.
//!
//! Paged messages in a row are kept as one [`PagedRun`]; callers see them one at a time. The
//! head of a level is never a run: whatever takes it off splits the next member out first.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;

use super::run::PagedRun;
use super::QueuedMessage;
use crate::broker::memory::{cost_of, MemoryBudget};

/// One entry: a message in memory, or only its place, its body being in the store until the
/// head of the queue comes near (memory stays bounded under a backlog).
#[derive(Debug, Clone)]
pub(super) enum Ready {
    Resident(QueuedMessage),
    Paged { seq: u64, redelivered: bool, persisted: bool, expires_at: Option<u64>, size: u32 },
}

impl Ready {
    pub(super) fn seq(&self) -> u64 {
        match self {
            Ready::Resident(m) => m.seq,
            Ready::Paged { seq, .. } => *seq,
        }
    }

    pub(super) fn expires_at(&self) -> Option<u64> {
        match self {
            Ready::Resident(m) => m.expires_at,
            Ready::Paged { expires_at, .. } => *expires_at,
        }
    }

    pub(super) fn size(&self) -> u64 {
        match self {
            Ready::Resident(m) => m.msg.body.len() as u64,
            Ready::Paged { size, .. } => u64::from(*size),
        }
    }

    fn resident(&self) -> usize {
        usize::from(matches!(self, Ready::Resident(_)))
    }

    /// What it counts against the transient memory budget.
    fn transient_cost(&self) -> u64 {
        match self {
            Ready::Resident(m) if !m.persisted => cost_of(&m.msg),
            _ => 0,
        }
    }
}

/// One entry of a level: a message or its place, or a run of places.
#[derive(Debug)]
enum Slot {
    One(Ready),
    Run(Box<PagedRun>),
}

impl Slot {
    fn first_seq(&self) -> u64 {
        match self {
            Slot::One(r) => r.seq(),
            Slot::Run(run) => run.first_seq(),
        }
    }

    fn one(&self) -> Option<&Ready> {
        match self {
            Slot::One(r) => Some(r),
            Slot::Run(_) => None,
        }
    }
}

#[derive(Debug)]
pub(super) struct ReadyList {
    /// Index = priority; the highest non-empty level is served first.
    levels: Vec<VecDeque<Slot>>,
    len: usize,
    bytes: u64,
    resident: usize,
    /// The budget transient messages in memory count against, and what this list counts.
    budget: Option<Arc<MemoryBudget>>,
    transient_bytes: u64,
}

impl Drop for ReadyList {
    fn drop(&mut self) {
        if let Some(b) = &self.budget {
            b.sub(self.transient_bytes);
        }
    }
}

impl ReadyList {
    pub(super) fn new(max_priority: Option<u8>) -> ReadyList {
        let n = max_priority.map_or(1, |p| usize::from(p) + 1);
        ReadyList {
            levels: (0..n).map(|_| VecDeque::new()).collect(),
            len: 0,
            bytes: 0,
            resident: 0,
            budget: None,
            transient_bytes: 0,
        }
    }

    /// Counts transient messages in memory against `budget` from now on (set before any is
    /// added).
    pub(super) fn set_budget(&mut self, budget: Arc<MemoryBudget>) {
        debug_assert!(self.is_empty());
        self.budget = Some(budget);
    }

    /// Whether a transient message of `cost` bytes may stay in memory: the budget has room,
    /// or this queue holds fewer than `min_resident` bodies.
    pub(super) fn has_room_for_transient(&self, cost: u64, min_resident: usize) -> bool {
        self.resident < min_resident || self.budget.as_ref().is_none_or(|b| b.has_room(cost))
    }

    fn count_transient(&mut self, added: u64, removed: u64) {
        if added == removed {
            return;
        }
        self.transient_bytes = self.transient_bytes + added - removed;
        if let Some(b) = &self.budget {
            if added > removed {
                b.add(added - removed);
            } else {
                b.sub(removed - added);
            }
        }
    }

    /// The level a message of this priority joins: above the maximum counts as the maximum,
    /// none as 0.
    pub(super) fn level_of(&self, priority: Option<u8>) -> usize {
        usize::from(priority.unwrap_or(0)).min(self.levels.len() - 1)
    }

    pub(super) fn levels(&self) -> usize {
        self.levels.len()
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(super) fn resident(&self) -> usize {
        self.resident
    }

    fn added(&mut self, r: &Ready) {
        self.len += 1;
        self.bytes += r.size();
        self.resident += r.resident();
        self.count_transient(r.transient_cost(), 0);
    }

    fn removed(&mut self, r: &Ready) {
        self.len -= 1;
        self.bytes -= r.size();
        self.resident -= r.resident();
        self.count_transient(0, r.transient_cost());
    }

    pub(super) fn push_back(&mut self, level: usize, r: Ready) {
        self.added(&r);
        let l = &mut self.levels[level];
        // Joins a run behind the head (the head stays a single entry). A run starts from three
        // members: boxed, it takes more room than two single entries.
        if matches!(r, Ready::Paged { .. }) && l.len() >= 2 {
            if let Some(Slot::Run(run)) = l.back_mut() {
                if run.extend(&r) {
                    return;
                }
            } else if l.len() >= 3 {
                let (a, b) = (l[l.len() - 2].one(), l[l.len() - 1].one());
                let run = a.zip(b).and_then(|(a, b)| PagedRun::pair(a, b));
                if let Some(mut run) = run {
                    if run.extend(&r) {
                        l.truncate(l.len() - 2);
                        l.push_back(Slot::Run(Box::new(run)));
                        return;
                    }
                }
            }
        }
        l.push_back(Slot::One(r));
    }

    /// Puts a requeued message back at its original place (by sequence number).
    pub(super) fn insert_by_seq(&mut self, level: usize, r: Ready) {
        self.added(&r);
        let l = &mut self.levels[level];
        // Requeued messages are usually older than everything ready: search from the front.
        let at = l.partition_point(|x| x.first_seq() < r.seq());
        // A run's members are numbered in a row, so nothing requeued falls inside one; if it
        // did, the run is cut there.
        if let Some(Slot::Run(run)) = at.checked_sub(1).and_then(|i| l.get_mut(i)) {
            if let Some(tail) = run.split_at_seq(r.seq()) {
                l.insert(at, Slot::Run(Box::new(tail)));
            }
        }
        l.insert(at, Slot::One(r));
    }

    /// The level served next.
    pub(super) fn head_level(&self) -> Option<usize> {
        (0..self.levels.len()).rev().find(|&l| !self.levels[l].is_empty())
    }

    pub(super) fn front(&self) -> Option<&Ready> {
        self.head_level().and_then(|l| self.front_of(l))
    }

    /// The head of `level`.
    pub(super) fn front_of(&self, level: usize) -> Option<&Ready> {
        self.levels[level].front().and_then(Slot::one)
    }

    /// The entry at `at` of `level`, unless that is a run: positions from [`singles`] only.
    pub(super) fn single(&self, level: usize, at: usize) -> Option<&Ready> {
        self.levels[level].get(at).and_then(Slot::one)
    }

    /// The single entries at the head of `level` with their positions, up to the first run.
    pub(super) fn singles(&self, level: usize) -> impl Iterator<Item = (usize, &Ready)> {
        self.levels[level].iter().map_while(Slot::one).enumerate()
    }

    /// Every entry of `level` in order, a run's members one by one.
    pub(super) fn iter_level(&self, level: usize) -> LevelIter<'_> {
        LevelIter { slots: self.levels[level].iter(), run: None }
    }

    /// Splits runs at the head of `level` until `paged` paged entries stand there singly (or
    /// the level has no more), so that [`singles`] finds them. One pass: the entries before
    /// the last run touched move once, however many short runs there are.
    pub(super) fn unroll(&mut self, level: usize, paged: usize) {
        let l = &mut self.levels[level];
        let mut head: Vec<Slot> = Vec::new();
        let mut seen = 0;
        while seen < paged {
            match l.pop_front() {
                None => break,
                Some(Slot::One(r)) => {
                    seen += usize::from(matches!(r, Ready::Paged { .. }));
                    head.push(Slot::One(r));
                }
                Some(Slot::Run(mut run)) => {
                    let take = (paged - seen).min(run.len());
                    head.extend((0..take).map(|_| Slot::One(run.pop_front())));
                    seen += take;
                    if run.len() > 0 {
                        l.push_front(Slot::Run(run));
                    }
                }
            }
        }
        for slot in head.into_iter().rev() {
            l.push_front(slot);
        }
    }

    /// The newest entry of `level` (none if that is a run). Replacing a resident message in
    /// it by one of the same size keeps the counts right.
    pub(super) fn back_mut(&mut self, level: usize) -> Option<&mut Ready> {
        match self.levels[level].back_mut()? {
            Slot::One(r) => Some(r),
            Slot::Run(_) => None,
        }
    }

    pub(super) fn pop_front_of(&mut self, level: usize) -> Option<Ready> {
        self.single_head(level);
        let Some(Slot::One(r)) = self.levels[level].pop_front() else { return None };
        self.removed(&r);
        self.single_head(level);
        Some(r)
    }

    /// Keeps the head of `level` a single entry: a run there gives up its first member.
    fn single_head(&mut self, level: usize) {
        let l = &mut self.levels[level];
        if let Some(Slot::Run(run)) = l.front_mut() {
            let r = run.pop_front();
            if run.len() == 0 {
                l.pop_front();
            }
            l.push_front(Slot::One(r));
        }
    }

    pub(super) fn pop_front(&mut self) -> Option<Ready> {
        let level = self.head_level()?;
        self.pop_front_of(level)
    }

    /// Takes out the single entry at `at` (a position from [`singles`]).
    pub(super) fn remove(&mut self, level: usize, at: usize) -> Option<Ready> {
        self.single(level, at)?;
        let Some(Slot::One(r)) = self.levels[level].remove(at) else { return None };
        self.removed(&r);
        if at == 0 {
            self.single_head(level);
        }
        Some(r)
    }

    /// Replaces a paged entry (a position from [`singles`]) by its message read back from the
    /// store.
    pub(super) fn make_resident(&mut self, level: usize, at: usize, m: QueuedMessage) {
        let Some(Slot::One(slot)) = self.levels[level].get_mut(at) else {
            debug_assert!(false, "make_resident on a run");
            return;
        };
        let old = std::mem::replace(slot, Ready::Resident(m));
        self.resident += 1 - old.resident();
        let new = &*slot;
        let (new_size, new_cost) = (new.size(), new.transient_cost());
        self.bytes = self.bytes - old.size() + new_size;
        self.count_transient(new_cost, old.transient_cost());
    }

    /// Every entry, from the lowest level up, runs taken apart as they are read.
    pub(super) fn take_all(&mut self) -> TakenAll {
        let left = self.len;
        self.len = 0;
        self.bytes = 0;
        self.resident = 0;
        self.count_transient(0, self.transient_bytes);
        let slots: Vec<Slot> = self.levels.iter_mut().flat_map(std::mem::take).collect();
        TakenAll { slots: slots.into_iter(), run: None, left }
    }
}

/// What [`ReadyList::take_all`] took: a run's members are made one by one.
pub(super) struct TakenAll {
    slots: std::vec::IntoIter<Slot>,
    run: Option<Box<PagedRun>>,
    left: usize,
}

impl Iterator for TakenAll {
    type Item = Ready;

    fn next(&mut self) -> Option<Ready> {
        loop {
            if let Some(run) = &mut self.run {
                if run.len() > 0 {
                    self.left -= 1;
                    return Some(run.pop_front());
                }
                self.run = None;
            }
            match self.slots.next()? {
                Slot::One(r) => {
                    self.left -= 1;
                    return Some(r);
                }
                Slot::Run(run) => self.run = Some(run),
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for TakenAll {}

/// [`ReadyList::iter_level`]: a run's members are made as they are reached.
pub(super) struct LevelIter<'a> {
    slots: std::collections::vec_deque::Iter<'a, Slot>,
    run: Option<(&'a PagedRun, usize)>,
}

impl<'a> Iterator for LevelIter<'a> {
    type Item = Cow<'a, Ready>;

    fn next(&mut self) -> Option<Cow<'a, Ready>> {
        loop {
            if let Some((run, i)) = &mut self.run {
                if *i < run.len() {
                    *i += 1;
                    return Some(Cow::Owned(run.member(*i - 1)));
                }
                self.run = None;
            }
            match self.slots.next()? {
                Slot::One(r) => return Some(Cow::Borrowed(r)),
                Slot::Run(run) => self.run = Some((run, 0)),
            }
        }
    }
}

#[cfg(test)]
#[path = "ready_tests.rs"]
mod tests;
