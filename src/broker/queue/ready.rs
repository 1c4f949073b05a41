//! The ready messages of a queue: one FIFO per priority level (one level unless the queue has
//! `x-max-priority`), with the counts the queue needs at hand — length, body bytes (for
//! `x-max-length-bytes`), how many bodies are in memory (for the memory window) and what its
//! transient ones count against the broker's memory budget.

use std::collections::VecDeque;
use std::sync::Arc;

use super::QueuedMessage;
use crate::broker::memory::{cost_of, MemoryBudget};

/// One entry: a message in memory, or only its place, its body being in the store until the
/// head of the queue comes near (memory stays bounded under a backlog).
#[derive(Debug)]
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

    fn size(&self) -> u64 {
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

#[derive(Debug)]
pub(super) struct ReadyList {
    /// Index = priority; the highest non-empty level is served first.
    levels: Vec<VecDeque<Ready>>,
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
        self.levels[level].push_back(r);
    }

    /// Puts a requeued message back at its original place (by sequence number).
    pub(super) fn insert_by_seq(&mut self, level: usize, r: Ready) {
        self.added(&r);
        let l = &mut self.levels[level];
        // Requeued messages are usually older than everything ready: search from the front.
        let at = l.partition_point(|x| x.seq() < r.seq());
        l.insert(at, r);
    }

    /// The level served next.
    pub(super) fn head_level(&self) -> Option<usize> {
        (0..self.levels.len()).rev().find(|&l| !self.levels[l].is_empty())
    }

    pub(super) fn front(&self) -> Option<&Ready> {
        self.head_level().and_then(|l| self.levels[l].front())
    }

    pub(super) fn level(&self, level: usize) -> &VecDeque<Ready> {
        &self.levels[level]
    }

    /// The newest entry of `level`. Replacing a resident message in it by one of the same
    /// size keeps the counts right.
    pub(super) fn back_mut(&mut self, level: usize) -> Option<&mut Ready> {
        self.levels[level].back_mut()
    }

    pub(super) fn pop_front_of(&mut self, level: usize) -> Option<Ready> {
        let r = self.levels[level].pop_front()?;
        self.removed(&r);
        Some(r)
    }

    pub(super) fn pop_front(&mut self) -> Option<Ready> {
        let level = self.head_level()?;
        self.pop_front_of(level)
    }

    pub(super) fn remove(&mut self, level: usize, at: usize) -> Option<Ready> {
        let r = self.levels[level].remove(at)?;
        self.removed(&r);
        Some(r)
    }

    /// Replaces a paged entry by its message read back from the store.
    pub(super) fn make_resident(&mut self, level: usize, at: usize, m: QueuedMessage) {
        let old = std::mem::replace(&mut self.levels[level][at], Ready::Resident(m));
        self.resident += 1 - old.resident();
        let new = &self.levels[level][at];
        let (new_size, new_cost) = (new.size(), new.transient_cost());
        self.bytes = self.bytes - old.size() + new_size;
        self.count_transient(new_cost, old.transient_cost());
    }

    pub(super) fn take_all(&mut self) -> Vec<Ready> {
        self.len = 0;
        self.bytes = 0;
        self.resident = 0;
        self.count_transient(0, self.transient_bytes);
        self.levels.iter_mut().flat_map(std::mem::take).collect()
    }
}
