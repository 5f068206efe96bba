//! Where the server listens: `--web.listen-address` as node_exporter reads
//! it. `:PORT` is every address of both families (one dual-stack socket,
//! IPv4 alone where the host has IPv6 disabled); a host name is resolved
//! once, at start.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

use socket2::{Domain, Socket, Type};
use tokio::net::TcpListener;
use tracing::info;

/// Connections a busy listener queues before accepting them.
const BACKLOG: i32 = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ListenAddress {
    /// `:PORT`: every address, IPv6 and IPv4.
    Any(u16),
    /// An IP address and port, e.g. `127.0.0.1:8080` or `[::]:8080`.
    Ip(SocketAddr),
    /// A host name and port, e.g. `localhost:8080`.
    Host(String, u16),
}

impl fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddress::Any(port) => write!(f, ":{port}"),
            ListenAddress::Ip(address) => write!(f, "{address}"),
            ListenAddress::Host(host, port) => write!(f, "{host}:{port}"),
        }
    }
}

impl ListenAddress {
    /// Reads `:PORT`, `IP:PORT`, `[IPv6]:PORT` or `HOST:PORT`.
    pub(crate) fn parse(value: &str) -> Result<Self, String> {
        const HINT: &str =
            "write an address and port such as :8080, 127.0.0.1:8080, [::1]:8080 or localhost:8080";
        if let Some(port) = value.strip_prefix(':') {
            return port
                .parse()
                .map(ListenAddress::Any)
                .map_err(|_| format!("{port:?} is not a port number; {HINT}"));
        }
        if let Ok(address) = value.parse() {
            return Ok(ListenAddress::Ip(address));
        }
        let Some((host, port)) = value.rsplit_once(':') else {
            return Err(format!("no port; {HINT}"));
        };
        let port = port
            .parse()
            .map_err(|_| format!("{port:?} is not a port number; {HINT}"))?;
        let name = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
        if host.is_empty() || !host.chars().all(name) {
            return Err(format!(
                "{host:?} is neither an IP address nor a host name; {HINT}"
            ));
        }
        Ok(ListenAddress::Host(host.to_owned(), port))
    }

    /// The address a local client reaches the listener at: loopback for a
    /// wildcard, the address itself otherwise.
    pub(crate) fn local_url_host(&self) -> String {
        match self {
            ListenAddress::Any(port) => format!("127.0.0.1:{port}"),
            ListenAddress::Ip(address) => {
                let ip = match address {
                    SocketAddr::V4(a) if a.ip().is_unspecified() => Ipv4Addr::LOCALHOST.into(),
                    SocketAddr::V6(a) if a.ip().is_unspecified() => Ipv6Addr::LOCALHOST.into(),
                    a => a.ip(),
                };
                SocketAddr::new(ip, address.port()).to_string()
            }
            ListenAddress::Host(host, port) => format!("{host}:{port}"),
        }
    }
}

/// Binds the listener. The error says what went wrong and what to do.
pub(crate) fn bind(address: &ListenAddress) -> Result<TcpListener, String> {
    let bound = match address {
        ListenAddress::Any(port) => bind_any(*port),
        ListenAddress::Ip(ip) => listen(*ip, None),
        ListenAddress::Host(host, port) => resolve(host, *port).and_then(|ip| listen(ip, None)),
    };
    bound.map_err(|e| bind_error(address, &e))
}

/// `[::]:PORT` with IPv4 too; `0.0.0.0:PORT` where IPv6 is off.
fn bind_any(port: u16) -> io::Result<TcpListener> {
    let dual = SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port);
    match listen(dual, Some(false)) {
        Err(e) if ipv6_unavailable(&e) => {
            info!(port, error = %e, "IPv6 is not available on this host; listening on IPv4 only");
            listen(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port), None)
        }
        other => other,
    }
}

fn ipv6_unavailable(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL | libc::EPROTONOSUPPORT)
    )
}

/// The first address of `host`, an IPv4 one if it has one, as Go's
/// listener (node_exporter's) picks it.
fn resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
    let addresses: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
    addresses
        .iter()
        .find(|a| a.is_ipv4())
        .or(addresses.first())
        .copied()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the name has no address"))
}

fn listen(address: SocketAddr, only_v6: Option<bool>) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, None)?;
    if let Some(only_v6) = only_v6 {
        socket.set_only_v6(only_v6)?;
    }
    // As Go and hyper servers do: a restart can bind while old connections linger.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
}

fn bind_error(address: &ListenAddress, error: &io::Error) -> String {
    let hint = match error.kind() {
        io::ErrorKind::AddrInUse => {
            "another process is using the port; stop it or pick another port with --web.listen-address"
        }
        io::ErrorKind::AddrNotAvailable => {
            "that address is not one of this host's; use one it has, or :PORT for every address"
        }
        io::ErrorKind::PermissionDenied => {
            "ports below 1024 need root or CAP_NET_BIND_SERVICE; pick a port above 1023"
        }
        _ if matches!(address, ListenAddress::Host(..)) => {
            "the host name does not resolve here; use an IP address or :PORT"
        }
        _ => "check --web.listen-address",
    };
    format!("cannot listen on {address}: {error}; {hint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_forms_node_exporter_accepts() {
        let parse = |s: &str| ListenAddress::parse(s);
        assert_eq!(parse(":9400"), Ok(ListenAddress::Any(9400)));
        assert_eq!(
            parse("127.0.0.1:80"),
            Ok(ListenAddress::Ip("127.0.0.1:80".parse().unwrap()))
        );
        assert_eq!(
            parse("[::]:8080"),
            Ok(ListenAddress::Ip("[::]:8080".parse().unwrap()))
        );
        assert_eq!(
            parse("localhost:9400"),
            Ok(ListenAddress::Host("localhost".into(), 9400))
        );
        for bad in ["localhost", ":http", "host name:1", ":", "a:99999"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_wildcard_is_checked_through_loopback() {
        let url = |s: &str| ListenAddress::parse(s).unwrap().local_url_host();
        assert_eq!(url(":9400"), "127.0.0.1:9400");
        assert_eq!(url("0.0.0.0:8080"), "127.0.0.1:8080");
        assert_eq!(url("[::]:9400"), "[::1]:9400");
        assert_eq!(url("10.1.2.3:80"), "10.1.2.3:80");
        assert_eq!(url("localhost:9"), "localhost:9");
    }

    #[tokio::test]
    async fn any_port_serves_both_families_and_errors_say_what_to_do() {
        let listener = bind(&ListenAddress::Any(0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        for client in [format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
            // Where the host has no IPv6 the listener fell back to IPv4.
            if client.starts_with('[') && !listener.local_addr().unwrap().is_ipv6() {
                continue;
            }
            tokio::net::TcpStream::connect(&client).await.unwrap();
        }
        let taken = ListenAddress::Ip(listener.local_addr().unwrap());
        let error = bind(&taken).unwrap_err();
        assert!(
            error.contains("another process is using the port"),
            "{error}"
        );
        let foreign = ListenAddress::parse("192.0.2.1:8080").unwrap();
        let error = bind(&foreign).unwrap_err();
        assert!(error.contains("not one of this host's"), "{error}");
    }
}
