//! Compiling untrusted components under bounded resources.
//!
//! Cranelift compiles a component in time and memory that grow with what
//! the component asks for, and an epoch deadline cannot interrupt it. So
//! the host can compile in a child process instead ([`CompileIn::Process`]):
//! the program given (the `cairn` binary itself, `cairn __compile-policy`)
//! runs [`compile_child`], which reads a key made for this one compile and
//! the component on stdin and writes an artifact sealed with that key (see
//! `artifact.rs`) on stdout; the child never sees the host's cache key. The parent starts it
//! with an address-space limit (`RLIMIT_AS`), a CPU limit (`RLIMIT_CPU`)
//! and no core dumps, kills it after a wall-clock limit, and turns
//! whichever limit was hit into [`PolicyError::CompileLimit`]. The parent
//! checks the envelope (this build, this component, the one-compile key's
//! MAC, not over [`MAX_ARTIFACT_BYTES`]) before deserializing what the
//! child made.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::signal::Signal;

use crate::artifact::{self, CacheKey, MAX_ARTIFACT_BYTES};
use crate::error::{CompileLimit, PolicyError};
use crate::sandbox;

/// Where components are compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompileIn {
    /// On the calling thread, bounded only by the component size cap: for
    /// tests, benchmarks and tools that compile components they trust.
    ThisProcess,
    /// In a child process, `program args…`, which must run
    /// [`compile_child`] (the daemon uses its own binary with the hidden
    /// `__compile-policy` subcommand), under [`CompileLimits`].
    Process { program: PathBuf, args: Vec<OsString> },
}

/// Bounds on one compiler child process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileLimits {
    /// Address space of the child (`RLIMIT_AS`), bytes.
    pub memory: u64,
    /// CPU time of the child (`RLIMIT_CPU`), counted in whole seconds
    /// (rounded up, at least 1).
    pub cpu: Duration,
    /// Wall-clock time after which the parent kills the child.
    pub wall: Duration,
}

/// 2 GiB of address space, 60 s of CPU, 120 s on the clock (a Python
/// component, 18 MiB with its interpreter, takes 15 to 18 s of CPU here).
impl Default for CompileLimits {
    fn default() -> Self {
        CompileLimits { memory: 2 << 30, cpu: Duration::from_secs(60), wall: Duration::from_secs(120) }
    }
}

impl CompileLimits {
    fn cpu_seconds(&self) -> u64 {
        self.cpu.as_secs() + u64::from(self.cpu.subsec_nanos() > 0)
    }
}

/// Exit status of [`compile_child`]: the component is invalid (the message
/// follows [`ERROR_MARK`] on stderr).
const EXIT_INVALID: u8 = 2;
/// Exit status of [`compile_child`]: an allocation failed.
const EXIT_MEMORY: u8 = 3;
/// Starts the line of stderr that carries the reason for a refusal.
const ERROR_MARK: &str = "cairn-compile-error: ";
/// How much of the child's stderr is kept (the rest is read and dropped).
const STDERR_KEEP: usize = 64 << 10;

/// The compiler child's side: read a key ([`CacheKey::LEN`] bytes) and a
/// component (at most [`crate::MAX_COMPONENT_BYTES`]) on stdin, compile it
/// with the policy engine's configuration, write the artifact sealed with
/// that key on stdout. Exit
/// status 0 on success, 2 if the component is invalid, 3 if memory ran
/// out, 1 otherwise; the reason is on stderr.
pub fn compile_child() -> ExitCode {
    // No core dump of a process that ran out of its limits (on top of
    // RLIMIT_CORE 0, which a piped core_pattern ignores).
    let _ = nix::sys::prctl::set_dumpable(false);
    let mut stdin = io::stdin().lock();
    let mut key = [0u8; CacheKey::LEN];
    if let Err(e) = stdin.read_exact(&mut key) {
        return refuse(1, &format!("cannot read the sealing key on stdin: {e}"));
    }
    let key = CacheKey::from_bytes(key);
    let mut input = Vec::new();
    let limit = crate::MAX_COMPONENT_BYTES as u64 + 1;
    if let Err(e) = stdin.take(limit).read_to_end(&mut input) {
        return refuse(1, &format!("cannot read the component on stdin: {e}"));
    }
    if let Err(e) = sandbox::precheck(&input) {
        return refuse(EXIT_INVALID, &message(&e));
    }
    let engine = match sandbox::compile_engine() {
        Ok(engine) => engine,
        Err(e) => return refuse(1, &message(&e)),
    };
    let payload = match engine.precompile_component(&input) {
        Ok(payload) => payload,
        Err(e) if out_of_memory(&e) => return refuse(EXIT_MEMORY, &format!("{e:#}")),
        Err(e) => return refuse(EXIT_INVALID, &format!("{e:#}")),
    };
    let sealed = artifact::seal(&key, &artifact::fingerprint(&engine), &blake3::hash(&input), &payload);
    let mut out = io::stdout().lock();
    match out.write_all(&sealed).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => refuse(1, &format!("cannot write the artifact on stdout: {e}")),
    }
}

