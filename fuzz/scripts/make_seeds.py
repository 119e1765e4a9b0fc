#!/usr/bin/env python3
"""Writes the seed corpora of the targets added for issue 19 item 3 from the
repository's own test vectors and examples (RFC 9449's example proofs, go-spiffe's
bundle fixtures, the AuthZEN certification cases and example worlds, the README's
configuration snippets, the claims the unit tests use).

Tokens for the raw `client_assertion` and `jwt_svid` targets are signed here with the
fixed Ed25519 key of `fuzz_targets/common/mod.rs` (seed 42 x 32, kid `fuzz-ed`), so
that they verify in the targets. Run from the repository root:
    python3 fuzz/scripts/make_seeds.py
Needs the `cryptography` package.
"""
import base64
import json
import os
import re
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT / "fuzz" / "seeds"
NOW = 1_750_000_000
KEY = Ed25519PrivateKey.from_private_bytes(bytes([42] * 32))


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def js(v) -> bytes:
    return json.dumps(v, separators=(",", ":")).encode()


def sign(header: dict, claims) -> str:
    payload = claims if isinstance(claims, bytes) else js(claims)
    inp = f"{b64(js(header))}.{b64(payload)}"
    return f"{inp}.{b64(KEY.sign(inp.encode()))}"


def write(target: str, name: str, data) -> None:
    d = SEEDS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def nul(*parts) -> bytes:
    return b"\0".join(p if isinstance(p, bytes) else p.encode() for p in parts)


# --- DPoP -------------------------------------------------------------------------
vectors = json.loads((ROOT / "crates/mandate-token/tests/vectors/dpop/rfc9449_example_proofs.json").read_text())
seen = set()
for i, v in enumerate(vectors["vectors"]):
    if v["request_line"] and v["host"]:
        method, target = v["request_line"].split(" ")[:2]
        url = f"https://{v['host']}{target}"
    else:
        method, url = v["claims"]["htm"], v["claims"]["htu"]
    fields = [v["dpop_proof"], method, url]
    if v.get("access_token"):
        fields.append(v["access_token"])
    data = nul(*fields)
    if data not in seen:
        seen.add(data)
        write("dpop", f"rfc9449_{i}", data)
write("dpop", "two_proofs", nul(vectors["vectors"][0]["dpop_proof"] + "," + vectors["vectors"][0]["dpop_proof"]))

AS = "https://as.example/oauth2/token"
proof = {"jti": "j1", "htm": "POST", "htu": AS, "iat": NOW}
write("dpop_signed", "ed25519", b"\0" + nul("{}", js(proof)))
write("dpop_signed", "es256", b"\1" + nul("{}", js(proof)))
write("dpop_signed", "nonce", b"\2" + nul("{}", js(dict(proof, nonce="@NONCE@"))))
write("dpop_signed", "ath", b"\0" + nul("{}", js(dict(proof, htm="GET", htu="https://rs.example/api", ath="@ATH@")), "GET", "https://rs.example/api?x=1", "tok.en-1"))
write("dpop_signed", "htu_normalised", b"\0" + nul("{}", js(dict(proof, htu="HTTPS://AS.Example:443/oauth2/./x/../token")), "POST", "https://as.example/oauth2/token"))
write("dpop_signed", "htu_percent", b"\0" + nul("{}", js(dict(proof, htu="https://[::1]:8443/%7euser/%2f")), "POST", "https://[::1]:8443/~user/%2F"))
write("dpop_signed", "old_iat", b"\0" + nul("{}", js(dict(proof, iat=NOW - 61))))
write("dpop_signed", "private_jwk", b"\0" + nul(js({"jwk": {"kty": "OKP", "crv": "Ed25519", "x": "AA", "d": "AA"}}), js(proof)))
write("dpop_signed", "crit", b"\0" + nul(js({"crit": ["x"], "x": 1, "typ": "JWT"}), js(proof)))

