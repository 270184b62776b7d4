//! The audit files: one JSON line per event, one file per stream (`offboarding.jsonl`,
//! `consent.jsonl`, `credential.jsonl`, `signal.jsonl`), apart from the filter's access streams.
//! The database holds the same events (`nhi_feed_audit`, written in the change's own transaction);
//! the files are this replica's copy for the log pipeline, written after the commit.

use crate::feed::change::AuditStream;
use crate::feed::store::AuditEvent;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

pub struct AuditFiles {
    dir: PathBuf,
    lock: Mutex<()>,
}

impl AuditFiles {
    pub fn new(dir: &str) -> Result<AuditFiles, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("audit.dir: cannot create {dir}: {e}"))?;
        Ok(AuditFiles { dir: PathBuf::from(dir), lock: Mutex::new(()) })
    }

    pub fn path(&self, stream: AuditStream) -> PathBuf {
        self.dir.join(format!("{}.jsonl", stream.name()))
    }

    /// Appends the events; a failure is logged (the database copy is the record).
    pub fn write(&self, events: &[AuditEvent]) {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        for e in events {
            let line = match serde_json::to_string(e) {
                Ok(l) => l,
                Err(_) => continue,
            };
            let file = std::fs::OpenOptions::new().create(true).append(true).open(self.path(e.stream));
            if let Err(err) = file.and_then(|mut f| writeln!(f, "{line}")) {
                tracing::error!(stream = e.stream.name(), error = %err, "audit file write failed");
            }
        }
    }
}
