//! One test per bad configuration, each checking the message an operator would read.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};

use aura_config::{ClientConfig, ConfigError, ServerConfig};
use tempfile::TempDir;

const SERVER: &str = r#"[server]
name = "vpn.example.com"

[server.pool]
cidr = "10.77.0.0/24"

[pki]
ca_cert = "ca.crt"
cert = "server.crt"
key = "server.key"
crl = "crl.pem"
knock_key = "knock.key"
"#;

const CLIENT: &str = r#"[client]
server = "vpn.example.com"

[pki]
ca_cert = "ca.crt"
cert = "client.crt"
key = "client.key"
crl = "crl.pem"
knock_key = "knock.key"
"#;

/// A directory holding every PKI file the two base configurations name.
struct Fixture(TempDir);

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "ca.crt",
            "crl.pem",
            "server.crt",
            "server.key",
            "client.crt",
            "client.key",
            "knock.key",
        ] {
            let p = dir.path().join(f);
            fs::write(&p, "x").unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
            }
        }
        Fixture(dir)
    }

    fn dir(&self) -> &Path {
        self.0.path()
    }

    fn server(&self, text: &str) -> Result<ServerConfig, ConfigError> {
        let cfg = aura_config::parse_server(text, self.dir())?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn client(&self, text: &str) -> Result<ClientConfig, ConfigError> {
        let cfg = aura_config::parse_client(text, self.dir())?;
        cfg.validate()?;
        Ok(cfg)
    }
}

/// `SERVER` with `from` replaced by `to` (which must occur).
fn server_with(from: &str, to: &str) -> String {
    assert!(SERVER.contains(from), "{from}");
    SERVER.replacen(from, to, 1)
}

fn pool(extra: &str) -> String {
    server_with("cidr = \"10.77.0.0/24\"\n", extra)
}

/// The error's text, asserting it is an `Invalid` listing exactly `expected` (in order).
fn problems(err: ConfigError, expected: &[&str]) {
    assert!(matches!(err, ConfigError::Invalid(_)), "{err:?}");
    assert_eq!(err.to_string(), expected.join("\n"));
}

/// Asserts a parse error at `line`:`column` about `key` with a message containing `msg`.
fn parse_error(err: ConfigError, line: usize, column: usize, key: &str, msg: &str) {
    let text = err.to_string();
    let ConfigError::Parse {
        line: l,
        column: c,
        key: k,
        message,
        ..
    } = err
    else {
        panic!("not a parse error: {err:?}");
    };
    assert_eq!((l, c, k.as_deref()), (line, column, Some(key)), "{text}");
    assert!(message.contains(msg), "{message}");
    assert_eq!(
        text,
        format!("line {line}, column {column}: {key}: {message}")
    );
}

#[test]
fn base_configurations_are_valid() {
    let f = Fixture::new();
    f.server(SERVER).unwrap();
    f.client(CLIENT).unwrap();
}

#[test]
fn unknown_key_names_key_line_and_column() {
    let f = Fixture::new();
    let err = f
        .server(&pool(
            "cidr = \"10.77.0.0/24\"\n  cdir = \"10.77.0.0/24\"\n",
        ))
        .unwrap_err();
    parse_error(
        err,
        6,
        3,
        "server.pool.cdir",
        "unknown field `cdir`, expected one of `cidr`, `strategy`, `server_address`, `static`",
    );
}

#[test]
fn unknown_section_is_rejected() {
    let f = Fixture::new();
    let err = f
        .server(&format!(
            "{SERVER}\n[server.poool]\ncidr = \"10.0.0.0/24\"\n"
        ))
        .unwrap_err();
    parse_error(err, 14, 9, "server.poool", "unknown field `poool`");
    let err = f
        .server(&format!("{SERVER}\n[tunel]\nmtu = 1280\n"))
        .unwrap_err();
    parse_error(err, 14, 2, "tunel", "unknown field `tunel`");
}

#[test]
fn unknown_key_in_client_and_inline_table() {
    let f = Fixture::new();
    let err = f
        .client(&CLIENT.replace(
            "server = \"vpn.example.com\"",
            "server = \"vpn.example.com\"\ncircuit = { enabled = true, hop = 2 }",
        ))
        .unwrap_err();
    parse_error(err, 3, 29, "client.circuit.hop", "unknown field `hop`");
}

#[test]
fn missing_required_key() {
    let f = Fixture::new();
    let err = f
        .server(&server_with("name = \"vpn.example.com\"\n", ""))
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, ConfigError::Parse { .. }) && text.contains("missing field `name`"),
        "{text}"
    );
}

