//! The IP-packet device the daemons read and write (a TUN in production, channels in
//! tests), and the few header fields the server looks at.

use std::future::Future;
use std::net::Ipv4Addr;

/// Reads and writes whole IP packets.
pub trait PacketIo: Send + Sync + 'static {
    /// Reads one packet into `buf`, returning its length.
    fn recv(&self, buf: &mut [u8]) -> impl Future<Output = std::io::Result<usize>> + Send;
    /// Writes one packet.
    fn send(&self, packet: &[u8]) -> impl Future<Output = std::io::Result<()>> + Send;
}

/// Source and destination of an IPv4 packet; `None` for anything else (IPv6, control
/// envelopes, garbage).
pub fn ipv4_addrs(p: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    if p.len() < 20 || p[0] >> 4 != 4 {
        return None;
    }
    let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    Some((src, dst))
}

/// A device made of two channels, for tests: what the daemon sends comes out of
/// `outbound`, what the test puts into `inbound` the daemon receives.
#[derive(Debug)]
pub struct ChannelDevice {
    inbound: tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Vec<u8>>>,
    outbound: tokio::sync::mpsc::Sender<Vec<u8>>,
}

impl ChannelDevice {
    /// A device and the test's ends: (device, to_device, from_device).
    pub fn new() -> (
        Self,
        tokio::sync::mpsc::Sender<Vec<u8>>,
        tokio::sync::mpsc::Receiver<Vec<u8>>,
    ) {
        let (in_tx, in_rx) = tokio::sync::mpsc::channel(1024);
        let (out_tx, out_rx) = tokio::sync::mpsc::channel(1024);
        (
            Self {
                inbound: tokio::sync::Mutex::new(in_rx),
                outbound: out_tx,
            },
            in_tx,
            out_rx,
        )
    }
}

impl PacketIo for ChannelDevice {
    async fn recv(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        let p = self
            .inbound
            .lock()
            .await
            .recv()
            .await
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        let n = p.len().min(buf.len());
        buf[..n].copy_from_slice(&p[..n]);
        Ok(n)
    }

    async fn send(&self, packet: &[u8]) -> std::io::Result<()> {
        self.outbound
            .send(packet.to_vec())
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_ipv4_addresses_and_refuses_others() {
        let mut p = vec![0u8; 20];
        p[0] = 0x45;
        p[12..16].copy_from_slice(&[10, 0, 0, 2]);
        p[16..20].copy_from_slice(&[1, 1, 1, 1]);
        assert_eq!(
            ipv4_addrs(&p),
            Some(("10.0.0.2".parse().unwrap(), "1.1.1.1".parse().unwrap()))
        );
        p[0] = 0x60;
        assert_eq!(ipv4_addrs(&p), None);
        assert_eq!(ipv4_addrs(&p[..19]), None);
    }
}
