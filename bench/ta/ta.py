#!/usr/bin/env python3
"""Traffic-analysis harness (started by bench/ta/run.sh; see docs/TRAFFIC-ANALYSIS.md).

What an observer on the client's link can learn from sizes, directions and timing:

1. Website fingerprinting: a client fetches PAGES distinct local web pages (each an
   index and its resources, of sizes fixed per page), VISITS times each, through the
   tunnel; the observer captures the client's link, cuts the capture into one trace per
   visit, extracts per-trace features and trains a random forest and a 3-NN classifier
   (5-fold stratified cross-validation). Chance is 1/PAGES.
2. Aura or HTTPS: the same visits fetched over plain HTTPS (no tunnel), and the
   classifiers asked which traces are Aura. Chance is 1/2.

Everything runs between two namespaces this run creates and removes (client side a,
server side b, one veth); the web server is a Python HTTPS server in b, the fetcher curl
in a, the capture tcpdump on a's end of the veth.
"""

import argparse
import json
import os
import random
import struct
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from driver import VETH_A, VETH_B, Ctx, log, set_key, wait_for, wait_ping  # noqa: E402

WEB_PORT = 4443
TUNNEL_SERVER = "10.77.0.1"


# ---- the site ---------------------------------------------------------------------------
def make_site(root, pages, seed=1):
    """PAGES directories page<i>/ with index.html naming 3-12 resources of 1-300 KB each,
    sizes fixed by the page number: a visit fetches the same bytes each time."""
    rng = random.Random(seed)
    urls = {}
    for i in range(pages):
        d = root / f"page{i}"
        d.mkdir(parents=True, exist_ok=True)
        names = []
        for j in range(rng.randint(3, 12)):
            name = f"r{j}.bin"
            (d / name).write_bytes(os.urandom(rng.randint(1_000, 300_000)))
            names.append(name)
        body = "<html><body>" + "".join(f'<img src="{n}">' for n in names)
        body += "x" * rng.randint(500, 40_000) + "</body></html>"
        (d / "index.html").write_text(body)
        urls[i] = [f"page{i}/index.html"] + [f"page{i}/{n}" for n in names]
    return urls


WEB_SERVER = r'''
import http.server, ssl, sys, os
os.chdir(sys.argv[1])
class Quiet(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
srv = http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[2])), Quiet)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[3], sys.argv[4])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
'''


# ---- capture ----------------------------------------------------------------------------
def read_pcap(path):
    """(time, signed IP length) of each IPv4 packet: + from the client (VETH_A), - to it."""
    data = Path(path).read_bytes()
    if len(data) < 24:
        return []
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    client = bytes(int(x) for x in VETH_A.split("."))
    out, at = [], 24
    while at + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack(endian + "IIII", data[at:at + 16])
        frame = data[at + 16:at + 16 + incl]
        at += 16 + incl
        ip = frame[14:] if linktype == 1 else frame
        if len(ip) < 20 or ip[0] >> 4 != 4:
            continue
        length = struct.unpack(">H", ip[2:4])[0]
        t = sec + frac / (1e9 if nano else 1e6)
        out.append((t, length if ip[12:16] == client else -length))
    return out


# ---- features ---------------------------------------------------------------------------
SEQ = 60
SIZE_BINS = [0, 100, 200, 400, 600, 800, 1000, 1200, 1300, 1400, 1600, 70000]
GAP_BINS = [0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 1e9]


def features(trace):
    """Per-trace features: counts and bytes per direction, the first SEQ signed sizes,
    a size histogram per direction, an inter-arrival histogram, the duration."""
    sizes = [s for _, s in trace]
    times = [t for t, _ in trace]
    up = [s for s in sizes if s > 0]
    down = [-s for s in sizes if s < 0]
    f = [len(up), len(down), sum(up), sum(down)]
    f += (sizes[:SEQ] + [0] * SEQ)[:SEQ]
    for d in (up, down):
        f += [sum(1 for s in d if lo <= s < hi) for lo, hi in zip(SIZE_BINS, SIZE_BINS[1:])]
    gaps = [b - a for a, b in zip(times, times[1:])]
    f += [sum(1 for g in gaps if lo <= g < hi) for lo, hi in zip(GAP_BINS, GAP_BINS[1:])]
    f.append(times[-1] - times[0] if times else 0.0)
    return f


def cut(packets, windows):
    """The packets of each (start, end) window."""
    out = []
    for start, end in windows:
        out.append([p for p in packets if start <= p[0] <= end])
    return out


