//! Servers under test as separate processes, pinned away from the load generator.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
};

use crate::scenario::ServerArgs;

/// The address a server announces on its first line of stdout (`listening on 127.0.0.1:8080`,
/// or `listening on http://...` as the example prints it); the rest of its output is read and
/// dropped, since a pipe nobody drains would stop the server at its first write once full.
///
/// # Errors
///
/// What the server said instead, quoted.
pub fn listening_address(child: &mut Child) -> Result<SocketAddr, String> {
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut stdout = BufReader::new(stdout);
    let mut line = String::new();
    stdout.read_line(&mut line).map_err(|e| e.to_string())?;
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    line.trim()
        .strip_prefix("listening on ")
        .map(|a| a.strip_prefix("http://").unwrap_or(a))
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("{line:?}"))
}

/// The machine's cores, counted once before [`pin_generator`] narrows this process's affinity
/// (after which the standard library would report one). The server runs on core 0 and the
/// generator on core 1 when there are two or more.
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES
        .get_or_init(|| std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get))
}

/// Pins this process (all threads) to core 1 with `taskset`, when the machine has two or more
/// cores and `taskset` (util-linux) is there. Returns whether it did.
pub fn pin_generator() -> bool {
    if cores() < 2 {
        return false;
    }
    let pid = std::process::id().to_string();
    Command::new("taskset")
        .args(["-a", "-p", "-c", "1", &pid])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A running server under test; killed when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl ServerProcess {
    /// Starts `bench-server <scenario> <system> <args>` (the binary beside this one), pinned to
    /// core 0.
    ///
    /// # Errors
    ///
    /// When the binary is missing or does not report its address.
    pub fn start(scenario: &str, system: &str, args: &ServerArgs) -> Result<Self, String> {
        Self::start_with_env(scenario, system, args, &[])
    }

    /// [`ServerProcess::start`] with environment variables for the server (allocator tunables,
    /// which are read before `main`).
    ///
    /// # Errors
    ///
    /// As [`ServerProcess::start`].
    pub fn start_with_env(
        scenario: &str,
        system: &str,
        args: &ServerArgs,
        env: &[(&str, &str)],
    ) -> Result<Self, String> {
        let mut program_args = vec![scenario.to_owned(), system.to_owned()];
        program_args.extend(args.to_args());
        Self::start_program(&sibling("bench-server")?, &program_args, env)
    }

    /// Starts another server program that prints `listening on <addr>` first (a peer built
    /// outside the workspace), pinned to core 0 like `bench-server`.
    ///
    /// # Errors
    ///
    /// As [`ServerProcess::start`].
    pub fn start_program(
        binary: &std::path::Path,
        args: &[String],
        env: &[(&str, &str)],
    ) -> Result<Self, String> {
        let mut command = if cores() >= 2 {
            let mut c = Command::new("taskset");
            c.args(["-c", "0"]).arg(binary);
            c
        } else {
            Command::new(binary)
        };
        command
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command
            .spawn()
            .map_err(|e| format!("start {}: {e}", binary.display()))?;
        let addr = listening_address(&mut child)
            .map_err(|said| format!("{} said {said}", binary.display()));
        match addr {
            Ok(addr) => Ok(Self { child, addr }),
            Err(e) => {
                let _ = child.kill();
                Err(e)
            }
        }
    }

    /// The server's process id (`taskset` execs the server, so it is the server's own).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's peak resident memory (`VmHWM`), in bytes; `None` once it is gone.
    pub fn peak_rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib * 1024)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sibling(name: &str) -> Result<PathBuf, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let path = me.with_file_name(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} not found: build it with `cargo build --release -p palisade-bench`",
            path.display()
        ))
    }
}
