//! Work done ahead, on a pool of threads, for one thread that needs the
//! results in an order of its own: the tree walk's directory listings.
//!
//! A job is handed in with a key, and the pool's threads always start the
//! queued job with the smallest key: the walk keys a directory by the
//! path of child indices that leads to it, so the order of the keys is
//! the order the walk enters directories, and the threads list the
//! directories the walk needs next. The one thread that takes results
//! ([`Ordered::take`]) runs a job itself when no pool thread has started
//! it, and waits for it only when one has: on a machine with few cores it
//! never idles behind work it could do, and it never waits for a job
//! nobody runs.
//!
//! Memory is bounded: each result has a weight (its size in the caller's
//! units), and the threads start no job while the results done and not
//! yet taken weigh `limit` or more. A job may hand in more jobs while it
//! runs (a listing hands in the directories it found).

use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::pipeline::{add_thread_cpu, thread_cpu};

/// A job handed out, and where it stands: run by whichever thread claims
/// it first, its result taken once.
pub(crate) struct Slot<T, R> {
    state: Mutex<State<T, R>>,
    done: Condvar,
}

enum State<T, R> {
    Queued(T),
    Running,
    /// Running, and the taker waits for it.
    Awaited,
    Done(R),
    Taken,
}

impl<T, R> Slot<T, R> {
    pub fn new(job: T) -> Arc<Self> {
        Arc::new(Self { state: Mutex::new(State::Queued(job)), done: Condvar::new() })
    }

    /// The job, unless a thread already started it.
    pub fn claim(&self) -> Option<T> {
        let mut state = self.state.lock().expect("lock");
        match std::mem::replace(&mut *state, State::Running) {
            State::Queued(job) => Some(job),
            other => {
                *state = other;
                None
            }
        }
    }

    /// Settle a claimed job.
    pub fn finish(&self, result: R) {
        let was = std::mem::replace(&mut *self.state.lock().expect("lock"), State::Done(result));
        // Wake the taker only if it waits: a wake is a system call, and
        // most jobs are done before the taker gets to them.
        if matches!(was, State::Awaited) {
            self.done.notify_one();
        }
    }

    /// The result of a job another thread claimed: waits until it is done.
    pub fn wait(&self) -> R {
        let mut state = self.state.lock().expect("lock");
        if matches!(*state, State::Running) {
            *state = State::Awaited;
        }
        let mut state = self.done.wait_while(state, |s| matches!(s, State::Awaited)).expect("lock");
        match std::mem::replace(&mut *state, State::Taken) {
            State::Done(result) => result,
            _ => unreachable!("waited for a job that was claimed, and taken once"),
        }
    }

    /// The taker's side: run the job here if no pool thread has claimed
    /// it, else wait for its result (the wait counted in `times`).
    pub fn run_or_wait(&self, times: &PoolTimes, run: impl FnOnce(T) -> R) -> Took<R> {
        if let Some(job) = self.claim() {
            times.by_taker.fetch_add(1, Ordering::Relaxed);
            return Took::Ran(run(job));
        }
        let t = Instant::now();
        let result = self.wait();
        times.add_waited(t);
        Took::Waited(result)
    }
}

/// A pool's clock: time its threads spent running jobs (wall and CPU,
/// summed), jobs handed in, jobs the one thread that takes the results
/// ran itself, and that thread's time waiting for a job a pool thread was
/// running. The directory listings, the read-ahead and the chunk-boundary
/// scanners each keep one.
#[derive(Debug, Default)]
pub struct PoolTimes {
    busy_ns: AtomicU64,
    cpu_ns: AtomicU64,
    jobs: AtomicU64,
    by_taker: AtomicU64,
    waited_ns: AtomicU64,
}

/// [`PoolTimes`] read out: seconds busy and CPU seconds (the pool's
/// threads), jobs, jobs run by the taker, seconds the taker waited.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolFigures {
    pub busy_s: f64,
    pub cpu_s: f64,
    pub jobs: u64,
    pub by_taker: u64,
    pub waited_s: f64,
}

impl PoolTimes {
    pub fn figures(&self) -> PoolFigures {
        let s = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64 / 1e9;
        PoolFigures {
            busy_s: s(&self.busy_ns),
            cpu_s: s(&self.cpu_ns),
            jobs: self.jobs.load(Ordering::Relaxed),
            by_taker: self.by_taker.load(Ordering::Relaxed),
            waited_s: s(&self.waited_ns),
        }
    }

