#!/usr/bin/env python3
"""Independent OAuth clients against a running Mandate server.

Nothing here shares code with Mandate: client authentication (private_key_jwt) and the
token requests go through authlib's requests client, DPoP proofs are signed with PyJWT,
and the issued tokens are verified with PyJWT against the published JWK Set.

    oauth_clients.py keygen DIR
        Writes two agents' private keys (agent-a.pem: ES256, agent-b.pem: EdDSA) to
        DIR and prints their public JWKs (with `kid`) as JSON: {"a": {...}, "b": {...}}.

    oauth_clients.py run --url URL --admin-token T --mandate MND \
                         --agent-a AGT --agent-b AGT --keys DIR [--scope "s1 s2"]
        (a) reads the RFC 8414 metadata; (b) agent A gets a DPoP-bound task token for
        the mandate; (c) agent B exchanges it (delegation); (d) both tokens verify
        against the JWKS; (e) a replayed assertion and a widened scope are refused;
        (f) A revokes its token and introspection reports B's token inactive.
        Every option can also come from the environment (MANDATE_URL,
        MANDATE_ADMIN_TOKEN, MANDATE_MANDATE, MANDATE_AGENT_A, MANDATE_AGENT_B,
        MANDATE_KEYS, MANDATE_SCOPE).

Exits 0 when every step passed, 1 on the first failure, 2 when a package is missing.
"""

import argparse
import base64
import hashlib
import json
import os
import sys
import time
import uuid
import warnings

try:
    import jwt
    import requests
    from authlib.common.urls import add_params_to_qs
    from authlib.integrations.base_client import OAuthError
    from authlib.integrations.requests_client import OAuth2Session
    from authlib.oauth2.rfc7523 import PrivateKeyJWT, private_key_jwt_sign
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from joserfc.jwk import ECKey, OKPKey
except ImportError as missing:  # pragma: no cover - exercised by a bare machine
    sys.stderr.write(
        f"missing Python package ({missing}); run "
        "`pip install -r crates/mandate/tests/python/requirements.txt`\n"
    )
    sys.exit(2)

# joserfc warns that RFC 9864 deprecates the polymorphic "EdDSA" name; Mandate (like
# most deployed servers) still speaks it, so the warning is noise here.
warnings.filterwarnings("ignore", message=".*EdDSA is deprecated.*")

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
FORM = {
    "Content-Type": "application/x-www-form-urlencoded;charset=UTF-8",
    "Accept": "application/json",
}
# The agents' client keys: A signs with ES256, B with EdDSA (both algorithms covered).
CLIENT_KEYS = {"a": ("agent-a.pem", "ES256"), "b": ("agent-b.pem", "EdDSA")}


class Failure(Exception):
    """A step did not go as the server's contract says."""


def check(condition, message):
    if not condition:
        raise Failure(message)


def step(label, detail):
    print(f"[ok] {label}: {detail}", flush=True)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# ---------------------------------------------------------------------------- keys


def public_jwk(private_key):
    """The public JWK of a cryptography private key (Ed25519 or P-256), no kid."""
    public = private_key.public_key()
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        raw = public.public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}
    numbers = public.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64url(numbers.x.to_bytes(32, "big")),
        "y": b64url(numbers.y.to_bytes(32, "big")),
    }


def thumbprint(jwk):
    """RFC 7638: SHA-256 over the required members, sorted, without whitespace."""
    required = {"OKP": ("crv", "kty", "x"), "EC": ("crv", "kty", "x", "y")}[jwk["kty"]]
    canonical = json.dumps(
        {k: jwk[k] for k in required}, sort_keys=True, separators=(",", ":")
    )
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def generate(alg):
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP256R1())


