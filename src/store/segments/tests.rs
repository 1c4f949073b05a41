//! The segments through the store and its writer: bodies written and read back, segments
//! deleted once unused, records re-indexed after a crash lost their index entries.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use rocksdb::WriteBatch;

use crate::store::writer::{Op, StoreWriter};
use crate::store::{message_key, Store, CF_BODIES, CF_MESSAGES};

fn body(seq: u64) -> Bytes {
    Bytes::from(vec![seq as u8; 600 + seq as usize])
}

fn put(queue: u64, seq: u64) -> Op {
    Op::Put { queue, seq, record: Bytes::from(format!("entry {seq}")), body: Some(body(seq)), done: None }
}

fn delete(queue: u64, seq: u64) -> Op {
    Op::Delete { queue, seq, split: true }
}

/// Each message of `seqs` as the store has it: its entry and body.
fn stored(store: &Store, queue: u64, seqs: &[u64]) -> Vec<Option<(Bytes, Bytes)>> {
    let entries = store.read_messages(queue, seqs, false).unwrap();
    let wanted: Vec<_> = seqs.iter().zip(&entries).map(|(seq, e)| (*seq, e.as_ref().and_then(|e| e.body_at))).collect();
    let bodies = store.read_bodies(queue, &wanted).unwrap();
    entries.into_iter().zip(bodies).map(|(e, b)| Some((e?.entry, b?))).collect()
}

fn expected(seqs: &[u64]) -> Vec<Option<(Bytes, Bytes)>> {
    seqs.iter().map(|&seq| Some((Bytes::from(format!("entry {seq}")), body(seq)))).collect()
}

fn with_writer(store: &Arc<Store>, ops: impl IntoIterator<Item = Op>) {
    let (writer, thread) = StoreWriter::start(store.clone());
    for op in ops {
        writer.submit(op);
        // A batch each, so batches append to segments one after the other.
        writer.flush();
    }
    drop(writer);
    thread.join().unwrap();
}

/// All of `ops` in one batch: the writer thread takes whatever is queued when it wakes.
fn in_one_batch(store: &Arc<Store>, ops: Vec<Op>) {
    let mut batch = ops;
    let stats = crate::store::writer::WriterStats::default();
    crate::store::writer::write_batch(store, &mut batch, &stats, &mut Default::default());
}

#[test]
fn bodies_go_to_a_segment_once_and_are_read_back_whatever_the_order_asked() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    with_writer(&store, (1..=10).map(|seq| put(1, seq)));
    assert_eq!(stored(&store, 1, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), expected(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]));
    assert_eq!(stored(&store, 1, &[9, 2, 5]), expected(&[9, 2, 5]), "out of order, with gaps");
    assert_eq!(stored(&store, 1, &[11]), vec![None]);
    assert!(store.db.iterator_cf(store.cf(CF_BODIES), rocksdb::IteratorMode::Start).next().is_none());
    assert_eq!(store.segments.ids(), vec![1]);
}

#[test]
fn a_segment_no_message_needs_is_deleted_but_not_the_one_appended_to_nor_before_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    // Three records a segment.
    store.segments.set_segment_size(3 * 700);
    with_writer(&store, (1..=9).map(|seq| put(1, seq)).chain((1..=3).map(|seq| delete(1, seq))));
    assert_eq!(store.segments.ids(), vec![1, 2, 3], "kept until every queue has counted its bodies");
    store.recovered();
    assert_eq!(store.segments.ids(), vec![2, 3]);
    // Segment 3 is the one appended to: it stays, empty.
    with_writer(&store, [7, 8, 9, 5, 4].map(|seq| delete(1, seq)));
    assert_eq!(store.segments.ids(), vec![2, 3]);
    with_writer(&store, [delete(1, 6)]);
    assert_eq!(store.segments.ids(), vec![3]);
    assert_eq!(stored(&store, 1, &[1, 6, 9]), vec![None, None, None]);
    // A new segment is started once 3 is full; then 3 goes.
    with_writer(&store, (10..=13).map(|seq| put(1, seq)));
    assert_eq!(store.segments.ids(), vec![4, 5]);
    assert_eq!(stored(&store, 1, &[10, 11, 12, 13]), expected(&[10, 11, 12, 13]));
    // A purge frees what the queue held.
    with_writer(&store, [Op::DeleteQueue { queue: 1 }]);
    assert_eq!(store.segments.ids(), vec![5]);
}

