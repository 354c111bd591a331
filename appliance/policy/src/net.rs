//! Where a source handler's HTTP requests may connect. A job grants
//! `host:port` authorities; one granted as an IP literal is reached as
//! given (an admin who grants `127.0.0.1:8080` means it). One granted by
//! name is resolved once here, every address it resolves to that is
//! loopback, link-local (the cloud metadata address 169.254.169.254
//! among them), private, unspecified, multicast or otherwise not a
//! public unicast address is dropped, and the connection is made to an
//! address that passed, so a DNS answer cannot turn a granted name into
//! a way into the host itself or its network; there is no second lookup
//! that could answer differently.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Scheme;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody};

/// A response and the future that drives its connection, as
/// `WasiHttpHooks::send_request` hands them back.
pub type Sent = (http::Response<WasiBody>, Box<dyn Future<Output = Result<(), HttpError>> + Send>);

/// Why a handler may not connect to `ip` when its host was granted by
/// name; `None` if it may.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => forbidden_v4(v4),
            None => forbidden_v6(v6),
        },
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(if ip.is_unspecified() || a == 0 {
        "an unspecified address"
    } else if ip.is_loopback() {
        "a loopback address"
    } else if ip.is_link_local() {
        "a link-local address (such as the cloud metadata service)"
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        "a private address"
    } else if ip.is_multicast() || ip.is_broadcast() || a >= 240 {
        "a multicast, broadcast or reserved address"
    } else {
        return None;
    })
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    Some(if ip.is_unspecified() {
        "an unspecified address"
    } else if ip.is_loopback() {
        "a loopback address"
    } else if first & 0xffc0 == 0xfe80 {
        "a link-local address"
    } else if first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfec0 {
        "a private address"
    } else if ip.is_multicast() {
        "a multicast address"
    } else {
        return None;
    })
}

/// The host of an authority as an IP literal, if it is one (`[::1]`
/// included).
fn ip_literal(host: &str) -> Option<IpAddr> {
    host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host).parse().ok()
}

/// Send `request` (its authority already checked against the grants).
pub async fn send(request: http::Request<WasiBody>, options: RequestOptions) -> Result<Sent, HttpError> {
    let uri = request.uri();
    let tls = uri.scheme() == Some(&Scheme::HTTPS);
    let authority = uri.authority().ok_or(HttpError::HttpRequestUriInvalid)?;
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let host = authority.host().to_owned();
    if ip_literal(&host).is_some() {
        // Granted as an address: connecting to it needs no lookup.
        let (res, io) = wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
        let io: Box<dyn Future<Output = Result<(), HttpError>> + Send> = Box::new(io);
        return Ok((res.map(BodyExt::boxed_unsync), io));
    }
    let connect = options.connect_timeout.unwrap_or(Duration::from_secs(10));
    let addrs = resolve(&host, port, connect).await?;
    let stream = connect_first(&addrs, connect).await?;
    if tls {
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|_| HttpError::HttpRequestUriInvalid)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| HttpError::InternalError(Some(e.to_string())))?
            .with_root_certificates(rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.into() })
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let stream = tokio::time::timeout(connect, connector.connect(name, stream))
            .await
            .map_err(|_| HttpError::ConnectionTimeout)?
            .map_err(HttpError::Tls)?;
        exchange(stream, request, options, connect).await
    } else {
        exchange(stream, request, options, connect).await
    }
}

/// The addresses `host` resolves to that a handler may reach; an error
/// (and a warning saying why) when there is none.
async fn resolve(host: &str, port: u16, wait: Duration) -> Result<Vec<SocketAddr>, HttpError> {
    let found: Vec<SocketAddr> = tokio::time::timeout(wait, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| HttpError::DnsTimeout)?
        .map_err(|e| HttpError::DnsError { rcode: Some(e.to_string()), info_code: None })?
        .collect();
    let allowed: Vec<SocketAddr> = found.iter().copied().filter(|a| forbidden(a.ip()).is_none()).collect();
    if allowed.is_empty() {
        match found.first() {
            Some(addr) => tracing::warn!(
                "source policy: refused to connect to {host}:{port}: it resolves to {}, {}; a host granted \
                 by name must be a public address (grant {addr} itself if the handler is meant to reach it)",
                addr.ip(),
                forbidden(addr.ip()).unwrap_or("not allowed")
            ),
            None => tracing::warn!("source policy: {host}:{port} resolves to no address"),
        }
        return Err(if found.is_empty() {
            HttpError::DestinationNotFound
        } else {
            HttpError::DestinationIpProhibited
        });
    }
    Ok(allowed)
}

