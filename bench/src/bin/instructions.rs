//! `instructions <server program and arguments>`: the instructions a server spends per request,
//! counted by callgrind (repeatable on a noisy machine, unlike wall-clock time).
//!
//! ```sh
//! cargo build --release -p palisade-bench --bins
//! target/release/instructions target/release/bench-server baseline palisade-preset --configuration production
//! INSTRUCTIONS_PATH=/api/items target/release/instructions target/peers/release/peer-stack-server trace production
//! PALISADE_LAYERS__TELEMETRY=false target/release/instructions target/release/bench-server baseline palisade-preset
//! ```
//!
//! The server runs under `valgrind --tool=callgrind --separate-threads=yes` twice; each time one
//! keep-alive connection sends `GET <path>` (`INSTRUCTIONS_PATH`, default `/hello`) requests one after
//! another, 500 the first time and 2 500 the second, and the server is stopped with `SIGINT`.
//! The answer is the difference of the two counts of the thread that served the connection (the
//! runtime's worker, callgrind's second thread), over 2 000: startup, the accept loop and the
//! shutdown cancel out. The server must print `listening on <addr>` first; environment
//! variables pass through (the preset's `PALISADE_*` overrides switch layers off). With
//! `INSTRUCTIONS_KEEP` set, the callgrind files stay in the directory it names on stderr, for
//! `callgrind_annotate`.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
    time::Duration,
};

use palisade_bench::process::listening_address;

const FEW: u64 = 500;
const MANY: u64 = 2_500;

fn main() -> ExitCode {
    match run() {
        Ok(per_request) => {
            println!("{per_request}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("instructions: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<u64, String> {
    let server: Vec<String> = std::env::args().skip(1).collect();
    if server.is_empty() {
        return Err("usage: instructions <server program> [arguments]...".into());
    }
    let path = std::env::var("INSTRUCTIONS_PATH").unwrap_or_else(|_| "/hello".to_owned());
    let dir = std::env::temp_dir().join(format!("palisade-instructions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let few = count(&server, &path, FEW, &dir.join("few"))?;
    let many = count(&server, &path, MANY, &dir.join("many"))?;
    if std::env::var_os("INSTRUCTIONS_KEEP").is_some() {
        eprintln!("callgrind files kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(many.saturating_sub(few) / (MANY - FEW))
}

/// The instructions of the serving thread when the server answered `requests` requests.
fn count(server: &[String], path: &str, requests: u64, out: &Path) -> Result<u64, String> {
    let mut child = Command::new("valgrind")
        .args(["--tool=callgrind", "--separate-threads=yes"])
        .arg(format!("--callgrind-out-file={}", out.display()))
        .args(server)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("valgrind: {e} (is it installed?)"))?;
    let addr = listening_address(&mut child).map_err(|said| format!("the server said {said}"))?;
    let driven = drive(addr, path, requests);
    // SIGINT: callgrind writes its counts as the server exits.
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let _ = child.wait();
    driven?;
    worker_count(out)
}

/// `requests` requests, one after another, on one keep-alive connection.
fn drive(addr: SocketAddr, path: &str, requests: u64) -> Result<(), String> {
    let stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: instructions\r\n\r\n");
    for _ in 0..requests {
        writer
            .write_all(request.as_bytes())
            .map_err(|e| e.to_string())?;
        let mut length = 0usize;
        let mut status = String::new();
        reader.read_line(&mut status).map_err(|e| e.to_string())?;
        if !status.starts_with("HTTP/1.1 2") {
            return Err(format!("{path} answered {status:?}"));
        }
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).map_err(|e| e.to_string())?;
            if header == "\r\n" || header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().map_err(|_| "bad content-length")?;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The `summary:` count of callgrind's file for the second thread (`<out>-02`): the runtime's
/// only worker, where connections are served (the main thread runs the accept loop).
fn worker_count(out: &Path) -> Result<u64, String> {
    let mut file = PathBuf::from(out);
    file.set_file_name(format!(
        "{}-02",
        out.file_name().and_then(|n| n.to_str()).unwrap_or("out")
    ));
    let text =
        std::fs::read_to_string(&file).map_err(|e| format!("read {}: {e}", file.display()))?;
    text.lines()
        .find_map(|l| l.strip_prefix("summary: "))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| format!("no summary in {}", file.display()))
}
