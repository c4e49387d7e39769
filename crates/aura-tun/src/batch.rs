//! Argument checks shared by every [`crate::PacketDevice`], so the in-memory double rejects
//! exactly what the real device rejects.

use crate::{MAX_PACKET, MIN_HEADROOM, OFFLOAD_BATCH, OffloadMode, TunError};

/// Checks a receive batch; returns how many buffers it uses (`min(bufs.len(), lens.len())`).
pub(crate) fn check_recv(
    bufs: &[Vec<u8>],
    lens: &[usize],
    headroom: usize,
    mtu: u16,
    offload: OffloadMode,
) -> Result<usize, TunError> {
    let n = bufs.len().min(lens.len());
    if n == 0 {
        return Err(TunError::BadBatch("no receive buffers".into()));
    }
    if offload.is_on() && n < OFFLOAD_BATCH {
        return Err(TunError::BadBatch(format!(
            "offload is on: a read may split into up to {OFFLOAD_BATCH} packets, \
             but only {n} buffers were given"
        )));
    }
    let need = headroom
        .checked_add(usize::from(mtu))
        .ok_or_else(|| TunError::BadBatch("headroom overflows".into()))?;
    for (index, buf) in bufs.iter().take(n).enumerate() {
        if buf.len() < need {
            return Err(TunError::BufferTooSmall {
                index,
                need,
                have: buf.len(),
            });
        }
    }
    Ok(n)
}

/// Checks a send batch: `lens.len() <= bufs.len()`, headroom, every packet inside its buffer.
/// Packet `i` of a send batch (`bufs[i][headroom..headroom + lens[i]]`) with its flag
/// (`false` past the end of `offload`), for the batches [`check_send`] passed.
pub(crate) fn packets<'a>(
    bufs: &'a mut [Vec<u8>],
    lens: &'a [usize],
    offload: &'a [bool],
    headroom: usize,
) -> impl Iterator<Item = (&'a mut [u8], bool)> + Send {
    bufs.iter_mut()
        .zip(lens)
        .enumerate()
        .filter_map(move |(i, (b, &len))| {
            let p = b.get_mut(headroom..headroom.checked_add(len)?)?;
            Some((p, offload.get(i).copied().unwrap_or(false)))
        })
}

