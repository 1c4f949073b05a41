//! ReadyList with runs: the cases by name, then a model of one entry per message.
use super::*;

fn paged(seq: u64) -> Ready {
    Ready::Paged { seq, redelivered: false, persisted: true, expires_at: None, size: 10 + seq as u32 }
}

fn seqs(list: &ReadyList) -> Vec<u64> {
    list.iter_level(0).map(|r| r.seq()).collect()
}

fn runs(list: &ReadyList) -> usize {
    list.levels[0].iter().filter(|s| matches!(s, Slot::Run(_))).count()
}

#[test]
fn a_run_of_places_is_one_entry_and_never_the_head() {
    // A run costs no more than the entry it replaces: resident queues pay nothing for it.
    assert!(std::mem::size_of::<Slot>() <= std::mem::size_of::<Ready>());
    let mut list = ReadyList::new(None);
    for seq in 1..=1000 {
        list.push_back(0, paged(seq));
    }
    assert_eq!(list.levels[0].len(), 2, "the head, then one run");
    assert_eq!((list.len(), list.bytes()), (1000, (1..=1000).map(|s| 10 + s).sum()));
    assert_eq!(seqs(&list), (1..=1000).collect::<Vec<_>>());
    for want in 1..=1000 {
        assert!(matches!(list.front_of(0), Some(Ready::Paged { seq, .. }) if *seq == want));
        let r = list.pop_front_of(0).unwrap();
        assert_eq!((r.seq(), r.size()), (want, 10 + want));
    }
    assert!(list.is_empty() && list.bytes() == 0 && list.levels[0].is_empty());
}

#[test]
fn unrolled_members_are_paged_in_where_they_stand() {
    let mut list = ReadyList::new(None);
    for seq in 1..=10 {
        list.push_back(0, paged(seq));
    }
    // Redelivered and expiring places stay single; a gap starts a new run.
    list.push_back(0, Ready::Paged { seq: 11, redelivered: true, persisted: true, expires_at: None, size: 1 });
    for seq in 20..=25 {
        list.push_back(0, paged(seq));
    }
    assert_eq!(runs(&list), 2);
    list.unroll(0, 4);
    let singles: Vec<u64> = list.singles(0).map(|(_, r)| r.seq()).collect();
    assert_eq!(singles, vec![1, 2, 3, 4]);
    list.unroll(0, 13);
    let singles: Vec<u64> = list.singles(0).map(|(_, r)| r.seq()).collect();
    assert_eq!(singles, vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 20, 21]);
    assert_eq!(seqs(&list).len(), 17, "nothing lost or doubled");
    let m = QueuedMessage {
        seq: 2,
        msg: Arc::new(crate::broker::message::Message {
            exchange: crate::protocol::ShortStr::EMPTY,
            routing_key: crate::protocol::ShortStr::from_static("q"),
            properties: Default::default(),
            body: bytes::Bytes::from_static(b"x"),
            timestamp_ms: 0,
        }),
        redelivered: false,
        persisted: true,
        expires_at: None,
        deliveries: 0,
    };
    list.make_resident(0, 1, m);
    assert_eq!(list.resident(), 1);
    assert_eq!(list.remove(0, 0).map(|r| r.seq()), Some(1));
    assert!(matches!(list.front_of(0), Some(Ready::Resident(m)) if m.seq == 2));
    assert_eq!(list.take_all().map(|r| r.seq()).collect::<Vec<_>>(), (2..=11).chain(20..=25).collect::<Vec<_>>());
    assert_eq!((list.len(), list.resident()), (0, 0));
}

#[test]
fn a_requeued_message_goes_back_in_order_even_into_a_run() {
    let mut list = ReadyList::new(None);
    for seq in [1, 2, 3, 5, 6, 7] {
        list.push_back(0, paged(seq));
    }
    list.insert_by_seq(0, paged(4));
    list.insert_by_seq(0, paged(0));
    assert_eq!(seqs(&list), (0..=7).collect::<Vec<_>>());
    let mut runs_cut = ReadyList::new(None);
    for seq in 1..=6 {
        runs_cut.push_back(0, paged(seq));
    }
    runs_cut.insert_by_seq(0, Ready::Paged { seq: 4, redelivered: true, persisted: true, expires_at: None, size: 1 });
    assert_eq!(seqs(&runs_cut), vec![1, 2, 3, 4, 4, 5, 6]);
    assert_eq!(runs_cut.len(), 7);
}

/// A small deterministic generator (xorshift): the model test's runs are the same every time.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn resident(seq: u64, size: usize, persisted: bool, redelivered: bool) -> QueuedMessage {
    let msg = crate::broker::message::Message {
        exchange: crate::protocol::ShortStr::EMPTY,
        routing_key: crate::protocol::ShortStr::EMPTY,
        properties: Default::default(),
        body: bytes::Bytes::from(vec![0u8; size]),
        timestamp_ms: 0,
    };
    QueuedMessage { seq, msg: Arc::new(msg), redelivered, persisted, expires_at: None, deliveries: 0 }
}

/// What tells two entries apart: sequence number, resident, size, redelivered, expiry.
fn key(r: &Ready) -> (u64, bool, u64, bool, Option<u64>) {
    match r {
        Ready::Resident(m) => (m.seq, true, m.msg.body.len() as u64, m.redelivered, m.expires_at),
        Ready::Paged { seq, size, redelivered, expires_at, .. } => {
            (*seq, false, u64::from(*size), *redelivered, *expires_at)
        }
    }
}