#[test]
fn bad_cidr() {
    let f = Fixture::new();
    let err = f.server(&pool("cidr = \"10.8.0.0/33\"\n")).unwrap_err();
    parse_error(
        err,
        5,
        8,
        "server.pool.cidr",
        "10.8.0.0/33 is not a valid CIDR: the prefix length must be in 0..=32",
    );
    let err = f.server(&pool("cidr = \"10.8.0.0\"\n")).unwrap_err();
    parse_error(
        err,
        5,
        8,
        "server.pool.cidr",
        "10.8.0.0 is not a valid CIDR: expected ADDRESS/PREFIX",
    );
}

#[test]
fn cidr_with_host_bits_or_too_small() {
    let f = Fixture::new();
    problems(
        f.server(&pool("cidr = \"10.77.0.1/24\"\n")).unwrap_err(),
        &[
            "server.pool.cidr: 10.77.0.1/24 has host bits set; write the network address, 10.77.0.0/24",
        ],
    );
    problems(
        f.server(&pool("cidr = \"10.77.0.0/31\"\n")).unwrap_err(),
        &[
            "server.pool.cidr: 10.77.0.0/31 is too small: a pool needs at least a /30 \
           (network, server, one client, broadcast)",
        ],
    );
}

#[test]
fn pool_too_small_for_static_map() {
    let f = Fixture::new();
    let text = pool(
        "cidr = \"10.77.0.0/30\"\nstrategy = \"static_only\"\n\
         static = { alice = \"10.77.0.2\", bob = \"10.77.0.3\" }\n",
    );
    problems(
        f.server(&text).unwrap_err(),
        &[
            "server.pool.static: 2 static addresses do not fit in 10.77.0.0/30, which has room \
             for 1 (network, broadcast and server addresses are reserved)",
            "server.pool.static.bob: 10.77.0.3 is the pool's broadcast address, which is reserved",
        ],
    );
}

#[test]
fn static_address_outside_pool_or_reserved() {
    let f = Fixture::new();
    let text = pool(
        "cidr = \"10.77.0.0/24\"\nserver_address = \"10.77.0.254\"\n\n\
         [server.pool.static]\n\
         alice = \"10.8.0.5\"\n\
         bob = \"10.77.0.0\"\n\
         carol = \"10.77.0.255\"\n\
         dave = \"10.77.0.254\"\n\
         erin = \"10.77.0.1\"\n",
    );
    problems(
        f.server(&text).unwrap_err(),
        &[
            "server.pool.static.alice: 10.8.0.5 is outside the pool 10.77.0.0/24",
            "server.pool.static.bob: 10.77.0.0 is the pool's network address, which is reserved",
            "server.pool.static.carol: 10.77.0.255 is the pool's broadcast address, which is reserved",
            "server.pool.static.dave: 10.77.0.254 is the server's own address, which is reserved",
        ],
    );
    problems(
        f.server(&pool(
            "cidr = \"10.77.0.0/24\"\nserver_address = \"10.78.0.1\"\n",
        ))
        .unwrap_err(),
        &["server.pool.server_address: 10.78.0.1 is outside the pool 10.77.0.0/24"],
    );
}

#[test]
fn static_address_that_is_not_an_address() {
    let f = Fixture::new();
    let text = pool("cidr = \"10.77.0.0/24\"\n\n[server.pool.static]\nalice = \"10.77.0.300\"\n");
    let err = f.server(&text).unwrap_err();
    parse_error(
        err,
        8,
        9,
        "server.pool.static.alice",
        "invalid IPv4 address syntax",
    );
}

#[test]
fn duplicate_static_address() {
    let f = Fixture::new();
    let text =
        pool("cidr = \"10.77.0.0/24\"\nstatic = { alice = \"10.77.0.9\", bob = \"10.77.0.9\" }\n");
    problems(
        f.server(&text).unwrap_err(),
        &["server.pool.static.bob: 10.77.0.9 is already assigned to alice"],
    );
}

#[test]
fn bad_client_id_and_strategy_mismatch() {
    let f = Fixture::new();
    let text = pool(
        "cidr = \"10.77.0.0/24\"\nstrategy = \"dynamic_only\"\n\
         static = { \"-bad id\" = \"10.77.0.9\" }\n",
    );
    problems(
        f.server(&text).unwrap_err(),
        &[
            "server.pool.strategy: dynamic_only ignores the static map; use static_or_dynamic \
             or remove [server.pool.static]",
            "server.pool.static.-bad id: the client id \"-bad id\" must not start with '.' or '-'",
        ],
    );
    problems(
        f.server(&pool("strategy = \"static_only\"\n")).unwrap_err(),
        &[
            "server.pool.static: strategy is static_only but no client is listed, so no client \
           could connect",
        ],
    );
}

#[test]
fn bad_strategy_value() {
    let f = Fixture::new();
    let err = f.server(&pool("strategy = \"round_robin\"\n")).unwrap_err();
    parse_error(
        err,
        5,
        12,
        "server.pool.strategy",
        "unknown variant `round_robin`, expected one of `static_only`, `dynamic_only`, \
         `static_or_dynamic`",
    );
}

