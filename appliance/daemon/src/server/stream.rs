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
