//! Socket addresses to and from the kernel's `sockaddr_in`/`sockaddr_in6` bytes, without
//! going through `unsafe` casts.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Bytes of a `sockaddr_in6`, the largest address we send to or receive from.
pub(crate) const SOCKADDR_LEN: usize = 28;
const SOCKADDR_IN_LEN: usize = 16;

/// Storage for one socket address handed to the kernel by pointer.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawAddr(pub(crate) [u8; SOCKADDR_LEN]);

impl RawAddr {
    pub(crate) const ZERO: RawAddr = RawAddr([0; SOCKADDR_LEN]);

    /// Writes `addr` in kernel layout; returns its length for `msg_namelen`.
    pub(crate) fn write(&mut self, addr: &SocketAddr) -> libc::socklen_t {
        let b = &mut self.0;
        match addr {
            SocketAddr::V4(a) => {
                b[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
                b[2..4].copy_from_slice(&a.port().to_be_bytes());
                b[4..8].copy_from_slice(&a.ip().octets());
                b[8..16].fill(0);
                SOCKADDR_IN_LEN as libc::socklen_t
            }
            SocketAddr::V6(a) => {
                b[0..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
                b[2..4].copy_from_slice(&a.port().to_be_bytes());
                b[4..8].copy_from_slice(&a.flowinfo().to_be_bytes());
                b[8..24].copy_from_slice(&a.ip().octets());
                b[24..28].copy_from_slice(&a.scope_id().to_ne_bytes());
                SOCKADDR_LEN as libc::socklen_t
            }
        }
    }

    pub(crate) fn as_mut_ptr(&mut self) -> *mut libc::c_void {
        self.0.as_mut_ptr().cast()
    }
}

/// Parses a `sockaddr_in`/`sockaddr_in6` the kernel wrote; `None` for other families or
/// short data.
pub(crate) fn parse_sockaddr(b: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes([*b.first()?, *b.get(1)?]);
    let port = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
    if family == libc::AF_INET as u16 {
        let ip: [u8; 4] = b.get(4..8)?.try_into().ok()?;
        Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)))
    } else if family == libc::AF_INET6 as u16 {
        let flow: [u8; 4] = b.get(4..8)?.try_into().ok()?;
        let ip: [u8; 16] = b.get(8..24)?.try_into().ok()?;
        let scope: [u8; 4] = b.get(24..28)?.try_into().ok()?;
        Some(SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(ip),
            port,
            u32::from_be_bytes(flow),
            u32::from_ne_bytes(scope),
        )))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_v4_and_v6() {
        for s in ["127.0.0.1:5060", "[::1]:40000", "[fe80::1%3]:9"] {
            let a: SocketAddr = s.parse().expect("test address");
            let mut raw = RawAddr::ZERO;
            let n = raw.write(&a) as usize;
            assert_eq!(parse_sockaddr(&raw.0[..n]), Some(a), "{s}");
        }
        assert_eq!(parse_sockaddr(&[0u8; 4]), None);
    }
}