    pub fn count_job(&self) {
        self.jobs.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add_busy(&self, since: Instant) {
        self.busy_ns.fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    pub fn add_waited(&self, since: Instant) {
        self.waited_ns.fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    /// Add the CPU time this thread used since `start` (a [`thread_cpu`]).
    pub fn add_cpu(&self, start: f64) {
        add_thread_cpu(&self.cpu_ns, start);
    }
}

/// How the taker got a job's result.
pub(crate) enum Took<R> {
    /// No thread had started the job: the taker ran it.
    Ran(R),
    /// A pool thread had: the taker waited for it if need be.
    Waited(R),
}

impl<R> Took<R> {
    pub fn into_inner(self) -> R {
        match self {
            Took::Ran(r) | Took::Waited(r) => r,
        }
    }
}

/// A pool thread's side: run a job it claimed, its time counted busy in
/// `times`; a panic becomes `failed()`, so the slot is still settled and
/// the taker does not wait for ever.
pub(crate) fn run_caught<T, R>(
    times: &PoolTimes,
    job: T,
    work: impl FnOnce(T) -> R,
    failed: impl FnOnce() -> R,
) -> R {
    let t = Instant::now();
    let result =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(job))).unwrap_or_else(|_| failed());
    times.add_busy(t);
    result
}

/// What a pool runs: a job, with a way to hand in more, to its result and
/// the result's weight.
type Work<T, R> = dyn Fn(T, &Submit<'_, T, R>) -> (R, usize) + Send + Sync;

struct Shared<T, R> {
    sched: Mutex<Sched<T, R>>,
    wake: Condvar,
    work: Box<Work<T, R>>,
    /// The result of a job whose thread panicked.
    failed: fn() -> R,
    limit: usize,
    threads: usize,
    times: Arc<PoolTimes>,
}

struct Sched<T, R> {
    queue: BinaryHeap<Queued<T, R>>,
    /// Weight of the results done by the pool and not yet taken.
    outstanding: usize,
    stop: bool,
}

type Job<T, R> = Slot<T, (R, usize)>;

struct Queued<T, R> {
    key: Vec<u32>,
    slot: Arc<Job<T, R>>,
}

impl<T, R> PartialEq for Queued<T, R> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl<T, R> Eq for Queued<T, R> {}
impl<T, R> PartialOrd for Queued<T, R> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T, R> Ord for Queued<T, R> {
    /// Reversed: the heap is a max-heap, the smallest key goes first.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.key.cmp(&self.key)
    }
}

/// A job handed in; [`Ordered::take`] gets its result.
pub(crate) struct Ticket<T, R>(Arc<Job<T, R>>);

/// Hands jobs to the pool from inside a job.
pub(crate) struct Submit<'a, T, R>(&'a Shared<T, R>);

impl<T, R> Submit<'_, T, R> {
    pub fn submit(&self, key: Vec<u32>, job: T) -> Ticket<T, R> {
        let shared = self.0;
        shared.times.count_job();
        let slot = Slot::new(job);
        if shared.threads > 0 {
            let mut sched = shared.sched.lock().expect("lock");
            sched.queue.push(Queued { key, slot: slot.clone() });
            if sched.outstanding < shared.limit {
                shared.wake.notify_one();
            }
        }
        Ticket(slot)
    }
}

/// The pool; dropping it stops its threads (jobs not started are dropped).
pub(crate) struct Ordered<T: Send + 'static, R: Send + 'static> {
    shared: Arc<Shared<T, R>>,
    helpers: Vec<JoinHandle<()>>,
}

