//! The TLS carrier's knock: hidden in the ClientHello's session id, checked by the server
//! before any TLS library sees the connection (docs/PROTOCOL.md §12.5).
//!
//! ```text
//! random      = 32 fresh random bytes (the ClientHello random)
//! session_id  = AES-256-GCM(K_knock_tls, nonce = random[0..12],
//!                           aad = "aura tls knock v1" || u16(len sni) || sni || first key share,
//!                           time_be(8) || 0x01 || 7 random bytes)        (16 + 16-byte tag)
//! ```
//!
//! The server parses the ClientHello itself ([`super::hello`]), opens the session id, and
//! accepts it within the time window and once ([`super::knock`]). The binding to the key
//! share means a censor who captures a client's ClientHello cannot reuse its knock in a
//! handshake of its own: it does not hold the private key of that share.
//!
//! # How the client gets rustls to send it
//!
//! rustls 0.23 has no API to choose the ClientHello random or session id, nor to learn the
//! key share before the hello is built. Both are drawn while `ClientConnection` is created,
//! synchronously: the session id and the random from the provider's `SecureRandom` (in that
//! order, 32 bytes each), the key share from the first key-exchange group's `start()`. The
//! knocking provider ([`knocking_provider`]) has a `SecureRandom` and a first group that
//! hand out values prepared for the connection being created on this thread
//! ([`Prepared`]), and fall back to the real ones otherwise. This rests on rustls
//! internals; the version is pinned in Cargo.toml and a test parses the emitted
//! ClientHello and checks the knock.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use aura_crypto::aead::{AeadKey, NONCE_LEN, Suite, TAG_LEN};
use aura_crypto::kdf::Secret;
use rustls::crypto::{
    ActiveKeyExchange, CryptoProvider, GetRandomFailed, SecureRandom, SupportedKxGroup,
};
use rustls::{NamedGroup, ProtocolVersion};

use super::hello::ClientHello;
use super::knock::{KnockRefusal, RefusalCounts, ReplayFilter, fresh};

/// Associated-data label.
const AAD_LABEL: &[u8] = b"aura tls knock v1";
/// Version byte inside the sealed session id.
const VERSION: u8 = 1;

/// The knock key of the TLS carrier, with the server's replay state.
pub struct TlsKnock {
    key: AeadKey,
    clock: Box<dyn Fn() -> u64 + Send + Sync>,
    started: u64,
    replay: Mutex<ReplayFilter>,
    refused: RefusalCounts,
}

impl core::fmt::Debug for TlsKnock {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TlsKnock")
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

fn aad(sni: &str, share: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(AAD_LABEL.len() + 2 + sni.len() + share.len());
    a.extend_from_slice(AAD_LABEL);
    a.extend_from_slice(&u16::try_from(sni.len()).unwrap_or(u16::MAX).to_be_bytes());
    a.extend_from_slice(sni.as_bytes());
    a.extend_from_slice(share);
    a
}

impl TlsKnock {
    /// The knock of the TLS carrier keyed by `key` (`KnockKeys::tls`), reading Unix time
    /// from `clock`.
    pub fn new(key: &Secret, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Arc<Self> {
        // A 32-byte key always makes an AES-256-GCM key.
        let key =
            AeadKey::new(Suite::Aes256Gcm, key.expose()).unwrap_or_else(|_| unreachable_key());
        Arc::new(Self {
            key,
            started: clock(),
            clock: Box::new(clock),
            replay: Mutex::new(ReplayFilter::default()),
            refused: Default::default(),
        })
    }

    /// Hellos refused so far: (no valid knock, stale, replayed).
    pub fn refused(&self) -> (u64, u64, u64) {
        self.refused.get()
    }

    /// Client: the ClientHello random and session id that knock with key share `share`
    /// and server name `sni` (empty when none is sent); `fresh` are 32 + 7 random bytes.
    pub fn seal(&self, sni: &str, share: &[u8], fresh: &[u8; 39]) -> ([u8; 32], [u8; 32]) {
        let mut random = [0u8; 32];
        random.copy_from_slice(&fresh[..32]);
        let mut sid = [0u8; 32];
        sid[..8].copy_from_slice(&(self.clock)().to_be_bytes());
        sid[8] = VERSION;
        sid[9..16].copy_from_slice(&fresh[32..]);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&random[..NONCE_LEN]);
        // 16 bytes of plaintext and room for the tag: sealing cannot fail.
        let _ = self
            .key
            .seal_in_place(&nonce, &aad(sni, share), &mut sid, 16);
        (random, sid)
    }

    /// Server: checks the knock in `hello`.
    ///
    /// # Errors
    /// Why the hello is a stranger's: no knock, stale, or replayed.
    pub fn check(&self, hello: &ClientHello) -> Result<(), KnockRefusal> {
        self.refused.note(self.check_inner(hello))
    }

