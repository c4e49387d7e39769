//! Systems without a TUN implementation yet: every call reports [`TunError::Unsupported`].

use crate::{Created, TunConfig, TunError};

/// No queue can exist on this system.
#[derive(Debug)]
pub(crate) enum Queue {}

impl Queue {
    pub(crate) async fn recv_batch(
        &self,
        _bufs: &mut [Vec<u8>],
        _lens: &mut [usize],
        _offload: &mut [bool],
        _headroom: usize,
    ) -> Result<usize, TunError> {
        match *self {}
    }

    pub(crate) async fn send_packets<'a>(
        &self,
        _packets: impl Iterator<Item = (&'a mut [u8], bool)> + Send,
    ) -> Result<(), TunError> {
        match *self {}
    }
}

pub(crate) async fn create(_cfg: &TunConfig) -> Result<Created, TunError> {
    Err(TunError::Unsupported {
        platform: std::env::consts::OS,
    })
}

/// No device can be prepared on this system.
#[derive(Debug)]
pub(crate) enum Prepared {}

pub(crate) fn prepare(_cfg: &TunConfig) -> Result<Prepared, TunError> {
    Err(TunError::Unsupported {
        platform: std::env::consts::OS,
    })
}

pub(crate) fn activate(
    p: Prepared,
    _runtimes: &[tokio::runtime::Handle],
) -> Result<Created, TunError> {
    match p {}
}