#[test]
fn missing_and_unsafe_pki_files() {
    let f = Fixture::new();
    fs::remove_file(f.dir().join("server.crt")).unwrap();
    let crl = f.dir().join("crl.pem");
    fs::remove_file(&crl).unwrap();
    fs::create_dir(&crl).unwrap();
    let mut expected = vec![
        format!(
            "pki.cert: {} does not exist",
            f.dir().join("server.crt").display()
        ),
        format!("pki.crl: {} is not a regular file", crl.display()),
        format!(
            "pki.ca_key: {} does not exist",
            f.dir().join("nope/ca.key").display()
        ),
    ];
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key = f.dir().join("server.key");
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        expected.insert(
            1,
            format!(
                "pki.key: {} is a private key accessible by group or others (mode 0644); run \
                 `chmod 600 {}`",
                key.display(),
                key.display()
            ),
        );
    }
    let text = format!("{SERVER}ca_key = \"nope/ca.key\"\n");
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    problems(f.server(&text).unwrap_err(), &expected);
}

#[test]
fn unknown_carrier() {
    let f = Fixture::new();
    let err = f
        .server(&format!(
            "{SERVER}\n[transport]\ncarriers = [\n  \"udp\",\n  \"wireguard\",\n]\n"
        ))
        .unwrap_err();
    parse_error(
        err,
        17,
        3,
        "transport.carriers",
        "unknown variant `wireguard`, expected one of `udp`, `quic`, `tls`",
    );
}

#[test]
fn duplicate_or_no_carrier() {
    let f = Fixture::new();
    problems(
        f.client(&format!(
            "{CLIENT}\n[transport]\ncarriers = [\"tls\", \"udp\", \"tls\"]\n"
        ))
        .unwrap_err(),
        &["transport.carriers: \"tls\" is listed more than once"],
    );
    problems(
        f.client(&format!("{CLIENT}\n[transport]\ncarriers = []\n"))
            .unwrap_err(),
        &["transport.carriers: the list is empty; name at least one of \"udp\", \"quic\", \"tls\""],
    );
}

#[test]
fn port_out_of_range() {
    let f = Fixture::new();
    let err = f
        .server(&format!("{SERVER}\n[transport]\nudp_port = 0\n"))
        .unwrap_err();
    parse_error(
        err,
        15,
        12,
        "transport.udp_port",
        "port 0 is out of range 1..=65535",
    );
    let err = f
        .client(&format!("{CLIENT}\n[transport]\ntls_port = 70000\n"))
        .unwrap_err();
    parse_error(
        err,
        12,
        12,
        "transport.tls_port",
        "port 70000 is out of range 1..=65535",
    );
}

#[test]
fn udp_and_quic_on_the_same_port() {
    let f = Fixture::new();
    problems(
        f.server(&format!("{SERVER}\n[transport]\nudp_port = 443\n"))
            .unwrap_err(),
        &[
            "transport.udp_port: 443 is also transport.quic_port; the udp and quic carriers \
           both use UDP and cannot share a port",
        ],
    );
    // Without the quic carrier, UDP/443 is free for the udp carrier.
    f.server(&format!(
        "{SERVER}\n[transport]\ncarriers = [\"udp\", \"tls\"]\nudp_port = 443\n"
    ))
    .unwrap();
}

#[test]
fn mtu_out_of_range() {
    let f = Fixture::new();
    for mtu in [575, 1442, 9000] {
        problems(
            f.server(&format!("{SERVER}\n[tunnel]\nmtu = {mtu}\n"))
                .unwrap_err(),
            &[&format!(
                "tunnel.mtu: {mtu} is out of range 576..=1441 (larger inner packets cannot \
                 cross a 1500-byte path on any carrier without fragmentation)"
            )],
        );
    }
    f.server(&format!("{SERVER}\n[tunnel]\nmtu = 1441\n"))
        .unwrap();
}

#[test]
fn padding_profile_out_of_range() {
    let f = Fixture::new();
    problems(
        f.client(&format!("{CLIENT}\n[transport]\npadding_profile = 7\n"))
            .unwrap_err(),
        &[
            "transport.padding_profile: 7 is not a padding profile; use 0 (HTTPS-like \
           buckets), 1 (none), 2 (jitter) or 3 (constant), or remove the key to let the \
           daily mask pick",
        ],
    );
}

#[test]
fn bad_names() {
    let f = Fixture::new();
    let text = server_with(
        "name = \"vpn.example.com\"",
        "name = \"vpn example\"\nrun_as = \"-x\"",
    );
    let text = format!(
        "{text}\n[tunnel]\nname = \"a-very-long-interface\"\n[server.nat]\negress_iface = \"eth/0\"\n"
    );
    problems(
        f.server(&text).unwrap_err(),
        &[
            "server.name: \"vpn example\" is not a DNS name (only letters, digits, '.', '-' and \
             '_' are allowed)",
            "server.run_as: \"-x\" must not start with '-'",
            "server.nat.egress_iface: \"eth/0\" must be printable ASCII without '/', ':' or spaces",
            "tunnel.name: \"a-very-long-interface\" must be 1 to 15 characters long",
        ],
    );
}