# ---- runs -------------------------------------------------------------------------------
def visit_all(c, urls, visits, base, capture_iface, capture_filter, name):
    """Every page VISITS times in a shuffled order, captured; (labels, traces)."""
    pcap = c.tmp / f"{name}.pcap"
    cap = c.spawn(c.a, ["tcpdump", "-i", capture_iface, "-n", "-U", "-B", "32768",
                        "-Z", "root", "-w", str(pcap), capture_filter], f"tcpdump-{name}")
    time.sleep(1.0)
    order = [p for p in urls for _ in range(visits)]
    random.Random(7).shuffle(order)
    windows, labels = [], []
    for page in order:
        args = ["curl", "-sk", "--max-time", "20"]
        for u in urls[page]:
            args += ["-o", "/dev/null", f"{base}/{u}"]
        t0 = time.time()
        c.run(c.a, args, timeout=30)
        t1 = time.time()
        windows.append((t0 - 0.002, t1 + 0.05))
        labels.append(page)
        time.sleep(0.25)
    time.sleep(0.5)
    c.stop(cap)
    traces = cut(read_pcap(pcap), windows)
    # How long the fetches took (the latency cover traffic adds, if any).
    c.fetch_seconds = sum(b - a for a, b in windows) / max(len(windows), 1)
    return labels, traces


def idle_rate(c, capture_iface, capture_filter, name, seconds=10.0):
    """Packets per second on the wire while nothing is fetched (what an observer of an
    idle tunnel sees)."""
    pcap = c.tmp / f"{name}-idle.pcap"
    cap = c.spawn(c.a, ["tcpdump", "-i", capture_iface, "-n", "-U", "-Z", "root", "-w",
                        str(pcap), capture_filter], f"tcpdump-{name}-idle")
    time.sleep(1.0 + seconds)
    c.stop(cap)
    return len(read_pcap(pcap)) / seconds


