//! A pool of packet buffers sized once, at start.

use crate::{OFFLOAD_BATCH, PacketDevice, TunError};

/// A batch of packet buffers, allocated once, for [`PacketDevice::recv_batch`] and
/// [`PacketDevice::send_batch`].
///
/// Every buffer is `headroom + room` bytes long; packet `i` lives at
/// `bufs[i][headroom..headroom + lens[i]]`. The fields are public so both can be lent to a
/// device call at once: `dev.recv_batch(&mut p.bufs, &mut p.lens, p.headroom)`.
#[derive(Debug, Clone)]
pub struct TunBuffers {
    /// The buffers.
    pub bufs: Vec<Vec<u8>>,
    /// Packet lengths, one per buffer.
    pub lens: Vec<usize>,
    /// Whether packet `i`'s TCP or UDP checksum is left unfinished, one per buffer
    /// ([`PacketDevice::recv_batch_offload`], [`PacketDevice::send_batch_offload`]).
    pub offload: Vec<bool>,
    /// Free bytes in front of every packet.
    pub headroom: usize,
    /// Bytes after the headroom (packet plus tailroom).
    room: usize,
}

impl TunBuffers {
    /// `count` buffers of `headroom + room` bytes each, with no spare capacity.
    pub fn new(count: usize, headroom: usize, room: usize) -> Self {
        Self::with_capacity(count, headroom, room, 0)
    }

    /// As [`TunBuffers::new`], but every buffer reserves at least `capacity` bytes (memory the
    /// kernel only backs once it is written), for a caller that grows packets in place.
    pub fn with_capacity(count: usize, headroom: usize, room: usize, capacity: usize) -> Self {
        let len = headroom.saturating_add(room);
        let bufs = (0..count)
            .map(|_| {
                if capacity <= len {
                    // Zeroed by the allocator (calloc), which may leave fresh pages
                    // unbacked until a packet is written there.
                    return vec![0u8; len];
                }
                let mut buf = Vec::with_capacity(capacity);
                buf.resize(len, 0);
                buf
            })
            .collect();
        TunBuffers {
            bufs,
            lens: vec![0; count],
            offload: vec![false; count],
            headroom,
            room,
        }
    }

    /// [`OFFLOAD_BATCH`] buffers for `dev`: `headroom + mtu + tailroom` bytes each, for
    /// reading and for writing alike (a read splits offloaded super-packets into packets of
    /// at most the MTU; on write, the device coalesces in buffers of its own).
    pub fn for_device(dev: &impl PacketDevice, headroom: usize, tailroom: usize) -> Self {
        let room = usize::from(dev.mtu()).saturating_add(tailroom);
        Self::new(OFFLOAD_BATCH, headroom, room)
    }

    /// Number of buffers.
    pub fn len(&self) -> usize {
        self.bufs.len()
    }

    /// Whether there are no buffers.
    pub fn is_empty(&self) -> bool {
        self.bufs.is_empty()
    }

    /// Bytes after the headroom in every buffer.
    pub fn room(&self) -> usize {
        self.room
    }

    /// Packet `i` (`bufs[i][headroom..headroom + lens[i]]`), if it is in range.
    pub fn packet(&self, i: usize) -> Option<&[u8]> {
        let len = *self.lens.get(i)?;
        self.bufs
            .get(i)?
            .get(self.headroom..self.headroom.checked_add(len)?)
    }

    /// Packet `i`, mutable, if it is in range.
    pub fn packet_mut(&mut self, i: usize) -> Option<&mut [u8]> {
        let len = *self.lens.get(i)?;
        let end = self.headroom.checked_add(len)?;
        self.bufs.get_mut(i)?.get_mut(self.headroom..end)
    }

    /// Packet `i`'s offload flag as it leaves for a peer: when the peer cannot finish a
    /// checksum left unfinished (`peer_finishes` false: a session version 1), it is
    /// finished here and the packet goes unflagged.
    pub fn offload_for(&mut self, i: usize, peer_finishes: bool) -> bool {
        let flagged = self.offload.get(i).copied().unwrap_or(false);
        if !flagged || peer_finishes {
            return flagged;
        }
        if let Some(p) = self.packet_mut(i) {
            crate::csum::complete_checksum(p);
        }
        if let Some(o) = self.offload.get_mut(i) {
            *o = false;
        }
        false
    }