#[test]
fn relay_whitelist_without_the_relay() {
    let f = Fixture::new();
    problems(
        f.server(&format!(
            "{SERVER}\n[server.relay]\nallow_extend_to = [\"192.0.2.7:8443\"]\n"
        ))
        .unwrap_err(),
        &[
            "server.relay.allow_extend_to: is set but server.relay.enabled is false: enable the \
           relay or remove the list",
        ],
    );
    // An empty list with the relay on is an open relay: allowed (the server warns).
    f.server(&format!("{SERVER}\n[server.relay]\nenabled = true\n"))
        .unwrap();
    f.server(&format!(
        "{SERVER}\n[server.relay]\nenabled = true\nallow_extend_to = [\"192.0.2.7:8443\"]\n"
    ))
    .unwrap();
}

#[test]
fn client_server_bridges_and_circuit() {
    let f = Fixture::new();
    let text = CLIENT.replace(
        "server = \"vpn.example.com\"",
        "server = \"vpn.example.com:443\"\n\
         bridges = [\"198.51.100.2\", \"198.51.100.2\", \"bad..name\"]\n\
         circuit = { enabled = true, hops = 5, entry = \"relay.example.net\" }",
    );
    problems(
        f.client(&text).unwrap_err(),
        &[
            "client.server: \"vpn.example.com:443\" must be a host name or an IP address \
             without a port (ports come from [transport])",
            "client.bridges: \"198.51.100.2\" is listed more than once",
            "client.bridges: \"bad..name\" is not a DNS name (empty label)",
            "client.circuit.hops: 5 is out of range 2..=4 (a circuit has an entry relay, \
             up to two middle relays and the exit; without one, set enabled = false)",
        ],
    );
    let text = format!("{CLIENT}\n[client.circuit]\nenabled = true\n");
    problems(
        f.client(&text).unwrap_err(),
        &["client.circuit.entry: a circuit needs the entry relay's address"],
    );
    // Zero hops; a middle relay count that does not match; a hop twice; an MTU too big
    // for three hops.
    let circuit = |extra: &str| {
        format!(
            "{CLIENT}\n[tunnel]\nmtu = 1420\n[client.circuit]\nenabled = true\n\
             entry = \"relay.example.net\"\n{extra}"
        )
    };
    problems(
        f.client(&circuit("hops = 0")).unwrap_err(),
        &[
            "client.circuit.hops: 0 is out of range 2..=4 (a circuit has an entry relay, up to \
           two middle relays and the exit; without one, set enabled = false)",
        ],
    );
    problems(
        f.client(&circuit("hops = 3")).unwrap_err(),
        &[
            "client.circuit.middle: a 3-hop circuit needs 1 middle relay(s) between the \
             entry and the exit; 0 listed",
            "tunnel.mtu: 1420 does not fit a 3-hop circuit: each hop adds 31 bytes, so at \
             most 1379",
        ],
    );
    problems(
        f.client(&circuit(
            "hops = 3\nmiddle = [{ address = \"RELAY.example.net\" }]",
        ))
        .unwrap_err(),
        &[
            "client.circuit.middle: \"RELAY.example.net\" is already on the path; each hop \
             must be another server",
            "tunnel.mtu: 1420 does not fit a 3-hop circuit: each hop adds 31 bytes, so at \
             most 1379",
        ],
    );
}

#[test]
fn client_by_ip_address() {
    let f = Fixture::new();
    let cfg = f
        .client(&CLIENT.replace("\"vpn.example.com\"", "\"203.0.113.9\""))
        .unwrap();
    assert_eq!(cfg.client.server_name(), "203.0.113.9");
    assert_eq!(cfg.sni(), None);
    let cfg = f
        .client(&CLIENT.replace(
            "server = \"vpn.example.com\"",
            "server = \"2001:db8::9\"\nserver_name = \"vpn.example.com\"",
        ))
        .unwrap();
    assert_eq!(cfg.sni(), Some("vpn.example.com"));
}

#[test]
fn every_problem_is_reported_at_once() {
    let f = Fixture::new();
    fs::remove_file(f.dir().join("client.key")).unwrap();
    let text = format!(
        "{CLIENT}\n[transport]\npadding_profile = 4\ncarriers = [\"quic\", \"quic\"]\n\
         [tunnel]\nmtu = 100\n"
    );
    let err = f.client(&text).unwrap_err();
    assert_eq!(err.problems().len(), 4);
    let keys: Vec<&str> = err.problems().iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "transport.carriers",
            "transport.padding_profile",
            "tunnel.mtu",
            "pki.key"
        ]
    );
    assert_eq!(err.to_string().lines().count(), 4);
}

