//! File descriptors: open descriptors against the soft `RLIMIT_NOFILE`.
//!
//! A server at its descriptor limit cannot accept (`axum::serve` retries `EMFILE` silently), open
//! files or connect to its dependencies: it wedges while its readiness says `pass`. Counting
//! means listing `/proc/self/fd`, which costs about a microsecond per descriptor; with an
//! in-process count (connections and listeners the server knows of), the full listing runs only
//! every `full_count_every` samples and the count in between follows the in-process one.

use std::{
    fmt, fs, io,
    path::{Path, PathBuf},
    sync::Arc,
};

use crate::monitor::{Monitor, Reading};

/// A count the application keeps of descriptors that come and go (connections): called at
/// every sample.
pub type InProcessCount = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Open file descriptors against the soft limit, as a [`Monitor`] named `fds`.
pub struct FdMonitor {
    proc_dir: PathBuf,
    in_process: Option<InProcessCount>,
    full_count_every: u32,
    samples: u32,
    /// The last full count, and the in-process count then.
    base: Option<(u64, u64)>,
}

impl fmt::Debug for FdMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FdMonitor")
            .field("proc_dir", &self.proc_dir)
            .field("in_process", &self.in_process.is_some())
            .field("full_count_every", &self.full_count_every)
            .finish_non_exhaustive()
    }
}

impl FdMonitor {
    /// This process's descriptors, listed at every sample.
    pub fn new() -> Self {
        Self::in_dir(Path::new("/proc/self"))
    }

    /// The descriptors of another `/proc/<pid>` directory (tests, fixtures).
    pub fn in_dir(proc_dir: &Path) -> Self {
        Self {
            proc_dir: proc_dir.to_owned(),
            in_process: None,
            full_count_every: 1,
            samples: 0,
            base: None,
        }
    }

    /// Lists `/proc/self/fd` only every `every` samples (at least 1), following `count` in
    /// between: the listing's count plus how much `count` moved since.
    #[must_use]
    pub fn with_in_process_count(mut self, count: InProcessCount, every: u32) -> Self {
        self.in_process = Some(count);
        self.full_count_every = every.max(1);
        self
    }

    fn full_count(&self) -> io::Result<u64> {
        // The listing opens one descriptor of its own, which it lists too.
        let entries = fs::read_dir(self.proc_dir.join("fd"))?.count() as u64;
        Ok(entries.saturating_sub(1))
    }
}

impl Default for FdMonitor {
    fn default() -> Self {
        Self::new()
    }
}

impl Monitor for FdMonitor {
    fn name(&self) -> &'static str {
        "fds"
    }

    fn read(&mut self) -> io::Result<Option<Reading>> {
        let limit = soft_nofile(&self.proc_dir.join("limits"))?;
        let Some(limit) = limit else {
            return Ok(None);
        };
        let in_process = self.in_process.as_ref().map(|count| count());
        let due = self.samples.is_multiple_of(self.full_count_every);
        self.samples = self.samples.wrapping_add(1);
        let open = match (self.base, in_process) {
            (Some((full, then)), Some(now)) if !due => (full + now).saturating_sub(then),
            _ => {
                let full = self.full_count()?;
                self.base = Some((full, in_process.unwrap_or(0)));
                full
            }
        };
        Ok(Some(Reading::new(open, limit)))
    }
}

/// The soft "Max open files" of a `/proc/<pid>/limits` file; `None` for `unlimited`.
fn soft_nofile(path: &Path) -> io::Result<Option<u64>> {
    let text = fs::read_to_string(path)?;
    let line = text
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Max open files line"))?;
    let soft = line["Max open files".len()..]
        .split_whitespace()
        .next()
        .unwrap_or("");
    if soft == "unlimited" {
        return Ok(None);
    }
    soft.parse().map(Some).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{soft:?} is not a descriptor count"),
        )
    })
}
