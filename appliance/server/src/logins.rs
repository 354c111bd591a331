//! Password logins under load: each check is an Argon2id hash (19 MiB,
//! tens of milliseconds of CPU), so a flood of wrong passwords must not
//! take the server's memory or cores. At most `[limits] password_checks`
//! run at once, at most `login_queue` wait for one (beyond that: 429), and
//! repeated failures from one client address, or for one user name, make
//! further attempts wait (back-off) whatever the password.
//!
//! Times are passed in (epoch seconds), so the back-off is tested without
//! sleeping.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::limits::Limits;

/// Failures allowed before the back-off starts.
pub const FREE_FAILURES: u32 = 5;
/// Longest wait imposed on a client address.
pub const MAX_ADDRESS_WAIT: i64 = 15 * 60;
/// Longest wait imposed on a user name: short, so an attacker cannot lock
/// the real user out for long by failing on purpose.
pub const MAX_NAME_WAIT: i64 = 60;
/// A record is forgotten this long after its last failure.
pub const FORGET_AFTER: i64 = 15 * 60;
/// Records kept at most (the oldest are dropped first).
const MAX_RECORDS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Address(IpAddr),
    Name(u64),
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: i64,
}

/// Why a login attempt is not checked now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Back-off after failures: retry after this many seconds.
    Wait(i64),
    /// Too many logins are waiting for a password check.
    Busy,
}

/// Concurrency and back-off of password checks.
pub struct Logins {
    checks: Arc<Semaphore>,
    waiting: AtomicUsize,
    queue: usize,
    failures: Mutex<HashMap<Key, Failures>>,
}

/// How long `f` makes the next attempt wait at `now`, for a key whose
/// waits are capped at `cap`.
fn wait(f: &Failures, now: i64, cap: i64) -> i64 {
    if f.count < FREE_FAILURES || now - f.last >= FORGET_AFTER {
        return 0;
    }
    let exp = (f.count - FREE_FAILURES).min(20);
    let delay = (1i64 << exp).min(cap);
    (f.last + delay - now).max(0)
}

fn name_key(user: &str) -> Key {
    let h = blake3::hash(user.as_bytes());
    Key::Name(u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes")))
}

impl Logins {
    pub fn new(limits: &Limits) -> Self {
        Self {
            checks: Arc::new(Semaphore::new(limits.password_checks())),
            waiting: AtomicUsize::new(0),
            queue: limits.login_queue,
            failures: Mutex::default(),
        }
    }

    /// Whether an attempt from `addr` for `user` must wait at `now`.
    pub fn backoff(&self, addr: Option<IpAddr>, user: &str, now: i64) -> Option<Refusal> {
        let failures = self.failures.lock().expect("lock");
        let by_addr =
            addr.and_then(|a| failures.get(&Key::Address(a))).map_or(0, |f| wait(f, now, MAX_ADDRESS_WAIT));
        let by_name = failures.get(&name_key(user)).map_or(0, |f| wait(f, now, MAX_NAME_WAIT));
        let longest = by_addr.max(by_name);
        (longest > 0).then_some(Refusal::Wait(longest))
    }

    /// A permit to run one password check, waiting for one if the queue
    /// has room, else `Busy`.
    pub async fn permit(&self) -> Result<OwnedSemaphorePermit, Refusal> {
        if let Ok(p) = self.checks.clone().try_acquire_owned() {
            return Ok(p);
        }
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.queue {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(Refusal::Busy);
        }
        let permit = self.checks.clone().acquire_owned().await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        permit.map_err(|_| Refusal::Busy)
    }

    /// Record a failed attempt.
    pub fn failed(&self, addr: Option<IpAddr>, user: &str, now: i64) {
        let mut failures = self.failures.lock().expect("lock");
        if failures.len() >= MAX_RECORDS {
            failures.retain(|_, f| now - f.last < FORGET_AFTER);
            if failures.len() >= MAX_RECORDS {
                failures.clear();
            }
        }
        let keys = addr.map(Key::Address).into_iter().chain([name_key(user)]);
        for key in keys {
            let f = failures.entry(key).or_insert(Failures { count: 0, last: now });
            if now - f.last >= FORGET_AFTER {
                f.count = 0;
            }
            f.count += 1;
            f.last = now;
        }
    }

    /// A successful login clears the record of its user name and address.
    pub fn succeeded(&self, addr: Option<IpAddr>, user: &str) {
        let mut failures = self.failures.lock().expect("lock");
        failures.remove(&name_key(user));
        if let Some(a) = addr {
            failures.remove(&Key::Address(a));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logins(checks: usize, queue: usize) -> Logins {
        Logins::new(&Limits { password_checks: checks, login_queue: queue, ..Limits::default() })
    }

    #[test]
    fn failures_back_off_by_address_and_by_name_and_are_forgotten() {
        let l = logins(1, 1);
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let t = 1_000_000;
        for i in 0..FREE_FAILURES {
            assert_eq!(l.backoff(Some(a), "alice", t), None, "attempt {i} is free");
            l.failed(Some(a), "alice", t);
        }
        // The next attempt waits, from that address or for that name.
        assert_eq!(l.backoff(Some(a), "bob", t), Some(Refusal::Wait(1)));
        assert_eq!(l.backoff(Some(b), "alice", t), Some(Refusal::Wait(1)));
        assert_eq!(l.backoff(Some(b), "bob", t), None);
        // Each further failure doubles the wait, capped per kind of key.
        for _ in 0..12 {
            l.failed(Some(a), "alice", t);
        }
        assert_eq!(l.backoff(Some(a), "x", t), Some(Refusal::Wait(MAX_ADDRESS_WAIT)));
        assert_eq!(l.backoff(Some(b), "alice", t), Some(Refusal::Wait(MAX_NAME_WAIT)));
        assert_eq!(l.backoff(Some(b), "alice", t + MAX_NAME_WAIT), None);
        assert_eq!(l.backoff(Some(a), "x", t + MAX_ADDRESS_WAIT - 1), Some(Refusal::Wait(1)));
        assert_eq!(l.backoff(Some(a), "x", t + FORGET_AFTER), None);
        // A success clears the name and the address.
        l.succeeded(Some(a), "alice");
        assert_eq!(l.backoff(Some(a), "alice", t), None);
    }

    #[tokio::test]
    async fn password_checks_are_bounded_and_the_queue_overflows_into_busy() {
        let l = Arc::new(logins(2, 1));
        let p1 = l.permit().await.unwrap();
        let _p2 = l.permit().await.unwrap();
        // Both checks busy: one caller may wait ...
        let waiter = tokio::spawn({
            let l = l.clone();
            async move { l.permit().await.map(|_| ()) }
        });
        while l.waiting.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // ... and the next is refused at once.
        assert_eq!(l.permit().await.err(), Some(Refusal::Busy));
        drop(p1);
        assert_eq!(waiter.await.unwrap(), Ok(()));
    }
}
