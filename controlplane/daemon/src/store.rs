//! The embedded store: SQLite (bundled), one file. Today it holds the location service
//! (registered contacts); subscribers, routes, rates and CDRs join it with their features.
//!
//! Writes never happen on the SIP path: the registrar sends [`LocationWrite`]s to a writer
//! thread, which commits them in batches (one transaction per batch, at most every
//! [`BATCH_INTERVAL`] or [`BATCH_MAX`] writes). A restart reads the bindings back
//! ([`Store::load_bindings`]), dropping those that expired meanwhile. A crash loses at most
//! the last batch interval of changes — the phones re-register within their expiry anyway.

use std::path::{Path, PathBuf};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use rusqlite::{params, Connection};

/// Longest a change waits before it is committed.
pub const BATCH_INTERVAL: Duration = Duration::from_millis(100);
/// Most changes in one transaction.
pub const BATCH_MAX: usize = 1000;

/// One registered contact of an address of record, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBinding {
    /// Address of record, `user@domain` (lower-case domain).
    pub aor: String,
    /// The Contact URI as the phone registered it.
    pub contact: String,
    /// Expiry, seconds since the Unix epoch.
    pub expires_at: u64,
    /// Call-ID of the REGISTER that installed it.
    pub call_id: String,
    /// CSeq number of that REGISTER.
    pub cseq: u32,
    /// q-value in thousandths.
    pub q_millis: u16,
    /// Source address the REGISTER came from (NAT: where requests must go).
    pub received: String,
    /// User-Agent, for the NOC.
    pub user_agent: String,
}

/// A change for the writer thread.
#[derive(Debug, Clone)]
pub enum LocationWrite {
    /// Insert or replace the binding (aor, contact).
    Upsert(StoredBinding),
    /// Remove one binding.
    Remove {
        /// Address of record.
        aor: String,
        /// Contact URI.
        contact: String,
    },
    /// Remove every binding of an AoR.
    RemoveAll {
        /// Address of record.
        aor: String,
    },
    /// Flush now and answer (tests, shutdown).
    Sync(Sender<()>),
}

/// The store: the database file and its writer thread.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    writes: Option<Sender<LocationWrite>>,
    writer: Option<JoinHandle<()>>,
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS location (
    aor        TEXT NOT NULL,
    contact    TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    call_id    TEXT NOT NULL,
    cseq       INTEGER NOT NULL,
    q_millis   INTEGER NOT NULL,
    received   TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    PRIMARY KEY (aor, contact)
);
CREATE TABLE IF NOT EXISTS runtime_state (
    key        TEXT PRIMARY KEY,
    json       TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
";

/// What the management API changed, kept across restarts: one JSON snapshot per kind
/// (`tenants`, `routing`), written whole after each change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeState {
    /// The snapshot.
    pub json: String,
    /// When it was written, seconds since the Unix epoch.
    pub updated_at: u64,
}

/// Writes the snapshot `key` (synchronously: API changes are rare and must be durable
/// before the API answers).
pub fn save_runtime(path: &Path, key: &str, json: &str, now: u64) -> Result<(), String> {
    let conn = open_conn(path)?;
    conn.execute(
        "INSERT INTO runtime_state (key, json, updated_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT(key) DO UPDATE SET json = excluded.json, updated_at = excluded.updated_at",
        params![key, json, now as i64],
    )
    .map(|_| ())
    .map_err(|e| format!("store: {e}"))
}

/// The snapshot `key`, if the API ever wrote one.
pub fn load_runtime(path: &Path, key: &str) -> Result<Option<RuntimeState>, String> {
    let conn = open_conn(path)?;
    let mut st = conn
        .prepare("SELECT json, updated_at FROM runtime_state WHERE key = ?1")
        .map_err(|e| format!("store: {e}"))?;
    let mut rows = st
        .query_map(params![key], |r| {
            Ok(RuntimeState {
                json: r.get(0)?,
                updated_at: r.get::<_, i64>(1)?.max(0) as u64,
            })
        })
        .map_err(|e| format!("store: {e}"))?;
    rows.next().transpose().map_err(|e| format!("store: {e}"))
}

/// Forgets every snapshot: the next start reads the configuration file alone.
pub fn clear_runtime(path: &Path) -> Result<usize, String> {
    let conn = open_conn(path)?;
    conn.execute("DELETE FROM runtime_state", [])
        .map_err(|e| format!("store: {e}"))
}

