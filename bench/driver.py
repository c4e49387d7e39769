#!/usr/bin/env python3
"""Side-by-side tunnel benchmark driver (started by bench/run.sh; see bench/README.md).

For every system: build a fresh two-namespace topology (<prefix>-a client side,
<prefix>-b server side, one veth 10.99.0.1/24 <-> 10.99.0.2/24), start the tunnel,
measure, stop the tunnel, delete the namespaces. Every process started is recorded in
the PID file (for run.sh's trap) and stopped by PID; every wait has a timeout.
"""

import argparse
import datetime
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
VETH_A, VETH_B = "10.99.0.1", "10.99.0.2"
IPERF_PORT = 5201


class Skip(Exception):
    """A system that cannot run here; the message says why."""


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Ctx:
    """Namespaces, started processes, scratch directory of one benchmark run."""

    def __init__(self, args):
        self.args = args
        self.prefix = args.prefix
        self.a = f"{self.prefix}-a"
        self.b = f"{self.prefix}-b"
        self.tmp = Path(args.tmp)
        self.pidfile = Path(args.pidfile)
        self.procs = []  # (Popen, name, logfile handle)
        self.ns_up = False

    # ---- processes ---------------------------------------------------------------
    def spawn(self, ns, argv, name, env=None, clear_env=False):
        """Starts a long-running process in namespace ns; its output goes to a log.
        env: extra variables; clear_env: env is the whole environment."""
        logpath = self.tmp / f"{name}.log"
        fh = open(logpath, "ab")
        full = ["ip", "netns", "exec", ns] + argv if ns else argv
        e = {} if clear_env else dict(os.environ)
        if env:
            e.update(env)
        p = subprocess.Popen(full, stdout=fh, stderr=subprocess.STDOUT, env=e,
                             stdin=subprocess.DEVNULL)
        # `ip netns exec` execs the command in place: p.pid is the daemon itself.
        with open(self.pidfile, "a") as f:
            f.write(f"{p.pid} {start_time(p.pid)}\n")
        self.procs.append((p, name, fh))
        return p

    def stop(self, p, timeout=8.0):
        """SIGTERM, then SIGKILL after timeout; by PID only."""
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log(f"pid {p.pid} ignored SIGTERM for {timeout}s: SIGKILL")
                p.kill()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        for i, (q, _, fh) in enumerate(self.procs):
            if q is p:
                fh.close()
                del self.procs[i]
                break

    def stop_all(self):
        for p, _, _ in list(reversed(self.procs)):
            self.stop(p)

    # ---- commands ----------------------------------------------------------------
    def run(self, ns, argv, timeout=15, check=True, env=None):
        full = ["ip", "netns", "exec", ns] + argv if ns else argv
        e = dict(os.environ)
        if env:
            e.update(env)
        r = subprocess.run(full, capture_output=True, text=True, timeout=timeout, env=e)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(full)}: exit {r.returncode}: "
                               f"{(r.stderr or r.stdout).strip()[:400]}")
        return r

    def sh(self, ns, script, timeout=15):
        return self.run(ns, ["sh", "-ec", script], timeout=timeout)

    # ---- topology ----------------------------------------------------------------
    def netns_up(self):
        self.netns_down()
        self.run(None, ["ip", "netns", "add", self.a])
        self.ns_up = True
        self.run(None, ["ip", "netns", "add", self.b])
        self.sh(self.a, f"ip link add veth-a type veth peer name veth-b netns {self.b}\n"
                        f"ip addr add {VETH_A}/24 dev veth-a\n"
                        "ip link set veth-a up\nip link set lo up")
        self.sh(self.b, f"ip addr add {VETH_B}/24 dev veth-b\n"
                        "ip link set veth-b up\nip link set lo up")
        wait_for(lambda: self.run(self.a, ["ping", "-n", "-c1", "-W1", VETH_B],
                                  check=False).returncode == 0, 10, "veth ping")

    def netns_down(self):
        for ns in (self.a, self.b):
            r = self.run(None, ["ip", "netns", "pids", ns], check=False)
            if r.returncode == 0:
                for pid in r.stdout.split():
                    # Only processes inside our own namespaces: started by this run.
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except (ProcessLookupError, ValueError):
                        pass
                self.run(None, ["ip", "netns", "del", ns], check=False)
        self.ns_up = False


