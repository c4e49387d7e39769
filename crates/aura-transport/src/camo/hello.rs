//! Reading a TLS ClientHello off the wire, before any TLS library sees it: the server's
//! knock check needs the random, the session id, the SNI, the ALPN list and the first key
//! share, and rustls exposes none of them but SNI and ALPN.
//!
//! [`read_record_len`] says how many bytes the first record needs; [`parse`] reads a
//! ClientHello from one or more handshake records. Both refuse rather than guess: anything
//! that is not a well-formed ClientHello is for the decoy.

/// TLS record header length.
pub const RECORD_HEADER: usize = 5;
/// Largest TLS plaintext record body (RFC 8446 §5.1).
pub const MAX_RECORD: usize = 1 << 14;
/// Largest ClientHello the server reads before deciding (a post-quantum hello is about
/// 1.8 KB; browsers stay under 4 KB).
pub const MAX_HELLO: usize = 16 * 1024;

/// The fields of a ClientHello the knock uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// The 32-byte random.
    pub random: [u8; 32],
    /// The legacy session id (0–32 bytes).
    pub session_id: Vec<u8>,
    /// The server name (SNI), when present.
    pub sni: Option<String>,
    /// The offered ALPN protocols, in order.
    pub alpn: Vec<Vec<u8>>,
    /// The first key share: its group and its bytes.
    pub first_key_share: Option<(u16, Vec<u8>)>,
}

/// Why bytes are not a ClientHello.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    /// More bytes are needed.
    #[error("incomplete")]
    Incomplete,
    /// Not a TLS handshake record, or not a well-formed ClientHello.
    #[error("not a TLS ClientHello")]
    Malformed,
}

/// The total length (header included) of the TLS record at the start of `buf`:
/// `Incomplete` before its header is there, `Malformed` when it is no handshake record.
pub fn read_record_len(buf: &[u8]) -> Result<usize, HelloError> {
    let h = buf.get(..RECORD_HEADER).ok_or(HelloError::Incomplete)?;
    if h[0] != 0x16 || h[1] != 0x03 || h[2] > 0x04 {
        return Err(HelloError::Malformed);
    }
    let len = usize::from(u16::from_be_bytes([h[3], h[4]]));
    if len == 0 || len > MAX_RECORD {
        return Err(HelloError::Malformed);
    }
    Ok(RECORD_HEADER + len)
}

/// The handshake bytes of the records at the start of `buf` (a ClientHello may span
/// records), or `Incomplete` when the handshake message is not whole yet.
fn handshake_bytes(buf: &[u8]) -> Result<Vec<u8>, HelloError> {
    let mut out = Vec::new();
    let mut rest = buf;
    loop {
        let n = read_record_len(rest)?;
        let record = rest.get(RECORD_HEADER..n).ok_or(HelloError::Incomplete)?;
        out.extend_from_slice(record);
        rest = &rest[n..];
        if out.len() >= 4 {
            let need =
                4 + usize::from(u16::from_be_bytes([out[2], out[3]])) + (usize::from(out[1]) << 16);
            if out[0] != 1 || need > MAX_HELLO {
                return Err(HelloError::Malformed);
            }
            if out.len() >= need {
                out.truncate(need);
                return Ok(out);
            }
        }
        if out.len() > MAX_HELLO {
            return Err(HelloError::Malformed);
        }
    }
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], HelloError> {
        if self.0.len() < n {
            return Err(HelloError::Malformed);
        }
        let (h, t) = self.0.split_at(n);
        self.0 = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8, HelloError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, HelloError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn vec8(&mut self) -> Result<&'a [u8], HelloError> {
        let n = usize::from(self.u8()?);
        self.take(n)
    }
    fn vec16(&mut self) -> Result<&'a [u8], HelloError> {
        let n = usize::from(self.u16()?);
        self.take(n)
    }
}

