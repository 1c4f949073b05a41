//! The hash ring: each bound destination owns points on a 64-bit circle, as many as its weight
//! times a resolution, and a message goes to the owner of the first point at or after its hash
//! (wrapping round). A destination's points follow from its kind and name alone, so the ring is
//! the same whatever order the bindings came in, before and after a restart, and a destination
//! joining or leaving moves only the keys that fall on its own points.
//!
//! Binding changes update the ring in place (a merge or a filter, linear in its points); routing
//! is a binary search.

use smallvec::SmallVec;

use super::StableHasher;
use crate::broker::exchange::Destination;

/// Points per unit of weight. A destination's share strays from its due by about
/// 1/sqrt(points) (17% at worst with 256 and ten equal weights, 9% with 1024).
const POINTS_PER_WEIGHT: u32 = 1024;
/// Past this many points (16 MiB) the resolution halves until the ring fits again (each
/// destination keeps half its points, so about half the keys move, once). Only total weights
/// above 1024 get there.
const MAX_POINTS: u64 = 1 << 20;

#[derive(Default)]
pub struct Ring {
    members: Vec<Member>,
    /// Sorted by `at`.
    points: Vec<Point>,
    /// Points per unit of weight: [`POINTS_PER_WEIGHT`], or less for very large total weights.
    resolution: u32,
}

struct Member {
    destination: Destination,
    /// The hash of its kind and name, which its points continue.
    seed: StableHasher,
    /// The weights of its bindings; the smallest counts.
    weights: SmallVec<[u32; 1]>,
}

#[derive(Debug, Clone, Copy)]
struct Point {
    at: u64,
    /// Index into `members`.
    owner: u32,
}

impl Member {
    fn new(destination: Destination, weight: u32) -> Member {
        let mut seed = StableHasher::new();
        match &destination {
            Destination::Queue(q) => {
                seed.write_u8(b'q');
                seed.write_len_prefixed(q.name.as_bytes());
            }
            Destination::Exchange(x) => {
                seed.write_u8(b'e');
                seed.write_len_prefixed(x.name.as_bytes());
            }
        }
        Member { destination, seed, weights: SmallVec::from_elem(weight, 1) }
    }

    fn weight(&self) -> u32 {
        self.weights.iter().copied().min().unwrap_or(0)
    }

    /// Its points at `resolution`; those at a lower resolution are a prefix of these.
    fn points(&self, owner: u32, resolution: u32) -> impl Iterator<Item = Point> + '_ {
        (0..self.weight().saturating_mul(resolution)).map(move |n| {
            let mut h = self.seed;
            h.write(&n.to_le_bytes());
            Point { at: h.finish(), owner }
        })
    }
}

impl Ring {
    /// Adds a binding of `destination` with `weight`.
    pub fn add(&mut self, destination: &Destination, weight: u32) {
        match self.find(destination) {
            Some(i) => {
                let before = self.members[i].weight();
                self.members[i].weights.push(weight);
                if self.members[i].weight() != before {
                    self.replace(i);
                }
            }
            None => {
                self.members.push(Member::new(destination.clone(), weight));
                self.place(self.members.len() - 1);
            }
        }
    }

    /// Removes one binding of `destination` with `weight`; the destination leaves the ring
    /// with its last binding.
    pub fn remove(&mut self, destination: &Destination, weight: u32) {
        let Some(i) = self.find(destination) else { return };
        let m = &mut self.members[i];
        let before = m.weight();
        if let Some(at) = m.weights.iter().position(|w| *w == weight) {
            m.weights.swap_remove(at);
        }
        if m.weights.is_empty() {
            self.remove_member(i);
        } else if m.weight() != before {
            self.replace(i);
        }
    }

    /// Removes every binding of `destination`.
    pub fn remove_all(&mut self, destination: &Destination) {
        if let Some(i) = self.find(destination) {
            self.remove_member(i);
        }
    }

    /// The destination owning the first point at or after `hash`, if any is bound.
    pub fn pick(&self, hash: u64) -> Option<&Destination> {
        let first = self.points.first()?;
        let at = self.points.partition_point(|p| p.at < hash);
        let owner = self.points.get(at).unwrap_or(first).owner;
        self.members.get(owner as usize).map(|m| &m.destination)
    }

    fn find(&self, destination: &Destination) -> Option<usize> {
        self.members.iter().position(|m| m.destination == *destination)
    }

    fn total_weight(&self) -> u64 {
        self.members.iter().map(|m| u64::from(m.weight())).sum()
    }

    /// Puts member `i` (new, or with its points taken off) on the ring.
    fn place(&mut self, i: usize) {
        if self.rescale() {
            return;
        }
        let mut new: Vec<Point> = self.members[i].points(i as u32, self.resolution).collect();
        new.sort_unstable_by_key(|p| p.at);
        self.points = merge(std::mem::take(&mut self.points), new);
    }

    /// Places member `i` again after its weight changed.
    fn replace(&mut self, i: usize) {
        let owner = i as u32;
        self.points.retain(|p| p.owner != owner);
        self.place(i);
    }

    fn remove_member(&mut self, i: usize) {
        self.members.remove(i);
        let gone = i as u32;
        self.points.retain_mut(|p| {
            if p.owner == gone {
                return false;
            }
            if p.owner > gone {
                p.owner -= 1;
            }
            true
        });
        self.rescale();
    }

    /// Rebuilds every point when the total weight calls for another resolution; whether it did.
    fn rescale(&mut self) -> bool {
        let wanted = resolution_for(self.total_weight());
        if wanted == self.resolution {
            return false;
        }
        self.resolution = wanted;
        let mut points: Vec<Point> =
            self.members.iter().enumerate().flat_map(|(i, m)| m.points(i as u32, wanted)).collect();
        points.sort_unstable_by_key(|p| p.at);
        self.points = points;
        true
    }

    #[cfg(test)]
    pub(super) fn point_count(&self) -> usize {
        self.points.len()
    }
}

fn resolution_for(total_weight: u64) -> u32 {
    let mut r = POINTS_PER_WEIGHT;
    while r > 1 && total_weight * u64::from(r) > MAX_POINTS {
        r /= 2;
    }
    r
}

/// Two sorted runs as one.
fn merge(a: Vec<Point>, b: Vec<Point>) -> Vec<Point> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x.at <= y.at => a.next(),
            (Some(_), Some(_)) => b.next(),
            (Some(_), None) => a.next(),
            (None, _) => b.next(),
        };
        match next {
            Some(p) => out.push(p),
            None => return out,
        }
    }
}