/// The text of an error without the variant's prefix.
fn message(e: &PolicyError) -> String {
    match e {
        PolicyError::Invalid(m) | PolicyError::Host(m) => m.clone(),
        other => other.to_string(),
    }
}

fn refuse(code: u8, reason: &str) -> ExitCode {
    eprintln!("{ERROR_MARK}{}", reason.replace('\n', " "));
    ExitCode::from(code)
}

/// Whether wasmtime failed for want of memory (as opposed to refusing the
/// component).
fn out_of_memory(e: &wasmtime::Error) -> bool {
    e.chain().any(|cause| {
        cause.downcast_ref::<wasmtime::OutOfMemory>().is_some()
            || cause.downcast_ref::<io::Error>().and_then(io::Error::raw_os_error)
                == Some(nix::errno::Errno::ENOMEM as i32)
    })
}

/// Compile `bytes` (whose blake3 is `digest`) in a child process under
/// `limits`: the component, and the payload of the artifact the child
/// made, checked to be from this build, for this component and sealed with
/// the key given to this child (for the caller to seal with its own).
pub fn in_child(
    program: &Path,
    args: &[OsString],
    limits: &CompileLimits,
    engine: &wasmtime::Engine,
    fingerprint: &[u8; 32],
    digest: &blake3::Hash,
    bytes: &[u8],
) -> Result<(wasmtime::component::Component, Vec<u8>), PolicyError> {
    let key = CacheKey::generate()
        .map_err(|e| PolicyError::Host(format!("cannot make a key for the compiler process: {e}")))?;
    let run = run_child(program, args, limits, key.as_bytes(), bytes)?;
    let sealed = check_exit(run, limits)?;
    let unusable = |why| {
        PolicyError::Host(format!(
            "the compiler process {} answered with an unusable artifact: {why} (is that program \
             another build than this one?)",
            program.display()
        ))
    };
    let component = artifact::deserialize(engine, &key, fingerprint, digest, &sealed).map_err(unusable)?;
    let payload = artifact::open(&sealed, &key, fingerprint, digest).map_err(unusable)?.to_vec();
    Ok((component, payload))
}

/// What a finished (or killed) child left.
struct Run {
    /// `None`: killed at the wall-clock limit.
    status: Option<ExitStatus>,
    stdout: Vec<u8>,
    /// More than [`MAX_ARTIFACT_BYTES`] came on stdout.
    overflow: bool,
    stderr: String,
}

/// Lower limits only: a limit above the current hard limit cannot be set
/// by an unprivileged process, so the child gets the lower of the two.
fn lowered(resource: Resource, want: u64) -> u64 {
    getrlimit(resource).map_or(want, |(_, hard)| want.min(hard))
}