/// The packets lying back to back in `data` (packet `i` ends at `ends[i]`) with their
/// flags, for [`crate::PacketDevice::send_packed`]: one that is empty, longer than `mtu`
/// or not within `data` is left out, and the first left out is named in `skipped`.
pub(crate) fn packed<'a>(
    data: &'a mut [u8],
    ends: &'a [usize],
    offload: &'a [bool],
    mtu: usize,
    skipped: &'a mut Option<TunError>,
) -> impl Iterator<Item = (&'a mut [u8], bool)> + Send + 'a {
    let mut rest = data;
    let mut start = 0;
    ends.iter().enumerate().filter_map(move |(index, &end)| {
        let whole = end.checked_sub(start).filter(|&len| len <= rest.len());
        let reason = match whole {
            None => "not within the batch",
            Some(0) => "empty packet",
            Some(len) if len > mtu => "longer than the MTU",
            Some(len) => {
                let (packet, tail) = std::mem::take(&mut rest).split_at_mut(len);
                rest = tail;
                start = end;
                return Some((packet, offload.get(index).copied().unwrap_or(false)));
            }
        };
        // Skip what is left out (an inconsistent end skips to the end of the data).
        if let Some(len) = whole {
            rest = &mut std::mem::take(&mut rest)[len..];
            start = end;
        } else {
            rest = &mut [];
        }
        if skipped.is_none() {
            *skipped = Some(TunError::InvalidPacket { index, reason });
        }
        None
    })
}

pub(crate) fn check_send(
    bufs: &[Vec<u8>],
    lens: &[usize],
    headroom: usize,
) -> Result<(), TunError> {
    if lens.len() > bufs.len() {
        return Err(TunError::BadBatch(format!(
            "{} packet lengths but only {} buffers",
            lens.len(),
            bufs.len()
        )));
    }
    if headroom < MIN_HEADROOM {
        return Err(TunError::BadBatch(format!(
            "send headroom {headroom} is below the minimum of {MIN_HEADROOM}"
        )));
    }
    for (index, (buf, &len)) in bufs.iter().zip(lens).enumerate() {
        if len == 0 {
            return Err(TunError::InvalidPacket {
                index,
                reason: "empty packet",
            });
        }
        if len > MAX_PACKET {
            return Err(TunError::InvalidPacket {
                index,
                reason: "longer than 65535 bytes",
            });
        }
        let need = headroom + len;
        if buf.len() < need {
            return Err(TunError::BufferTooSmall {
                index,
                need,
                have: buf.len(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn packed_packets_leave_out_what_a_device_cannot_take() {
        let mut data = *b"aabbbbbbcc";
        // "aa", an empty one, "bbbbbb" (above the MTU of 4), "cc", one past the data.
        let ends = [2, 2, 8, 10, 12];
        let offload = [true, false, false];
        let mut skipped = None;
        let out: Vec<(Vec<u8>, bool)> = packed(&mut data, &ends, &offload, 4, &mut skipped)
            .map(|(p, o)| (p.to_vec(), o))
            .collect();
        assert_eq!(out, vec![(b"aa".to_vec(), true), (b"cc".to_vec(), false)]);
        assert!(matches!(
            skipped,
            Some(TunError::InvalidPacket {
                index: 1,
                reason: "empty packet"
            })
        ));
        let mut skipped = None;
        let mut data = *b"abc";
        let out = packed(&mut data, &[1, 3], &[], 4, &mut skipped).count();
        assert_eq!((out, skipped.is_none()), (2, true));
    }

    #[test]
    fn recv_checks() {
        let bufs = vec![vec![0u8; 1500]; 4];
        let lens = [0usize; 4];
        assert_eq!(
            check_recv(&bufs, &lens, 100, 1400, OffloadMode::Off).ok(),
            Some(4)
        );
        assert_eq!(
            check_recv(&bufs, &lens[..2], 100, 1400, OffloadMode::Off).ok(),
            Some(2)
        );
        assert!(matches!(
            check_recv(&bufs, &lens, 101, 1400, OffloadMode::Off),
            Err(TunError::BufferTooSmall {
                index: 0,
                need: 1501,
                have: 1500
            })
        ));
        assert!(matches!(
            check_recv(&bufs, &lens[..0], 0, 1400, OffloadMode::Off),
            Err(TunError::BadBatch(_))
        ));
        assert!(matches!(
            check_recv(&bufs, &lens, 0, 1400, OffloadMode::Tcp),
            Err(TunError::BadBatch(_))
        ));
        let many = vec![vec![0u8; 1400]; OFFLOAD_BATCH];
        let mut many_lens = vec![0usize; OFFLOAD_BATCH];
        many_lens[0] = 1;
        assert!(check_recv(&many, &many_lens, 0, 1400, OffloadMode::TcpUdp).is_ok());
    }

    #[test]
    fn send_checks() {
        let bufs = vec![vec![0u8; 100]; 3];
        assert!(check_send(&bufs, &[90, 1, 50], 10).is_ok());
        assert!(check_send(&bufs, &[], 10).is_ok());
        assert!(matches!(
            check_send(&bufs, &[1, 1, 1, 1], 10),
            Err(TunError::BadBatch(_))
        ));
        assert!(matches!(
            check_send(&bufs, &[1], 9),
            Err(TunError::BadBatch(_))
        ));
        assert!(matches!(
            check_send(&bufs, &[1, 0], 10),
            Err(TunError::InvalidPacket { index: 1, .. })
        ));
        assert!(matches!(
            check_send(&bufs, &[1, 91], 10),
            Err(TunError::BufferTooSmall {
                index: 1,
                need: 101,
                have: 100
            })
        ));
    }
}
