//! Memory: the container's working set against its limit, from cgroup v2 or v1, or the
//! process's resident set against a configured maximum when the container has no limit.
//!
//! The working set is what the kernel cannot reclaim without writing anything: usage minus the
//! inactive file cache (`memory.current - inactive_file` on v2, `memory.usage_in_bytes -
//! total_inactive_file` on v1). It is what the OOM killer and the kubelet act on; raw usage
//! counts page cache that the kernel drops under pressure and would shed a server that is fine
//! (envoy#38718), and heap statistics miss everything outside the allocator.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use crate::monitor::{Monitor, Reading};

/// A v1 limit at or above this is "no limit" (the kernel reports `PAGE_COUNTER_MAX` rounded to
/// pages, 9223372036854771712 on x86-64).
const V1_UNLIMITED: u64 = 1 << 62;

/// Where the memory figures come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemorySource {
    /// A cgroup v2 directory (`memory.current`, `memory.max`, `memory.stat`).
    CgroupV2(PathBuf),
    /// A cgroup v1 memory controller directory (`memory.usage_in_bytes`,
    /// `memory.limit_in_bytes`, `memory.stat`).
    CgroupV1(PathBuf),
    /// `VmRSS` of a `/proc/<pid>/status` file against a maximum in bytes.
    Rss {
        /// The status file (`/proc/self/status`).
        status: PathBuf,
        /// The resident set that counts as full.
        max: u64,
    },
}

/// The container's memory and/or the process's, as a [`Monitor`] named `memory`: each reading
/// is the worse of its sources.
#[derive(Debug)]
pub struct MemoryMonitor {
    sources: Vec<MemorySource>,
}

impl MemoryMonitor {
    /// Finds this process's memory cgroup (v2, then v1) from `/proc/self/cgroup` and
    /// `/proc/self/mountinfo`, when it has a limit, and adds the process's RSS against `max_rss`
    /// bytes when given: a budget for this process inside a larger container, or the only
    /// measure where the container has no limit. Each reading is the worse of the two. With
    /// neither, the monitor has nothing to compare with and reads nothing.
    pub fn detect(max_rss: Option<u64>) -> Self {
        Self::detect_in(Path::new("/proc/self"), max_rss)
    }

    /// [`MemoryMonitor::detect`] with another `/proc/<pid>` directory (tests, fixtures).
    pub fn detect_in(proc_dir: &Path, max_rss: Option<u64>) -> Self {
        let cgroup = find_cgroup(proc_dir).filter(has_limit);
        let rss = max_rss.filter(|&max| max > 0).map(|max| MemorySource::Rss {
            status: proc_dir.join("status"),
            max,
        });
        Self {
            sources: cgroup.into_iter().chain(rss).collect(),
        }
    }

    /// A monitor reading `source`.
    pub fn from_source(source: MemorySource) -> Self {
        Self {
            sources: vec![source],
        }
    }

    /// A monitor reading `source`, and this process's RSS against `max_rss` when given.
    pub fn with_rss_budget(source: MemorySource, max_rss: Option<u64>) -> Self {
        let mut monitor = Self::from_source(source);
        if let Some(max) = max_rss.filter(|&max| max > 0) {
            monitor.sources.push(MemorySource::Rss {
                status: PathBuf::from("/proc/self/status"),
                max,
            });
        }
        monitor
    }

    /// What it reads; empty when it has nothing to compare with.
    pub fn sources(&self) -> &[MemorySource] {
        &self.sources
    }
}

impl Monitor for MemoryMonitor {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn read(&mut self) -> io::Result<Option<Reading>> {
        let mut worst: Option<Reading> = None;
        for source in &self.sources {
            let reading = read(source)?;
            if worst.is_none_or(|w| reading.ratio() > w.ratio()) {
                worst = Some(reading);
            }
        }
        Ok(worst)
    }
}

