//! ML-KEM-768 (FIPS 203) known answers through the deterministic API that Aura uses:
//! C2SP CCTV's accumulated pq-crystals vectors, five explicit vectors published with
//! OpenSSH's ML-KEM tests, and CCTV's "unlucky" SampleNTT vector.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aura_crypto::kem;
use sha3::digest::{ExtendableOutput, Update, XofReader};
use sha3::{Digest, Sha3_256, Shake128};

fn sha3(b: &[u8]) -> String {
    hex::encode(Sha3_256::digest(b))
}

fn arr<const N: usize>(s: &str) -> [u8; N] {
    hex::decode(s).unwrap().try_into().unwrap()
}

/// CCTV "accumulated pq-crystals vectors": inputs drawn from one SHAKE-128("") stream
/// (d, z, m, a random ciphertext), outputs (ek, dk, ct, K, K of the random ciphertext)
/// absorbed by a second SHAKE-128; the first 32 bytes squeezed are compared.
fn accumulate(count: usize) -> String {
    let mut rng = Shake128::default().finalize_xof();
    let mut acc = Shake128::default();
    for _ in 0..count {
        let mut seed = [0u8; 64];
        let mut m = [0u8; 32];
        let mut bad_ct = [0u8; kem::MLKEM768_CT_LEN];
        rng.read(&mut seed);
        rng.read(&mut m);
        rng.read(&mut bad_ct);
        let (dk, ek) = kem::mlkem_keypair_from_seed(&seed);
        let (ct, k) = kem::mlkem_encapsulate(&ek[..], &m).unwrap();
        assert_eq!(kem::mlkem_decapsulate(&dk, &ct[..]).unwrap(), k);
        let k_reject = kem::mlkem_decapsulate(&dk, &bad_ct).unwrap();
        acc.update(&ek[..]);
        acc.update(dk.as_bytes());
        acc.update(&ct[..]);
        acc.update(&k);
        acc.update(&k_reject);
    }
    let mut out = [0u8; 32];
    acc.finalize_xof().read(&mut out);
    hex::encode(out)
}

#[test]
fn cctv_accumulated_100() {
    assert_eq!(
        accumulate(100),
        "8d65b902f28edc683cebee2872962fd165a4d197c9e24ec74caa4470270df0b7"
    );
}

#[test]
fn cctv_accumulated_10000() {
    assert_eq!(
        accumulate(10_000),
        "f959d18d3d1180121433bf0e05f11e7908cf9d03edc150b2b07cb90bef5bc1c1"
    );
}

