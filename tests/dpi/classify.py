#!/usr/bin/env python3
"""A censor's view of a capture: classify every flow of a pcap with nDPI; print JSON lines.

usage: classify.py FILE.pcap [--cfg PROTO,PARAM,VALUE ...] [--no-heuristics]

Output, one JSON object per line:
  {"type": "meta", "ndpi_version": "5.0.0-...", "nfstream": "6.6.0", "cfg": [...]}
  {"type": "flow", "src", "dst", "l4", "proto", "app", "confidence", "guessed", "sni",
   "ja4", "risks", "risk_ids", "risk_infos", "fully_encrypted", "entropy", "packets"}
`confidence` is nDPI's (DPI, DPI_AGGRESSIVE for a heuristic match, MATCH_BY_PORT for a
port guess, ...); `risk_ids` are NDPI_* names, `risks` their texts, `risk_infos` the
details nDPI attached (e.g. "Obfuscated TLS traffic", "Fully Encrypted").

nDPI comes from the `nfstream` wheel (nfstream 6.6.0 bundles nDPI 5.0). On top of its
defaults this turns on what a censor would: the TLS obfuscation heuristics (plain,
TLS-in-TLS, TLS-in-HTTP: `tls,dpi.heuristics,0x07`) and the fully-encrypted heuristic
(USENIX Security '23, "How the Great Firewall of China Detects and Blocks Fully Encrypted
Traffic"). nfstream has no switch for them and they must be set between nDPI's
allocation and its finalization, so its `setup_dissector` is replaced by a copy that calls
`ndpi_set_config` in between (nfstream's meters are fork()ed on Linux and inherit it).
Run it under `timeout`: when a meter process crashes, nfstream's parent waits forever.
"""
import argparse
import ctypes
import json

import _lib_engine  # nfstream's cffi engine: libndpi and libpcap, statically linked
import nfstream
import nfstream.meter
from _lib_engine import ffi, lib
from nfstream import NFPlugin, NFStreamer

# The engine's own symbols, for the nDPI calls its cffi interface does not declare.
NDPI = ctypes.CDLL(_lib_engine.__file__)
NDPI.ndpi_set_config.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p]
NDPI.ndpi_set_config.restype = ctypes.c_int
NDPI.ndpi_risk2str.argtypes = [ctypes.c_int]
NDPI.ndpi_risk2str.restype = ctypes.c_char_p

RISK_NAMES = ffi.typeof("ndpi_risk_enum").elements  # {number: "NDPI_..."}
CONFIDENCE = ffi.typeof("ndpi_confidence_t").elements  # {number: "NDPI_CONFIDENCE_..."}
CENSOR_CFG = [("tls", "dpi.heuristics", "0x07"), ("", "fully_encrypted_heuristic", "enable")]
CFG = []  # what setup_dissector applies; filled by main() before any meter starts


def setup_dissector(ffi_, lib_, n_dissections, check_only=False):
    """nfstream.engine.setup_dissector, plus ndpi_set_config(CFG) before finalization."""
    if not n_dissections:
        return ffi_.NULL
    checker = ffi_.new("struct dissector_checker *")
    checker.flow_size = ffi_.sizeof("struct ndpi_flow_struct")
    checker.flow_tcp_size = ffi_.sizeof("struct ndpi_flow_tcp_struct")
    checker.flow_udp_size = ffi_.sizeof("struct ndpi_flow_udp_struct")
    dissector = lib_.dissector_init(checker)
    if dissector == ffi_.NULL:
        return dissector
    handle = ctypes.c_void_p(int(ffi_.cast("uintptr_t", dissector)))
    for proto, param, value in CFG:
        rc = NDPI.ndpi_set_config(handle, proto.encode() or None, param.encode(), value.encode())
        if rc != 0:
            lib_.dissector_cleanup(dissector)
            raise SystemExit(f"ndpi_set_config({proto!r}, {param!r}, {value!r}) failed: {rc}")
    if check_only:
        return lib_.dissector_cleanup(dissector)
    lib_.dissector_configure(dissector)  # enables every protocol, ndpi_finalize_initialization
    return dissector


