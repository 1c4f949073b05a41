//! The store: RocksDB under the data directory.
//!
//! Today it keeps durable definitions (exchanges, queues, bindings between durable things) in
//! the `definitions` column family, written with a WAL sync so a declare-ok means the definition
//! survives a crash. Persistent messages, queue indexes and group commit come next (see the
//! README's feature table).
//!
//! RocksDB's `LOCK` file keeps a second Warren off the same directory; that is reported as
//! [`StoreError::InUse`], not as a RocksDB message.

pub mod definitions;

use std::path::{Path, PathBuf};

use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, IteratorMode, Options, WriteBatch, WriteOptions, DB};

use crate::protocol::ShortStr;
pub use definitions::{BindingDef, Definitions, ExchangeDef, QueueDef};

const CF_DEFINITIONS: &str = "definitions";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("data directory {0} is in use by another Warren (RocksDB lock held)")]
    InUse(PathBuf),
    #[error("cannot create data directory {0}: {1}")]
    CreateDir(PathBuf, std::io::Error),
    #[error("storage error: {0}")]
    Db(#[from] rocksdb::Error),
    #[error("storage corrupt: {0}")]
    Corrupt(String),
}

pub struct Store {
    db: DB,
    path: PathBuf,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::CreateDir(dir.to_path_buf(), e))?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let cfs = vec![ColumnFamilyDescriptor::new(CF_DEFINITIONS, Options::default())];
        let db = DB::open_cf_descriptors(&opts, dir, cfs).map_err(|e| {
            // RocksDB reports the held lock as an IO error naming the LOCK file.
            if e.as_ref().contains("LOCK") {
                StoreError::InUse(dir.to_path_buf())
            } else {
                StoreError::Db(e)
            }
        })?;
        Ok(Store { db, path: dir.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn definitions(&self) -> &ColumnFamily {
        // Created by `open` (create_missing_column_families), so always there.
        self.db.cf_handle(CF_DEFINITIONS).expect("definitions column family")
    }

    fn synced() -> WriteOptions {
        let mut w = WriteOptions::default();
        w.set_sync(true);
        w
    }

    fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        Ok(self.db.write_opt(batch, &Self::synced())?)
    }

    pub fn save_exchange(&self, x: &ExchangeDef) -> Result<(), StoreError> {
        let mut b = WriteBatch::default();
        b.put_cf(self.definitions(), x.key(), x.value());
        self.write(b)
    }

    pub fn save_queue(&self, q: &QueueDef) -> Result<(), StoreError> {
        let mut b = WriteBatch::default();
        b.put_cf(self.definitions(), q.key(), q.value());
        self.write(b)
    }

    pub fn save_binding(&self, binding: &BindingDef) -> Result<(), StoreError> {
        let mut b = WriteBatch::default();
        b.put_cf(self.definitions(), binding.key(), []);
        self.write(b)
    }

    pub fn delete_binding(&self, binding: &BindingDef) -> Result<(), StoreError> {
        let mut b = WriteBatch::default();
        b.delete_cf(self.definitions(), binding.key());
        self.write(b)
    }

    /// Deletes an exchange (`to_queue = false`) or queue and every stored binding from or to it.
    pub fn delete_entity(&self, vhost: &ShortStr, name: &ShortStr, is_queue: bool) -> Result<(), StoreError> {
        let mut b = WriteBatch::default();
        let key = if is_queue {
            QueueDef { vhost: vhost.clone(), name: name.clone(), auto_delete: false, arguments: Default::default() }
                .key()
        } else {
            ExchangeDef {
                vhost: vhost.clone(),
                name: name.clone(),
                kind: ShortStr::EMPTY,
                auto_delete: false,
                internal: false,
                arguments: Default::default(),
            }
            .key()
        };
        b.delete_cf(self.definitions(), key);
        for binding in self.bindings_of(vhost)? {
            let from = !is_queue && binding.source == *name;
            let to = binding.to_queue == is_queue && binding.destination == *name;
            if from || to {
                b.delete_cf(self.definitions(), binding.key());
            }
        }
        self.write(b)
    }

    fn bindings_of(&self, vhost: &ShortStr) -> Result<Vec<BindingDef>, StoreError> {
        let prefix = definitions::binding_prefix(vhost);
        let mut defs = Definitions::default();
        for item in self.db.iterator_cf(self.definitions(), IteratorMode::From(&prefix, rocksdb::Direction::Forward)) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            definitions::decode_into(&mut defs, &k, &v).map_err(|e| StoreError::Corrupt(e.message.into_owned()))?;
        }
        Ok(defs.bindings)
    }

    /// Every stored definition, for start-up.
    pub fn load_definitions(&self) -> Result<Definitions, StoreError> {
        let mut defs = Definitions::default();
        for item in self.db.iterator_cf(self.definitions(), IteratorMode::Start) {
            let (k, v) = item?;
            definitions::decode_into(&mut defs, &k, &v).map_err(|e| StoreError::Corrupt(e.message.into_owned()))?;
        }
        Ok(defs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_store_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path()).unwrap();
        let err = Store::open(dir.path()).err().expect("refused");
        assert!(matches!(err, StoreError::InUse(_)), "{err}");
        drop(first);
        Store::open(dir.path()).expect("free again once the first is closed");
    }

    #[test]
    fn deleting_a_queue_deletes_its_bindings() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let v = ShortStr::from_static("/");
        let q = QueueDef {
            vhost: v.clone(),
            name: ShortStr::from_static("q"),
            auto_delete: false,
            arguments: Default::default(),
        };
        let b = BindingDef {
            vhost: v.clone(),
            source: ShortStr::from_static("x"),
            to_queue: true,
            destination: q.name.clone(),
            routing_key: ShortStr::from_static("k"),
            arguments: Default::default(),
        };
        s.save_queue(&q).unwrap();
        s.save_binding(&b).unwrap();
        assert_eq!(s.load_definitions().unwrap().bindings.len(), 1);
        s.delete_entity(&v, &q.name, true).unwrap();
        let d = s.load_definitions().unwrap();
        assert!(d.queues.is_empty() && d.bindings.is_empty());
    }
}
