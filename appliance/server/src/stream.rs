//! Bridging blocking readers (the engine's) to streaming response bodies.

use std::io::Read;

use axum::body::Bytes;
use futures_util::Stream;

/// Read `reader` on a blocking thread in 256 KiB pieces, at most four
/// pieces ahead of the client; a failed read ends the body with an error
/// (the client sees a truncated transfer, never silently wrong bytes).
pub fn from_reader<R: Read + Send + 'static>(mut reader: R) -> impl Stream<Item = std::io::Result<Bytes>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        loop {
            let mut buf = vec![0u8; 256 << 10];
            match reader.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!("download failed: {e}");
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}

/// Run `write` on a blocking thread; what it writes becomes the body, in
/// pieces of 256 KiB at most four ahead of the client. An error ends the
/// body with an error (a truncated transfer, never a silently short file).
pub fn from_writer<F>(write: F) -> impl Stream<Item = std::io::Result<Bytes>>
where
    F: FnOnce(&mut dyn std::io::Write) -> anyhow::Result<()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut out = ChannelWriter { tx: tx.clone(), buf: Vec::with_capacity(PIECE) };
        let result = write(&mut out).and_then(|()| Ok(std::io::Write::flush(&mut out)?));
        if let Err(e) = result {
            tracing::warn!("download failed: {e:#}");
            let _ = tx.blocking_send(Err(std::io::Error::other(format!("{e:#}"))));
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}

const PIECE: usize = 256 << 10;

struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(PIECE - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == PIECE {
            self.flush()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = std::mem::replace(&mut self.buf, Vec::with_capacity(PIECE));
        self.tx
            .blocking_send(Ok(Bytes::from(piece)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away"))
    }
}
