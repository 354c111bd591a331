//! Many PUTs at once, with a bound on how many are in flight.

use std::sync::{Arc, Condvar, Mutex};

use crate::{Bucket, BucketError, Result, runtime};

#[derive(Default)]
struct State {
    in_flight: usize,
    failed: Option<BucketError>,
    done: u64,
}

/// Uploads started by `put` run on the object store's runtime; `finish`
/// waits for all of them and reports the first failure. A failure also
/// makes the next `put` fail, so a caller stops early.
pub struct Uploads {
    bucket: Bucket,
    limit: usize,
    state: Arc<(Mutex<State>, Condvar)>,
}

impl std::fmt::Debug for Uploads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Uploads({:?}, limit {})", self.bucket, self.limit)
    }
}

impl Uploads {
    pub(crate) fn new(bucket: Bucket, limit: usize) -> Self {
        Self { bucket, limit: limit.max(1), state: Arc::default() }
    }

    /// Start uploading `bytes` under `key`; waits while `limit` uploads
    /// are already running.
    pub fn put(&self, key: String, bytes: Vec<u8>) -> Result<()> {
        let (lock, cv) = &*self.state;
        let mut st = lock.lock().expect("uploads lock");
        while st.in_flight >= self.limit && st.failed.is_none() {
            st = cv.wait(st).expect("uploads lock");
        }
        if let Some(e) = &st.failed {
            return Err(e.clone());
        }
        st.in_flight += 1;
        drop(st);
        let state = self.state.clone();
        let fut = self.bucket.put_async(key, bytes);
        runtime().spawn(async move {
            let r = fut.await;
            let (lock, cv) = &*state;
            let mut st = lock.lock().expect("uploads lock");
            st.in_flight -= 1;
            match r {
                Ok(()) => st.done += 1,
                Err(e) => {
                    if st.failed.is_none() {
                        st.failed = Some(e);
                    }
                }
            }
            cv.notify_all();
        });
        Ok(())
    }

    /// Wait for every upload started so far; the first failure, if any.
    /// Returns how many succeeded since the last `finish`.
    pub fn finish(&self) -> Result<u64> {
        let (lock, cv) = &*self.state;
        let mut st = lock.lock().expect("uploads lock");
        while st.in_flight > 0 {
            st = cv.wait(st).expect("uploads lock");
        }
        if let Some(e) = st.failed.take() {
            return Err(e);
        }
        Ok(std::mem::take(&mut st.done))
    }
}

impl Drop for Uploads {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}