#[test]
fn a_restart_counts_what_each_queue_holds_and_ids_are_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Arc::new(Store::open(dir.path()).unwrap());
        store.segments.set_segment_size(3 * 700);
        with_writer(&store, (1..=6).map(|seq| put(1, seq)).chain([put(2, 1)]));
    }
    let store = Arc::new(Store::open(dir.path()).unwrap());
    assert_eq!(store.segments.ids(), vec![1, 2, 3]);
    // Queue 1 is recovered; queue 2 is not (deleted with its definition): its body goes.
    let mut seqs = Vec::new();
    store.for_each_message(1, |seq, _, _| seqs.push(seq)).unwrap();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5, 6]);
    store.recovered();
    assert_eq!(store.segments.ids(), vec![1, 2]);
    with_writer(&store, (1..=6).map(|seq| delete(1, seq)));
    assert_eq!(store.segments.ids(), Vec::<u32>::new(), "none is appended to after a restart");
    drop(store);
    let store = Arc::new(Store::open(dir.path()).unwrap());
    with_writer(&store, [put(1, 7)]);
    assert_eq!(store.segments.ids(), vec![4], "1 to 3 were used before");
    assert_eq!(stored(&store, 1, &[7]), expected(&[7]));
}

#[test]
fn records_whose_index_a_crash_lost_are_indexed_again_and_a_torn_one_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Arc::new(Store::open(dir.path()).unwrap());
        with_writer(&store, [put(1, 1)]);
        // The crash: three more bodies reach the segment, their index entries never RocksDB,
        // and a fourth record is cut short.
        let mut app = store.segments.appender();
        for seq in 2..=4 {
            app.add(1, seq, format!("entry {seq}").as_bytes(), &body(seq));
        }
        store.segments.write(&mut app).unwrap();
        drop(app);
        let mut file =
            std::fs::OpenOptions::new().append(true).open(dir.path().join("segments/0000000001.seg")).unwrap();
        // A whole header (CRC, entry and body length 5, queue, seq) and its ten bytes, which
        // fail the CRC; then the start of a header.
        let mut torn = [0u32, 5, 5].map(u32::to_be_bytes).concat();
        torn.extend_from_slice(&[1u64, 5].map(u64::to_be_bytes).concat());
        torn.extend_from_slice(b"0123456789");
        torn.extend_from_slice(&[0u8; 6]);
        file.write_all(&torn).unwrap();
    }
    let store = Arc::new(Store::open(dir.path()).unwrap());
    assert_eq!(stored(&store, 1, &[1, 2, 3, 4, 5]), [expected(&[1, 2, 3, 4]), vec![None]].concat());
    store.for_each_message(1, |_, _, _| {}).unwrap();
    store.recovered();
    with_writer(&store, [delete(1, 2)]);
    drop(store);
    // The checkpoint moved past them: an acked one is not brought back by a second replay.
    let store = Arc::new(Store::open(dir.path()).unwrap());
    assert_eq!(
        stored(&store, 1, &[1, 2, 3, 4]),
        vec![expected(&[1])[0].clone(), None, expected(&[3])[0].clone(), expected(&[4])[0].clone()]
    );
}

#[test]
fn bodies_an_earlier_version_stored_in_rocksdb_are_read_and_deleted_there() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let mut b = WriteBatch::default();
        b.put_cf(store.cf(CF_MESSAGES), message_key(1, 1), b"entry 1");
        b.put_cf(store.cf(CF_BODIES), message_key(1, 1), body(1));
        store.db.write(b).unwrap();
    }
    let store = Arc::new(Store::open(dir.path()).unwrap());
    store.for_each_message(1, |_, _, _| {}).unwrap();
    store.recovered();
    with_writer(&store, [put(1, 2)]);
    assert_eq!(stored(&store, 1, &[1, 2]), expected(&[1, 2]));
    with_writer(&store, [delete(1, 1), delete(1, 2)]);
    assert_eq!(store.db.get_cf(store.cf(CF_BODIES), message_key(1, 1)).unwrap(), None);
    assert_eq!(stored(&store, 1, &[1, 2]), vec![None, None]);
}

