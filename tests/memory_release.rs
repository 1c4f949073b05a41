//! Freed memory does not hold the memory alarm on. After a backlog is consumed or purged,
//! glibc's malloc keeps the freed pages resident for reuse; the alarm reads the resident set, so
//! above the watermark the broker first hands that free memory back to the system. (Found by
//! `scripts/pressure/ignore-blocked.sh`: after purging, 720 MiB stayed resident with 54 MiB in
//! use, and the flooding publisher was never unblocked.)
//!
//! One test in this file: it measures the whole process's resident memory.

mod common;

use common::eventually;
use warren::broker::vm_memory::{resident_bytes, Watermark};

const MIB: u64 = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_freed_but_kept_by_the_allocator_does_not_hold_the_alarm_on() {
    let b = common::start().await;
    let before = resident_bytes();
    // What a purged backlog leaves: 300 MiB of freed bodies between small blocks still in use,
    // so the allocator cannot give the space back by shrinking its heap.
    let mut live = Vec::new();
    let mut bodies = Vec::new();
    for _ in 0..4800 {
        bodies.push(vec![1u8; 64 * 1024]);
        live.push(Box::new([7u8; 64]));
    }
    drop(bodies);
    let kept = resident_bytes().saturating_sub(before);
    if kept < 200 * MIB {
        eprintln!("the allocator returned the freed memory by itself ({} MiB kept): nothing to test", kept / MIB);
        return;
    }

    b.broker.set_memory_high_watermark(Watermark::Absolute(before + 150 * MIB));
    eventually("the free memory is given back and the alarm is off", || {
        (resident_bytes() < before + 100 * MIB && !b.broker.alarms.current().memory).then_some(())
    })
    .await;
    assert_eq!(live.len(), 4800);
}