#[test]
fn tilde_and_relative_paths() {
    let home = PathBuf::from(std::env::var_os("HOME").expect("HOME is set"));
    let base = Path::new("/srv/aura");
    let text = CLIENT
        .replace("\"ca.crt\"", "\"~/aura/ca.crt\"")
        .replace("\"client.crt\"", "\"/etc/aura/client.crt\"")
        .replace("\"crl.pem\"", "\"../shared/crl.pem\"");
    let cfg = aura_config::parse_client(&text, base).unwrap();
    assert_eq!(cfg.pki.ca_cert, home.join("aura/ca.crt"));
    assert_eq!(cfg.pki.cert, Path::new("/etc/aura/client.crt"));
    assert_eq!(cfg.pki.key, base.join("client.key"));
    assert_eq!(cfg.pki.crl, base.join("../shared/crl.pem"));

    let err = aura_config::parse_client(&CLIENT.replace("\"ca.crt\"", "\"~root/ca.crt\""), base)
        .unwrap_err();
    problems(
        err,
        &[
            "pki.ca_cert: \"~root/ca.crt\": only `~` and `~/...` (the current user's home) are \
           expanded",
        ],
    );
}

#[test]
fn load_reports_the_file() {
    let f = Fixture::new();
    let missing = f.dir().join("absent.toml");
    let err = aura_config::load_server(&missing).unwrap_err();
    assert!(matches!(err, ConfigError::Io { .. }));
    // The OS reason is the error's source (printed by the CLI's cause chain), not
    // repeated in its own message.
    assert_eq!(
        err.to_string(),
        format!("cannot read {}", missing.display())
    );
    assert!(std::error::Error::source(&err).is_some());

    let path = f.dir().join("server.toml");
    fs::write(&path, format!("{SERVER}\n[tunnel]\nmtu = \"big\"\n")).unwrap();
    let err = aura_config::load_server(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: line 15, column 7: tunnel.mtu: invalid type: string \"big\", expected u16",
            path.display()
        )
    );
}

#[test]
fn knock_key_missing_or_set_with_knock_off() {
    let f = Fixture::new();
    for (text, expected) in [
        (
            server_with("knock_key = \"knock.key\"\n", ""),
            "pki.knock_key: missing: transport.knock is on (the default) and needs the \
             deployment's knock.key (`aura pki knock-key` makes one beside ca.crt; give it to \
             every client), or set transport.knock = false",
        ),
        (
            format!("{SERVER}\n[transport]\nknock = false\n"),
            "pki.knock_key: set while transport.knock = false; remove one of the two",
        ),
    ] {
        problems(f.server(&text).unwrap_err(), &[expected]);
    }
    // Knock off and no key: valid.
    f.server(&format!(
        "{}\n[transport]\nknock = false\n",
        server_with("knock_key = \"knock.key\"\n", "")
    ))
    .unwrap();
    // A key file that is not there.
    let text = CLIENT.replace("knock_key = \"knock.key\"", "knock_key = \"gone.key\"");
    let e = f.client(&text).unwrap_err().to_string();
    assert!(e.contains("pki.knock_key") && e.contains("gone.key"), "{e}");
}

#[test]
fn sni_palette_problems() {
    let f = Fixture::new();
    let c = |t: &str| format!("{CLIENT}\n[transport]\n{t}\n");
    problems(
        f.client(&c("sni_palette = []")).unwrap_err(),
        &["transport.sni_palette: the list is empty; remove the key to use the default"],
    );
    problems(
        f.client(&c("sni_palette = [\"a b\"]")).unwrap_err(),
        &[
            "transport.sni_palette: \"a b\" is not a DNS name (only letters, digits, '.', '-' and '_' are allowed)",
        ],
    );
    problems(
        f.client(&c("sni = \"x.example\"\nsni_palette = [\"y.example\"]"))
            .unwrap_err(),
        &[
            "transport.sni_palette: set together with transport.sni; keep one (a fixed SNI, or a \
           palette the daily mask picks from)",
        ],
    );
    f.client(&c("sni_palette = [\"y.example\", \"z.example\"]"))
        .unwrap();
}

