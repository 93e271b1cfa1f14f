#!/usr/bin/env python3
"""Write fuzz_tls's seed corpus (tests/fuzz/corpus/tls/): python3 tests/fuzz/gen_tls_seeds.py DIR.

Each seed is fuzz_tls's input format (see the harness's header comment): a mode byte, a chunk-size
byte, then the bytes. ClientHellos come from Python's ssl module over memory BIOs (OpenSSL, as
libpsclient sends them); pscope frames are the fuzz_frame seeds' (tests/fuzz/corpus/frame/)."""
import os
import ssl
import sys

here = os.path.dirname(os.path.abspath(__file__))
out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "corpus", "tls")
os.makedirs(out, exist_ok=True)


def client_hello(max_version):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = max_version
    inc, outg = ssl.MemoryBIO(), ssl.MemoryBIO()
    s = ctx.wrap_bio(inc, outg, server_hostname="psd")
    try:
        s.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outg.read()


def frame_seed(name):
    """The frame stream of a fuzz_frame seed: after its flags byte, its chunk sizes (flags bits
    0-3) and its allocation-failure byte (bit 7)."""
    with open(os.path.join(here, "corpus", "frame", name), "rb") as f:
        b = f.read()
    return b[1 + (b[0] & 15) + (1 if b[0] & 0x80 else 0):]


RAW, AFTER_HANDSHAKE_RAW, APPDATA, APPDATA_CLOSE, TLS12 = 0, 1, 2, 3, 4
ping = frame_seed("ping")
seeds = {
    "hello13": (RAW, 255, client_hello(ssl.TLSVersion.TLSv1_3)),
    "hello12": (RAW, 255, client_hello(ssl.TLSVersion.TLSv1_2)),
    "hello13-split": (RAW, 4, client_hello(ssl.TLSVersion.TLSv1_3)),
    "plaintext-ping": (RAW, 255, ping),
    "record-garbage": (AFTER_HANDSHAKE_RAW, 255, b"\x17\x03\x03\x00\x05hello"),
    "plain-alert": (AFTER_HANDSHAKE_RAW, 255, b"\x15\x03\x03\x00\x02\x01\x00"),
    "huge-record": (AFTER_HANDSHAKE_RAW | TLS12, 255, b"\x17\x03\x03\xff\xff" + b"\x00" * 64),
    "ping": (APPDATA, 255, ping),
    "ping12": (APPDATA | TLS12, 255, ping),
    "ping-bytewise": (APPDATA, 0, ping),
    "ping-close": (APPDATA_CLOSE, 255, ping),
    "get-variable": (APPDATA, 255, frame_seed("get-variable")),
    "stream": (APPDATA, 63, frame_seed("stream")),
}
for name, (mode, chunk, body) in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(bytes([mode, chunk]) + body)
print("wrote %d seeds to %s" % (len(seeds), out))