def start_time(pid):
    """Field 22 of /proc/PID/stat: tells a recorded PID from a reused one."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
        return s[s.rindex(")") + 2:].split()[19]
    except (FileNotFoundError, IndexError):
        return "?"


def wait_for(pred, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}")


# ---- measurements ---------------------------------------------------------------------
def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                s = f.read()
        except FileNotFoundError:
            continue
        fields = s[s.rindex(")") + 2:].split()
        # fields[0] is state (field 3); utime=14, stime=15, cutime=16, cstime=17
        total += sum(int(fields[i - 3]) for i in (14, 15, 16, 17))
    return total / CLK_TCK


def peak_rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return None


def parse_ping(out):
    m = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms", out)
    if not m:
        return None
    loss = re.search(r"([\d.]+)% packet loss", out)
    return {"min": float(m.group(1)), "avg": float(m.group(2)), "max": float(m.group(3)),
            "mdev": float(m.group(4)), "loss_pct": float(loss.group(1)) if loss else None}


def ping_once(ctx, addr):
    return ctx.run(ctx.a, ["ping", "-n", "-c1", "-W1", addr], check=False,
                   timeout=5).returncode == 0


def wait_ping(ctx, addr, timeout):
    """Seconds until the first ping through the tunnel succeeds (polling)."""
    wait_for(lambda: ping_once(ctx, addr), timeout, f"a ping to {addr}", interval=0.01)


def iperf(ctx, addr, streams, reverse, seconds, tunnel_pids=(), ping_during=False):
    """One iperf3 TCP test a -> addr (in b); a fresh one-off server each time."""
    srv = ctx.spawn(ctx.b, ["iperf3", "-s", "-1", "-B", addr, "-p", str(IPERF_PORT)],
                    "iperf3-server")
    try:
        wait_for(lambda: str(IPERF_PORT) in ctx.run(
            ctx.b, ["ss", "-Hltn", f"sport = :{IPERF_PORT}"], check=False).stdout,
            10, "the iperf3 server to listen")
        cmd = ["ip", "netns", "exec", ctx.a, "iperf3", "-c", addr, "-p", str(IPERF_PORT),
               "-t", str(seconds), "-J", "--connect-timeout", "5000"]
        if streams > 1:
            cmd += ["-P", str(streams)]
        if reverse:
            cmd.append("-R")
        cpu0 = cpu_seconds(tunnel_pids)
        cli = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        pinger = None
        if ping_during:
            time.sleep(1.0)
            n = max(3, int((seconds - 1.5) / 0.2))
            pinger = subprocess.Popen(["ip", "netns", "exec", ctx.a, "ping", "-n", "-c",
                                       str(n), "-i", "0.2", "-W", "2", addr],
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True)
        try:
            out, err = cli.communicate(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            cli.kill()
            cli.communicate()
            raise RuntimeError("iperf3 client timed out")
        finally:
            if pinger is not None:
                try:
                    pout, _ = pinger.communicate(timeout=seconds + 10)
                except subprocess.TimeoutExpired:
                    pinger.kill()
                    pout, _ = pinger.communicate()
        cpu1 = cpu_seconds(tunnel_pids)
        try:
            j = json.loads(out)
        except json.JSONDecodeError:
            raise RuntimeError(f"iperf3 gave no JSON: {err.strip()[:300]}")
        if "error" in j:
            raise RuntimeError(f"iperf3: {j['error']}")
        rx = j["end"]["sum_received"]
        res = {"bps": rx["bits_per_second"], "bytes": rx["bytes"],
               "seconds": rx["seconds"],
               "retransmits": j["end"].get("sum_sent", {}).get("retransmits"),
               "cpu_s": cpu1 - cpu0}
        if pinger is not None:
            res["ping_loaded"] = parse_ping(pout)
        return res
    finally:
        try:
            srv.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        ctx.stop(srv, timeout=2)


def profile(ctx, sysm, target, seconds, out):
    """One more 1-stream -> test, not reported as a figure, with `perf record` (software
    cpu-clock, call graphs) on each end's tunnel processes; the reports, flat by symbol,
    go to out/perf-<key>-<side>.txt and the recordings beside them (.data), for
    `perf annotate -i` afterwards. Returns the reports' file names."""
    files = {}
    recs = []
    for side, pids in (("client", sysm.client_pids), ("server", sysm.server_pids)):
        if not pids:
            continue
        data = ctx.tmp / f"perf-{sysm.key}-{side}.data"
        graph = os.environ.get("BENCH_PERF_CALLGRAPH", "fp")
        rec = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "999",
                                "--call-graph", graph, "-o", str(data), "-p", ",".join(str(p) for p in pids),
                                "--", "sleep", str(seconds)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        recs.append((side, data, rec))
    time.sleep(0.3)
    iperf(ctx, target, 1, False, seconds)
    for side, data, rec in recs:
        try:
            _, err = rec.communicate(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            rec.kill()
            rec.communicate()
            continue
        if rec.returncode != 0 or not data.exists():
            files[side] = f"perf record failed: {err.strip()[:200]}"
            continue
        rep = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children",
                              "-g", "none", "--sort", "dso,sym", "--percent-limit", "0.7"],
                             capture_output=True, text=True, timeout=300)
        name = f"perf-{sysm.key}-{side}.txt"
        (out / name).write_text(rep.stdout)
        shutil.copyfile(data, out / f"perf-{sysm.key}-{side}.data")
        files[side] = name
    return files


# ---- systems ---------------------------------------------------------------------------
class System:
    """start() brings the tunnel up in fresh namespaces and returns the target address."""
    key = name = ""

    def __init__(self, ctx):
        self.ctx = ctx
        self.client_pids = []
        self.server_pids = []
        self.connect_s = None
        self.extra = {}
        self.iface = None  # the tunnel interface in namespace a

    def available(self):
        return None  # or a reason to skip

    def start(self):
        raise NotImplementedError

    def pids(self):
        return self.server_pids + self.client_pids


class Bare(System):
    key, name = "bare", "bare veth (ceiling)"

    def start(self):
        self.iface = "veth-a"
        return VETH_B


