#!/usr/bin/env python3
"""Check the encrypted image vector (spec/FORMAT.md §11.8) with code independent
of seedship's Go: Python's hashlib/hmac and `cryptography` (HKDF-SHA-256,
AES-256-GCM, HMAC-SHA-256) and `b3sum --keyed` (BLAKE3). It parses
image/manifest.ssm from the spec alone, checks its hash and MAC, opens the
sealed metadata, opens every sealed chunk with its associated data, compares
the plaintext with source.bin and recomputes every keyed chunk hash.

    python3 format/testdata/aead/check-vector.py

Prints one line per check and exits 1 on the first mismatch."""
import base64, hashlib, hmac, json, os, shutil, struct, subprocess, sys, tempfile
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

here = os.path.dirname(os.path.abspath(__file__))
v = json.load(open(os.path.join(here, "vector.json")))
root, image_id = bytes.fromhex(v["root_key"]), bytes.fromhex(v["image_id"])
mb = open(os.path.join(here, "image", "manifest.ssm"), "rb").read()
src = open(os.path.join(here, "source.bin"), "rb").read()

def check(name, got, want):
    if got != want:
        print(f"MISMATCH {name}: got {got} want {want}"); sys.exit(1)
    print(f"ok {name}")

def hkdf(salt, label):
    return HKDF(hashes.SHA256(), 32, salt or None, label.encode()).derive(root)

Kc, Km, Kmac = (hkdf(image_id, "seedship v1 " + l) for l in ("chunk aead", "metadata aead", "manifest mac"))
Kb, Kh = (hkdf(b"", "seedship v1 " + l) for l in ("block digest", "chunk digest"))

# §6.1 preamble, §6.5 keyed trailer (flags bit 0).
magic, version, flags, hl, nc, ns = struct.unpack("<8sHHIQI", mb[:28])
check("magic, version, flags", (magic, version, flags), (b"SSHIPMAN", 3, 1))
body, trailer = mb[:-72], mb[-72:]
check("manifest length", len(mb), 32 + hl + 56 * nc + 56 * ns + 72)
check("manifest hash", trailer[:32].hex(), hashlib.sha256(body).hexdigest())
check("manifest hash (vector.json)", trailer[:32].hex(), v["manifest_sha256"])
check("manifest MAC", trailer[32:64].hex(), hmac.new(Kmac, body, hashlib.sha256).hexdigest())
check("trailer magic", trailer[64:], b"SSMANEND")

# §11.5 sealed metadata.
hdr = json.loads(mb[32:32 + hl])
check("requires aead, chunk_hash", ("aead" in hdr["requires"], hdr["chunk_hash"]), (True, "blake3-keyed-tree"))
check("no sha256 in the clear", "sha256" in hdr, False)
sealed = base64.b64decode(hdr["encryption"]["metadata"])
meta = AESGCM(Km).decrypt(sealed[:12], sealed[12:], b"SSMETAD1" + image_id + bytes([1]) + bytes(7))
check("sealed metadata", meta.decode(), v["metadata_plaintext"])
check("source sha256", json.loads(meta)["sha256"], hashlib.sha256(src).hexdigest())

def b3keyed(key, data):
    # b3sum 1.2 (Debian 12) reads the key from stdin and the data from a file.
    with tempfile.NamedTemporaryFile() as f:
        f.write(data); f.flush()
        out = subprocess.run(["b3sum", "--keyed", "--no-names", f.name], input=key, capture_output=True, check=True)
    return bytes.fromhex(out.stdout.decode().split()[0])

# §6.3 chunk table, §11.3 sealed payloads, §11.4 keyed digests.
C = hdr["chunk_size"]
table = mb[32 + hl:32 + hl + 56 * nc]
for i in range(nc):
    e = table[56 * i:56 * i + 56]
    h, off, seg, p, kind, codec = e[:32], *struct.unpack("<QIIBB", e[32:50])
    raw = src[i * C:(i + 1) * C]
    if kind == 0:
        check(f"chunk {i} zero: table H", (h, raw.count(0)), (bytes(32), len(raw)))
        continue
    segb = open(os.path.join(here, "image", "data", f"{seg:08d}.seg"), "rb").read()
    fmagic, fcodec, findex, fp, fl = struct.unpack("<4sB3xQII", segb[off:off + 24])
    check(f"chunk {i} frame", (fmagic, fcodec, findex, fp, fl), (b"SSFR", codec, i, p, len(raw)))
    payload = segb[off + 24:off + 24 + p]
    ad = b"SSCHKAD1" + image_id + struct.pack("<QIB", i, len(raw), codec) + bytes(3)
    check(f"chunk {i} opens to the source (codec {codec:#x})", AESGCM(Kc).decrypt(payload[:12], payload[12:], ad) == raw, True)
    if shutil.which("b3sum"):
        leaves = [b3keyed(Kb, raw[k:k + 65536] + struct.pack("<QI", i, k // 65536)) for k in range(0, len(raw), 65536)]
        check(f"chunk {i} keyed H", b3keyed(Kh, struct.pack("<QI", i, len(raw)) + b"".join(leaves)).hex(), h.hex())