impl Store {
    /// Opens (creating when absent) the database at `path` and starts its writer thread.
    pub fn open(path: &Path) -> Result<Store, String> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("store directory {}: {e}", dir.display()))?;
            }
        }
        let conn = open_conn(path)?;
        let (tx, rx) = crossbeam_channel::bounded::<LocationWrite>(65_536);
        let writer = thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(conn, &rx))
            .map_err(|e| format!("store writer thread: {e}"))?;
        Ok(Store {
            path: path.to_path_buf(),
            writes: Some(tx),
            writer: Some(writer),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the registrar sends its changes. Sending never blocks the SIP path for long:
    /// the queue holds 65,536 changes; a full queue blocks the sender until the writer
    /// catches up (a disk that slow is an outage either way).
    pub fn writer(&self) -> Sender<LocationWrite> {
        self.writes
            .clone()
            .unwrap_or_else(|| crossbeam_channel::bounded(0).0)
    }

    /// Every binding that has not expired at `now` (seconds since the Unix epoch).
    pub fn load_bindings(&self, now: u64) -> Result<Vec<StoredBinding>, String> {
        let conn = open_conn(&self.path)?;
        let mut st = conn
            .prepare(
                "SELECT aor, contact, expires_at, call_id, cseq, q_millis, received, user_agent \
                 FROM location WHERE expires_at > ?1 ORDER BY aor, contact",
            )
            .map_err(|e| format!("store: {e}"))?;
        let rows = st
            .query_map(params![now as i64], |r| {
                Ok(StoredBinding {
                    aor: r.get(0)?,
                    contact: r.get(1)?,
                    expires_at: r.get::<_, i64>(2)?.max(0) as u64,
                    call_id: r.get(3)?,
                    cseq: r.get::<_, i64>(4)?.clamp(0, i64::from(u32::MAX)) as u32,
                    q_millis: r.get::<_, i64>(5)?.clamp(0, 1000) as u16,
                    received: r.get(6)?,
                    user_agent: r.get(7)?,
                })
            })
            .map_err(|e| format!("store: {e}"))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("store: {e}"))
    }

    /// Blocks until every change sent so far is committed.
    pub fn sync(&self) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        if let Some(w) = &self.writes {
            if w.send(LocationWrite::Sync(tx)).is_ok() {
                let _ = rx.recv_timeout(Duration::from_secs(10));
            }
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Closing the channel ends the writer after a last commit.
        self.writes = None;
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

fn open_conn(path: &Path) -> Result<Connection, String> {
    let conn = Connection::open(path).map_err(|e| format!("store {}: {e}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| format!("store {}: {e}", path.display()))?;
    conn.execute_batch(SCHEMA)
        .map_err(|e| format!("store {}: {e}", path.display()))?;
    Ok(conn)
}

fn writer_loop(mut conn: Connection, rx: &Receiver<LocationWrite>) {
    let mut batch: Vec<LocationWrite> = Vec::with_capacity(BATCH_MAX);
    let mut closed = false;
    while !closed {
        // Wait for the first change, then gather for at most BATCH_INTERVAL.
        match rx.recv() {
            Ok(w) => batch.push(w),
            Err(_) => break,
        }
        let deadline = Instant::now() + BATCH_INTERVAL;
        while batch.len() < BATCH_MAX && !matches!(batch.last(), Some(LocationWrite::Sync(_))) {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(w) => batch.push(w),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        if let Err(e) = commit(&mut conn, &mut batch) {
            eprintln!("trunkline: store: batch of location changes not written: {e}");
        }
    }
    let _ = commit(&mut conn, &mut batch);
}

fn commit(conn: &mut Connection, batch: &mut Vec<LocationWrite>) -> rusqlite::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let tx = conn.transaction()?;
    let mut syncs = Vec::new();
    for w in batch.drain(..) {
        match w {
            LocationWrite::Upsert(b) => {
                tx.execute(
                    "INSERT OR REPLACE INTO location \
                     (aor, contact, expires_at, call_id, cseq, q_millis, received, user_agent) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        b.aor,
                        b.contact,
                        b.expires_at as i64,
                        b.call_id,
                        i64::from(b.cseq),
                        i64::from(b.q_millis),
                        b.received,
                        b.user_agent
                    ],
                )?;
            }
            LocationWrite::Remove { aor, contact } => {
                tx.execute(
                    "DELETE FROM location WHERE aor = ?1 AND contact = ?2",
                    params![aor, contact],
                )?;
            }
            LocationWrite::RemoveAll { aor } => {
                tx.execute("DELETE FROM location WHERE aor = ?1", params![aor])?;
            }
            LocationWrite::Sync(done) => syncs.push(done),
        }
    }
    tx.commit()?;
    for s in syncs {
        let _ = s.send(());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(aor: &str, contact: &str, expires_at: u64) -> StoredBinding {
        StoredBinding {
            aor: aor.into(),
            contact: contact.into(),
            expires_at,
            call_id: "c1".into(),
            cseq: 7,
            q_millis: 1000,
            received: "127.0.0.1:5070".into(),
            user_agent: "test".into(),
        }
    }

    #[test]
    fn writes_survive_reopen_and_expired_ones_do_not_load() {
        let dir = std::env::temp_dir().join(format!("trunkline-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("t.db");
        {
            let s = Store::open(&path).unwrap();
            let w = s.writer();
            w.send(LocationWrite::Upsert(binding("alice@d", "sip:a@1", 2000)))
                .unwrap();
            w.send(LocationWrite::Upsert(binding("alice@d", "sip:a@2", 500)))
                .unwrap();
            w.send(LocationWrite::Upsert(binding("bob@d", "sip:b@1", 2000)))
                .unwrap();
            w.send(LocationWrite::Remove {
                aor: "bob@d".into(),
                contact: "sip:b@1".into(),
            })
            .unwrap();
            s.sync();
            let now = s.load_bindings(1000).unwrap();
            assert_eq!(now, vec![binding("alice@d", "sip:a@1", 2000)]);
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(
            s.load_bindings(0).unwrap().len(),
            2,
            "both alice bindings persisted"
        );
        s.writer()
            .send(LocationWrite::RemoveAll {
                aor: "alice@d".into(),
            })
            .unwrap();
        drop(s); // drop commits the last batch
        let s = Store::open(&path).unwrap();
        assert!(s.load_bindings(0).unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