# --- client assertions ------------------------------------------------------------
def assertion(client="agt_fuzz", **extra):
    c = {"iss": client, "sub": client, "aud": AS, "exp": NOW + 60, "iat": NOW, "jti": "j1"}
    c.update(extra)
    return {k: v for k, v in c.items() if v is not None}

H = {"alg": "EdDSA", "kid": "fuzz-ed"}
write("client_assertion", "valid", sign(H, assertion()))
write("client_assertion", "aud_list", sign(H, assertion(aud=["https://x", AS])))
write("client_assertion", "no_kid", sign({"alg": "EdDSA"}, assertion()))
write("client_assertion", "expired", sign(H, assertion(exp=NOW - 100)))
write("client_assertion", "too_long", sign(H, assertion(exp=NOW + 3_600 + 61)))
write("client_assertion", "nbf", sign(H, assertion(nbf=NOW + 30)))
write("client_assertion", "other_client", nul(sign(H, assertion()), "agt_other"))
write("client_assertion", "alg_none", b64(js({"alg": "none"})) + "." + b64(js(assertion())) + ".")
write("client_assertion", "hs256", sign({"alg": "HS256", "kid": "fuzz-ed"}, assertion()))
write("client_assertion", "jku", sign(dict(H, jku="https://evil/jwks"), assertion()))
for name, claims in [
    ("valid", assertion()),
    ("no_jti", assertion(jti=None)),
    ("no_exp", assertion(exp=None)),
    ("sub_differs", assertion(sub="agt_b")),
    ("exp_float", assertion(exp=NOW + 0.5)),
    ("exp_huge", assertion(exp=2**63)),
    ("aud_empty_list", assertion(aud=[])),
]:
    write("client_assertion_signed", name, b"\0" + nul("{}", js(claims)))
write("client_assertion_signed", "es256", b"\1" + nul("{}", js(assertion())))
write("client_assertion_signed", "kid_other", b"\0" + nul(js({"kid": "nobody"}), js(assertion())))

# --- JWT-SVIDs, SPIFFE IDs and bundles --------------------------------------------
SVID_AUD = "https://mandate.example/oauth2/token"
def svid(sub="spiffe://example.org/agents/reporter", **extra):
    c = {"sub": sub, "aud": SVID_AUD, "exp": NOW + 300, "iat": NOW}
    c.update(extra)
    return {k: v for k, v in c.items() if v is not None}

write("jwt_svid", "valid", sign(dict(H, typ="JWT"), svid()))
write("jwt_svid", "typ_jose", sign(dict(H, typ="JOSE"), svid()))
write("jwt_svid", "trust_domain_id", sign(H, svid(sub="spiffe://example.org")))
write("jwt_svid", "unknown_domain", sign(H, svid(sub="spiffe://unknown.org/a")))
write("jwt_svid", "go_spiffe_kid", sign({"alg": "ES256", "kid": "C6vs25welZOx6WksNYfbMfiw9l96pMnD"}, svid(sub="spiffe://domain.test/w")))
write("jwt_svid", "no_kid", sign({"alg": "EdDSA"}, svid()))
for name, claims in [
    ("valid", svid()),
    ("aud_list", svid(aud=["x", SVID_AUD])),
    ("trust_domain_id", svid(sub="spiffe://example.org")),
    ("bad_sub", svid(sub="spiffe://example.org/a/../b")),
    ("expired", svid(exp=NOW - 100)),
    ("nbf_future", svid(nbf=NOW + 100)),
]:
    write("jwt_svid_signed", name, b"\0" + nul("{}", js(claims)))
write("jwt_svid_signed", "es256_typ", b"\1" + nul(js({"typ": "at+jwt"}), js(svid())))

spiffe_test = (ROOT / "crates/mandate-token/tests/spiffe.rs").read_text()
ids = sorted(set(re.findall(r'"((?:spiffe|SPIFFE|Spiffe):[^"]*)"', spiffe_test)))
for i, s in enumerate(ids):
    write("spiffe_id", f"id_{i:02}", s.replace("\\u{0}", "\0").replace("\\n", "\n").replace("\\\\", "\\"))