class Aura(System):
    def __init__(self, ctx, carrier, exe=None, tag="", plain=False, cover=None):
        """`exe`: the aura binary (default --aura); `tag`: suffix of the key and name, for a
        second binary measured in the same run (--aura-base); `plain`: a deployment with
        the camouflage off (server-init --disable-knock, padding_profile = 1), for
        --camo-pairs; `cover`: the client's cover profile ("off" included), in a
        deployment that grants any budget, for --cover-profiles."""
        super().__init__(ctx)
        self.carrier = carrier
        self.exe = exe or ctx.args.aura
        self.tag = tag
        self.plain = plain
        self.cover = cover
        self.key = f"aura-{carrier}{'-' + tag.replace(' ', '') if tag else ''}"
        self.iface = "aura0"
        self.name = (f"Aura {carrier.upper() if carrier != 'tls' else 'TLS/TCP'}"
                     f"{' (' + tag + ')' if tag else ''}")

    def available(self):
        if not self.exe or not os.access(self.exe, os.X_OK):
            return "no aura binary (build failed?)"
        return None

    def deployment(self):
        """One deployment (PKI, server.toml, client bundle) per binary, shared by the
        carriers."""
        c = self.ctx
        d = c.tmp / ("aura-base" if self.exe != c.args.aura else "aura")
        if self.plain:
            d = d.with_name(d.name + "-plain")
        if self.cover:
            d = d.with_name(d.name + "-cover")
        if (d / "server.toml").exists():
            return d
        exe = self.exe
        c.run(None, [exe, "server-init", "--dir", str(d), "--name", "bench.test",
                     "--listen", VETH_B] + (["--disable-knock"] if self.plain else [])
              + (["--enable-cover-traffic"] if self.cover else []),
              timeout=30)
        c.run(None, [exe, "provision-client", "--dir", str(d), "--id", "c", "--server",
                     VETH_B, "--out", str(d / "c")], timeout=30)
        if self.plain:
            for f in (d / "server.toml", d / "c" / "client.toml"):
                f.write_text(set_key(f.read_text(), "[transport]", "padding_profile", "1"))
        st = (d / "server.toml").read_text()
        st = set_key(st, "[server]", "admin_socket", json.dumps(str(c.tmp / "s.sock")))
        if self.cover:
            # Each profile at its own default budget, whatever it asks.
            st = set_key(st, "[server.cover]", "max_budget_percent", "100")
            st = set_key(st, "[server.cover]", "total_budget_percent", "100")
        if re.search(r"^\[server\.nat\]", st, re.M):
            st = set_key(st, "[server.nat]", "auto", "false")
        else:
            st += "\n[server.nat]\nauto = false\n"
        (d / "server.toml").write_text(st)
        return d

    def start(self):
        c = self.ctx
        d = self.deployment()
        ct = (d / "c" / "client.toml").read_text()
        ct = set_key(ct, "[client]", "admin_socket", json.dumps(str(c.tmp / "c.sock")))
        ct = set_key(ct, "[transport]", "carriers", f'["{self.carrier}"]')
        if self.cover:
            ct = set_key(ct, "[transport]", "cover", json.dumps(self.cover))
        (d / "c" / "client.toml").write_text(ct)
        for s in ("s.sock", "c.sock"):
            (c.tmp / s).unlink(missing_ok=True)
        srv = c.spawn(c.b, [self.exe, "server", "--config", str(d / "server.toml")],
                      f"{self.key}-server")
        self.server_pids.append(srv.pid)
        wait_for(lambda: srv.poll() is not None or c.run(
            c.b, ["ip", "-br", "addr", "show"], check=False).stdout.find("10.77.0.1") >= 0,
            15, "the aura server's TUN")
        if srv.poll() is not None:
            raise RuntimeError("aura server exited at start (see its log)")
        t0 = time.monotonic()
        cli = c.spawn(c.a, [self.exe, "client", "--config", str(d / "c" / "client.toml")],
                      f"{self.key}-client")
        self.client_pids.append(cli.pid)
        wait_ping(c, "10.77.0.1", 20)
        self.connect_s = time.monotonic() - t0
        # The carrier actually in use, from the client's admin socket.
        r = c.run(None, [self.exe, "status", "--socket", str(c.tmp / "c.sock"), "--json"],
                  check=False, timeout=10)
        if '"connected"' not in r.stdout:
            raise RuntimeError(f"aura status does not say connected: {r.stdout[:300]}")
        m = re.search(r'"carrier"\s*:\s*"(\w+)"', r.stdout)
        if m:
            self.extra["carrier_in_use"] = m.group(1)
            if m.group(1).lower() != self.carrier:
                raise RuntimeError(f"connected over {m.group(1)}, not {self.carrier}")
        return "10.77.0.1"


class AuraCircuit(Aura):
    """Aura through a 2-hop circuit: the client in a dials the relay (entry), which runs in
    a too (one server per namespace, and a client and a server may share one), and
    extends to the exit, the usual server in b. The client encrypts each packet twice;
    the relay opens the outer layer and forwards the inner datagram over UDP across the
    veth. The relay has its own TUN (aura1) and pool, which the circuit does not use; its
    CPU and memory count with the client's."""

    def __init__(self, ctx):
        super().__init__(ctx, "udp")
        self.key, self.name = "aura-circuit", "Aura UDP, 2-hop circuit"

    def start(self):
        c = self.ctx
        d = self.deployment()
        cd = d.with_name(d.name + "-circuit")
        if not (cd / "relay.toml").exists():
            cd.mkdir(exist_ok=True)
            c.run(None, [self.exe, "pki", "--dir", str(d / "pki"), "issue-server",
                         "--name", "relay.test"], timeout=30)
            st = (d / "server.toml").read_text()
            rl = st.replace('"pki/', f'"{d / "pki"}/')
            rl = rl.replace("servers/bench.test.", "servers/relay.test.")
            rl = set_key(rl, "[server]", "name", '"relay.test"')
            rl = set_key(rl, "[server]", "listen", json.dumps(VETH_A))
            rl = set_key(rl, "[server]", "admin_socket", json.dumps(str(c.tmp / "r.sock")))
            rl = set_key(rl, "[server.pool]", "cidr", '"10.78.0.0/24"')
            if re.search(r"^\[tunnel\]", rl, re.M):
                rl = set_key(rl, "[tunnel]", "name", '"aura1"')
            else:
                rl += '\n[tunnel]\nname = "aura1"\n'
            rl += f'\n[server.relay]\nenabled = true\nallow_extend_to = ["{VETH_B}:8443"]\n'
            (cd / "relay.toml").write_text(rl)
            ct = (d / "c" / "client.toml").read_text()
            ct = set_key(ct, "[client]", "admin_socket", json.dumps(str(c.tmp / "c.sock")))
            ct = set_key(ct, "[transport]", "carriers", '["udp"]')
            for f in ("ca.crt", "client.crt", "client.key", "crl.pem", "knock.key"):
                ct = ct.replace(f'"{f}"', json.dumps(str(d / "c" / f)))
            ct += (f'\n[client.circuit]\nenabled = true\nentry = "{VETH_A}"\n'
                   'entry_name = "relay.test"\n')
            (cd / "client.toml").write_text(ct)
        for s in ("s.sock", "r.sock", "c.sock"):
            (c.tmp / s).unlink(missing_ok=True)
        for name, ns, conf, tun in (("exit", c.b, d / "server.toml", "10.77.0.1"),
                                    ("relay", c.a, cd / "relay.toml", "10.78.0.1")):
            srv = c.spawn(ns, [self.exe, "server", "--config", str(conf)],
                          f"{self.key}-{name}")
            (self.server_pids if name == "exit" else self.client_pids).append(srv.pid)
            wait_for(lambda: srv.poll() is not None or c.run(
                ns, ["ip", "-br", "addr", "show"], check=False).stdout.find(tun) >= 0,
                15, f"the aura {name}'s TUN")
            if srv.poll() is not None:
                raise RuntimeError(f"aura {name} exited at start (see its log)")
        t0 = time.monotonic()
        cli = c.spawn(c.a, [self.exe, "client", "--config", str(cd / "client.toml")],
                      f"{self.key}-client")
        self.client_pids.append(cli.pid)
        wait_ping(c, "10.77.0.1", 20)
        self.connect_s = time.monotonic() - t0
        r = c.run(None, [self.exe, "status", "--socket", str(c.tmp / "c.sock"), "--json"],
                  check=False, timeout=10)
        if '"connected"' not in r.stdout or "relay.test" not in r.stdout:
            raise RuntimeError(f"aura status shows no circuit: {r.stdout[:300]}")
        self.extra["carrier_in_use"] = "udp (2 hops)"
        return "10.77.0.1"