/// A connection to the first of `addrs` that answers.
async fn connect_first(addrs: &[SocketAddr], wait: Duration) -> Result<TcpStream, HttpError> {
    let mut last = HttpError::ConnectionTimeout;
    for addr in addrs {
        match tokio::time::timeout(wait, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = HttpError::Connect(e),
            Err(_) => last = HttpError::ConnectionTimeout,
        }
    }
    Err(last)
}

/// One HTTP/1.1 exchange over `stream`: the response head within the
/// first-byte wait, then a body whose pieces each come within the
/// between-bytes wait.
async fn exchange<S>(
    stream: S,
    mut request: http::Request<WasiBody>,
    options: RequestOptions,
    connect: Duration,
) -> Result<Sent, HttpError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let first_byte = options.first_byte_timeout.unwrap_or(Duration::from_secs(60));
    let between =
        options.between_bytes_timeout.unwrap_or(Duration::from_secs(60)).max(Duration::from_millis(1));
    let (mut sender, conn) =
        tokio::time::timeout(connect, hyper::client::conn::http1::handshake(TokioIo::new(stream)))
            .await
            .map_err(|_| HttpError::ConnectionTimeout)??;
    // Only the path goes on the request line (no proxy here).
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
    *request.uri_mut() =
        http::Uri::builder().path_and_query(path).build().map_err(|_| HttpError::HttpRequestUriInvalid)?;
    let conn = tokio::spawn(conn);
    let res = tokio::time::timeout(first_byte, sender.send_request(request))
        .await
        .map_err(|_| HttpError::ConnectionReadTimeout)??;
    let res = res.map(|body| {
        Paced { body, wait: between, timer: Box::pin(tokio::time::sleep(between)) }.boxed_unsync()
    });
    let io: Box<dyn Future<Output = Result<(), HttpError>> + Send> = Box::new(async move {
        match conn.await {
            Ok(done) => done.map_err(HttpError::from),
            Err(e) => Err(HttpError::InternalError(Some(e.to_string()))),
        }
    });
    Ok((res, io))
}

/// A response body that fails when the next piece takes longer than
/// `wait`.
struct Paced {
    body: hyper::body::Incoming,
    wait: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl Body for Paced {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let next = tokio::time::Instant::now() + self.wait;
                self.timer.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(HttpError::from(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                ready!(self.timer.as_mut().poll(cx));
                Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_forbidden_public_ones_are_not() {
        let no = [
            "127.0.0.1",
            "127.8.9.10",
            "::1",
            "0.0.0.0",
            "::",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.0.1",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "224.0.0.1",
            "ff02::1",
            "255.255.255.255",
            "100.64.0.1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ];
        for ip in no {
            assert!(forbidden(ip.parse().expect(ip)).is_some(), "{ip} must be refused");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "172.32.0.1", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert_eq!(forbidden(ip.parse().expect(ip)), None, "{ip} is public");
        }
        assert_eq!(
            forbidden("169.254.169.254".parse().expect("ip")),
            Some("a link-local address (such as the cloud metadata service)")
        );
        assert_eq!(ip_literal("[::1]"), Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert_eq!(ip_literal("127.0.0.1"), Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(ip_literal("localhost"), None);
    }

    /// The path a host granted by name takes after its address passed:
    /// a connection to that address, one exchange, the body in full.
    #[test]
    fn a_checked_address_carries_a_whole_exchange() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let server = testkit::http::ExportServer::start("/x", data.clone());
        let addr: SocketAddr = server.authority().parse().expect("addr");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let got = rt.block_on(async {
            let stream = connect_first(&[addr], Duration::from_secs(10)).await.expect("connect");
            let body =
                http_body_util::Empty::<Bytes>::new().map_err(|e| -> HttpError { match e {} }).boxed_unsync();
            let uri = format!("http://{addr}/x");
            let request = http::Request::get(uri).header("host", "example.org").body(body).expect("request");
            let (res, io) = exchange(stream, request, RequestOptions::default(), Duration::from_secs(10))
                .await
                .expect("exchange");
            assert_eq!(res.status(), 200);
            let got = res.into_body().collect().await.expect("body").to_bytes();
            Box::into_pin(io).await.expect("connection");
            got
        });
        assert!(got == data, "{} bytes", got.len());
        assert_eq!(server.requests()[0].path, "/x");
    }
}