def classify(X, y, seed=0):
    """Mean 5-fold accuracy of a random forest and of 3-NN (standardized features)."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    rf = RandomForestClassifier(n_estimators=300, random_state=seed)
    knn = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=3))
    return {
        "random_forest": float(cross_val_score(rf, X, y, cv=folds).mean()),
        "knn3": float(cross_val_score(knn, X, y, cv=folds).mean()),
    }


def deploy_aura(c, aura, carrier):
    """server-init (cover traffic granted) and one client bundle for `carrier`."""
    d = c.tmp / "deploy"
    c.run(None, [aura, "server-init", "--dir", str(d), "--name", "ta.test",
                 "--listen", VETH_B, "--enable-cover-traffic"], timeout=30)
    c.run(None, [aura, "provision-client", "--dir", str(d), "--id", "c", "--server",
                 VETH_B, "--out", str(d / "c"), "--cover", "off"], timeout=30)
    st = (d / "server.toml").read_text()
    st = set_key(st, "[server]", "admin_socket", json.dumps(str(c.tmp / "s.sock")))
    st = set_key(st, "[server.nat]", "auto", "false")
    # The most a client may ask for: each profile runs at its own default budget.
    st = set_key(st, "[server.cover]", "max_budget_percent", "100")
    st = set_key(st, "[server.cover]", "total_budget_percent", "100")
    (d / "server.toml").write_text(st)
    ct = (d / "c" / "client.toml").read_text()
    ct = set_key(ct, "[client]", "admin_socket", json.dumps(str(c.tmp / "c.sock")))
    ct = set_key(ct, "[transport]", "carriers", json.dumps([carrier]))
    (d / "c" / "client.toml").write_text(ct)
    mask = c.run(None, [aura, "mask", "show", "--config", str(d / "server.toml"), "--json"],
                 timeout=15)
    return json.loads(mask.stdout)


def start_aura(c, aura, cover):
    d = c.tmp / "deploy"
    path = d / "c" / "client.toml"
    path.write_text(set_key(path.read_text(), "[transport]", "cover", json.dumps(cover)))
    srv = c.spawn(c.b, [aura, "server", "--config", str(d / "server.toml")], f"aura-server-{cover}")
    wait_for(lambda: c.run(c.b, ["ip", "-br", "addr"], check=False).stdout.find(TUNNEL_SERVER) >= 0,
             15, "the aura server's TUN")
    cli = c.spawn(c.a, [aura, "client", "--config", str(path)], f"aura-client-{cover}")
    wait_ping(c, TUNNEL_SERVER, 20)
    return srv, cli


def status(c, aura, sock):
    r = c.run(None, [aura, "status", "--socket", str(c.tmp / sock), "--json"], check=False)
    return json.loads(r.stdout) if r.returncode == 0 else None


def usable(labels, traces):
    return [(y, t) for y, t in zip(labels, traces) if len(t) >= 4]


def volume(kept):
    """Mean bytes on the wire and mean duration per visit."""
    n = max(len(kept), 1)
    return (sum(sum(abs(s) for _, s in t) for _, t in kept) / n,
            sum(t[-1][0] - t[0][0] for _, t in kept) / n)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--aura", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--pidfile", required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--pages", type=int, default=8)
    ap.add_argument("--visits", type=int, default=20)
    ap.add_argument("--cover", default="off",
                    help="comma-separated client [transport] cover profiles, one Aura run each")
    ap.add_argument("--carrier", default="udp", choices=["udp", "tls"],
                    help="the Aura carrier (tls: compared with HTTPS over TCP)")
    args = ap.parse_args()
    c = Ctx(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    site = c.tmp / "site"
    urls = make_site(site, args.pages)
    key, crt = c.tmp / "web.key", c.tmp / "web.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                    "/CN=www.ta.test", "-keyout", str(key), "-out", str(crt)],
                   check=True, capture_output=True)
    (c.tmp / "web.py").write_text(WEB_SERVER)
    covers = [x.strip() for x in args.cover.split(",") if x.strip()]
    result = {"pages": args.pages, "visits": args.visits, "carrier": args.carrier, "runs": {}}
    wire = {"udp": "udp port 8443", "tls": "tcp port 443"}[args.carrier]
    try:
        c.netns_up()
        c.spawn(c.b, [sys.executable, str(c.tmp / "web.py"), str(site), str(WEB_PORT),
                      str(crt), str(key)], "web")
        wait_for(lambda: c.run(c.a, ["curl", "-sk", "-o", "/dev/null", "--max-time", "2",
                                     f"https://{VETH_B}:{WEB_PORT}/page0/index.html"],
                               check=False).returncode == 0, 15, "the web server")
        log("plain HTTPS visits")
        hk = usable(*visit_all(c, urls, args.visits, f"https://{VETH_B}:{WEB_PORT}",
                               "veth-a", f"tcp port {WEB_PORT}", "https"))
        hb, hd = volume(hk)
        result["https"] = {
            "fetch_seconds": c.fetch_seconds,
            "traces": len(hk),
            "packets_per_trace": sum(len(t) for _, t in hk) / max(len(hk), 1),
            "bytes_per_visit": hb, "seconds_per_visit": hd,
            "page_accuracy": classify([features(t) for _, t in hk], [y for y, _ in hk]),
        }
        result["mask"] = deploy_aura(c, args.aura, args.carrier)
        for cover in covers:
            log(f"Aura visits over {args.carrier}, cover {cover}")
            srv, cli = start_aura(c, args.aura, cover)
            keep = usable(*visit_all(c, urls, args.visits,
                                     f"https://{TUNNEL_SERVER}:{WEB_PORT}", "veth-a",
                                     wire, f"aura-{cover}"))
            fetch = c.fetch_seconds
            idle = idle_rate(c, "veth-a", wire, f"aura-{cover}")
            st = status(c, args.aura, "c.sock") or {}
            c.stop(cli)
            c.stop(srv)
            ab, ad = volume(keep)
            X = [features(t) for _, t in keep] + [features(t) for _, t in hk]
            y = [1] * len(keep) + [0] * len(hk)
            result["runs"][cover] = {
                "traces": len(keep),
                "packets_per_trace": sum(len(t) for _, t in keep) / max(len(keep), 1),
                "bytes_per_visit": ab, "seconds_per_visit": ad,
                "fetch_seconds": fetch, "idle_packets_per_second": idle,
                "cover_status": st.get("cover"),
                "page_accuracy": classify([features(t) for _, t in keep],
                                          [y for y, _ in keep]),
                "aura_vs_https_accuracy": classify(X, y),
            }
        base = result["runs"].get("off")
        if base:
            for run in result["runs"].values():
                run["bytes_vs_off"] = run["bytes_per_visit"] / max(base["bytes_per_visit"], 1)
                run["fetch_vs_off"] = run["fetch_seconds"] / max(base["fetch_seconds"], 1e-9)
        result["chance"] = {"page": 1 / args.pages, "aura_vs_https": 0.5}
    finally:
        c.stop_all()
        c.netns_down()
    (out / "ta.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