fn run_child(
    program: &Path,
    args: &[OsString],
    limits: &CompileLimits,
    key: &[u8; CacheKey::LEN],
    bytes: &[u8],
) -> Result<Run, PolicyError> {
    let memory = lowered(Resource::RLIMIT_AS, limits.memory);
    let cpu = lowered(Resource::RLIMIT_CPU, limits.cpu_seconds().max(1));
    // One second more before SIGKILL, in case SIGXCPU is caught.
    let cpu_hard = lowered(Resource::RLIMIT_CPU, cpu + 1);
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    set_limits(&mut cmd, memory, cpu, cpu_hard);
    let mut child = cmd.spawn().map_err(|e| {
        PolicyError::Host(format!("cannot start the compiler process {}: {e}", program.display()))
    })?;
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let deadline = Instant::now() + limits.wall;
    std::thread::scope(|scope| {
        scope.spawn(move || {
            if let Some(mut stdin) = stdin {
                // A child that stops reading (it died) is reported by its
                // exit status, not by this write.
                let _ = stdin.write_all(key).and_then(|()| stdin.write_all(bytes));
            }
        });
        let out = scope.spawn(move || {
            let mut buf = Vec::new();
            if let Some(stdout) = stdout {
                // Dropping the pipe after the limit makes the child's write
                // fail, so it cannot block forever.
                let _ = stdout.take(MAX_ARTIFACT_BYTES as u64 + 1).read_to_end(&mut buf);
            }
            buf
        });
        let err = scope.spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut stderr) = stderr {
                let _ = (&mut stderr).take(STDERR_KEEP as u64).read_to_end(&mut buf);
                let _ = io::copy(&mut stderr, &mut io::sink());
            }
            String::from_utf8_lossy(&buf).into_owned()
        });
        let status = wait_until(&mut child, deadline);
        let stdout = out.join().unwrap_or_default();
        let stderr = err.join().unwrap_or_default();
        let overflow = stdout.len() > MAX_ARTIFACT_BYTES;
        status.map(|status| Run { status, stdout, overflow, stderr })
    })
}

/// Wait for `child`, killing it at `deadline` (then `Ok(None)`).
fn wait_until(child: &mut std::process::Child, deadline: Instant) -> Result<Option<ExitStatus>, PolicyError> {
    let failed = |e: io::Error| PolicyError::Host(format!("cannot wait for the compiler process: {e}"));
    let mut nap = Duration::from_micros(500);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(Some(status)),
            Ok(None) => {}
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(failed(e));
            }
        }
        let now = Instant::now();
        if now >= deadline {
            // Killing a child that has just exited does nothing: its own
            // status then tells how it ended.
            let _ = child.kill();
            let status = child.wait().map_err(failed)?;
            return Ok(if status.signal() == Some(Signal::SIGKILL as i32) { None } else { Some(status) });
        }
        std::thread::sleep(nap.min(deadline - now));
        nap = (nap * 2).min(Duration::from_millis(10));
    }
}

/// Address space, CPU time and no core dumps for the child; it dies with
/// the thread that started it.
#[allow(unsafe_code)]
fn set_limits(cmd: &mut Command, memory: u64, cpu: u64, cpu_hard: u64) {
    let limit = move || -> io::Result<()> {
        setrlimit(Resource::RLIMIT_AS, memory, memory)?;
        setrlimit(Resource::RLIMIT_CPU, cpu, cpu_hard)?;
        setrlimit(Resource::RLIMIT_CORE, 0, 0)?;
        nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
        Ok(())
    };
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe calls are allowed: it makes three setrlimit and
    // one prctl system calls through nix's thin wrappers, which neither
    // allocate nor take locks, and builds its io::Error from an errno
    // without allocating.
    unsafe {
        cmd.pre_exec(limit);
    }
}