/// (d, z, m, SHA3-256(ek), SHA3-256(dk), SHA3-256(ct), K)
const EXPLICIT: &[[&str; 7]] = &[
    [
        "7c9935a0b07694aa0c6d10e4db6b1add2fd81a25ccb148032dcd739936737f2d",
        "8626ed79d451140800e03b59b956f8210e556067407d13dc90fa9e8b872bfb8f",
        "147c03f7a5bebba406c8fae1874d7f13c80efe79a3a9a874cc09fe76f6997615",
        "f57262661358cde8d3ebf990e5fd1d5b896c992ccfaadb5256b68bbf5943b132",
        "7deef44965b03d76de543ad6ef9e74a2772fa5a9fa0e761120dac767cf0152ef",
        "6e777e2cf8054659136a971d9e70252f301226930c19c470ee0688163a63c15b",
        "e7184a0975ee3470878d2d159ec83129c8aec253d4ee17b4810311d198cd0368",
    ],
    [
        "d60b93492a1d8c1c7ba6fc0b733137f3406cee8110a93f170e7a78658af326d9",
        "003271531cf27285b8721ed5cb46853043b346a66cba6cf765f1b0eaa40bf672",
        "cde797df8ce67231f6c5d15811843e01eb2ab84c7490931240822adbddd72046",
        "7b00751eb9b1253231213f8a14f06f0fe1b7a4fdb7d1cfe44c161e577e5e8f0a",
        "3a8c009e8e648ac572d5592e4a92907fae0c1767be41c544b59dc3ffe61f7ded",
        "bce1bf3450f574130b9561ee11565fa41d599d05d2136f10ad2c013eb5d13ca9",
        "5f0c5d9f39d3e724b5a2bd54e69e360f72ffab5d4d6cc5e572fecba80acd4796",
    ],
    [
        "4b622de1350119c45a9f2e2ef3dc5df50a759d138cdfbd64c81cc7cc2f513345",
        "e82fcc97ca60ccb27bf6938c975658aeb8b4d37cffbde25d97e561f36c219ade",
        "f43f68fbd694f0a6d307297110ecd4739876489fdf07eb9b03364e2ed0ff96e9",
        "9bda55b63cffa9bf953993918b18cd6595ea6433b479e89b5cd3c9339e4468cb",
        "d5fc96564df6e53622b2db8295a80a44e3bad7147696e2ad1f728639c98791b1",
        "2a8b5d9bdcac1b7ffb6d655368e15148308eee98ae34f4105eaae87f24a008a2",
        "7f3bcc03a35a0030255264914e5d88a0c93611c7ca21f0609678a88ca42ce1c9",
    ],
    [
        "050d58f9f757edc1e8180e3808b806f5bbb3586db3470b069826d1bb9a4efc2c",
        "de950541fd53a8a47aaa8cdfe80d928262a5ef7f8129ec3ef92f78d7cc32ef60",
        "ea74fbc3c546500ed684bed6fe3c496d3b86d2d6dfaf223969b942e9a8c95e85",
        "647a81f0f1b3e3dacb6e73e900f7c078cdfaa7119a5ede48c7685fdb7e0fe2f5",
        "1cf686cb8732c73a38b35d73b0b28fb120bc89cda1554d9f12adedc057862081",
        "1c51c85ce66d80c1f9bb138e5bce84dd75cee4260c8817e06c6f2bd920601530",
        "c630736985fdb7830d7446e18b6b81fa4a707a6058964b99190120de85e7559c",
    ],
    [
        "66b79b844e0c2adad694e0478661ac46fe6b6001f6a71ff8e2f034b1fd8833d3",
        "be2d3c64d38269a1ee8660b9a2beaeb9f5ac022e8f0a357feebfd13b06813854",
        "64efa87a12cb96f98b9b81a7e5128a959c74e5332aaab0444fca7b4a5e5e0216",
        "811aea11a24a4b09e428415f82ee836e930c3b77867aafc5e6728149e3f2bd1b",
        "6a1ff1351c538a5661fc3576c29408c19f42da3688fa16f9ec5ead6a84420db5",
        "db4dedc1e4d383acaf974fb50ffbf881bd3938ad196fb9aebeeb1bf1ddc94e10",
        "41e078d0d0c4fe5df5c6683171d5c1c3f1ef152c4945f9cb299f74278ce4cc4f",
    ],
    // CCTV ML-KEM/unluckysample/ML-KEM-768.txt: SampleNTT needs more than 575 XOF bytes.
    [
        "82c4a361586b9715c2375a45fb85c32d04be7fe6e26acd820ec5d4080093afe1",
        "8476013560151d986dc7834dcb57c75f845f8d7ee71558d0955f3f4feb723cf2",
        "e48f74ad416e99631003ded1478aec62a02c245d88ed7f2fae92aedf13ca03b3",
        "451f9b6547b8f6e927fbfe7598658160206040fdb57dd39ba8bf1f3a5ff89b9c",
        "7f2dd0ad9dc1d87809d36fb96df939148006246af01591321f6f09609949b7e9",
        "9eb061a5fb76505eefffdedea62615eab765aa3d89ff7f1f3df7d8142981a30b",
        "4f7cc64c040fc4e335a539691f4638caf8b1bf5da6455754afe699e41813801b",
    ],
];

#[test]
fn explicit_vectors() {
    for (i, v) in EXPLICIT.iter().enumerate() {
        let d: [u8; 32] = arr(v[0]);
        let z: [u8; 32] = arr(v[1]);
        let mut seed = [0u8; 64];
        seed[..32].copy_from_slice(&d);
        seed[32..].copy_from_slice(&z);
        let (dk, ek) = kem::mlkem_keypair_from_seed(&seed);
        assert_eq!(sha3(&ek[..]), v[3], "vector {i}: ek");
        assert_eq!(sha3(dk.as_bytes()), v[4], "vector {i}: dk");
        let (ct, k) = kem::mlkem_encapsulate(&ek[..], &arr(v[2])).unwrap();
        assert_eq!(sha3(&ct[..]), v[5], "vector {i}: ct");
        assert_eq!(hex::encode(k), v[6], "vector {i}: K");
        assert_eq!(
            hex::encode(kem::mlkem_decapsulate(&dk, &ct[..]).unwrap()),
            v[6]
        );
    }
}
