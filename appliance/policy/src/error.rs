//! The crate's error type, and the limit a compiler child went over that
//! one of its variants carries.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The component was refused at load time.
    #[error("invalid policy component: {0}")]
    Invalid(String),
    /// One call failed: trap, timeout, memory, malformed answer or an
    /// error the policy returned.
    #[error("{policy} failed: {message}")]
    Call { policy: String, message: String },
    /// Compiling the component in the compiler child process went over one
    /// of that process's limits; the component is refused.
    #[error("invalid policy component: compiling it went over {0}")]
    CompileLimit(CompileLimit),
    /// The host itself could not start.
    #[error("policy host: {0}")]
    Host(String),
}

/// The limit a compiler child process went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompileLimit {
    /// Its address space, bytes (`RLIMIT_AS`).
    Memory(u64),
    /// Its CPU time, seconds (`RLIMIT_CPU`).
    Cpu(u64),
    /// The wall clock: the parent killed it.
    WallClock(Duration),
    /// The largest compiled artifact accepted, bytes.
    Output(usize),
}

impl std::fmt::Display for CompileLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CompileLimit::Memory(bytes) => {
                write!(f, "its memory limit of {} MiB (address space, RLIMIT_AS)", bytes >> 20)
            }
            CompileLimit::Cpu(secs) => write!(f, "its CPU limit of {secs} s (RLIMIT_CPU)"),
            CompileLimit::WallClock(d) if d.subsec_nanos() == 0 => {
                write!(f, "its wall-clock limit of {} s and was killed", d.as_secs())
            }
            CompileLimit::WallClock(d) => {
                write!(f, "its wall-clock limit of {} ms and was killed", d.as_millis())
            }
            CompileLimit::Output(bytes) => {
                write!(f, "the {} MiB limit on a compiled artifact", bytes >> 20)
            }
        }
    }
}