#[test]
fn a_queue_deleted_in_the_batch_that_appended_its_body_frees_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    store.segments.set_segment_size(3 * 700);
    store.recovered();
    in_one_batch(&store, vec![put(1, 1), put(2, 1), Op::DeleteQueue { queue: 1 }]);
    // Queue 2's next bodies fill segment 1 and start segment 2: segment 1 is closed.
    in_one_batch(&store, (2..=4).map(|seq| put(2, seq)).collect());
    with_writer(&store, (1..=4).map(|seq| delete(2, seq)));
    assert_eq!(store.segments.ids(), vec![2], "queue 1's body did not keep segment 1");
}

#[test]
fn no_segment_is_deleted_in_a_run_where_a_queue_could_not_count_its_bodies() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Arc::new(Store::open(dir.path()).unwrap());
        with_writer(&store, [put(1, 1)]);
    }
    let store = Arc::new(Store::open(dir.path()).unwrap());
    // The queue's recovery failed half-way: its body was not counted.
    store.segments.counting_failed();
    store.recovered();
    assert_eq!(store.segments.ids(), vec![1]);
    assert_eq!(stored(&store, 1, &[1]), expected(&[1]));
}

#[test]
fn a_segment_prepared_for_direct_appends_replays_up_to_its_zeros() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Arc::new(Store::open(dir.path()).unwrap());
        store.segments.set_segment_size(3 * 700);
        // Segment 1 is started empty; segment 2 was prepared (zeros) while 1 filled.
        with_writer(&store, (1..=5).map(|seq| put(1, seq)));
        assert_eq!(store.segments.ids(), vec![1, 2]);
        // The crash: body 6 reaches segment 2, its index entry never RocksDB.
        let mut app = store.segments.appender();
        let at = app.add(1, 6, b"entry 6", &body(6));
        assert_eq!(at.segment, 2);
        store.segments.write(&mut app).unwrap();
    }
    let store = Arc::new(Store::open(dir.path()).unwrap());
    assert_eq!(stored(&store, 1, &[1, 2, 3, 4, 5, 6, 7]), [expected(&[1, 2, 3, 4, 5, 6]), vec![None]].concat());
    assert_eq!(store.segments.ids(), vec![1, 2], "the unused prepared segment 3 was removed");
}

#[test]
fn the_first_segment_of_a_run_ends_early_once_the_next_is_prepared_for_direct_appends() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    store.segments.set_segment_size(8 << 20);
    let big = |seq: u64| Op::Put {
        queue: 1,
        seq,
        record: Bytes::from(format!("entry {seq}")),
        body: Some(Bytes::from(vec![seq as u8; 300 << 10])),
        done: None,
    };
    // Segment 1 is written through the page cache (nothing was prepared when the run began);
    // segment 2 starts being prepared after its first batch.
    with_writer(&store, (1..=4).map(big));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !store.segments.appender().spare.as_ref().is_some_and(|s| s.preparing.is_finished()) {
        assert!(std::time::Instant::now() < deadline, "segment 2 prepared");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let prepared = store.segments.appender().spare.as_ref().is_some_and(|s| s.ready.load(Ordering::Acquire));
    // Segment 1 holds 1.2 MiB, far below its size: the next body goes to segment 2 anyway,
    // where the file system took direct I/O (else segment 1 goes on).
    with_writer(&store, [big(5)]);
    if prepared {
        assert_eq!(store.segments.ids(), vec![1, 2]);
        let app = store.segments.appender();
        let current = app.current.as_ref().unwrap();
        assert!(current.id == 2 && current.direct.is_some(), "appended to directly");
    } else {
        assert_eq!(store.segments.ids(), vec![1], "no segment closed early for a failed preparation");
    }
    let seqs = [1, 2, 3, 4, 5];
    for (seq, got) in seqs.iter().zip(stored(&store, 1, &seqs)) {
        assert_eq!(got.map(|(_, body)| body), Some(Bytes::from(vec![*seq as u8; 300 << 10])), "body {seq}");
    }
}