/// The list against a model keeping one entry per message: contents and order, counts, the
/// transient budget, the head never a run, no empty run (runs start at three members and
/// shrink from their head).
fn check(list: &ReadyList, model: &[Vec<Ready>], budget: &MemoryBudget) {
    let (mut len, mut bytes, mut res, mut transient) = (0, 0, 0, 0);
    for (level, m) in model.iter().enumerate() {
        let got: Vec<_> = list.iter_level(level).map(|r| key(&r)).collect();
        assert_eq!(got, m.iter().map(key).collect::<Vec<_>>(), "level {level}");
        assert!(!matches!(list.levels[level].front(), Some(Slot::Run(_))), "a run at the head");
        assert!(list.levels[level].iter().all(|s| !matches!(s, Slot::Run(r) if r.len() == 0)), "an empty run");
        len += m.len();
        bytes += m.iter().map(Ready::size).sum::<u64>();
        res += m.iter().map(Ready::resident).sum::<usize>();
        transient += m.iter().map(Ready::transient_cost).sum::<u64>();
    }
    assert_eq!((list.len(), list.bytes(), list.resident(), list.transient_bytes), (len, bytes, res, transient));
    assert_eq!(budget.used(), transient);
}

#[test]
fn every_operation_keeps_the_list_equal_to_one_entry_per_message() {
    let mut run_members = 0;
    for seed in 1..400u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let levels = 1 + rng.below(3) as usize;
        let budget = Arc::new(MemoryBudget::new(u64::MAX));
        let mut list = ReadyList::new(Some(levels as u8 - 1));
        list.set_budget(budget.clone());
        let mut model: Vec<Vec<Ready>> = (0..levels).map(|_| Vec::new()).collect();
        let (mut next_seq, mut out) = (0u64, Vec::new());
        let same_size = rng.below(2) == 0;
        for _ in 0..300 {
            match rng.below(10) {
                // Publish (mostly paged, now and then a gap, a resident, a redelivered, expiring
                // or transient one).
                0..=3 => {
                    let level = if rng.below(4) == 0 { rng.below(levels as u64) as usize } else { 0 };
                    let seq = next_seq;
                    next_seq += 1 + u64::from(rng.below(20) == 0);
                    let size = if same_size { 7 } else { rng.below(5) as u32 };
                    let persisted = rng.below(10) != 0;
                    let r = if rng.below(6) == 0 {
                        Ready::Resident(resident(seq, size as usize, persisted, false))
                    } else {
                        let redelivered = rng.below(15) == 0;
                        let expires_at = (rng.below(15) == 0).then_some(5);
                        Ready::Paged { seq, redelivered, persisted, expires_at, size }
                    };
                    model[level].push(r.clone());
                    list.push_back(level, r);
                }
                // Deliver from the head.
                4 | 5 => {
                    let level = rng.below(levels as u64) as usize;
                    let got = list.pop_front_of(level);
                    let want = (!model[level].is_empty()).then(|| model[level].remove(0));
                    assert_eq!(got.as_ref().map(key), want.as_ref().map(key));
                    out.extend(want.map(|r| (level, r)));
                }
                // Requeue something delivered.
                6 if !out.is_empty() => {
                    let (level, r) = out.swap_remove(rng.below(out.len() as u64) as usize);
                    let (seq, _, size, _, _) = key(&r);
                    let r = Ready::Resident(resident(seq, size as usize, rng.below(2) == 0, true));
                    let at = model[level].partition_point(|x| x.seq() < seq);
                    model[level].insert(at, r.clone());
                    list.insert_by_seq(level, r);
                }
                // What `page_in` does: unroll, read back (some bodies lost), in its order.
                7 | 8 => {
                    let level = rng.below(levels as u64) as usize;
                    let batch = 1 + rng.below(12) as usize;
                    list.unroll(level, batch);
                    let paged = |(_, r): &(usize, &Ready)| matches!(r, Ready::Paged { .. });
                    let positions: Vec<usize> = list.singles(level).filter(paged).map(|(i, _)| i).take(batch).collect();
                    let wanted: Vec<usize> = model[level]
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| matches!(r, Ready::Paged { .. }))
                        .map(|(i, _)| i)
                        .take(batch)
                        .collect();
                    assert_eq!(positions, wanted, "unrolled where the model has them");
                    let mut lost = Vec::new();
                    for &i in &positions {
                        let Some(&Ready::Paged { seq, size, persisted, redelivered, .. }) = list.single(level, i)
                        else {
                            panic!("position {i} is not a paged entry")
                        };
                        if rng.below(5) == 0 {
                            lost.push(i);
                            continue;
                        }
                        let m = resident(seq, size as usize, persisted, redelivered);
                        model[level][i] = Ready::Resident(m.clone());
                        list.make_resident(level, i, m);
                    }
                    for i in lost.into_iter().rev() {
                        assert_eq!(list.remove(level, i).as_ref().map(key), Some(key(&model[level].remove(i))));
                    }
                }
                // Purge, now and then.
                _ if rng.below(20) == 0 => {
                    let taken = list.take_all();
                    let n = taken.len();
                    let got: Vec<_> = taken.map(|r| key(&r)).collect();
                    assert_eq!(n, got.len(), "take_all's length");
                    let want: Vec<_> = model.iter_mut().flat_map(std::mem::take).map(|r| key(&r)).collect();
                    assert_eq!(got, want);
                }
                _ => {}
            }
            check(&list, &model, &budget);
            run_members +=
                list.levels.iter().flatten().map(|s| if let Slot::Run(r) = s { r.len() } else { 0 }).sum::<usize>();
        }
    }
    assert!(run_members > 10_000, "runs were exercised: {run_members} members seen");
}