/// Parses the ClientHello at the start of `buf` (records included).
///
/// # Errors
/// `Incomplete` when more bytes are needed, `Malformed` otherwise.
pub fn parse(buf: &[u8]) -> Result<ClientHello, HelloError> {
    let hs = handshake_bytes(buf)?;
    let mut c = Cursor(&hs[4..]);
    let _legacy_version = c.u16()?;
    let mut random = [0u8; 32];
    random.copy_from_slice(c.take(32)?);
    let session_id = c.vec8()?;
    if session_id.len() > 32 {
        return Err(HelloError::Malformed);
    }
    let session_id = session_id.to_vec();
    let _suites = c.vec16()?;
    let _compression = c.vec8()?;
    let mut hello = ClientHello {
        random,
        session_id,
        sni: None,
        alpn: Vec::new(),
        first_key_share: None,
    };
    if c.0.is_empty() {
        return Ok(hello);
    }
    let mut exts = Cursor(c.vec16()?);
    if !c.0.is_empty() {
        return Err(HelloError::Malformed);
    }
    while !exts.0.is_empty() {
        let ty = exts.u16()?;
        let mut body = Cursor(exts.vec16()?);
        match ty {
            0 => {
                let mut list = Cursor(body.vec16()?);
                while !list.0.is_empty() {
                    let kind = list.u8()?;
                    let name = list.vec16()?;
                    if kind == 0 && hello.sni.is_none() {
                        let name = std::str::from_utf8(name).map_err(|_| HelloError::Malformed)?;
                        hello.sni = Some(name.to_owned());
                    }
                }
            }
            16 => {
                let mut list = Cursor(body.vec16()?);
                while !list.0.is_empty() {
                    hello.alpn.push(list.vec8()?.to_vec());
                }
            }
            51 => {
                let mut list = Cursor(body.vec16()?);
                if !list.0.is_empty() {
                    let group = list.u16()?;
                    let share = list.vec16()?;
                    hello.first_key_share = Some((group, share.to_vec()));
                }
            }
            _ => {}
        }
    }
    Ok(hello)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A minimal ClientHello record: random, session id, SNI, ALPN, one key share.
    pub(crate) fn hello_record(sid: &[u8], sni: &str, share: &[u8]) -> Vec<u8> {
        let mut exts = Vec::new();
        let mut sni_ext = Vec::new();
        let mut entry = vec![0u8];
        entry.extend_from_slice(&(sni.len() as u16).to_be_bytes());
        entry.extend_from_slice(sni.as_bytes());
        sni_ext.extend_from_slice(&(entry.len() as u16).to_be_bytes());
        sni_ext.extend_from_slice(&entry);
        exts.extend_from_slice(&0u16.to_be_bytes());
        exts.extend_from_slice(&(sni_ext.len() as u16).to_be_bytes());
        exts.extend_from_slice(&sni_ext);
        let alpn = [&b"\x02h2"[..], b"\x08http/1.1"].concat();
        exts.extend_from_slice(&16u16.to_be_bytes());
        exts.extend_from_slice(&((alpn.len() + 2) as u16).to_be_bytes());
        exts.extend_from_slice(&(alpn.len() as u16).to_be_bytes());
        exts.extend_from_slice(&alpn);
        let mut ks = 0x11ecu16.to_be_bytes().to_vec();
        ks.extend_from_slice(&(share.len() as u16).to_be_bytes());
        ks.extend_from_slice(share);
        exts.extend_from_slice(&51u16.to_be_bytes());
        exts.extend_from_slice(&((ks.len() + 2) as u16).to_be_bytes());
        exts.extend_from_slice(&(ks.len() as u16).to_be_bytes());
        exts.extend_from_slice(&ks);
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7u8; 32]);
        body.push(sid.len() as u8);
        body.extend_from_slice(sid);
        body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        let mut hs = vec![1, 0];
        hs.extend_from_slice(&(body.len() as u16).to_be_bytes());
        hs.extend_from_slice(&body);
        let mut rec = vec![0x16, 3, 1];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn round_trip_of_the_fields() {
        let rec = hello_record(&[9; 32], "www.example.com", &[5; 1216]);
        let h = parse(&rec).unwrap();
        assert_eq!(h.random, [7; 32]);
        assert_eq!(h.session_id, vec![9; 32]);
        assert_eq!(h.sni.as_deref(), Some("www.example.com"));
        assert_eq!(h.alpn, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        assert_eq!(h.first_key_share, Some((0x11ec, vec![5; 1216])));
        assert_eq!(read_record_len(&rec), Ok(rec.len()));
    }

    #[test]
    fn split_across_records_and_incomplete() {
        let rec = hello_record(&[1; 32], "a.example", &[2; 32]);
        let hs = &rec[5..];
        let (a, b) = hs.split_at(40);
        let mut two = Vec::new();
        for part in [a, b] {
            two.extend_from_slice(&[0x16, 3, 3]);
            two.extend_from_slice(&(part.len() as u16).to_be_bytes());
            two.extend_from_slice(part);
        }
        assert_eq!(parse(&two).unwrap(), parse(&rec).unwrap());
        for cut in [0usize, 3, 5, 50, rec.len() - 1] {
            assert_eq!(parse(&rec[..cut]), Err(HelloError::Incomplete), "{cut}");
        }
    }

    #[test]
    fn other_bytes_are_refused() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n"), Err(HelloError::Malformed));
        assert_eq!(
            read_record_len(&[0x17, 3, 3, 0, 5]),
            Err(HelloError::Malformed)
        );
        assert_eq!(
            read_record_len(&[0x16, 3, 3, 0, 0]),
            Err(HelloError::Malformed)
        );
        let mut rec = hello_record(&[1; 32], "a.example", &[2; 32]);
        rec[5] = 2; // a ServerHello
        assert_eq!(parse(&rec), Err(HelloError::Malformed));
        let mut rec = hello_record(&[1; 32], "a.example", &[2; 32]);
        let last = rec.len() - 1;
        rec.truncate(last);
        let n = (rec.len() - 5) as u16;
        rec[3..5].copy_from_slice(&n.to_be_bytes());
        assert_eq!(
            parse(&rec),
            Err(HelloError::Incomplete),
            "message longer than its records"
        );
    }
}