for i, name in enumerate(["example.org", "a-b_c.9", "Example.org", "example.org:443"]):
    write("spiffe_id", f"td_{i}", name)

testdata = ROOT / "crates/mandate-token/tests/vectors/spiffe/go-spiffe/bundle"
for f in sorted((testdata / "spiffebundle/testdata").glob("*.json")):
    write("spiffe_bundle", f.stem, b"\0" + f.read_bytes())
for f in sorted((testdata / "jwtbundle/testdata").glob("*.json")):
    write("spiffe_bundle", f.stem, b"\1" + f.read_bytes())

# --- AuthZEN ------------------------------------------------------------------------
WORLDS = ["todo", "gateway", "records", "search"]
FAMILY = {"evaluation": 0, "evaluations": 1, "search/subject": 2, "search/resource": 3, "search/action": 4}
suites = json.loads((ROOT / "examples/authzen/suites.json").read_text())
assign = {}
for table in suites.values():
    if isinstance(table, dict):
        assign.update({k: v for k, v in table.items() if isinstance(v, str)})
cases = json.loads((ROOT / "conformance/authzen/certification-cases.json").read_text())["cases"]
picked = {}
for c in cases:
    key = (c["endpoint_family"], assign.get(c["testName"], "todo"))
    picked.setdefault(key, []).append(c)
for (family, world), cs in sorted(picked.items()):
    for c in cs[:3]:
        sel = FAMILY[family] | (WORLDS.index(world if world in WORLDS else "todo") << 3)
        write("authzen", c["testName"], bytes([sel]) + js(c["payload"]))

# --- policies and entities ----------------------------------------------------------
for w in WORLDS:
    d = ROOT / "examples/authzen" / w
    write("policy", w, nul((d / "policies.cedar").read_text(), (d / "schema.cedarschema").read_text()))
    write("policy", w + "_alone", (d / "policies.cedar").read_text())
    write("entities", w, bytes([WORLDS.index(w)]) + (d / "entities.json").read_bytes())
write("policy", "builtin", (ROOT / "crates/mandate-policy/cedar/builtin.cedar").read_text())
write("entities", "empty_no_world", b"\xff[]")

# --- the configuration file ---------------------------------------------------------
readme = (ROOT / "README.md").read_text()
for i, block in enumerate(re.findall(r"```toml\n(.*?)```", readme, re.S)):
    write("config", f"readme_{i}", block)
config_rs = (ROOT / "crates/mandate/src/config.rs").read_text()
for i, lit in enumerate(re.findall(r'file\(\s*"((?:[^"\\]|\\.)*)"', config_rs)):
    write("config", f"test_{i}", lit.encode().decode("unicode_escape"))
write("config", "everything", """listen = "127.0.0.1:9000"
data_dir = "/tmp/mandate-fuzz"
public_url = "https://mandate.example"
shutdown_grace_seconds = 30
max_connections = 1024
header_read_timeout_seconds = 5
[log]
level = "debug"
format = "json"
[mandates]
expiry_sweep_seconds = 10
[policies]
reload_seconds = 2
[tokens]
max_lifetime_seconds = 600
signing_alg = "ES256"
rotate_days = 7
require_dpop = true
dpop_nonce = true
""")

# --- the token endpoint's form --------------------------------------------------------
from urllib.parse import urlencode

