//! A TCP proxy that makes an HTTP server unreliable, for tests of retries:
//! of every four connections it accepts, one is answered `503 Slow Down`
//! (S3's throttling) and closed, one is cut after a short while (a reset
//! in the middle of a transfer), one is forwarded after a delay (a slow
//! answer), and one is forwarded as is.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// What the proxy did so far.
#[derive(Debug, Default)]
pub struct FaultCounts {
    pub connections: AtomicU64,
    pub throttled: AtomicU64,
    pub cut: AtomicU64,
    pub slowed: AtomicU64,
}

pub struct FaultProxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    pub counts: Arc<FaultCounts>,
}

impl FaultProxy {
    /// Listen on a loopback port and pass connections on to `upstream`.
    pub fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(FaultCounts::default());
        let (stop2, counts2) = (stop.clone(), counts.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let n = counts2.connections.fetch_add(1, Ordering::Relaxed);
                let counts = counts2.clone();
                std::thread::spawn(move || serve(client, upstream, n, &counts));
            }
        });
        FaultProxy { addr, stop, counts }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(mut client: TcpStream, upstream: SocketAddr, n: u64, counts: &FaultCounts) {
    match n % 4 {
        1 => {
            // Read the request head, answer 503 and close.
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                match client.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(k) => head.extend_from_slice(&buf[..k]),
                }
            }
            counts.throttled.fetch_add(1, Ordering::Relaxed);
            let body = "<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
            let _ = write!(
                client,
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = client.shutdown(Shutdown::Both);
        }
        2 => {
            counts.cut.fetch_add(1, Ordering::Relaxed);
            forward(client, upstream, Duration::ZERO, Some(Duration::from_millis(40 + n % 7 * 30)));
        }
        3 => {
            counts.slowed.fetch_add(1, Ordering::Relaxed);
            forward(client, upstream, Duration::from_millis(300), None);
        }
        _ => forward(client, upstream, Duration::ZERO, None),
    }
}

/// Copy both ways; after `delay`, and cut both sides after `cut`.
fn forward(client: TcpStream, upstream: SocketAddr, delay: Duration, cut: Option<Duration>) {
    std::thread::sleep(delay);
    let Ok(server) = TcpStream::connect(upstream) else { return };
    let (c2, s2) = (client.try_clone().expect("clone"), server.try_clone().expect("clone"));
    let a = std::thread::spawn(move || pipe(c2, s2));
    let (c3, s3) = (client.try_clone().expect("clone"), server.try_clone().expect("clone"));
    let b = std::thread::spawn(move || pipe(s3, c3));
    if let Some(after) = cut {
        std::thread::sleep(after);
        let _ = client.set_linger_zero();
        let _ = client.shutdown(Shutdown::Both);
        let _ = server.shutdown(Shutdown::Both);
    }
    let _ = a.join();
    let _ = b.join();
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(k) => {
                if to.write_all(&buf[..k]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

trait LingerZero {
    fn set_linger_zero(&self) -> std::io::Result<()>;
}

impl LingerZero for TcpStream {
    /// Closing then sends a reset, as a dropped connection does.
    fn set_linger_zero(&self) -> std::io::Result<()> {
        nix::sys::socket::setsockopt(
            self,
            nix::sys::socket::sockopt::Linger,
            &nix::libc::linger { l_onoff: 1, l_linger: 0 },
        )
        .map_err(std::io::Error::from)
    }
}
