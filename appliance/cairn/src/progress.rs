//! Progress bars on a terminal, drawn from the engine's live counters by a
//! background thread; nothing is drawn when stderr is not a terminal.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use engine::Progress;
use indicatif::{ProgressBar, ProgressStyle};

/// A bar bound to a `Progress`; finish it with `done`.
pub struct Bar {
    progress: Arc<Progress>,
    thread: Option<JoinHandle<()>>,
}

impl Bar {
    /// Start drawing `what` (e.g. "backup") if stderr is a terminal.
    pub fn start(what: &'static str, progress: Arc<Progress>) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self { progress, thread: None };
        }
        let p = progress.clone();
        let thread = std::thread::spawn(move || draw(what, &p));
        Self { progress, thread: Some(thread) }
    }

    pub fn is_drawing(&self) -> bool {
        self.thread.is_some()
    }

    pub fn done(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.progress.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.stop();
    }
}

fn draw(what: &'static str, p: &Progress) {
    let bar = ProgressBar::new(0);
    let known =
        "{prefix} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {msg} ETA {eta}";
    let unknown = "{prefix} [{elapsed_precise}] {spinner} {bytes} {bytes_per_sec} {msg}";
    bar.set_prefix(what);
    let mut has_total = false;
    bar.set_style(ProgressStyle::with_template(unknown).expect("template"));
    while !p.done.load(Ordering::Relaxed) {
        let total = p.get(&p.total_bytes);
        if total > 0 && !has_total {
            bar.set_style(ProgressStyle::with_template(known).expect("template"));
            bar.set_length(total);
            has_total = true;
        }
        bar.set_position(p.get(&p.bytes));
        bar.set_message(format!("{} files", p.get(&p.files)));
        std::thread::sleep(Duration::from_millis(100));
    }
    bar.finish_and_clear();
}