def set_key(text, table, key, value):
    """key = value as the first line of [table], replacing an existing key there."""
    out, cur, found = [], "", False
    for line in text.splitlines():
        t = line.strip()
        if t.startswith("["):
            cur = t
        if cur == table and re.match(rf"^{re.escape(key)}\s*=", t):
            continue
        out.append(line)
        if t == table:
            out.append(f"{key} = {value}")
            found = True
    if not found:
        raise RuntimeError(f"no {table} table in the generated configuration")
    return "\n".join(out) + "\n"


def wg_keys(c, prefix):
    """A WireGuard key pair per side: {side: (private key file, public key)}."""
    keys = {}
    for side in ("a", "b"):
        priv = c.run(None, ["wg", "genkey"]).stdout.strip()
        pub = subprocess.run(["wg", "pubkey"], input=priv, capture_output=True,
                             text=True, check=True, timeout=5).stdout.strip()
        path = c.tmp / f"{prefix}-{side}.key"
        path.write_text(priv + "\n")
        path.chmod(0o600)
        keys[side] = (path, pub)
    return keys


class WireGuardUserspace(System):
    """wireguard-go or boringtun-cli, configured by wg(8) over their UAPI sockets."""
    WG_A, WG_B, PORT = "10.98.0.1", "10.98.0.2", 51820

    def __init__(self, ctx, impl):
        super().__init__(ctx)
        self.impl = impl
        self.key = impl
        self.name = {"wireguard-go": "wireguard-go", "boringtun": "boringtun"}[impl]
        # UAPI sockets live in /var/run/wireguard, shared by all namespaces: unique names.
        n = os.getpid()
        self.ifa, self.ifb = f"bw{n}a", f"bw{n}b"
        self.iface = self.ifa

    def available(self):
        if not shutil.which("wg"):
            return "wg (wireguard-tools) not installed"
        if self.impl == "wireguard-go" and not shutil.which("wireguard-go"):
            return "wireguard-go not installed"
        if self.impl == "boringtun" and not self.ctx.args.boringtun:
            return "boringtun-cli not installed (cargo install failed?)"
        return None

    def daemon(self, ns, ifname):
        if self.impl == "wireguard-go":
            return self.ctx.spawn(ns, ["wireguard-go", ifname], f"{self.key}-{ifname}",
                                  env={"WG_PROCESS_FOREGROUND": "1", "LOG_LEVEL": "error"})
        return self.ctx.spawn(ns, [self.ctx.args.boringtun, "--foreground",
                                   "--disable-drop-privileges", ifname],
                              f"{self.key}-{ifname}", env={"WG_LOG_LEVEL": "error"})

    def wait_sock(self, p, ifname):
        sock = Path(f"/var/run/wireguard/{ifname}.sock")
        wait_for(lambda: p.poll() is not None or sock.exists(), 10, f"{sock}")
        if p.poll() is not None:
            raise RuntimeError(f"{self.key} exited at start (see its log)")

    def start(self):
        c = self.ctx
        keys = wg_keys(c, "wg")
        srv = self.daemon(c.b, self.ifb)
        self.server_pids.append(srv.pid)
        self.wait_sock(srv, self.ifb)
        c.run(c.b, ["wg", "set", self.ifb, "private-key", str(keys["b"][0]), "listen-port",
                    str(self.PORT), "peer", keys["a"][1], "allowed-ips", f"{self.WG_A}/32"])
        # MTU 1420 as wg-quick sets it (boringtun would keep its TUN at 1500).
        c.sh(c.b, f"ip addr add {self.WG_B}/24 dev {self.ifb}\n"
                  f"ip link set {self.ifb} mtu 1420 up")
        t0 = time.monotonic()
        cli = self.daemon(c.a, self.ifa)
        self.client_pids.append(cli.pid)
        self.wait_sock(cli, self.ifa)
        c.run(c.a, ["wg", "set", self.ifa, "private-key", str(keys["a"][0]), "listen-port",
                    str(self.PORT), "peer", keys["b"][1], "allowed-ips", f"{self.WG_B}/32",
                    "endpoint", f"{VETH_B}:{self.PORT}"])
        c.sh(c.a, f"ip addr add {self.WG_A}/24 dev {self.ifa}\n"
                  f"ip link set {self.ifa} mtu 1420 up")
        wait_ping(c, self.WG_B, 20)
        self.connect_s = time.monotonic() - t0
        return self.WG_B


