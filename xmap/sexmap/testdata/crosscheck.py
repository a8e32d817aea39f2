# Independent cross-check of vectors.json with Python's "cryptography" package (>= 44),
# written from the Noise specification and docs/SEXMAP.md, not from the Go code.
# Usage: python3 crosscheck.py vectors.json   (not run by go test; a reference for other implementations)
import json, sys, hmac, hashlib, struct, base64
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives import hashes, serialization

V = json.load(open(sys.argv[1]))
h = bytes.fromhex
def pub(priv): return X25519PrivateKey.from_private_bytes(priv).public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
def dh(priv, p): return X25519PrivateKey.from_private_bytes(priv).exchange(X25519PublicKey.from_public_bytes(p))
def hkdf32(ikm, info): return HKDF(hashes.SHA256(), 32, None, info).derive(ikm)
def nonce(n): return b"\0"*4 + struct.pack("<Q", n)
def enc(k, n, ad, pt): return ChaCha20Poly1305(k).encrypt(nonce(n), pt, ad)

for kv in V["kdf"]:
    p = kv["params"]
    ikm = Argon2id(salt=h(kv["salt"]), length=32, iterations=p["t"], lanes=p["p"], memory_cost=p["m_kib"]).derive(kv["passphrase"].encode())
    assert ikm.hex() == kv["argon2id"], kv
    lp = hkdf32(ikm, b"SeXMAP/1 login key"); sk = hkdf32(ikm, b"CryptoMail/1 private key seal")
    assert lp.hex() == kv["login_private"] and sk.hex() == kv["seal_key"] and pub(lp).hex() == kv["login_public"]
print("kdf ok")
for f in V["fake_salt"]:
    sec = hkdf32(h(f["server_static_private"]), b"SeXMAP/1 fake salt secret")
    assert sec.hex() == f["server_secret"]
    assert hmac.new(sec, b"fake-salt" + f["address"].encode(), hashlib.sha256).digest()[:16].hex() == f["fake_salt"]
print("fake salt ok")

class SS:
    def __init__(s, name):
        s.h = name.ljust(32, b"\0") if len(name) <= 32 else hashlib.sha256(name).digest()
        s.ck = s.h; s.k = None; s.n = 0
    def mixhash(s, d): s.h = hashlib.sha256(s.h + d).digest()
    def hk(s, ikm, n):
        t = hmac.new(s.ck, ikm, hashlib.sha256).digest()
        o1 = hmac.new(t, b"\x01", hashlib.sha256).digest()
        o2 = hmac.new(t, o1 + b"\x02", hashlib.sha256).digest()
        return o1, o2
    def mixkey(s, ikm): s.ck, s.k = s.hk(ikm, 2); s.n = 0
    def eh(s, pt):
        ct = enc(s.k, s.n, s.h, pt); s.n += 1; s.mixhash(ct); return ct
    def split(s):
        t = hmac.new(s.ck, b"", hashlib.sha256).digest()
        o1 = hmac.new(t, b"\x01", hashlib.sha256).digest()
        o2 = hmac.new(t, o1 + b"\x02", hashlib.sha256).digest()
        return o1, o2

for sv in V["sessions"]:
    ss = SS(sv["protocol_name"].encode())
    ss.mixhash(h(sv["prologue"]))
    spub = h(sv["server_static_public"]); assert pub(h(sv["server_static_private"])) == spub
    assert base64.urlsafe_b64encode(spub).rstrip(b"=").decode() == sv["server_static_public_base64url"]
    ss.mixhash(spub)
    ce, se = h(sv["client_ephemeral_private"]), h(sv["server_ephemeral_private"])
    # message 1: e, es
    m = pub(ce); ss.mixhash(pub(ce)); ss.mixkey(dh(ce, spub)); m += ss.eh(b"")
    first = 0x01 if sv["pattern"] == "NK" else 0x11
    msgs = sv["messages"]
    assert msgs[0]["body"] == (bytes([first]) + m).hex() and msgs[0]["path"] == "/sexmap/handshake"
    assert msgs[0]["headers"]["Content-Type"] == V["content_type"]
    # message 2: e, ee
    m = pub(se); ss.mixhash(pub(se)); ss.mixkey(dh(ce, pub(se))); m += ss.eh(b"")
    assert msgs[1]["body"] == (bytes([first + 1]) + m).hex() and msgs[1]["status"] == 200
    if sv["pattern"] == "XK":
        assert msgs[1]["headers"]["Sexmap-Handshake"] == sv["handshake_id"]
        cs = h(sv["client_static_private"]); assert pub(cs).hex() == sv["client_static_public"]
        payload = sv["address"].encode()
        if sv.get("device_token"):  # SEXMAP.md, Device tokens: address || 0x00 || token
            payload += b"\x00" + h(sv["device_token"])
        m = ss.eh(pub(cs)); ss.mixkey(dh(cs, pub(se))); m += ss.eh(payload)
        assert msgs[2]["body"] == (b"\x13" + m).hex() and msgs[2]["headers"]["Sexmap-Handshake"] == sv["handshake_id"]
        assert msgs[3]["body"] == "14" and msgs[3]["status"] == 200
        nh = 4
    else:
        nh = 2
    assert ss.h.hex() == sv["handshake_hash"]
    c2s, s2c = ss.split()
    assert c2s.hex() == sv["client_to_server_key"] and s2c.hex() == sv["server_to_client_key"]
    sid = h(sv["session_id"])
    assert msgs[nh - 1]["headers"]["Sexmap-Session"] == sv["session_id_header"] == base64.urlsafe_b64encode(sid).rstrip(b"=").decode()
    for i, fr in enumerate(sv["frames"]):
        n = fr["counter"]; c = struct.pack(">Q", n)
        assert fr["request_ad"] == (sid + c).hex() and fr["response_ad"] == (sid + c + b"resp").hex()
        rq = c + enc(c2s, n, sid + c, fr["request"].encode())
        rs = c + enc(s2c, n, sid + c + b"resp", fr["response"].encode())
        assert rq.hex() == fr["request_body"] == msgs[nh + 2*i]["body"], (sv["pattern"], i)
        assert rs.hex() == fr["response_body"] == msgs[nh + 2*i + 1]["body"]
        assert msgs[nh + 2*i]["headers"]["Sexmap-Session"] == sv["session_id_header"] and msgs[nh+2*i]["path"] == "/sexmap"
    print(sv["pattern"], "ok")