class Risks(NFPlugin):
    """Reads the risks off nDPI's flow state, which nfstream frees right after on_expire."""

    def on_init(self, packet, flow):
        flow.udps.risk_bits, flow.udps.risk_infos = 0, []
        flow.udps.fully_encrypted, flow.udps.entropy = False, None

    def on_expire(self, flow):
        state = flow._C.ndpi_flow
        if state == ffi.NULL:
            return
        infos = [(int(state.risk_infos[i].id), ffi.string(state.risk_infos[i].info).decode(errors="replace"))
                 for i in range(state.num_risk_infos) if state.risk_infos[i].info != ffi.NULL]
        bits = int(state.risk)
        # nDPI sets "Unidirectional Traffic" on the packets it dissects; once dissection
        # stops (a QUIC flow is known from its first packet) the bit goes stale. ndpiReader
        # clears it on the first server-to-client packet it counts; so does this.
        if flow.dst2src_packets:
            bits &= ~(1 << lib.NDPI_UNIDIRECTIONAL_TRAFFIC)
            infos = [(i, text) for i, text in infos if i != lib.NDPI_UNIDIRECTIONAL_TRAFFIC]
        flow.udps.risk_bits, flow.udps.risk_infos = bits, [text for _, text in infos]
        flow.udps.fully_encrypted = bool(state.first_pkt_fully_encrypted)
        flow.udps.entropy = round(float(state.entropy), 3)


def flow_record(f):
    ids = [i for i in range(1, lib.NDPI_MAX_RISK) if f.udps.risk_bits >> i & 1]
    return {
        "type": "flow", "src": f"{f.src_ip}:{f.src_port}", "dst": f"{f.dst_ip}:{f.dst_port}",
        "l4": {6: "TCP", 17: "UDP"}.get(f.protocol, str(f.protocol)),
        "proto": (f.application_name or "Unknown").split(".")[0], "app": f.application_name,
        "confidence": CONFIDENCE.get(f.application_confidence, "?").replace("NDPI_CONFIDENCE_", ""),
        "guessed": bool(f.application_is_guessed),
        "sni": f.requested_server_name or None, "ja4": f.client_fingerprint or None,
        "risks": [NDPI.ndpi_risk2str(i).decode() for i in ids],
        "risk_ids": [RISK_NAMES.get(i, str(i)) for i in ids],
        "risk_infos": f.udps.risk_infos, "fully_encrypted": f.udps.fully_encrypted,
        "entropy": f.udps.entropy, "packets": f.bidirectional_packets,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("pcap")
    ap.add_argument("--cfg", action="append", default=[], metavar="PROTO,PARAM,VALUE",
                    help="an extra ndpi_set_config (PROTO empty for a global knob)")
    ap.add_argument("--no-heuristics", action="store_true", help="nDPI's defaults only")
    args = ap.parse_args()
    CFG.extend([] if args.no_heuristics else CENSOR_CFG)
    CFG.extend(tuple(c.split(",", 2)) for c in args.cfg)
    setup_dissector(ffi, lib, 1, check_only=True)  # a bad --cfg fails here, not in a meter
    nfstream.meter.setup_dissector = setup_dissector
    print(json.dumps({"type": "meta", "ndpi_version": ffi.string(lib.engine_lib_ndpi_version()).decode(),
                      "nfstream": nfstream.__version__, "cfg": [",".join(c) for c in CFG]}), flush=True)
    # 255 packets of dissection (nfstream's most): the TLS heuristics look past the
    # handshake. Flows end with the capture, not on a timeout.
    streamer = NFStreamer(source=args.pcap, n_dissections=255, n_meters=1, udps=[Risks()],
                          idle_timeout=10**6, active_timeout=10**6)
    for f in streamer:
        print(json.dumps(flow_record(f)), flush=True)


if __name__ == "__main__":
    main()