FORM = "application/x-www-form-urlencoded"
dpop0 = vectors["vectors"][0]["dpop_proof"]
client_assertion = sign(H, assertion())
for name, flags, ct, pairs in [
    ("client_credentials", 1, "", [("grant_type", "client_credentials"), ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"), ("client_assertion", client_assertion), ("scope", "tool:a tool:b"), ("authorization_details", json.dumps([{"type": "urn:mandate:details", "mandate_id": "mdt_1"}]))]),
    ("token_exchange", 0, FORM + "; charset=UTF-8", [("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"), ("subject_token", "a.b.c"), ("subject_token_type", "urn:ietf:params:oauth:token-type:access_token"), ("actor_token", "d.e.f"), ("actor_token_type", "urn:ietf:params:oauth:token-type:jwt"), ("resource", "https://rs.example/mcp"), ("resource", "https://rs2.example/"), ("audience", "x")]),
    ("authorization_code", 0, "", [("grant_type", "authorization_code"), ("code", "c0de"), ("code_verifier", "v" * 43), ("redirect_uri", "http://127.0.0.1:9/cb"), ("client_id", "mcl_abc")]),
    ("refresh_token", 0, "", [("grant_type", "refresh_token"), ("refresh_token", "rt_1"), ("client_id", "mcl_abc")]),
    ("jwt_bearer", 0, "", [("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", "a.b.c"), ("client_id", "mcl_abc")]),
    ("duplicate", 0, "", [("grant_type", "client_credentials"), ("grant_type", "refresh_token")]),
    ("two_dpop", 3, "", [("grant_type", "client_credentials")]),
    ("json_body", 0, "application/json", [("grant_type", "x")]),
    ("empty_values", 0, "", [("scope", ""), ("scope", ""), ("resource", "")]),
]:
    write("token_form", name, bytes([flags]) + nul(ct, dpop0, dpop0, urlencode(pairs)))
write("token_form", "percent", b"\0" + nul("", "", "", "grant_type=%E2%82%AC&scope=a+b%20c&%zz=1&=x&&"))

# --- Client ID Metadata Documents -----------------------------------------------------
CID = "https://app.example/client.json"
for name, doc in [
    ("minimal", {"client_id": CID, "redirect_uris": ["https://app.example/cb"]}),
    ("full", {"client_id": CID, "client_name": "Test Client", "redirect_uris": ["https://app.example/cb", "http://localhost:9/cb", "http://[::1]:9/cb"], "client_uri": "https://app.example", "scope": "tool:a", "software_id": "s", "software_version": "1", "application_type": "web", "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"], "token_endpoint_auth_method": "none", "dpop_bound_access_tokens": True}),
    ("native", {"client_id": CID, "application_type": "native", "redirect_uris": ["com.example.app:/callback"]}),
    ("other_client", {"client_id": "https://elsewhere.example/c.json", "redirect_uris": ["https://app.example/cb"]}),
    ("no_redirects", {"client_id": CID, "client_name": "x"}),
    ("http_not_loopback", {"client_id": CID, "redirect_uris": ["http://app.example/cb"]}),
    ("loopback_lookalike", {"client_id": CID, "redirect_uris": ["http://127.0.0.1.evil.example/cb"]}),
    ("fragment", {"client_id": CID, "redirect_uris": ["https://app.example/cb#x"]}),
    ("javascript", {"client_id": CID, "redirect_uris": ["javascript:alert(1)"]}),
    ("auth_method", {"client_id": CID, "redirect_uris": ["https://app.example/cb"], "token_endpoint_auth_method": "private_key_jwt"}),
    ("grant", {"client_id": CID, "redirect_uris": ["https://app.example/cb"], "grant_types": ["authorization_code", "password"]}),
    ("control_char", {"client_id": CID, "redirect_uris": ["https://app.example/cb"], "client_name": "bell\u0007"}),
]:
    write("client_metadata", name, nul(CID if doc["client_id"] == CID else "", js(doc)))
write("client_metadata", "duplicate_member", nul("", '{"client_id":"%s","client_id":"%s","redirect_uris":["https://a.example/cb"]}' % (CID, CID)))
for i, cid in enumerate(["mcl_abc", "https://app.example/", "http://127.0.0.1:9/client.json", "https://u@app.example/c", "https://APP.example/c", "https://10.0.0.1/c.json", "https://[::ffff:127.0.0.1]/c.json"]):
    write("client_metadata", f"url_{i}", nul(cid, js({"client_id": cid, "redirect_uris": ["https://app.example/cb"]})))
