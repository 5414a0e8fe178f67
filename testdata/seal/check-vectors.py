#!/usr/bin/env python3
"""Check vectors.json with implementations independent of seedship's Go code
(spec/FORMAT.md §11.8): Python's `cryptography` for HKDF-SHA-256,
AES-256-GCM and HMAC-SHA-256, `b3sum --keyed` for BLAKE3, and the `age`
command (when on PATH) for the wrapped keys.

    python3 testdata/seal/check-vectors.py

Prints one line per check and exits 1 on the first mismatch."""
import hashlib, hmac, json, os, shutil, struct, subprocess, sys, tempfile
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

here = os.path.dirname(os.path.abspath(__file__))
v = json.load(open(os.path.join(here, "vectors.json")))
root, image_id = bytes.fromhex(v["root_key"]), bytes.fromhex(v["image_id"])

def check(name, got, want):
    if got != want:
        print(f"MISMATCH {name}: got {got} want {want}"); sys.exit(1)
    print(f"ok {name}")

def hkdf(salt, label):
    return HKDF(hashes.SHA256(), 32, salt or None, label.encode()).derive(root)

per_image = {"seedship v1 chunk aead", "seedship v1 metadata aead", "seedship v1 manifest mac"}
keys = {}
for label, want in v["keys"].items():
    keys[label] = hkdf(image_id if label in per_image else b"", label)
    check(f"key {label}", keys[label].hex(), want)

for c in v["chunks"]:
    ad = b"SSCHKAD1" + image_id + struct.pack("<QIB", c["index"], c["raw_len"], c["codec"]) + bytes(3)
    check(f"chunk {c['index']} ad", ad.hex(), c["ad"])
    nonce = bytes.fromhex(c["nonce"])
    sealed = nonce + AESGCM(keys["seedship v1 chunk aead"]).encrypt(nonce, bytes.fromhex(c["plaintext"]), ad)
    check(f"chunk {c['index']} sealed", sealed.hex(), c["sealed"])

m = v["metadata"]
ad = b"SSMETAD1" + image_id + bytes([1]) + bytes(7)  # kind 1: manifest metadata
check("metadata ad", ad.hex(), m["ad"])
nonce = bytes.fromhex(m["nonce"])
check("metadata sealed", (nonce + AESGCM(keys["seedship v1 metadata aead"]).encrypt(nonce, bytes.fromhex(m["plaintext"]), ad)).hex(), m["sealed"])

mac = hmac.new(keys["seedship v1 manifest mac"], bytes.fromhex(v["manifest_mac"]["body"]), hashlib.sha256).hexdigest()
check("manifest mac", mac, v["manifest_mac"]["mac"])

def b3keyed(key, data):
    # b3sum 1.2 (Debian 12) reads the key from stdin and the data from a file.
    with tempfile.NamedTemporaryFile() as f:
        f.write(data); f.flush()
        out = subprocess.run(["b3sum", "--keyed", "--no-names", f.name], input=key, capture_output=True, check=True)
    return bytes.fromhex(out.stdout.decode().split()[0])

if shutil.which("b3sum"):
    for d in v["digests"]:
        raw = bytes(j % 251 for j in range(d["length"]))
        leaves = []
        for k in range(0, len(raw), 65536):
            leaves.append(b3keyed(keys["seedship v1 block digest"], raw[k:k + 65536] + struct.pack("<QI", d["index"], k // 65536)))
        check(f"digest {d['index']} block 0 full", leaves[0].hex(), d["block_0_full_digest"])
        check(f"digest {d['index']} blocks", [l[:8].hex() for l in leaves], d["block_digests"])
        h = b3keyed(keys["seedship v1 chunk digest"], struct.pack("<QI", d["index"], d["length"]) + b"".join(leaves))
        check(f"digest {d['index']} chunk", h.hex(), d["chunk_digest"])
else:
    print("skip BLAKE3 digests: no b3sum on PATH (Debian: apt-get install b3sum)")

age = shutil.which("age")
if age:
    for w in v["wrapped"]:
        path = os.path.join(here, w["file"])
        for ident in w.get("identities", []):
            out = subprocess.run([age, "-d", "-i", os.path.join(here, ident), path], capture_output=True, check=True).stdout
            check(f"age -d -i {ident} {w['file']}", out.hex(), v["root_key"])
else:
    print("skip wrapped keys: no age on PATH")