#[test]
fn firewall_problems() {
    let f = Fixture::new();
    let s = |t: &str| format!("{SERVER}\n[server.firewall]\n{t}\n");
    problems(
        f.server(&s("allow_subnets = [\"10.77.0.0/16\", \"192.168.1.7/24\"]"))
            .unwrap_err(),
        &[
            "server.firewall.allow_subnets: 10.77.0.0/16 overlaps the client pool 10.77.0.0/24; \
             clients reaching each other is server.firewall.client_to_client",
            "server.firewall.allow_subnets: 192.168.1.7/24 has host bits set; write the network \
             address",
        ],
    );
    let err = f.server(&s("allow_host_ports = [\"53\"]")).unwrap_err();
    assert!(
        err.to_string()
            .contains("\"53\" is not PORT/udp or PORT/tcp (for example \"53/udp\")"),
        "{err}"
    );
    let err = f.server(&s("allow_host_ports = [\"0/tcp\"]")).unwrap_err();
    assert!(err.to_string().contains("port 0 is not a port"), "{err}");
    let manual = format!(
        "{SERVER}\n[server.nat]\nauto = false\n[server.firewall]\nclient_to_client = true\n"
    );
    problems(
        f.server(&manual).unwrap_err(),
        &[
            "server.firewall: applies only with server.nat.auto = true (its rules live in Aura's \
             nftables table); with NAT managed by hand, manage the firewall there too",
        ],
    );
    let ok = f
        .server(&s(
            "client_to_client = true\nallow_subnets = [\"192.168.10.0/24\"]\n\
             allow_host_ports = [\"53/udp\", \"53/tcp\"]",
        ))
        .unwrap();
    assert_eq!(ok.server.firewall.allow_host_ports.len(), 2);
}

#[test]
fn decoy_problems() {
    let f = Fixture::new();
    let s = |t: &str| format!("{SERVER}\n[server.decoy]\n{t}\n");
    problems(
        f.server(&s("upstream = \"www.example.org\"")).unwrap_err(),
        &[
            "server.decoy.upstream: \"www.example.org\" is not host:port (for example \"www.example.org:443\")",
        ],
    );
    problems(
        f.server(&s(
            "upstream = \"www.example.org:443\"\ncert = \"server.crt\"\nkey = \"server.key\"",
        ))
        .unwrap_err(),
        &[
            "server.decoy.upstream: set together with root, cert or key: a forwarded decoy serves \
           nothing itself; keep upstream alone, or remove it to serve a site",
        ],
    );
    problems(
        f.server(&s("cert = \"server.crt\"")).unwrap_err(),
        &["server.decoy.key: missing: server.decoy.cert needs its key"],
    );
    problems(
        f.server(&s("root = \"nowhere\"")).unwrap_err(),
        &[&format!(
            "server.decoy.root: {} is not a directory",
            f.dir().join("nowhere").display()
        )],
    );
    let off = format!(
        "{}\n[server.decoy]\nupstream = \"www.example.org:443\"\n[transport]\nknock = false\n",
        server_with("knock_key = \"knock.key\"\n", "")
    );
    problems(
        f.server(&off).unwrap_err(),
        &[
            "server.decoy: set while transport.knock = false: without a knock the server cannot \
           tell strangers from clients; remove the section or turn the knock on",
        ],
    );
    f.server(&s("upstream = \"[2001:db8::1]:443\"")).unwrap();
    f.server(&s("cert = \"server.crt\"\nkey = \"server.key\""))
        .unwrap();
}

#[test]
fn split_rules_parse_into_networks() {
    let f = Fixture::new();
    let text = format!(
        "{CLIENT}\n[[tunnel.split.direct]]\ncidr = \"192.168.0.0/16\"\n\
         [[tunnel.split.direct]]\ncidr = \"198.18.0.2\"\n\
         [[tunnel.split.vpn]]\ncidr = \"192.168.50.0/24\"\n\
         [tunnel.os_routes]\ngateway = \"10.200.1.1\"\negress_iface = \"eth0\"\n"
    );
    let cfg = f.client(&text).unwrap();
    let split = cfg.tunnel.split.as_ref().unwrap();
    let shown = |k| {
        split
            .cidrs(k)
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        shown(aura_config::SplitKind::Direct),
        ["192.168.0.0/16", "198.18.0.2/32"]
    );
    assert_eq!(shown(aura_config::SplitKind::Vpn), ["192.168.50.0/24"]);
    let r = cfg.tunnel.os_routes();
    assert!(r.enabled && !r.dry_run);
    assert_eq!(r.gateway, Some("10.200.1.1".parse().unwrap()));
    // Without the sections: routes on, no rules.
    let plain = f.client(CLIENT).unwrap();
    assert!(plain.tunnel.split.is_none() && plain.tunnel.os_routes().enabled);
}