impl<T: Send + 'static, R: Send + 'static> Ordered<T, R> {
    /// Start `threads` threads named `name-N` (none: the taker runs every
    /// job); they stop starting jobs while the results waiting to be
    /// taken weigh `limit`. `failed` stands for the result of a job that
    /// panicked.
    pub fn new<F>(name: &str, threads: usize, limit: usize, failed: fn() -> R, work: F) -> Self
    where
        F: Fn(T, &Submit<'_, T, R>) -> (R, usize) + Send + Sync + 'static,
    {
        let shared = Arc::new(Shared {
            sched: Mutex::new(Sched { queue: BinaryHeap::new(), outstanding: 0, stop: false }),
            wake: Condvar::new(),
            work: Box::new(work),
            failed,
            limit,
            threads,
            times: Arc::default(),
        });
        let helpers = (0..threads)
            .map(|i| {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn(move || help(&shared))
                    .expect("start a pool thread")
            })
            .collect();
        Self { shared, helpers }
    }

    pub fn submit(&self, key: Vec<u32>, job: T) -> Ticket<T, R> {
        Submit(&self.shared).submit(key, job)
    }

    /// A job's result: run here if no pool thread has started it, else
    /// waited for.
    pub fn take(&self, ticket: Ticket<T, R>) -> R {
        let shared = &*self.shared;
        let (result, weight) =
            match ticket.0.run_or_wait(&shared.times, |job| (shared.work)(job, &Submit(shared))) {
                // Never counted in the weight done ahead.
                Took::Ran((result, _)) => return result,
                Took::Waited(done) => done,
            };
        let mut sched = shared.sched.lock().expect("lock");
        let was = sched.outstanding;
        sched.outstanding -= weight;
        if was >= shared.limit && sched.outstanding < shared.limit {
            shared.wake.notify_all();
        }
        result
    }

    /// The pool's clock, to read once the pool has stopped.
    pub fn times(&self) -> Arc<PoolTimes> {
        self.shared.times.clone()
    }
}

/// A pool thread: start the queued job with the smallest key while the
/// results not taken weigh less than the limit.
fn help<T, R>(shared: &Shared<T, R>) {
    let cpu = thread_cpu();
    loop {
        let slot = {
            let mut sched = shared.sched.lock().expect("lock");
            loop {
                if sched.stop {
                    break None;
                }
                if sched.outstanding < shared.limit
                    && let Some(next) = sched.queue.pop()
                {
                    break Some(next.slot);
                }
                sched = shared.wake.wait(sched).expect("lock");
            }
        };
        let Some(slot) = slot else { break };
        // The taker may have run it already.
        let Some(job) = slot.claim() else { continue };
        let (result, weight) = run_caught(
            &shared.times,
            job,
            |job| (shared.work)(job, &Submit(shared)),
            || ((shared.failed)(), 0),
        );
        // Counted before the taker can see the result (and count it off).
        shared.sched.lock().expect("lock").outstanding += weight;
        slot.finish((result, weight));
    }
    shared.times.add_cpu(cpu);
}

impl<T: Send + 'static, R: Send + 'static> Drop for Ordered<T, R> {
    fn drop(&mut self) {
        {
            let mut sched = self.shared.sched.lock().expect("lock");
            sched.stop = true;
            sched.queue.clear();
        }
        self.shared.wake.notify_all();
        for h in self.helpers.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree of jobs, each handing in its children: every result comes
    /// back to the taker, in its order, whether a pool thread or the
    /// taker ran the job; and the pool never runs ahead of the limit.
    #[test]
    fn results_come_back_in_the_takers_order_within_the_limit() {
        struct Node {
            key: Vec<u32>,
            kids: Vec<Ticket<Vec<u32>, Node>>,
        }
        let most = Arc::new(AtomicU64::new(0));
        let seen = most.clone();
        for threads in [0, 1, 4] {
            let pending = Arc::new(AtomicU64::new(0));
            let (p, s) = (pending.clone(), seen.clone());
            let pool = Ordered::new(
                "test-pool",
                threads,
                8,
                || panic!("no job panics here"),
                move |key: Vec<u32>, submit: &Submit<'_, Vec<u32>, Node>| {
                    let kids = if key.len() < 4 {
                        (0..3u32)
                            .map(|i| {
                                let mut k = key.clone();
                                k.push(i);
                                submit.submit(k.clone(), k)
                            })
                            .collect()
                    } else {
                        Vec::new()
                    };
                    let now = p.fetch_add(1, Ordering::SeqCst) + 1;
                    s.fetch_max(now, Ordering::SeqCst);
                    (Node { key, kids }, 1)
                },
            );
            let mut order = Vec::new();
            let mut stack = vec![pool.submit(Vec::new(), Vec::new())];
            while let Some(t) = stack.pop() {
                let node = pool.take(t);
                pending.fetch_sub(1, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_micros(50));
                order.push(node.key);
                stack.extend(node.kids.into_iter().rev());
            }
            let mut want = order.clone();
            want.sort();
            assert_eq!(order, want, "depth first, in key order ({threads} threads)");
            assert_eq!(order.len(), 1 + 3 + 9 + 27 + 81);
            let f = pool.times().figures();
            assert_eq!(f.jobs, order.len() as u64);
            if threads == 0 {
                assert_eq!(f.by_taker, f.jobs);
            }
        }
        // Done and not taken: at most the limit, plus one per thread that
        // had started a job just before the limit was reached.
        assert!(seen.load(Ordering::SeqCst) <= 8 + 4, "ran {} ahead", seen.load(Ordering::SeqCst));
    }

    /// A job that panics on a pool thread settles as `failed`: the taker
    /// does not wait forever.
    #[test]
    fn a_panicking_job_settles_as_failed() {
        let started = Arc::new(AtomicU64::new(0));
        let s = started.clone();
        let pool = Ordered::new(
            "test-pool",
            2,
            100,
            || -1i64,
            move |n: i64, _: &Submit<'_, i64, i64>| {
                s.fetch_add(1, Ordering::SeqCst);
                if n == 3 {
                    panic!("job 3 fails");
                }
                (n, 1)
            },
        );
        let tickets: Vec<_> = (0..6).map(|n| pool.submit(vec![n as u32], n)).collect();
        // Let the threads run them all (the taker would run a job no
        // thread started, and its panic would reach the test).
        let t = Instant::now();
        while started.load(Ordering::SeqCst) < 6 {
            assert!(t.elapsed().as_secs() < 30, "the pool's threads did not run");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let got: Vec<i64> = tickets.into_iter().map(|t| pool.take(t)).collect();
        assert_eq!(got, vec![0, 1, 2, -1, 4, 5]);
        assert_eq!(pool.times().figures().by_taker, 0);
    }
}