def pem(private_key):
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def keygen(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    published = {}
    for who, (name, alg) in CLIENT_KEYS.items():
        key = generate(alg)
        path = os.path.join(out_dir, name)
        with open(path, "wb") as f:
            f.write(pem(key))
        os.chmod(path, 0o600)
        jwk = public_jwk(key)
        jwk.update({"kid": f"{who}-{thumbprint(jwk)[:8]}", "alg": alg, "use": "sig"})
        published[who] = jwk
    print(json.dumps(published))


# -------------------------------------------------------------------------- clients


class ShortPrivateKeyJWT(PrivateKeyJWT):
    """authlib's private_key_jwt, with a 60-second assertion and a fresh `jti` each time.

    authlib's default assertion lives an hour; RFC 7523 §3 leaves the bound to the
    server and Mandate accepts at most five minutes. (Passing `claims=` to
    PrivateKeyJWT would not do: authlib writes the `jti` into that dict, so every
    later assertion would repeat it.)
    """

    def __init__(self, token_endpoint, kid, alg):
        super().__init__(token_endpoint, headers=None, alg=alg)
        self.kid = kid
        self.last_assertion = None

    def sign(self, auth, token_endpoint):
        assertion = private_key_jwt_sign(
            auth.client_secret,
            client_id=auth.client_id,
            token_endpoint=token_endpoint,
            alg=self.alg,
            header={"kid": self.kid},
            claims={"jti": str(uuid.uuid4())},
            expires_in=60,
        )
        self.last_assertion = assertion
        return assertion


class ReplayedAssertion:
    """A client auth method that sends one given assertion, for the replay check."""

    name = "private_key_jwt"

    def __init__(self, assertion):
        self.assertion = assertion

    def __call__(self, auth, method, uri, headers, body):
        body = add_params_to_qs(
            body or "",
            [("client_assertion_type", JWT_BEARER), ("client_assertion", self.assertion)],
        )
        return uri, headers, body


class Agent:
    """One agent: its client key (for authlib) and a DPoP key of its own."""

    def __init__(self, label, client_id, key_path, alg, metadata):
        self.label = label
        self.client_id = client_id
        self.alg = alg
        self.metadata = metadata
        with open(key_path, "rb") as f:
            data = f.read()
        key_class = OKPKey if alg == "EdDSA" else ECKey
        self.client_key = key_class.import_key(data)
        public = public_jwk(serialization.load_pem_private_key(data, password=None))
        self.kid = f"{label}-{thumbprint(public)[:8]}"
        self.auth = ShortPrivateKeyJWT(metadata["token_endpoint"], self.kid, alg)
        self.session = self.new_session()
        # The DPoP key is made here and now, and never leaves this process.
        self.dpop_alg = "ES256" if alg == "EdDSA" else "EdDSA"
        self.dpop_key = generate(self.dpop_alg)
        self.dpop_jwk = public_jwk(self.dpop_key)
        self.dpop_jkt = thumbprint(self.dpop_jwk)

    def new_session(self, auth=None):
        session = OAuth2Session(
            client_id=self.client_id,
            client_secret=self.client_key,
            token_endpoint_auth_method="private_key_jwt",
            revocation_endpoint_auth_method="private_key_jwt",
        )
        session.register_client_auth_method(auth or self.auth)
        return session

    def dpop_proof(self, method, url):
        """An RFC 9449 proof for one request, signed with PyJWT."""
        return jwt.encode(
            {
                "jti": str(uuid.uuid4()),
                "htm": method,
                "htu": url,
                "iat": int(time.time()),
            },
            self.dpop_key,
            algorithm=self.dpop_alg,
            headers={"typ": "dpop+jwt", "jwk": self.dpop_jwk},
        )

    def assertion(self):
        """A fresh private_key_jwt assertion, to present as an actor token."""
        return private_key_jwt_sign(
            self.client_key,
            client_id=self.client_id,
            token_endpoint=self.metadata["token_endpoint"],
            alg=self.alg,
            header={"kid": self.kid},
            claims={"jti": str(uuid.uuid4())},
            expires_in=60,
        )

    def token(self, session=None, dpop=True, **params):
        endpoint = self.metadata["token_endpoint"]
        headers = dict(FORM)
        if dpop:
            headers["DPoP"] = self.dpop_proof("POST", endpoint)
        return (session or self.session).fetch_token(
            endpoint, headers=headers, timeout=30, **params
        )


def refused(call, expected):
    """Runs `call`, which must fail with the OAuth error `expected`; returns its text."""
    try:
        call()
    except OAuthError as e:
        check(
            e.error == expected,
            f"expected {expected}, the server answered {e.error}: {e.description}",
        )
        return e.description or ""
    raise Failure(f"expected {expected}, the request succeeded")


# ---------------------------------------------------------------------------- steps


def verify_token(jwks, token, metadata, audience, jkt):
    """PyJWT: signature by a published key, typ at+jwt, iss, aud, exp; cnf.jkt."""
    key = jwks.get_signing_key_from_jwt(token)
    decoded = jwt.decode_complete(
        token,
        key.key,
        algorithms=["EdDSA", "ES256"],
        audience=audience,
        issuer=metadata["issuer"],
        leeway=5,
        options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
    )
    header, claims = decoded["header"], decoded["payload"]
    check(header.get("typ") == "at+jwt", f"typ is {header.get('typ')!r}, not at+jwt")
    check(claims["exp"] > time.time(), "the token has expired")
    check(claims["exp"] - claims["iat"] <= 3600, "the token lives over an hour")
    check(
        claims.get("cnf", {}).get("jkt") == jkt,
        f"cnf.jkt {claims.get('cnf')} is not the DPoP key's thumbprint {jkt}",
    )
    return header, claims


def introspect(metadata, admin_token, token):
    response = requests.post(
        metadata["introspection_endpoint"],
        data={"token": token},
        headers={"Authorization": f"Bearer {admin_token}", "Accept": "application/json"},
        timeout=30,
    )
    check(response.status_code == 200, f"introspection: {response.status_code} {response.text}")
    return response.json()


def run(args):
    base = args.url.rstrip("/")
    scope = args.scope.split()

    # (a) RFC 8414 metadata.
    response = requests.get(f"{base}/.well-known/oauth-authorization-server", timeout=30)
    check(response.status_code == 200, f"metadata: {response.status_code}")
    metadata = response.json()
    check(metadata["issuer"] == base, f"issuer {metadata['issuer']!r} is not {base!r}")
    for name, path in [
        ("token_endpoint", "/oauth2/token"),
        ("jwks_uri", "/oauth2/jwks"),
        ("introspection_endpoint", "/oauth2/introspect"),
        ("revocation_endpoint", "/oauth2/revoke"),
    ]:
        check(metadata.get(name) == base + path, f"{name} is {metadata.get(name)!r}")
    check(
        "private_key_jwt" in metadata["token_endpoint_auth_methods_supported"],
        "private_key_jwt is not offered",
    )
    check(TOKEN_EXCHANGE in metadata["grant_types_supported"], "no token exchange")
    check(
        {"EdDSA", "ES256"} <= set(metadata["dpop_signing_alg_values_supported"]),
        "DPoP algorithms",
    )
    check(
        "mandate" in metadata["authorization_details_types_supported"],
        "no mandate authorization details",
    )
    step("metadata", f"issuer {metadata['issuer']}, token endpoint {metadata['token_endpoint']}")

    a_path, a_alg = CLIENT_KEYS["a"]
    b_path, b_alg = CLIENT_KEYS["b"]
    agent_a = Agent("a", args.agent_a, os.path.join(args.keys, a_path), a_alg, metadata)
    agent_b = Agent("b", args.agent_b, os.path.join(args.keys, b_path), b_alg, metadata)
    details = json.dumps([{"type": "mandate", "mandate_id": args.mandate}])

    # (b) A: client_credentials + authorization_details + DPoP, private_key_jwt by authlib.
    parent = agent_a.token(grant_type="client_credentials", authorization_details=details)
    check(parent["token_type"] == "DPoP", f"token_type is {parent['token_type']!r}")
    check(parent["scope"].split() == scope, f"scope is {parent['scope']!r}, not {scope}")
    check(0 < int(parent["expires_in"]) <= 300, f"expires_in {parent['expires_in']}")
    check(
        parent["authorization_details"][0]["mandate_id"] == args.mandate,
        "the token's authorization_details name another mandate",
    )
    first_assertion = agent_a.auth.last_assertion
    step(
        "task token",
        f"agent A ({a_alg} client key, {agent_a.dpop_alg} DPoP key): "
        f"token_type {parent['token_type']}, scope {parent['scope']!r}, "
        f"expires_in {parent['expires_in']}",
    )

    # (c) B exchanges A's token: subject = A's token, actor = B's own fresh assertion.
    narrowed = scope[:1]
    child = agent_b.token(
        grant_type=TOKEN_EXCHANGE,
        subject_token=parent["access_token"],
        subject_token_type=ACCESS_TOKEN_TYPE,
        actor_token=agent_b.assertion(),
        actor_token_type=JWT_TOKEN_TYPE,
        scope=" ".join(narrowed),
    )
    check(child["token_type"] == "DPoP", f"child token_type {child['token_type']!r}")
    check(
        child.get("issued_token_type") == ACCESS_TOKEN_TYPE,
        f"issued_token_type {child.get('issued_token_type')!r}",
    )
    check(child["scope"].split() == narrowed, f"child scope {child['scope']!r}")
    step("delegation", f"agent B ({b_alg}) received scope {child['scope']!r} by token exchange")

    # (d) Both verified with PyJWT against the published JWK Set.
    jwks = jwt.PyJWKClient(metadata["jwks_uri"], cache_keys=True)
    audience = f"{base}/mcp"
    header, parent_claims = verify_token(
        jwks, parent["access_token"], metadata, audience, agent_a.dpop_jkt
    )
    check(parent_claims["act"] == {"sub": args.agent_a}, f"act {parent_claims.get('act')}")
    check(parent_claims["client_id"] == args.agent_a, "client_id is not agent A")
    check(parent_claims["mandate"] == args.mandate, "the token names another mandate")
    check(parent_claims["sub"].startswith("hum_"), f"sub {parent_claims['sub']!r}")
    _, child_claims = verify_token(
        jwks, child["access_token"], metadata, audience, agent_b.dpop_jkt
    )
    expected_act = {"sub": args.agent_b, "act": {"sub": args.agent_a}}
    check(child_claims["act"] == expected_act, f"child act {child_claims.get('act')}")
    check(child_claims["sub"] == parent_claims["sub"], "the child token has another subject")
    check(child_claims["client_id"] == args.agent_b, "child client_id is not agent B")
    check(child_claims["jti"] != parent_claims["jti"], "the child reuses the parent's jti")
    step(
        "verified",
        f"alg {header['alg']}, kid {header.get('kid')}, typ at+jwt, aud {audience}; "
        f"cnf.jkt = RFC 7638 thumbprints; child act {json.dumps(child_claims['act'])}",
    )

    # (e) A replayed client assertion, and a scope wider than the parent's.
    replay = agent_a.new_session(ReplayedAssertion(first_assertion))
    why = refused(
        lambda: agent_a.token(
            session=replay,
            grant_type="client_credentials",
            authorization_details=details,
        ),
        "invalid_client",
    )
    step("replayed assertion", f"invalid_client ({why})")
    wider = " ".join(scope + ["admin.everything"])
    why = refused(
        lambda: agent_b.token(
            grant_type=TOKEN_EXCHANGE,
            subject_token=parent["access_token"],
            subject_token_type=ACCESS_TOKEN_TYPE,
            actor_token=agent_b.assertion(),
            actor_token_type=JWT_TOKEN_TYPE,
            scope=wider,
        ),
        "invalid_scope",
    )
    step("widened scope", f"invalid_scope for {wider!r} ({why})")

    # (f) A revokes its token (RFC 7009, authlib, private_key_jwt); the tree goes with it.
    before = introspect(metadata, args.admin_token, child["access_token"])
    check(before.get("active") is True, f"the child was not active: {before}")
    check(before.get("token_type") == "DPoP", f"introspected token_type {before}")
    response = agent_a.session.revoke_token(
        metadata["revocation_endpoint"],
        token=parent["access_token"],
        token_type_hint="access_token",
        timeout=30,
    )
    check(response.status_code == 200, f"revocation: {response.status_code} {response.text}")
    after_parent = introspect(metadata, args.admin_token, parent["access_token"])
    after_child = introspect(metadata, args.admin_token, child["access_token"])
    check(after_parent == {"active": False}, f"the parent is still live: {after_parent}")
    check(after_child == {"active": False}, f"the child is still live: {after_child}")
    why = refused(
        lambda: agent_b.token(
            grant_type=TOKEN_EXCHANGE,
            subject_token=parent["access_token"],
            subject_token_type=ACCESS_TOKEN_TYPE,
            actor_token=agent_b.assertion(),
            actor_token_type=JWT_TOKEN_TYPE,
        ),
        "invalid_grant",
    )
    step("revocation", f"parent revoked by A; introspection: parent and child inactive ({why})")
    print("all OAuth client steps passed")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("keygen", help="write two agents' keys, print their public JWKs")
    gen.add_argument("dir")
    env = os.environ.get
    go = sub.add_parser("run", help="drive the server")
    go.add_argument("--url", default=env("MANDATE_URL"))
    go.add_argument("--admin-token", default=env("MANDATE_ADMIN_TOKEN"))
    go.add_argument("--mandate", default=env("MANDATE_MANDATE"))
    go.add_argument("--agent-a", default=env("MANDATE_AGENT_A"))
    go.add_argument("--agent-b", default=env("MANDATE_AGENT_B"))
    go.add_argument("--keys", default=env("MANDATE_KEYS"))
    go.add_argument("--scope", default=env("MANDATE_SCOPE"), help="the mandate's tools")
    args = parser.parse_args()
    if args.command == "keygen":
        keygen(args.dir)
        return 0
    missing = [k for k, v in vars(args).items() if v is None]
    if missing:
        parser.error(f"missing: {', '.join(missing)}")
    try:
        run(args)
    except Failure as e:
        print(f"[FAIL] {e}", file=sys.stderr)
        return 1
    except OAuthError as e:
        print(f"[FAIL] OAuth error {e.error}: {e.description}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - any surprise fails the run, loudly
        print(f"[FAIL] {type(e).__name__}: {e}", file=sys.stderr)
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