    fn check_inner(&self, hello: &ClientHello) -> Result<(), KnockRefusal> {
        if hello.session_id.len() != 32 {
            return Err(KnockRefusal::Invalid);
        }
        let share = hello
            .first_key_share
            .as_ref()
            .map_or(&[][..], |(_, s)| s.as_slice());
        let mut sid = [0u8; 32];
        sid.copy_from_slice(&hello.session_id);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&sid[16..]);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&hello.random[..NONCE_LEN]);
        let sni = hello.sni.as_deref().unwrap_or("").to_ascii_lowercase();
        let pt = self
            .key
            .open_in_place(&nonce, &aad(&sni, share), &mut sid)
            .map_err(|_| KnockRefusal::Invalid)?;
        if pt.get(8) != Some(&VERSION) {
            return Err(KnockRefusal::Invalid);
        }
        let mut t = [0u8; 8];
        t.copy_from_slice(&pt[..8]);
        let time = u64::from_be_bytes(t);
        let now = (self.clock)();
        fresh(time, now, self.started)?;
        self.replay
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .check_and_insert(tag, time, now)
    }
}

fn unreachable_key() -> AeadKey {
    #[allow(clippy::expect_used)]
    AeadKey::new(Suite::Aes256Gcm, &[0u8; 32]).expect("a 32-byte key is valid")
}

thread_local! {
    /// 32-byte values the next `SecureRandom::fill` calls of 32 bytes return, in order.
    static RANDOMS: RefCell<VecDeque<[u8; 32]>> = const { RefCell::new(VecDeque::new()) };
    /// The key exchange the first group's next `start()` returns.
    static SHARE: RefCell<Option<Box<dyn ActiveKeyExchange>>> = const { RefCell::new(None) };
}

/// Values prepared for the one `ClientConnection` created next on this thread; whatever
/// it did not take is discarded on drop.
pub struct Prepared(());

impl core::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Prepared")
    }
}

impl Prepared {
    /// Prepares `share` (a started key exchange of the provider's first group), then the
    /// session id and the random, for the next connection created on this thread.
    pub fn new(share: Box<dyn ActiveKeyExchange>, session_id: [u8; 32], random: [u8; 32]) -> Self {
        RANDOMS.with(|r| {
            let mut r = r.borrow_mut();
            r.clear();
            r.push_back(session_id);
            r.push_back(random);
        });
        SHARE.with(|s| *s.borrow_mut() = Some(share));
        Self(())
    }

    /// Whether everything prepared was taken.
    pub fn all_taken(&self) -> bool {
        RANDOMS.with(|r| r.borrow().is_empty()) && SHARE.with(|s| s.borrow().is_none())
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        RANDOMS.with(|r| r.borrow_mut().clear());
        SHARE.with(|s| *s.borrow_mut() = None);
    }
}

#[derive(Debug)]
struct KnockRandom;

impl SecureRandom for KnockRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        if buf.len() == 32
            && let Some(v) = RANDOMS.with(|r| r.borrow_mut().pop_front())
        {
            buf.copy_from_slice(&v);
            return Ok(());
        }
        rand_core::RngCore::try_fill_bytes(&mut rand_core::OsRng, buf).map_err(|_| GetRandomFailed)
    }
}

/// The provider's first group (X25519MLKEM768), handing out a prepared share first.
#[derive(Debug)]
struct KnockGroup;

fn first_group() -> &'static dyn SupportedKxGroup {
    rustls::crypto::aws_lc_rs::kx_group::X25519MLKEM768
}

impl SupportedKxGroup for KnockGroup {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, rustls::Error> {
        if let Some(kx) = SHARE.with(|s| s.borrow_mut().take()) {
            return Ok(kx);
        }
        first_group().start()
    }

    fn name(&self) -> NamedGroup {
        first_group().name()
    }

    fn fips(&self) -> bool {
        first_group().fips()
    }

    fn usable_for_version(&self, version: ProtocolVersion) -> bool {
        first_group().usable_for_version(version)
    }
}

static KNOCK_RANDOM: KnockRandom = KnockRandom;
static KNOCK_GROUP: KnockGroup = KnockGroup;

/// The aws-lc-rs provider with the knocking `SecureRandom` and first group.
pub fn knocking_provider() -> CryptoProvider {
    let mut p = rustls::crypto::aws_lc_rs::default_provider();
    p.secure_random = &KNOCK_RANDOM;
    let mut groups: Vec<&'static dyn SupportedKxGroup> = vec![&KNOCK_GROUP];
    groups.extend(
        p.kx_groups
            .iter()
            .copied()
            .filter(|g| g.name() != first_group().name()),
    );
    p.kx_groups = groups;
    p
}

/// A started key exchange of the knocking provider's first group, and its public share.
///
/// # Errors
/// The key exchange could not start.
pub fn start_share() -> Result<(Box<dyn ActiveKeyExchange>, Vec<u8>), rustls::Error> {
    let kx = first_group().start()?;
    let share = kx.pub_key().to_vec();
    Ok((kx, share))
}
