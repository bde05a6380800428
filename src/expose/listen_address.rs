//! `--web.listen-address`, read as prometheus/exporter-toolkit reads it: the
//! flag repeats, one listener per value (web/kingpinflag/flag.go, `AddFlags`:
//! `Strings()`), and each value goes to Go's `net.Listen("tcp", address)`
//! (web/tls_config.go, `ListenAndServe`). So `:10110` (no host) and
//! `[::]:10110` listen on every address of both families, `0.0.0.0:10110`
//! on IPv4 only, `[::1]:10110` on one IPv6 address, and a host name on its
//! first IPv4 address, else its first address, as Go picks for a listener.
//! exporter-toolkit's `vsock://` addresses are not served here.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::net::TcpListener;

/// One `--web.listen-address` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddress {
    host: Host,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    /// No host, or `0.0.0.0`'s IPv6 counterpart `::`: every address of both families.
    Any,
    Ip(IpAddr),
    Name(String),
}

impl ListenAddress {
    /// Parses `host:port`, `[ipv6]:port` or `:port`.
    pub fn parse(text: &str) -> Result<ListenAddress, String> {
        if text.starts_with("vsock://") {
            return Err(format!(
                "listen address {text:?}: vsock is not supported, only TCP"
            ));
        }
        let (host, port) = text.rsplit_once(':').ok_or_else(|| {
            format!("listen address {text:?} has no port (e.g. :10110, [::]:10110, 0.0.0.0:10110)")
        })?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("listen address {text:?}: {port:?} is not a port number"))?;
        let host = if host.is_empty() {
            Host::Any
        } else if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            let ip: Ipv6Addr = inner
                .parse()
                .map_err(|_| format!("listen address {text:?}: {inner:?} is not an IPv6 address"))?;
            if ip.is_unspecified() {
                Host::Any
            } else {
                Host::Ip(IpAddr::V6(ip))
            }
        } else if host.contains(':') {
            return Err(format!(
                "listen address {text:?}: an IPv6 address needs brackets, e.g. [{host}]:{port}"
            ));
        } else if let Ok(ip) = host.parse::<Ipv4Addr>() {
            Host::Ip(IpAddr::V4(ip))
        } else {
            Host::Name(host.to_string())
        };
        Ok(ListenAddress { host, port })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether this address takes connections on every address of both families.
    pub fn is_every_address(&self) -> bool {
        self.host == Host::Any
    }

    /// Binds the listener. For no host or `[::]`, one IPv6 socket that also
    /// takes IPv4 (IPV6_V6ONLY off, whatever the host's default), or an IPv4
    /// one where the host has no IPv6, as Go does.
    pub async fn bind(&self) -> io::Result<TcpListener> {
        let addr = match &self.host {
            Host::Any => return bind_every_address(self.port),
            Host::Ip(ip) => SocketAddr::new(*ip, self.port),
            Host::Name(name) => {
                let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), self.port))
                    .await?
                    .collect();
                *addrs
                    .iter()
                    .find(|a| a.is_ipv4())
                    .or(addrs.first())
                    .ok_or_else(|| {
                        io::Error::new(io::ErrorKind::NotFound, format!("{name} has no address"))
                    })?
            }
        };
        TcpListener::bind(addr).await
    }
}

fn bind_every_address(port: u16) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let v6 = || -> io::Result<Socket> {
        let socket = Socket::new(Domain::IPV6, Type::STREAM, None)?;
        socket.set_only_v6(false)?;
        socket.set_reuse_address(true)?;
        socket.bind(&SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port).into())?;
        Ok(socket)
    };
    let socket = match v6() {
        Ok(socket) => socket,
        Err(e) => {
            tracing::debug!(error = %e, "no IPv6 here; listening on IPv4 only");
            let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
            socket.set_reuse_address(true)?;
            socket.bind(&SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port).into())?;
            socket
        }
    };
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket.into())
}

impl std::fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.host {
            Host::Any => write!(f, ":{}", self.port),
            Host::Ip(ip) => write!(f, "{}", SocketAddr::new(*ip, self.port)),
            Host::Name(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

impl std::str::FromStr for ListenAddress {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ListenAddress::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_exporter_toolkit_takes() {
        let every = ListenAddress::parse(":10110").unwrap();
        assert!(every.is_every_address());
        assert_eq!((every.port(), every.to_string()), (10110, ":10110".to_string()));
        assert!(ListenAddress::parse("[::]:10110").unwrap().is_every_address());
        let v4 = ListenAddress::parse("0.0.0.0:10110").unwrap();
        assert!(!v4.is_every_address(), "0.0.0.0 is IPv4 only, as in Go");
        assert_eq!(v4.to_string(), "0.0.0.0:10110");
        assert_eq!(ListenAddress::parse("[::1]:9").unwrap().to_string(), "[::1]:9");
        assert_eq!(
            ListenAddress::parse("localhost:80").unwrap().to_string(),
            "localhost:80"
        );
        for (bad, says) in [
            ("10110", "no port"),
            (":http", "not a port number"),
            (":70000", "not a port number"),
            ("::1:80", "needs brackets"),
            ("[::zz]:80", "not an IPv6 address"),
            ("vsock://:9100", "vsock"),
        ] {
            let e = ListenAddress::parse(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
