//! Fuzz target: what the PKI parses from peers and operators. Arbitrary bytes as a
//! certificate (client and server verification), as a CRL (building a verifier), as a
//! certificate request, and as PEM text. Nothing may panic, and only the deployment's own
//! certificates ever verify.
#![no_main]

use std::sync::OnceLock;

use aura_pki::{ClientRequest, Verifier, cert_der_from_pem, crl_der_from_pem};
use aura_testkit::TestPki;
use libfuzzer_sys::fuzz_target;
use rustls_pki_types::UnixTime;

fn pki() -> &'static (TestPki, Verifier) {
    static P: OnceLock<(TestPki, Verifier)> = OnceLock::new();
    P.get_or_init(|| {
        let p = TestPki::new(1).expect("fixture");
        let v = p.verifier().expect("verifier");
        (p, v)
    })
}

fuzz_target!(|data: &[u8]| {
    let (p, verifier) = pki();
    // Inside the fixture certificates' validity (2029 to 2035).
    let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_900_000_000));
    if verifier.verify_client(data, now).is_ok() {
        assert!(
            data == p.alice().cert_der.as_slice() || data == p.bob().cert_der.as_slice(),
            "a forged client certificate verified"
        );
    }
    if verifier.verify_server(data, "server.test", now).is_ok() {
        assert_eq!(
            data,
            p.server().cert_der.as_slice(),
            "a forged server certificate verified"
        );
    }
    let _ = Verifier::new(p.ca_der(), [data]);
    let _ = ClientRequest::from_der(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ClientRequest::from_pem(text);
        let _ = cert_der_from_pem(text);
        let _ = crl_der_from_pem(text);
    }
});
