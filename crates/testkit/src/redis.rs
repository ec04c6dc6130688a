//! [`RedisServer`]: a real `redis-server` on a free loopback port, in a directory of its own,
//! stopped by its pid when dropped. Tests kill it, stall it (`DEBUG SLEEP`) and restart it on
//! the same port to see what a replica does when its shared store goes away.

use std::{
    io::{self, BufRead, BufReader, Read, Write},
    net::{Ipv4Addr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A `redis-server` process for one test.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Whether `redis-server` is on the `PATH` (`cargo xtask ci` installs it).
    pub fn available() -> bool {
        Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Starts a server on a free port and waits until it answers `PING`.
    ///
    /// # Errors
    ///
    /// When `redis-server` cannot be started or does not answer within 5 s.
    pub fn start() -> io::Result<Self> {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let dir =
            std::env::temp_dir().join(format!("palisade-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut server = Self {
            child: None,
            port,
            dir,
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> io::Result<()> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--enable-debug-command", "local", "--loglevel", "warning"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if self.command(&["PING"]).is_ok_and(|r| r == "PONG") {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("redis-server on port {} did not answer", self.port),
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `redis://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server (`SIGKILL`, no goodbye to its clients) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty (nothing is saved).
    ///
    /// # Errors
    ///
    /// As [`RedisServer::start`].
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        self.spawn()
    }

    /// Makes the server stop answering for `duration` (`DEBUG SLEEP`), without waiting for it.
    ///
    /// # Errors
    ///
    /// When the command cannot be sent.
    pub fn stall(&self, duration: Duration) -> io::Result<()> {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))?;
        stream.write_all(&encode(&[
            "DEBUG",
            "SLEEP",
            &duration.as_secs_f64().to_string(),
        ]))?;
        // Read the reply on a thread so the connection stays open until the sleep ends.
        std::thread::spawn(move || {
            let mut sink = [0u8; 64];
            let _ = stream.read(&mut sink);
        });
        Ok(())
    }

    /// Runs one command and returns its reply as text: simple strings and integers as written,
    /// bulk strings as their content, arrays one item per line, errors as `Err`.
    ///
    /// # Errors
    ///
    /// A connection error, or the server's error reply.
    pub fn command(&self, args: &[&str]) -> io::Result<String> {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        (&stream).write_all(&encode(args))?;
        read_reply(&mut BufReader::new(stream))
    }

    /// A field of `INFO` (`INFO all`), such as `used_memory` or `cmdstat_evalsha`.
    ///
    /// # Errors
    ///
    /// As [`RedisServer::command`]; `NotFound` when the field is absent.
    pub fn info_field(&self, field: &str) -> io::Result<String> {
        let info = self.command(&["INFO", "all"])?;
        info.lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .map(|v| v.trim().to_owned())
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, field.to_owned()))
    }

    /// How many times Redis ran `command` without an error (from `INFO commandstats`: `calls`
    /// less `failed_calls`, such as the one `NOSCRIPT` before a script is loaded; 0 before the
    /// first).
    ///
    /// # Errors
    ///
    /// As [`RedisServer::command`].
    pub fn calls(&self, command: &str) -> io::Result<u64> {
        match self.info_field(&format!("cmdstat_{command}")) {
            // `calls=12,usec=...,rejected_calls=0,failed_calls=1`
            Ok(stats) => {
                let stat = |name: &str| -> u64 {
                    stats
                        .split(',')
                        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0)
                };
                Ok(stat("calls").saturating_sub(stat("failed_calls")))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn read_reply(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line.trim_end_matches("\r\n");
    let (kind, rest) = line.split_at_checked(1).unwrap_or(("", ""));
    let number = || {
        rest.parse::<i64>()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, line.to_owned()))
    };
    match kind {
        "+" | ":" => Ok(rest.to_owned()),
        "-" => Err(io::Error::other(rest.to_owned())),
        "$" => {
            let Ok(len) = usize::try_from(number()?) else {
                return Ok(String::new()); // nil
            };
            let mut body = vec![0; len + 2];
            reader.read_exact(&mut body)?;
            body.truncate(len);
            Ok(String::from_utf8_lossy(&body).into_owned())
        }
        "*" => {
            let count = number()?.max(0);
            let mut items = Vec::new();
            for _ in 0..count {
                items.push(read_reply(reader)?);
            }
            Ok(items.join("\n"))
        }
        _ => Err(io::Error::new(io::ErrorKind::InvalidData, line.to_owned())),
    }
}
