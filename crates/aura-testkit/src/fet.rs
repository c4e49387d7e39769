//! The rules a censor uses to block fully encrypted traffic, from Wu et al., "How the
//! Great Firewall of China Detects and Blocks Fully Encrypted Traffic" (USENIX Security
//! 2023), §4: a connection is exempt from blocking when its first client payload meets
//! any of Ex1–Ex5; a payload that meets none is blocked (the paper saw this for about a
//! quarter of such connections, at random; a test must treat it as blocked).
//!
//! - Ex1: the average number of set bits per byte is ≤ 3.4 or ≥ 4.6;
//! - Ex2: the first six bytes are printable ASCII (0x20–0x7e);
//! - Ex3: more than half of the bytes are printable;
//! - Ex4: more than 20 contiguous printable bytes;
//! - Ex5: the first bytes match a protocol the censor parses: TLS (a handshake or
//!   application-data record header) or HTTP (a request method). The paper's rules are
//!   for TCP; for UDP this kit also counts the QUIC version 1 long header, since the same
//!   censor parses QUIC Initials and blocks by their SNI instead.

/// Which exemption a payload meets, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exemption {
    /// Ex1: set bits per byte outside (3.4, 4.6).
    Popcount,
    /// Ex2: a printable six-byte prefix.
    PrintablePrefix,
    /// Ex3: more than half printable.
    MostlyPrintable,
    /// Ex4: a printable run longer than 20 bytes.
    PrintableRun,
    /// Ex5: a known protocol's header.
    Protocol,
}

fn printable(b: u8) -> bool {
    (0x20..=0x7e).contains(&b)
}

/// Average set bits per byte.
pub fn popcount_per_byte(p: &[u8]) -> f64 {
    if p.is_empty() {
        return 0.0;
    }
    let bits: u64 = p.iter().map(|b| u64::from(b.count_ones())).sum();
    bits as f64 / p.len() as f64
}

/// The first exemption `payload` meets, or `None`: the censor blocks it as fully
/// encrypted.
pub fn exemption(payload: &[u8]) -> Option<Exemption> {
    let pc = popcount_per_byte(payload);
    if pc <= 3.4 || pc >= 4.6 {
        return Some(Exemption::Popcount);
    }
    if payload.len() >= 6 && payload[..6].iter().all(|&b| printable(b)) {
        return Some(Exemption::PrintablePrefix);
    }
    let n = payload.iter().filter(|&&b| printable(b)).count();
    if n * 2 > payload.len() {
        return Some(Exemption::MostlyPrintable);
    }
    let mut run = 0usize;
    for &b in payload {
        run = if printable(b) { run + 1 } else { 0 };
        if run > 20 {
            return Some(Exemption::PrintableRun);
        }
    }
    if is_protocol(payload) {
        return Some(Exemption::Protocol);
    }
    None
}

/// Whether the censor's rules block `payload` as fully encrypted.
pub fn blocked(payload: &[u8]) -> bool {
    exemption(payload).is_none()
}

fn is_protocol(p: &[u8]) -> bool {
    let tls = p.len() >= 3 && (0x14..=0x17).contains(&p[0]) && p[1] == 0x03 && p[2] <= 0x04;
    let http = [
        &b"GET "[..],
        b"PUT ",
        b"POST ",
        b"HEAD ",
        b"DELETE ",
        b"OPTIONS ",
        b"CONNECT ",
        b"PATCH ",
        b"TRACE ",
    ]
    .iter()
    .any(|m| p.starts_with(m));
    let quic = p.len() >= 5 && p[0] & 0xf0 == 0xc0 && p[1..5] == [0, 0, 0, 1];
    tls || http || quic
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(n: usize, mut x: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn random_bytes_are_blocked() {
        for seed in 1..50 {
            let mut p = random(1000, seed);
            p[0] = 0x01; // not a protocol header
            assert!(blocked(&p), "seed {seed}: {:?}", exemption(&p));
        }
    }

    #[test]
    fn each_exemption() {
        let mut p = random(1000, 3);
        p[0] = 0x01;
        let mut zeros = p.clone();
        zeros[500..].fill(0);
        assert_eq!(exemption(&zeros), Some(Exemption::Popcount));
        let mut prefix = p.clone();
        prefix[..6].copy_from_slice(b"GAa0ff");
        assert_eq!(exemption(&prefix), Some(Exemption::PrintablePrefix));
        let mut run = p.clone();
        run[100..122].copy_from_slice(b"abcdefghijklmnopqrstuv");
        assert_eq!(exemption(&run), Some(Exemption::PrintableRun));
        let mut tls = p.clone();
        tls[..3].copy_from_slice(&[0x16, 0x03, 0x01]);
        assert_eq!(exemption(&tls), Some(Exemption::Protocol));
        let mut quic = p.clone();
        quic[..5].copy_from_slice(&[0xc3, 0, 0, 0, 1]);
        assert_eq!(exemption(&quic), Some(Exemption::Protocol));
        let text = b"The quick brown fox jumps over the lazy dog, twice: the quick brown fox.";
        assert_ne!(exemption(text), None);
    }
}
