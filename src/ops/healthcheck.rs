//! `capstan healthcheck`: a plain HTTP/1.1 GET of the daemon's `/healthz` over a TCP
//! socket, for container health checks in images without curl. Healthy means a `200`
//! status line within the timeout.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The URL checked for an `http_listen` address: a wildcard address is reached on loopback.
pub fn url_for_listen(listen: &str) -> String {
    let (host, port) = listen.rsplit_once(':').unwrap_or((listen, "8080"));
    let host = match host {
        "0.0.0.0" | "" => "127.0.0.1",
        "[::]" => "[::1]",
        h => h,
    };
    format!("http://{host}:{port}/healthz")
}

/// GETs `url` (only `http://HOST:PORT/PATH`); Ok(()) on a 200, Err(reason) otherwise.
pub fn check(url: &str, timeout: Duration) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("`{url}`: only http:// URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let has_port = if authority.starts_with('[') {
        authority.contains("]:")
    } else {
        authority.contains(':')
    };
    let addr_text = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let deadline = Instant::now() + timeout;
    let addrs: Vec<_> = addr_text
        .to_socket_addrs()
        .map_err(|e| format!("{authority}: {e}"))?
        .collect();
    let mut last = format!("{authority}: no address");
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("{url}: timed out"));
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(stream) => return get(stream, authority, path, deadline, url),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(last)
}

fn get(
    mut stream: TcpStream,
    host: &str,
    path: &str,
    deadline: Instant,
    url: &str,
) -> Result<(), String> {
    let left = || {
        let d = deadline.saturating_duration_since(Instant::now());
        Some(d.max(Duration::from_millis(1)))
    };
    stream
        .set_write_timeout(left())
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: capstan-healthcheck\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("{url}: {e}"))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") {
        if Instant::now() >= deadline {
            return Err(format!("{url}: timed out"));
        }
        stream.set_read_timeout(left()).map_err(|e| e.to_string())?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("{url}: {e}")),
        }
        if head.len() > 8192 {
            break;
        }
    }
    let text = String::from_utf8_lossy(&head);
    let status_line = text.lines().next().unwrap_or("").trim();
    let mut parts = status_line.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(v), Some("200")) if v.starts_with("HTTP/1.") => Ok(()),
        _ if status_line.is_empty() => Err(format!("{url}: no response")),
        _ => Err(format!("{url}: {status_line}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Serves one connection with `reply` (after `delay`), returns the URL and the request.
    fn serve(reply: &'static str, delay: Duration) -> (String, std::thread::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/healthz", l.local_addr().unwrap());
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 512];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
            }
            std::thread::sleep(delay);
            let _ = s.write_all(reply.as_bytes());
            String::from_utf8(req).unwrap()
        });
        (url, h)
    }

    #[test]
    fn ok_on_200_with_a_proper_request() {
        let (url, h) = serve(
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            Duration::ZERO,
        );
        assert_eq!(check(&url, Duration::from_secs(2)), Ok(()));
        let req = h.join().unwrap();
        assert!(req.starts_with("GET /healthz HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("\r\nHost: 127.0.0.1:"));
    }

    #[test]
    fn fails_on_other_statuses_silence_and_refusal() {
        let (url, h) = serve("HTTP/1.1 503 Service Unavailable\r\n\r\n", Duration::ZERO);
        let e = check(&url, Duration::from_secs(2)).unwrap_err();
        assert!(e.contains("503"), "{e}");
        h.join().unwrap();

        let (url, h) = serve("HTTP/1.1 200 OK\r\n\r\n", Duration::from_millis(800));
        let t = Instant::now();
        let e = check(&url, Duration::from_millis(200)).unwrap_err();
        assert!(t.elapsed() < Duration::from_millis(700), "{e}");
        h.join().unwrap();

        // Nothing listening.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert!(check(
            &format!("http://127.0.0.1:{port}/healthz"),
            Duration::from_secs(1)
        )
        .is_err());
        assert!(check("https://x/healthz", Duration::from_secs(1)).is_err());
    }

    #[test]
    fn wildcard_listen_addresses_are_checked_on_loopback() {
        assert_eq!(
            url_for_listen("0.0.0.0:8080"),
            "http://127.0.0.1:8080/healthz"
        );
        assert_eq!(
            url_for_listen("127.0.0.1:9000"),
            "http://127.0.0.1:9000/healthz"
        );
        assert_eq!(url_for_listen("[::]:8080"), "http://[::1]:8080/healthz");
    }
}
