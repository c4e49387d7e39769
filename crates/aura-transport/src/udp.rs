//! The UDP carrier's socket: bound with large buffers (every peer VPN measured on the
//! reference machine lost packets at Linux's default 208 KiB receive buffer).

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use crate::TransportError;
use crate::conn::Carrier;

/// Socket buffer size requested for UDP carriers, in bytes.
pub const UDP_BUFFER_BYTES: usize = 8 << 20;

/// Binds a non-blocking UDP socket on `addr` with [`UDP_BUFFER_BYTES`] buffers. With
/// CAP_NET_ADMIN the size is forced past `net.core.rmem_max`; without, the kernel caps it.
///
/// # Errors
/// [`TransportError::Bind`] naming the address.
pub fn bind(addr: SocketAddr) -> Result<UdpSocket, TransportError> {
    let err = |source| TransportError::Bind {
        carrier: Carrier::Udp,
        addr,
        source,
    };
    let socket =
        Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
    if addr.is_ipv6() {
        // Dual-stack when bound to [::].
        let _ = socket.set_only_v6(false);
    }
    use nix::sys::socket::{setsockopt, sockopt};
    let size = UDP_BUFFER_BYTES;
    if setsockopt(&socket, sockopt::RcvBufForce, &size).is_err() {
        let _ = socket.set_recv_buffer_size(size);
    }
    if setsockopt(&socket, sockopt::SndBufForce, &size).is_err() {
        let _ = socket.set_send_buffer_size(size);
    }
    socket.set_nonblocking(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    UdpSocket::from_std(socket.into()).map_err(err)
}