/// One reading of `source`.
pub(crate) fn read(source: &MemorySource) -> io::Result<Reading> {
    match source {
        MemorySource::CgroupV2(dir) => {
            let limit = match read_trimmed(&dir.join("memory.max"))?.as_str() {
                "max" => return Err(no_limit()),
                value => parse_u64(value)?,
            };
            let current = parse_u64(&read_trimmed(&dir.join("memory.current"))?)?;
            let inactive = stat_value(&dir.join("memory.stat"), "inactive_file")?;
            Ok(Reading::new(current.saturating_sub(inactive), limit))
        }
        MemorySource::CgroupV1(dir) => {
            let limit = parse_u64(&read_trimmed(&dir.join("memory.limit_in_bytes"))?)?;
            if limit >= V1_UNLIMITED {
                return Err(no_limit());
            }
            let usage = parse_u64(&read_trimmed(&dir.join("memory.usage_in_bytes"))?)?;
            let inactive = stat_value(&dir.join("memory.stat"), "total_inactive_file")?;
            Ok(Reading::new(usage.saturating_sub(inactive), limit))
        }
        MemorySource::Rss { status, max } => {
            let text = fs::read_to_string(status)?;
            let kib = text
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
                .ok_or_else(|| invalid(format!("no VmRSS in {}", status.display())))?;
            Ok(Reading::new(kib.saturating_mul(1024), *max))
        }
    }
}

fn has_limit(source: &MemorySource) -> bool {
    read(source).is_ok()
}

/// This process's memory cgroup directory: the v2 unified hierarchy if it has a memory
/// controller, else the v1 `memory` hierarchy.
fn find_cgroup(proc_dir: &Path) -> Option<MemorySource> {
    let cgroups = fs::read_to_string(proc_dir.join("cgroup")).ok()?;
    let mounts = fs::read_to_string(proc_dir.join("mountinfo")).ok()?;
    let mounts: Vec<Mount<'_>> = mounts.lines().filter_map(Mount::parse).collect();
    let mut v1 = None;
    for line in cgroups.lines() {
        // hierarchy-id:controllers:path
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            // Hybrid hosts mount a unified hierarchy without the memory controller: then the v1
            // line below is the one.
            let dir = mounts
                .iter()
                .find(|m| m.fs_type == "cgroup2")
                .map(|m| m.join(path));
            if let Some(dir) = dir.filter(|dir| dir.join("memory.max").is_file()) {
                return Some(MemorySource::CgroupV2(dir));
            }
        } else if controllers.split(',').any(|c| c == "memory") {
            v1 = mounts
                .iter()
                .find(|m| m.fs_type == "cgroup" && m.options.split(',').any(|o| o == "memory"))
                .map(|m| MemorySource::CgroupV1(m.join(path)));
        }
    }
    v1
}

/// One line of `/proc/<pid>/mountinfo`: id, parent, `major:minor`, root, mount point, options,
/// optional fields, `-`, file system type, source, super options.
struct Mount<'a> {
    root: &'a str,
    point: &'a str,
    fs_type: &'a str,
    options: &'a str,
}

impl<'a> Mount<'a> {
    fn parse(line: &'a str) -> Option<Self> {
        let (before, after) = line.split_once(" - ")?;
        let mut fields = before.split(' ');
        let root = fields.nth(3)?;
        let point = fields.next()?;
        let mut after = after.split(' ');
        let fs_type = after.next()?;
        let _source = after.next()?;
        let options = after.next().unwrap_or("");
        Some(Self {
            root,
            point,
            fs_type,
            options,
        })
    }

    /// The directory of cgroup `path` under this mount: the mount shows its hierarchy from
    /// `root`, so a process in `/a/b` seen through a mount of `/a` is at `<point>/b`.
    fn join(&self, path: &str) -> PathBuf {
        let relative = path
            .strip_prefix(self.root)
            .unwrap_or(path)
            .trim_start_matches('/');
        Path::new(self.point).join(relative)
    }
}

fn read_trimmed(path: &Path) -> io::Result<String> {
    Ok(fs::read_to_string(path)?.trim().to_owned())
}

fn parse_u64(value: &str) -> io::Result<u64> {
    value
        .parse()
        .map_err(|_| invalid(format!("{value:?} is not a byte count")))
}

/// The value of `key` in a `memory.stat` file (`key value` lines); 0 when absent.
fn stat_value(path: &Path, key: &str) -> io::Result<u64> {
    let text = fs::read_to_string(path)?;
    Ok(text
        .lines()
        .find_map(|line| {
            let (k, v) = line.split_once(' ')?;
            (k == key).then(|| v.trim().parse().ok()).flatten()
        })
        .unwrap_or(0))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn no_limit() -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, "the cgroup has no memory limit")
}