#[test]
fn bad_split_rules_are_named() {
    let f = Fixture::new();
    let text = format!(
        "{CLIENT}\n[[tunnel.split.direct]]\ncidr = \"10.0.0.1/8\"\n\
         [[tunnel.split.direct]]\n\
         [[tunnel.split.direct]]\ncidr = \"10.1.0.0/16\"\ndomain = \"example.com\"\n\
         [[tunnel.split.direct]]\ncidr = \"0.0.0.0/1\"\n\
         [[tunnel.split.direct]]\ndomain = \"*.example.com\"\n\
         [[tunnel.split.direct]]\ndomain = \"*.Example.com.\"\n\
         [[tunnel.split.direct]]\ndomain = \"bad domain.com\"\n\
         [[tunnel.split.direct]]\ndomain = \"10.1.2.3\"\n\
         [[tunnel.split.vpn]]\ncidr = \"0.0.0.0/1\"\n\
         [[tunnel.split.vpn]]\ncidr = \"fd00::/300\"\n\
         [tunnel.os_routes]\nenabled = false\negress_iface = \"no such interface\"\n"
    );
    problems(
        f.client(&text).unwrap_err(),
        &[
            "tunnel.split.direct[0].cidr: \"10.0.0.1/8\" has host bits set (the network is 10.0.0.0/8)",
            "tunnel.split.direct[1]: needs cidr or domain",
            "tunnel.split.direct[2]: has both cidr and domain: one rule, one of them",
            "tunnel.split.direct[3].cidr: 0.0.0.0/1 is too broad: DIRECT rules need a prefix of \
             at least /2 (to send everything outside the tunnel, do not run it)",
            "tunnel.split.direct[5].domain: *.example.com is already listed at \
             tunnel.split.direct[4]",
            "tunnel.split.direct[6].domain: \"bad domain.com\" is not a domain (only letters, \
             digits, '-' and '_' in labels, and '*.' in front)",
            "tunnel.split.direct[7].domain: \"10.1.2.3\" is an IP address: write it as a cidr \
             rule",
            "tunnel.split.vpn[0].cidr: 0.0.0.0/1 is already listed at tunnel.split.direct[3]",
            "tunnel.split.vpn[1].cidr: \"fd00::/300\": the prefix length must be 0 to 128",
            "tunnel.os_routes.egress_iface: \"no such interface\" must be 1 to 15 characters long",
            "tunnel.os_routes.enabled: is false, but tunnel.split has rules: they are routes, \
             and none would be installed",
        ],
    );
    // Domain rules need the client to see DNS answers.
    let text = format!("{CLIENT}\n[[tunnel.split.vpn]]\ndomain = \"*.example.com\"\n").replacen(
        "[client]\n",
        "[client]\ndns = \"off\"\n",
        1,
    );
    problems(
        f.client(&text).unwrap_err(),
        &[
            "client.dns: \"off\" leaves DNS to the system, but the domain split rules need the \
           client to see the answers: remove dns = \"off\" or the domain rules",
        ],
    );
    // A server has no tunnel routes to split.
    let text = format!("{SERVER}\n[[tunnel.split.direct]]\ncidr = \"10.9.0.0/16\"\n");
    problems(
        f.server(&text).unwrap_err(),
        &["tunnel.split: is a client setting: a server does not route through a tunnel"],
    );
}

#[test]
fn cover_profiles_and_budgets() {
    let f = Fixture::new();
    let client = |t: &str| f.client(&format!("{CLIENT}\n[transport]\n{t}\n"));
    parse_error(
        client("cover = \"loud\"").unwrap_err(),
        12,
        9,
        "transport.cover",
        "unknown variant `loud`, expected one of `off`, `idle`, `bursts`, `https`",
    );
    for bad in ["0", "101", "-5"] {
        let err = client(&format!("cover = \"https\"\ncover_budget_percent = {bad}")).unwrap_err();
        parse_error(
            err,
            13,
            24,
            "transport.cover_budget_percent",
            &format!("{bad} is out of range 1..=100 (percent of the packets sent)"),
        );
    }
    problems(
        client("cover_budget_percent = 20").unwrap_err(),
        &[
            "transport.cover_budget_percent: is set but transport.cover is \"off\": choose a \
           profile or remove the key",
        ],
    );
    problems(
        client("cover = \"idle\"\ncover_budget_percent = 20").unwrap_err(),
        &[
            "transport.cover_budget_percent: does not apply to cover = \"idle\" (its timers \
           bound it to 400 bytes a second); remove the key",
        ],
    );
    let ok = client("cover = \"bursts\"\ncover_budget_percent = 100").unwrap();
    assert_eq!(ok.transport.cover, aura_config::CoverMode::Bursts);
    // A server grants cover traffic; it does not ask for it.
    problems(
        f.server(&format!("{SERVER}\n[transport]\ncover = \"https\"\n"))
            .unwrap_err(),
        &[
            "transport.cover: is a client setting: a server grants cover traffic with \
           [server.cover]",
        ],
    );
    let err = f
        .server(&format!(
            "{SERVER}\n[server.cover]\nenabled = true\nmax_budget_percent = 150\n"
        ))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("server.cover.max_budget_percent: 150 is out of range 1..=100"),
        "{err}"
    );
    let ok = f
        .server(&format!(
            "{SERVER}\n[server.cover]\nenabled = true\ntotal_budget_percent = 10\n"
        ))
        .unwrap();
    assert_eq!(ok.server.cover.total_budget_percent, 10);
    assert_eq!(ok.server.cover.max_budget_percent, 50);
    problems(
        f.server(&format!(
            "{SERVER}\n[server.cover]\ntotal_budget_percent = 10\n"
        ))
        .unwrap_err(),
        &[
            "server.cover: budgets are set but server.cover.enabled is false: enable cover \
           traffic or remove them",
        ],
    );
}

