//! The byte stream under a download connection: plain TCP for `http://`, rustls over
//! TCP for `https://`, so that both get the same keep-alive and pipelining (the WIS2
//! global caches serve over https). Connecting is timed by phase: the TCP connect, then
//! the TLS handshake, each with the connect timeout.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

/// A connection's bytes, in the clear or through TLS.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

/// Where a connection goes: `http://host[:port]` or `https://host[:port]`.
struct Origin<'a> {
    tls: bool,
    /// Host and port, as connected to.
    addr: String,
    /// The host alone (the name the certificate must carry).
    host: &'a str,
}

fn parse_origin(origin: &str) -> io::Result<Origin<'_>> {
    let (tls, hostport) = if let Some(h) = origin.strip_prefix("https://") {
        (true, h)
    } else if let Some(h) = origin.strip_prefix("http://") {
        (false, h)
    } else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not an http:// or https:// URL",
        ));
    };
    let (host, has_port) = match hostport.rfind(':') {
        Some(i) if !hostport[i..].contains(']') => (&hostport[..i], true),
        _ => (hostport, false),
    };
    let addr = if has_port {
        hostport.to_string()
    } else {
        format!("{hostport}:{}", if tls { 443 } else { 80 })
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok(Origin { tls, addr, host })
}

/// The phase a connection failed in, as the error's words say it ("timeout: TLS
/// handshake").
fn in_phase(e: io::Error, phase: &str) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            io::Error::new(io::ErrorKind::TimedOut, format!("timeout: {phase}"))
        }
        _ => e,
    }
}

/// A TCP connection to `addr` (`host:port`) within `timeout`, without Nagle's delay.
fn tcp_to(addr: &str, timeout: Duration) -> io::Result<TcpStream> {
    let addr = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))?;
    let tcp = TcpStream::connect_timeout(&addr, timeout).map_err(|e| in_phase(e, "connect"))?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// A tunnel to `addr` through the HTTP proxy `proxy` (`http://host:port`): CONNECT, as
/// curl and ureq make one, for http too (the proxy sees no request, only bytes).
fn tunnel(proxy: &str, addr: &str, timeout: Duration) -> io::Result<TcpStream> {
    let p = parse_origin(proxy)?;
    if p.tls {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("proxy {proxy}: only http:// proxies"),
        ));
    }
    let named = |e: io::Error| io::Error::new(e.kind(), format!("proxy {proxy}: {e}"));
    let mut tcp = tcp_to(&p.addr, timeout).map_err(named)?;
    tcp.set_read_timeout(Some(timeout))?;
    write!(tcp, "CONNECT {addr} HTTP/1.1\r\nHost: {addr}\r\n\r\n")?;
    // byte by byte: what follows the head is the tunnel's, not the proxy's
    let mut head = Vec::with_capacity(128);
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= 16 * 1024 {
            return Err(named(io::Error::new(
                io::ErrorKind::InvalidData,
                "answer to CONNECT too large",
            )));
        }
        match tcp.read(&mut b) {
            Ok(0) => {
                return Err(named(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed before answering CONNECT",
                )))
            }
            Ok(_) => head.push(b[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(named(in_phase(e, "proxy CONNECT"))),
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let status = match resp.parse(&head) {
        Ok(httparse::Status::Complete(_)) => resp.code.unwrap_or(0),
        _ => 0,
    };
    if !(200..300).contains(&status) {
        let line = String::from_utf8_lossy(&head);
        let line = line.lines().next().unwrap_or_default().to_string();
        return Err(io::Error::other(format!(
            "proxy {proxy} refused the tunnel to {addr}: {line}"
        )));
    }
    Ok(tcp)
}

impl Stream {
    /// Connects to `origin` (`http://host:port` or `https://host:port`), the TCP
    /// connect and the TLS handshake each within `timeout`.
    pub fn connect(origin: &str, timeout: Duration) -> io::Result<Stream> {
        Stream::connect_with(origin, timeout, None, None)
    }

    /// As `connect`, trusting the authorities of `tls` (none: Mozilla's and the
    /// system's, read at the first https origin), through an HTTP proxy when given
    /// (`shove`'s uploads).
    pub fn connect_with(
        origin: &str,
        timeout: Duration,
        tls: Option<Arc<rustls::ClientConfig>>,
        proxy: Option<&str>,
    ) -> io::Result<Stream> {
        let o = parse_origin(origin)?;
        let tcp = match proxy {
            Some(p) => tunnel(p, &o.addr, timeout)?,
            None => tcp_to(&o.addr, timeout)?,
        };
        if !o.tls {
            return Ok(Stream::Plain(tcp));
        }
        let name = rustls::pki_types::ServerName::try_from(o.host.to_string()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad host {:?}", o.host),
            )
        })?;
        // the roots are read only here, so that a plain-http node never holds them
        let tls = tls.unwrap_or_else(super::roots::client_config);
        let mut conn = rustls::ClientConnection::new(tls, name)
            .map_err(|e| io::Error::other(format!("TLS: {e}")))?;
        tcp.set_read_timeout(Some(timeout))?;
        tcp.set_write_timeout(Some(timeout))?;
        let mut tcp = tcp;
        // the handshake now, so that its failure is named and timed as its own
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp)
                .map_err(|e| in_phase(e, "TLS handshake"))?;
        }
        tcp.set_write_timeout(None)?;
        Ok(Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp))))
    }

    /// The TCP socket under the stream (timeouts, quick acks).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            // a server that closes without close_notify (many do, between keep-alive
            // answers) has ended the stream like a plain close: the answers it did
            // not give are asked again elsewhere, and every body is checked by length
            // or chunking (and its checksum) anyway
            Stream::Tls(s) => match s.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                other => other,
            },
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_name_their_host_and_default_port() {
        let o = parse_origin("https://cache.example").unwrap();
        assert!(o.tls && o.addr == "cache.example:443" && o.host == "cache.example");
        let o = parse_origin("http://127.0.0.1:8000").unwrap();
        assert!(!o.tls && o.addr == "127.0.0.1:8000" && o.host == "127.0.0.1");
        let o = parse_origin("https://[::1]:8443").unwrap();
        assert!(o.addr == "[::1]:8443" && o.host == "::1");
        let o = parse_origin("http://[::1]").unwrap();
        assert_eq!(o.addr, "[::1]:80");
        assert!(parse_origin("ftp://x").is_err());
    }

    #[test]
    fn a_handshake_with_a_mute_server_times_out_by_name() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || l.accept().map(|(s, _)| s));
        let e = Stream::connect(
            &format!("https://127.0.0.1:{port}"),
            Duration::from_millis(200),
        )
        .err()
        .expect("no handshake");
        assert_eq!(e.to_string(), "timeout: TLS handshake");
        drop(t.join());
    }
}