/// The artifact a child wrote, or the error its end calls for.
fn check_exit(run: Run, limits: &CompileLimits) -> Result<Vec<u8>, PolicyError> {
    let Some(status) = run.status else {
        return Err(PolicyError::CompileLimit(CompileLimit::WallClock(limits.wall)));
    };
    if run.overflow {
        return Err(PolicyError::CompileLimit(CompileLimit::Output(MAX_ARTIFACT_BYTES)));
    }
    let memory = CompileLimit::Memory(lowered(Resource::RLIMIT_AS, limits.memory));
    // Rust aborts on a failed allocation, after saying so on stderr.
    let alloc_failed = run.stderr.contains("memory allocation of");
    match (status.code(), status.signal()) {
        (Some(0), _) => Ok(run.stdout),
        (Some(code), _) if code == i32::from(EXIT_INVALID) => Err(PolicyError::Invalid(reason(&run.stderr))),
        (Some(code), _) if code == i32::from(EXIT_MEMORY) => Err(PolicyError::CompileLimit(memory)),
        (_, Some(sig)) if sig == Signal::SIGXCPU as i32 => {
            Err(PolicyError::CompileLimit(CompileLimit::Cpu(limits.cpu_seconds().max(1))))
        }
        (_, Some(sig)) if sig == Signal::SIGABRT as i32 && alloc_failed => {
            Err(PolicyError::CompileLimit(memory))
        }
        (_, Some(sig)) => Err(PolicyError::Host(format!(
            "the compiler process was killed by signal {}{}",
            Signal::try_from(sig).map_or_else(|_| sig.to_string(), |s| s.as_str().to_owned()),
            tail(&run.stderr)
        ))),
        (code, None) => Err(PolicyError::Host(format!(
            "the compiler process failed (exit status {}){}",
            code.map_or_else(|| "unknown".to_owned(), |c| c.to_string()),
            tail(&run.stderr)
        ))),
    }
}

/// The reason a child gave for refusing a component: the text after the
/// last [`ERROR_MARK`], made printable.
fn reason(stderr: &str) -> String {
    match stderr.rfind(ERROR_MARK) {
        Some(at) => printable(stderr[at + ERROR_MARK.len()..].lines().next().unwrap_or_default(), 2000),
        None => format!("the compiler gave no reason{}", tail(stderr)),
    }
}

/// `; its stderr ends: …` with the last few hundred bytes, or nothing.
fn tail(stderr: &str) -> String {
    let text = stderr.trim();
    let start = text.len().saturating_sub(300);
    let start = (start..text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(text.len());
    let end = printable(&text[start..], 300);
    if end.is_empty() { String::new() } else { format!("; its stderr ends: {end}") }
}

/// At most `max` characters, control characters replaced (the text may
/// quote the component).
fn printable(text: &str, max: usize) -> String {
    text.trim().chars().take(max).map(|c| if c.is_control() { '?' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exited(code: i32) -> ExitStatus {
        ExitStatus::from_raw(code << 8)
    }

    fn run(status: Option<ExitStatus>, stderr: &str) -> Run {
        Run { status, stdout: b"sealed".to_vec(), overflow: false, stderr: stderr.into() }
    }

    #[test]
    fn each_way_a_child_ends_gives_its_own_error() {
        let limits =
            CompileLimits { memory: 1 << 30, cpu: Duration::from_millis(1500), wall: Duration::from_secs(9) };
        assert_eq!(check_exit(run(Some(exited(0)), ""), &limits).expect("ok"), b"sealed");
        let err = |r: Run| check_exit(r, &limits).expect_err("refused").to_string();
        assert!(err(run(None, "")).contains("wall-clock limit of 9 s"));
        assert!(
            err(run(Some(ExitStatus::from_raw(Signal::SIGXCPU as i32)), "")).contains("CPU limit of 2 s")
        );
        let oom =
            run(Some(ExitStatus::from_raw(Signal::SIGABRT as i32)), "memory allocation of 8 bytes failed\n");
        assert!(err(oom).contains("memory limit of"), "{limits:?}");
        assert!(err(run(Some(exited(3)), "")).contains("memory limit of"));
        let invalid = err(run(Some(exited(2)), "log line\ncairn-compile-error: bad \x1b[31mthing\nmore"));
        assert_eq!(invalid, "invalid policy component: bad ?[31mthing");
        let failed = err(run(Some(exited(1)), "it broke"));
        assert!(failed.contains("(exit status 1); its stderr ends: it broke"), "{failed}");
        let killed = err(run(Some(ExitStatus::from_raw(Signal::SIGSEGV as i32)), ""));
        assert!(killed.contains("signal SIGSEGV"), "{killed}");
        let big = Run { overflow: true, ..run(Some(exited(0)), "") };
        assert!(err(big).contains("limit on a compiled artifact"));
    }
}