#[test]
fn metrics_endpoint_is_loopback_unless_allowed() {
    let f = Fixture::new();
    let server = |section: &str| f.server(&format!("{SERVER}\n[server.metrics]\n{section}\n"));
    let cfg = server("listen = \"127.0.0.1:9587\"").unwrap();
    assert_eq!(
        cfg.server.metrics.listen,
        Some("127.0.0.1:9587".parse().unwrap())
    );
    problems(
        server("listen = \"0.0.0.0:9587\"").unwrap_err(),
        &[
            "server.metrics.listen: 0.0.0.0:9587 is not a loopback address: the endpoint has \
             no authentication or TLS; serve it on 127.0.0.1 or ::1, or set \
             server.metrics.allow_remote = true to serve it there anyway",
        ],
    );
    server("listen = \"192.0.2.5:9587\"\nallow_remote = true").unwrap();
    problems(
        server("allow_remote = true").unwrap_err(),
        &[
            "server.metrics.allow_remote: is set but server.metrics.listen is not: set the \
           address to serve on, or remove the key",
        ],
    );
    problems(
        server("listen = \"127.0.0.1:0\"").unwrap_err(),
        &["server.metrics.listen: 127.0.0.1:0: port 0 is not a port a scraper can be pointed at"],
    );
    // The TLS carrier's TCP port is taken by the carrier.
    problems(
        server("listen = \"0.0.0.0:443\"\nallow_remote = true").unwrap_err(),
        &[
            "server.metrics.listen: 0.0.0.0:443 takes the TLS carrier's TCP port \
           (transport.tls_port = 443): choose another port",
        ],
    );
    // The client's section, and an unknown key in it.
    let client = |section: &str| f.client(&format!("{CLIENT}\n[client.metrics]\n{section}\n"));
    client("listen = \"[::1]:9588\"").unwrap();
    problems(
        client("listen = \"192.0.2.5:9588\"").unwrap_err(),
        &[
            "client.metrics.listen: 192.0.2.5:9588 is not a loopback address: the endpoint has \
             no authentication or TLS; serve it on 127.0.0.1 or ::1, or set \
             client.metrics.allow_remote = true to serve it there anyway",
        ],
    );
    let e = client("port = 9588").unwrap_err();
    assert!(
        e.to_string().contains("client.metrics.port: unknown field"),
        "{e}"
    );
}

/// A key a daemon reads after dropping to `run_as` may be readable by its group, never
/// by others nor writable by the group; without `run_as` it stays the owner's alone.
#[cfg(unix)]
#[test]
fn run_as_lets_the_group_read_keys_and_nothing_more() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new();
    let key = f.dir().join("server.key");
    let run_as = server_with("[server]\n", "[server]\nrun_as = \"aura\"\n");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o640)).unwrap();
    assert!(f.server(&run_as).is_ok());
    problems(
        f.server(SERVER).unwrap_err(),
        &[&format!(
            "pki.key: {} is a private key accessible by group or others (mode 0640); run \
             `chmod 600 {}`",
            key.display(),
            key.display()
        )],
    );
    for mode in [0o644, 0o660] {
        fs::set_permissions(&key, fs::Permissions::from_mode(mode)).unwrap();
        problems(
            f.server(&run_as).unwrap_err(),
            &[&format!(
                "pki.key: {} is a private key accessible by others or writable by its group \
                 (mode {mode:04o}); run `chmod 640 {}` (the run_as user reads it through the \
                 file's group)",
                key.display(),
                key.display()
            )],
        );
    }
}

#[test]
fn workers_out_of_range() {
    let f = Fixture::new();
    for (value, problem) in [
        (
            "0",
            "server.workers: 0 is not a number of workers from 1 to 64",
        ),
        (
            "65",
            "server.workers: 65 is not a number of workers from 1 to 64",
        ),
    ] {
        let text = server_with(
            "name = \"vpn.example.com\"",
            &format!("name = \"vpn.example.com\"\nworkers = {value}"),
        );
        problems(f.server(&text).unwrap_err(), &[problem]);
    }
    let text = server_with(
        "name = \"vpn.example.com\"",
        "name = \"vpn.example.com\"\nworkers = 3",
    );
    assert_eq!(f.server(&text).unwrap().server.workers, Some(3));
    let text = server_with(
        "name = \"vpn.example.com\"",
        "name = \"vpn.example.com\"\nworkers = -1",
    );
    parse_error(
        f.server(&text).unwrap_err(),
        3,
        11,
        "server.workers",
        "invalid value",
    );
}