class WireGuardKernel(System):
    """The in-kernel WireGuard, where the kernel has it (skipped otherwise)."""
    key, name = "wireguard-kernel", "WireGuard (kernel)"
    WG_A, WG_B, PORT = "10.98.0.1", "10.98.0.2", 51820

    def available(self):
        return None if shutil.which("wg") else "wg (wireguard-tools) not installed"

    def start(self):
        c = self.ctx
        self.iface = "wg0"
        r = c.run(c.a, ["ip", "link", "add", "wg0", "type", "wireguard"], check=False)
        if r.returncode != 0:
            raise Skip(f"this kernel has no WireGuard module ({r.stderr.strip()})")
        c.run(c.b, ["ip", "link", "add", "wg0", "type", "wireguard"])
        keys = wg_keys(c, "wgk")
        c.run(c.b, ["wg", "set", "wg0", "private-key", str(keys["b"][0]), "listen-port",
                    str(self.PORT), "peer", keys["a"][1], "allowed-ips", f"{self.WG_A}/32"])
        c.sh(c.b, f"ip addr add {self.WG_B}/24 dev wg0\nip link set wg0 mtu 1420 up")
        t0 = time.monotonic()
        c.run(c.a, ["wg", "set", "wg0", "private-key", str(keys["a"][0]), "listen-port",
                    str(self.PORT), "peer", keys["b"][1], "allowed-ips", f"{self.WG_B}/32",
                    "endpoint", f"{VETH_B}:{self.PORT}"])
        c.sh(c.a, f"ip addr add {self.WG_A}/24 dev wg0\nip link set wg0 mtu 1420 up")
        wait_ping(c, self.WG_B, 20)
        self.connect_s = time.monotonic() - t0
        return self.WG_B