    /// Copies `packet` into buffer `i` after the headroom and sets `lens[i]` (and
    /// `offload[i]` to false: its checksums are complete).
    pub fn set_packet(&mut self, i: usize, packet: &[u8]) -> Result<(), TunError> {
        self.set_packet_with(i, packet, false)
    }

    /// As [`TunBuffers::set_packet`], with `offload[i]` set to `offload`.
    pub fn set_packet_with(
        &mut self,
        i: usize,
        packet: &[u8],
        offload: bool,
    ) -> Result<(), TunError> {
        if let Some(o) = self.offload.get_mut(i) {
            *o = offload;
        }
        let headroom = self.headroom;
        let (Some(buf), Some(len)) = (self.bufs.get_mut(i), self.lens.get_mut(i)) else {
            return Err(TunError::BadBatch(format!("no buffer {i}")));
        };
        let have = buf.len();
        let dst = buf
            .get_mut(headroom..headroom.saturating_add(packet.len()))
            .ok_or(TunError::BufferTooSmall {
                index: i,
                need: headroom.saturating_add(packet.len()),
                have,
            })?;
        dst.copy_from_slice(packet);
        *len = packet.len();
        Ok(())
    }

    /// Gives every buffer its full length back (`headroom + room`) without reallocating
    /// where the capacity allows, e.g. after handing the buffers to other code that
    /// truncated them.
    pub fn reset(&mut self) {
        let len = self.headroom.saturating_add(self.room);
        for buf in &mut self.bufs {
            buf.resize(len, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn pool_shapes_buffers() {
        let mut p = TunBuffers::with_capacity(4, 32, 1416, 70_000);
        assert_eq!(p.len(), 4);
        assert!(!p.is_empty());
        assert_eq!(p.room(), 1416);
        for b in &p.bufs {
            assert_eq!(b.len(), 32 + 1416);
            assert!(b.capacity() >= 70_000);
        }
        p.set_packet(2, &[0x45, 1, 2, 3]).unwrap();
        assert_eq!(p.packet(2), Some(&[0x45, 1, 2, 3][..]));
        assert_eq!(&p.bufs[2][..32], &[0u8; 32][..]);
        p.packet_mut(2).unwrap()[1] = 9;
        assert_eq!(p.packet(2), Some(&[0x45, 9, 2, 3][..]));
        assert!(matches!(
            p.set_packet(0, &[0u8; 1417]),
            Err(TunError::BufferTooSmall { index: 0, .. })
        ));
        assert!(matches!(p.set_packet(4, &[1]), Err(TunError::BadBatch(_))));
        assert_eq!(p.packet(4), None);
        p.lens[1] = 5000;
        assert_eq!(p.packet(1), None);

        // A flagged packet goes flagged to a peer that finishes it, else finished here.
        let mut udp = vec![0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0];
        udp.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2, 0, 53, 0, 53, 0, 8, 0, 0]);
        p.set_packet_with(3, &udp, true).unwrap();
        assert!(p.offload_for(3, true));
        assert_eq!(p.packet(3), Some(&udp[..]), "left as it is");
        assert!(!p.offload_for(3, false));
        assert!(!p.offload[3]);
        let mut done = udp.clone();
        assert!(crate::csum::complete_checksum(&mut done));
        assert_ne!(done[26..28], [0, 0]);
        assert_eq!(p.packet(3), Some(&done[..]), "finished here");
        assert!(
            !p.offload_for(2, false),
            "an unflagged packet stays as it is"
        );

        let ptr = p.bufs[0].as_ptr();
        p.bufs[0].truncate(10);
        p.reset();
        assert_eq!(p.bufs[0].len(), 32 + 1416);
        assert_eq!(p.bufs[0].as_ptr(), ptr, "reset must not reallocate");
    }
}