def p256_pki(c, d, server_san=None):
    """A throwaway CA and server and client certificates (P-256, openssl) in d.

    server_san: a subjectAltName for the server certificate (e.g. "IP:10.99.0.2"),
    for clients that check the server's name (quincy, via rustls/webpki)."""
    if (d / "client.crt").exists():
        return d
    d.mkdir(exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    c.run(None, ["openssl", "req", "-x509", *ec, "-keyout", str(d / "ca.key"),
                 "-out", str(d / "ca.crt"), "-days", "2", "-subj", "/CN=bench-ca"])
    for who, eku in (("server", "serverAuth"), ("client", "clientAuth")):
        ext = d / f"{who}.ext"
        text = f"keyUsage=critical,digitalSignature\nextendedKeyUsage={eku}\n"
        if who == "server" and server_san:
            text += f"subjectAltName={server_san}\n"
        ext.write_text(text)
        c.run(None, ["openssl", "req", *ec, "-keyout", str(d / f"{who}.key"),
                     "-out", str(d / f"{who}.csr"), "-subj", f"/CN={who}"])
        c.run(None, ["openssl", "x509", "-req", "-in", str(d / f"{who}.csr"),
                     "-CA", str(d / "ca.crt"), "-CAkey", str(d / "ca.key"),
                     "-CAcreateserial", "-days", "2", "-extfile", str(ext),
                     "-out", str(d / f"{who}.crt")])
    return d


class OpenVPN(System):
    OV_A, OV_B, PORT = "10.97.0.2", "10.97.0.1", 1194

    def __init__(self, ctx, proto):
        super().__init__(ctx)
        self.proto = proto
        self.key = f"openvpn-{proto}"
        self.iface = "ovpn0"
        self.name = f"OpenVPN {proto.upper()}"

    def available(self):
        if not shutil.which("openvpn"):
            return "openvpn not installed"
        if not shutil.which("openssl"):
            return "openssl not installed"
        return None

    def pki(self):
        """A throwaway CA, server and client certificates (P-256)."""
        return p256_pki(self.ctx, self.ctx.tmp / "ovpn")

    def start(self):
        c = self.ctx
        d = self.pki()
        common = ["openvpn", "--dev-type", "tun", "--dev", "ovpn0", "--disable-dco",
                  "--data-ciphers", "AES-256-GCM", "--ca", str(d / "ca.crt"),
                  "--verb", "3", "--ping", "10", "--ping-restart", "60"]
        srv = c.spawn(c.b, common + [
            "--tls-server", "--dh", "none", "--cert", str(d / "server.crt"),
            "--key", str(d / "server.key"), "--local", VETH_B, "--lport", str(self.PORT),
            "--proto", "udp" if self.proto == "udp" else "tcp-server",
            "--ifconfig", self.OV_B, self.OV_A], f"{self.key}-server")
        self.server_pids.append(srv.pid)
        if self.proto == "tcp":
            wait_for(lambda: srv.poll() is not None or str(self.PORT) in c.run(
                c.b, ["ss", "-Hltn", f"sport = :{self.PORT}"], check=False).stdout,
                10, "the openvpn server to listen")
        else:
            wait_for(lambda: srv.poll() is not None or str(self.PORT) in c.run(
                c.b, ["ss", "-Hlun", f"sport = :{self.PORT}"], check=False).stdout,
                10, "the openvpn server to listen")
        if srv.poll() is not None:
            raise RuntimeError("openvpn server exited at start (see its log)")
        t0 = time.monotonic()
        cli = c.spawn(c.a, common + [
            "--tls-client", "--remote-cert-tls", "server", "--cert", str(d / "client.crt"),
            "--key", str(d / "client.key"), "--remote", VETH_B, str(self.PORT),
            "--nobind", "--proto", "udp" if self.proto == "udp" else "tcp-client",
            "--ifconfig", self.OV_A, self.OV_B], f"{self.key}-client")
        self.client_pids.append(cli.pid)
        wait_ping(c, self.OV_B, 30)
        self.connect_s = time.monotonic() - t0
        logtxt = (c.tmp / f"{self.key}-client.log").read_text(errors="replace")
        m = re.findall(r"Data Channel: cipher '([^']+)'", logtxt)
        if m:
            self.extra["cipher"] = m[-1]
            if m[-1] != "AES-256-GCM":
                raise RuntimeError(f"negotiated {m[-1]}, not AES-256-GCM")
        return self.OV_B


class Quincy(System):
    """quincy-server / quincy-client (QUIC datagrams over quinn), TLS mode.

    Everything at quincy's defaults except what the topology needs: MTU 1400 (its
    default), TUN GSO/GRO offload (its default `offload` build feature, always on when
    compiled in), congestion control Cubic, 2 MiB socket buffers, TLS 1.3 with the
    default key exchange (hybrid X25519MLKEM768). Client authentication: the SHA-256
    fingerprint of the client certificate in the users file."""
    key, name = "quincy", "quincy (QUIC)"
    Q_B, PORT = "10.96.0.1", 55555  # server tunnel address (10.96.0.0/24), UDP port

    def __init__(self, ctx):
        super().__init__(ctx)
        self.iface = "qc0"

    def available(self):
        a = self.ctx.args
        if not (a.quincy_client and a.quincy_server):
            return "quincy not installed (BENCH_QUINCY=1 installs it)"
        if not shutil.which("openssl"):
            return "openssl not installed"
        return None

    def deployment(self):
        c = self.ctx
        d = p256_pki(c, c.tmp / "quincy", server_san=f"IP:{VETH_B}")
        r = subprocess.run(["openssl", "x509", "-in", str(d / "client.crt"), "-outform",
                            "DER"], capture_output=True, timeout=10)
        if r.returncode != 0 or not r.stdout:
            raise RuntimeError(f"openssl x509 -outform DER: {r.stderr.decode()[:300]}")
        der = r.stdout
        fp = "sha256:" + hashlib.sha256(der).hexdigest()
        (d / "users.toml").write_text(f'[users.bench]\nauthorized_certs = ["{fp}"]\n')
        q = json.dumps  # TOML basic strings: JSON string syntax is a subset that fits
        (d / "server.toml").write_text(
            'name = "bench"\n'
            'interface_name = "qs0"\n'
            f'bind_address = "{VETH_B}"\n'
            f"bind_port = {self.PORT}\n"
            f'tunnel_network = "{self.Q_B}/24"\n'
            f"users_file = {q(str(d / 'users.toml'))}\n\n"
            "[protocol]\n"
            'mode = "tls"\n'
            f"certificate_file = {q(str(d / 'server.crt'))}\n"
            f"certificate_key_file = {q(str(d / 'server.key'))}\n\n"
            "[log]\n"
            'level = "info"\n')
        (d / "client.toml").write_text(
            f'connection_string = "{VETH_B}:{self.PORT}"\n\n'
            "[protocol]\n"
            'mode = "tls"\n'
            f"trusted_certificate_paths = [{q(str(d / 'ca.crt'))}]\n"
            f"client_certificate_file = {q(str(d / 'client.crt'))}\n"
            f"client_certificate_key_file = {q(str(d / 'client.key'))}\n\n"
            "[network]\n"
            f'interface_name = "{self.iface}"\n\n'
            "[log]\n"
            'level = "info"\n')
        return d

    def start(self):
        c = self.ctx
        d = self.deployment()
        # No QUINCY_* overrides from the caller's environment.
        env = {k: v for k, v in os.environ.items() if not k.startswith("QUINCY_")}
        srv = c.spawn(c.b, [c.args.quincy_server, "--config-path", str(d / "server.toml")],
                      "quincy-server", env=env, clear_env=True)
        self.server_pids.append(srv.pid)
        wait_for(lambda: srv.poll() is not None or (
            self.Q_B in c.run(c.b, ["ip", "-br", "addr", "show"], check=False).stdout
            and str(self.PORT) in c.run(c.b, ["ss", "-Hlun", f"sport = :{self.PORT}"],
                                        check=False).stdout),
            15, "the quincy server's TUN and UDP socket")
        if srv.poll() is not None:
            raise RuntimeError("quincy server exited at start (see its log)")
        t0 = time.monotonic()
        cli = c.spawn(c.a, [c.args.quincy_client, "--config-path", str(d / "client.toml")],
                      "quincy-client", env=env, clear_env=True)
        self.client_pids.append(cli.pid)
        wait_for(lambda: cli.poll() is not None or ping_once(c, self.Q_B), 20,
                 f"a ping to {self.Q_B}", interval=0.01)
        if cli.poll() is not None:
            raise RuntimeError("quincy client exited at start (see its log)")
        self.connect_s = time.monotonic() - t0
        logtxt = (c.tmp / "quincy-client.log").read_text(errors="replace")
        m = re.search(r"Received client address: (\S+)", logtxt)
        if m:
            self.extra["client_address"] = m.group(1)
        # TUN offload (quincy's `offload` feature): a TUN with IFF_VNET_HDR says
        # "vnet_hdr on" in `ip -d link`.
        for side, ns, ifname in (("client", c.a, self.iface), ("server", c.b, "qs0")):
            r = c.run(ns, ["ip", "-d", "link", "show", ifname], check=False)
            m = re.search(r"vnet_hdr (on|off)", r.stdout)
            self.extra[f"tun_vnet_hdr_{side}"] = m.group(1) if m else "?"
        # Not logged by quincy; from its code: TLS 1.3 with AES-256-GCM or ChaCha20 only,
        # both ends list AES-256-GCM first (rustls/aws-lc-rs order).
        self.extra["protocol"] = ("TLS 1.3 (mutual, client certificate fingerprint), "
                                  "key exchange X25519MLKEM768 (quincy default 'hybrid')")
        return self.Q_B


# ---- the run ------------------------------------------------------------------------
def measure(ctx, sysm):
    a = ctx.args
    ctx.netns_up()
    res = {"key": sysm.key, "name": sysm.name, "status": "ok",
           "loadavg_at_start": float(open("/proc/loadavg").read().split()[0])}
    try:
        target = sysm.start()
        res["target"] = target
        if sysm.iface:
            mtu = ctx.run(ctx.a, ["cat", f"/sys/class/net/{sysm.iface}/mtu"], check=False)
            res["mtu"] = int(mtu.stdout) if mtu.returncode == 0 else None
            # TUN offload (IFF_VNET_HDR: GSO/GRO through the TUN) shows as "vnet_hdr on".
            link = ctx.run(ctx.a, ["ip", "-d", "link", "show", sysm.iface], check=False)
            m = re.search(r"vnet_hdr (on|off)", link.stdout)
            res["tun_vnet_hdr"] = m.group(1) if m else None
        res["connect_s"] = sysm.connect_s
        pids = sysm.pids()
        time.sleep(0.3)
        idle = ctx.run(ctx.a, ["ping", "-n", "-c", "10", "-i", "0.2", "-W", "2", target],
                       check=False, timeout=20).stdout
        res["ping_idle"] = parse_ping(idle)
        tests = {}
        tests["fwd1"] = iperf(ctx, target, 1, False, a.seconds, pids, ping_during=True)
        tests["fwd4"] = iperf(ctx, target, 4, False, a.seconds, pids)
        tests["rev1"] = iperf(ctx, target, 1, True, a.seconds, pids)
        tests["rev4"] = iperf(ctx, target, 4, True, a.seconds, pids)
        res["tests"] = tests
        res["ping_loaded"] = tests["fwd1"].pop("ping_loaded", None)
        if pids:
            gb = tests["fwd1"]["bytes"] / 1e9
            res["cpu_s_per_gb"] = tests["fwd1"]["cpu_s"] / gb if gb > 0 else None
            res["rss_kib"] = {"client": sum(peak_rss_kib(p) or 0 for p in sysm.client_pids),
                              "server": sum(peak_rss_kib(p) or 0 for p in sysm.server_pids)}
        if a.perf and pids:
            res["perf"] = profile(ctx, sysm, target, a.seconds, Path(a.out))
        res.update(sysm.extra)
        for p in pids:
            for q, _, _ in ctx.procs:
                if q.pid == p and q.poll() is not None:
                    raise RuntimeError(f"tunnel process {p} died during the run")
    finally:
        ctx.stop_all()
        ctx.netns_down()
    return res


def fmt_gbps(bps):
    return f"{bps / 1e9:.2f}" if bps is not None else "–"


def render_md(results, meta):
    lines = [f"Side-by-side tunnel benchmark, {meta['date']} (UTC), {meta['host']}; "
             f"iperf3 TCP {meta['seconds']} s per test; → = client (a) to server (b), "
             "← = server to client (-R). Throughput in Gbit/s."
             + (" **Interrupted: incomplete.**" if meta.get("interrupted") else ""), "",
             "| system | MTU | 1 stream → | 4 streams → | 1 stream ← | 4 streams ← "
             "| RTT idle ms | RTT loaded ms | CPU s/GB | peak RSS client / server MiB "
             "| connect ms |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        if r["status"] != "ok":
            lines.append(f"| {r['name']} | | {r['status']}: {r.get('reason', '')} "
                         "| | | | | | | | |")
            continue
        t = r["tests"]
        pi, pl = r.get("ping_idle"), r.get("ping_loaded")
        cpu = r.get("cpu_s_per_gb")
        rss = r.get("rss_kib")
        lines.append("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
            r["name"], r.get("mtu") or "–", fmt_gbps(t["fwd1"]["bps"]), fmt_gbps(t["fwd4"]["bps"]),
            fmt_gbps(t["rev1"]["bps"]), fmt_gbps(t["rev4"]["bps"]),
            f"{pi['avg']:.3f}" if pi else "–", f"{pl['avg']:.2f}" if pl else "–",
            f"{cpu:.2f}" if cpu is not None else "–",
            f"{rss['client'] / 1024:.1f} / {rss['server'] / 1024:.1f}" if rss else "–",
            f"{r['connect_s'] * 1000:.0f}" if r.get("connect_s") is not None else "–"))
    lines += ["", "MTU: of the tunnel interface in a. CPU s/GB: user+system CPU seconds of both ends' tunnel processes "
              "(with reaped children) during the 1-stream → test, per 10^9 bytes received "
              "by iperf3; kernel softirq work is not attributed to any process and is not "
              "included. RTT loaded: ping during the 1-stream → test. Connect: client "
              "process start to the first ping answered through the tunnel. "
              f"Load average at start / end: {meta['load_start']} / {meta['load_end']}."]
    return "\n".join(lines) + "\n"


def chart(results, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib missing: no chart")
        return False
    ok = [r for r in results if r["status"] == "ok"]
    if not ok:
        return False
    names = [r["name"] for r in ok]
    series = [("1 stream →", "fwd1"), ("4 streams →", "fwd4"),
              ("1 stream ←", "rev1"), ("4 streams ←", "rev4")]
    width = 0.2
    fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(ok)), 4.8))
    for i, (label, k) in enumerate(series):
        xs = [j + (i - 1.5) * width for j in range(len(ok))]
        ys = [r["tests"][k]["bps"] / 1e9 for r in ok]
        bars = ax.bar(xs, ys, width, label=label, alpha=1.0 if i < 2 else 0.55)
        if i < 2:
            ax.bar_label(bars, fmt="%.2f", fontsize=6, padding=1)
    ax.set_xticks(range(len(ok)))
    ax.set_xticklabels(names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("Gbit/s (iperf3 TCP)")
    ax.set_title("Tunnel throughput, two namespaces on one host")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--pidfile", required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--systems", default="all")
    ap.add_argument("--aura", default="")
    ap.add_argument("--aura-base", default="",
                    help="a second aura binary (e.g. the previous commit's), measured on "
                         "the UDP carrier in the same run, A-B-B-A with the tree's")
    ap.add_argument("--camo-pairs", action="store_true",
                    help="only Aura, each carrier with the camouflage on and off, A-B-B-A")
    ap.add_argument("--cover-profiles", action="store_true",
                    help="only Aura, UDP and TLS, with cover traffic off and each profile")
    ap.add_argument("--base-carrier", default="udp", choices=["udp", "quic", "tls"],
                    help="the carrier --aura-base compares on")
    ap.add_argument("--perf", action="store_true",
                    help="after the tests, profile one more 1-stream test with perf record")
    ap.add_argument("--boringtun", default="")
    ap.add_argument("--quincy-client", default="")
    ap.add_argument("--quincy-server", default="")
    ap.add_argument("--skip-reason", action="append", default=[],
                    help="key=reason for systems run.sh could not install")
    ap.add_argument("--budget", type=int, default=540, help="seconds for all systems")
    args = ap.parse_args()

    def on_term(signum, _frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    ctx = Ctx(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    forced = dict(s.split("=", 1) for s in args.skip_reason)
    systems = [Bare(ctx), Aura(ctx, "udp"), AuraCircuit(ctx), Aura(ctx, "quic"), Aura(ctx, "tls"),
               WireGuardKernel(ctx),
               WireGuardUserspace(ctx, "wireguard-go"), WireGuardUserspace(ctx, "boringtun"),
               OpenVPN(ctx, "udp"), OpenVPN(ctx, "tcp")]
    if args.aura_base:
        # In A-B-B-A order (base, tree, tree, base): on this machine the system that runs
        # second in a pair measures lower whichever it is, so the order is balanced and
        # each binary's two runs are averaged when comparing.
        c = args.base_carrier
        systems[1:2] = [Aura(ctx, c, exe=args.aura_base, tag="base"),
                        Aura(ctx, c), Aura(ctx, c, tag="2"),
                        Aura(ctx, c, exe=args.aura_base, tag="base 2")]
    if args.camo_pairs:
        # Camouflage on against off, per carrier, in A-B-B-A order (on, off, off, on).
        systems = []
        for carrier in ("udp", "quic", "tls"):
            systems += [Aura(ctx, carrier, tag="camo"), Aura(ctx, carrier, tag="plain", plain=True),
                        Aura(ctx, carrier, tag="plain 2", plain=True),
                        Aura(ctx, carrier, tag="camo 2")]
    if args.cover_profiles:
        # Cover traffic off against each profile, UDP and TLS, in one run.
        systems = [Aura(ctx, carrier, tag=f"cover {p}", cover=p)
                   for carrier in ("udp", "tls")
                   for p in ("off", "idle", "bursts", "https")]
    if args.quincy_client or "quincy" in forced:
        systems.append(Quincy(ctx))
    if args.systems != "all":
        want = set(args.systems.split(","))
        systems = [s for s in systems
                   if any(s.key == w or s.key.startswith(w + "-") for w in want)]
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
            "host": os.uname().nodename, "seconds": args.seconds,
            "load_start": open("/proc/loadavg").read().split()[0]}
    results = []
    t_start = time.monotonic()
    meta["interrupted"] = True  # until the loop below finishes
    try:
        for s in systems:
            reason = forced.get(s.key) or s.available()
            if reason:
                log(f"{s.name}: skipped: {reason}")
                results.append({"key": s.key, "name": s.name, "status": "skipped",
                                "reason": reason})
                continue
            if time.monotonic() - t_start > args.budget:
                log(f"{s.name}: skipped: time budget ({args.budget} s) used up")
                results.append({"key": s.key, "name": s.name, "status": "skipped",
                                "reason": "time budget used up"})
                continue
            log(f"{s.name}: starting")
            t0 = time.monotonic()
            try:
                r = measure(ctx, s)
                t = r["tests"]
                log(f"{s.name}: done in {time.monotonic() - t0:.0f}s: "
                    f"→ {fmt_gbps(t['fwd1']['bps'])}/{fmt_gbps(t['fwd4']['bps'])} "
                    f"← {fmt_gbps(t['rev1']['bps'])}/{fmt_gbps(t['rev4']['bps'])} Gbit/s")
            except Skip as e:
                log(f"{s.name}: skipped: {e}")
                r = {"key": s.key, "name": s.name, "status": "skipped", "reason": str(e)}
            except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
                log(f"{s.name}: failed: {e}")
                r = {"key": s.key, "name": s.name, "status": "failed", "reason": str(e)}
            results.append(r)
        meta["interrupted"] = False
    finally:
        ctx.stop_all()
        ctx.netns_down()
        meta["load_end"] = open("/proc/loadavg").read().split()[0]
        meta["elapsed_s"] = round(time.monotonic() - t_start, 1)
        (out / "results.json").write_text(json.dumps({"meta": meta, "results": results},
                                                     indent=2) + "\n")
        md = render_md(results, meta)
        (out / "results.md").write_text(md)
        if chart(results, out / "chart.png"):
            log(f"chart: {out / 'chart.png'}")
        print()
        print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
