//! JSON Web Keys (RFC 7517, RFC 7518 §6, RFC 8037 §2), parsed strictly.

use std::fmt;

use ring::rand::SystemRandom;
use ring::signature;
use serde_json::{Map, Value};

use crate::error::untrusted;
use crate::{Alg, JoseError, b64url_decode, b64url_encode};

/// Smallest RSA modulus we accept, in bits.
pub(crate) const RSA_MIN_BITS: usize = 2048;
/// Largest RSA modulus we accept, in bits (*ring*'s verification limit).
pub(crate) const RSA_MAX_BITS: usize = 8192;
/// Smallest HMAC key: RFC 7518 §3.2 wants at least the hash size.
const HMAC_MIN_BYTES: usize = 32;
/// Largest HMAC key we take.
const HMAC_MAX_BYTES: usize = 1024;
/// Longest `kid` we take.
const KID_MAX: usize = 1024;
/// Most keys in a JWK Set.
const SET_MAX: usize = 256;

/// Bytes that must not show up in `Debug` output; zeroed (best effort) on drop.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        for b in self.0.iter_mut() {
            *b = 0;
        }
        std::hint::black_box(&self.0);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Curve {
    P256,
    P384,
}

impl Curve {
    fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
        }
    }

    fn coordinate_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RsaPrivate {
    d: Secret,
    p: Secret,
    q: Secret,
    dp: Secret,
    dq: Secret,
    qi: Secret,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Material {
    Ed25519 {
        x: [u8; 32],
        d: Option<Secret>,
    },
    Ec {
        curve: Curve,
        x: Vec<u8>,
        y: Vec<u8>,
        d: Option<Secret>,
    },
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
        private: Option<RsaPrivate>,
    },
    Oct {
        k: Option<Secret>,
    },
}

/// A parsed, validated JSON Web Key.
///
/// Supported: `OKP`/`Ed25519`, `EC`/`P-256` and `P-384`, `RSA` (2048–8192
/// bits), `oct` (HMAC, at least 32 bytes). Public or private. `Debug` never
/// prints private parts.
#[derive(Clone, PartialEq, Eq)]
pub struct Jwk {
    pub(crate) material: Material,
    kid: Option<String>,
    alg: Option<Alg>,
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
}

impl fmt::Debug for Jwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwk")
            .field("kty", &self.kty())
            .field("crv", &self.crv())
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("use", &self.use_)
            .field("key_ops", &self.key_ops)
            .field("private", &self.is_private())
            .field("thumbprint", &self.thumbprint())
            .finish()
    }
}

/// Members that carry key material, per key type. A JWK of one type that
/// carries another type's material is refused rather than ignored.
const MATERIAL_MEMBERS: [&str; 13] = [
    "crv", "x", "y", "d", "n", "e", "p", "q", "dp", "dq", "qi", "oth", "k",
];

fn allowed_material(kty: &str) -> &'static [&'static str] {
    match kty {
        "OKP" => &["crv", "x", "d"],
        "EC" => &["crv", "x", "y", "d"],
        "RSA" => &["n", "e", "d", "p", "q", "dp", "dq", "qi"],
        "oct" => &["k"],
        _ => &[],
    }
}

fn opt_str<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, JoseError> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(JoseError::Malformed(format!(
            "JWK member `{name}` must be a string"
        ))),
    }
}

fn req_str<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<&'a str, JoseError> {
    opt_str(obj, name)?
        .ok_or_else(|| JoseError::Malformed(format!("JWK lacks the required member `{name}`")))
}

/// Decodes a base64url member; the error names the member, never its value.
fn bytes_member(obj: &Map<String, Value>, name: &str) -> Result<Option<Vec<u8>>, JoseError> {
    match opt_str(obj, name)? {
        None => Ok(None),
        Some(s) => b64url_decode(s).map(Some).map_err(|_| {
            JoseError::Malformed(format!("JWK member `{name}` is not strict base64url"))
        }),
    }
}

fn req_bytes(obj: &Map<String, Value>, name: &str) -> Result<Vec<u8>, JoseError> {
    bytes_member(obj, name)?
        .ok_or_else(|| JoseError::Malformed(format!("JWK lacks the required member `{name}`")))
}

fn exact_len(bytes: Vec<u8>, len: usize, name: &str) -> Result<Vec<u8>, JoseError> {
    if bytes.len() == len {
        Ok(bytes)
    } else {
        Err(JoseError::KeyRejected(format!(
            "JWK member `{name}` must be exactly {len} bytes"
        )))
    }
}

/// An unsigned big-endian integer in minimal form (RFC 7518 §2 "Base64urlUInt").
fn uint_member(obj: &Map<String, Value>, name: &str) -> Result<Vec<u8>, JoseError> {
    let b = req_bytes(obj, name)?;
    match b.first() {
        None => Err(JoseError::KeyRejected(format!(
            "JWK member `{name}` is empty"
        ))),
        Some(0) => Err(JoseError::KeyRejected(format!(
            "JWK member `{name}` has a leading zero octet"
        ))),
        Some(_) => Ok(b),
    }
}

fn bit_len(be: &[u8]) -> usize {
    match be.first() {
        None => 0,
        Some(&top) => be.len() * 8 - top.leading_zeros() as usize,
    }
}

/// Which algorithms a key's type and curve permit.
pub(crate) fn algs_for(material: &Material) -> &'static [Alg] {
    match material {
        Material::Ed25519 { .. } => &[Alg::EdDSA],
        Material::Ec {
            curve: Curve::P256, ..
        } => &[Alg::ES256],
        Material::Ec {
            curve: Curve::P384, ..
        } => &[Alg::ES384],
        Material::Rsa { .. } => &[Alg::RS256, Alg::PS256],
        Material::Oct { .. } => &[Alg::HS256],
    }
}

fn ec_point_is_valid(curve: Curve, point: &[u8]) -> bool {
    use ring::agreement;
    let alg = match curve {
        Curve::P256 => &agreement::ECDH_P256,
        Curve::P384 => &agreement::ECDH_P384,
    };
    // ring validates a peer's point (coordinates in range, on the curve)
    // before any arithmetic; an ephemeral agreement is the public door to
    // that check.
    let rng = SystemRandom::new();
    let Ok(mine) = agreement::EphemeralPrivateKey::generate(alg, &rng) else {
        return false;
    };
    let peer = agreement::UnparsedPublicKey::new(alg, point);
    agreement::agree_ephemeral(mine, &peer, |_| ()).is_ok()
}

impl Jwk {
    /// Parses and validates a JWK.
    ///
    /// Refuses: non-objects, unknown or unsupported `kty`/`crv`/`alg`,
    /// members of the wrong type, non-strict base64url, wrong lengths,
    /// EC points off the curve, Ed25519 keys that are not points or are of
    /// small order, private parts that do not match the public ones,
    /// material members of another key type, RSA moduli under 2048 bits or
    /// with the ROCA fingerprint, RSA exponents below 3 or even,
    /// multi-prime RSA, HMAC keys under 32 bytes, an `alg` that does not fit
    /// the key, duplicate `key_ops`, and `use`/`key_ops` that contradict.
    pub fn from_json(v: &Value) -> Result<Jwk, JoseError> {
        Jwk::parse(v, None)
    }

    /// [`Jwk::from_public_json`] of a key expected to be `key`: an Ed25519 `x` equal to
    /// `key`'s is not checked to be a curve point again (`key` passed that check when it
    /// was parsed; the check depends on `x` alone). Everything else is checked as ever.
    pub(crate) fn from_public_json_beside(v: &Value, key: &Jwk) -> Result<Jwk, JoseError> {
        let known = match &key.material {
            Material::Ed25519 { x, .. } => Some(x),
            _ => None,
        };
        Jwk::parse(v, known)?.public_only()
    }

    /// [`Jwk::from_json`]; `known`: an Ed25519 point already known to be valid.
    fn parse(v: &Value, known: Option<&[u8; 32]>) -> Result<Jwk, JoseError> {
        let obj = v
            .as_object()
            .ok_or_else(|| JoseError::Malformed("a JWK must be a JSON object".into()))?;
        let kty = req_str(obj, "kty")?;

        let kid = opt_str(obj, "kid")?.map(str::to_owned);
        if kid.as_ref().is_some_and(|k| k.len() > KID_MAX) {
            return Err(JoseError::KeyRejected("JWK `kid` is too long".into()));
        }
        let use_ = opt_str(obj, "use")?.map(str::to_owned);
        let key_ops = match obj.get("key_ops") {
            None => None,
            Some(Value::Array(items)) => {
                let mut ops: Vec<String> = Vec::with_capacity(items.len());
                for item in items {
                    let Value::String(op) = item else {
                        return Err(JoseError::Malformed(
                            "JWK `key_ops` must be an array of strings".into(),
                        ));
                    };
                    if ops.contains(op) {
                        return Err(JoseError::KeyRejected(
                            "JWK `key_ops` has a duplicate entry".into(),
                        ));
                    }
                    ops.push(op.clone());
                }
                Some(ops)
            }
            Some(_) => {
                return Err(JoseError::Malformed(
                    "JWK `key_ops` must be an array of strings".into(),
                ));
            }
        };
        if let (Some(u), Some(ops)) = (&use_, &key_ops) {
            let signing_ops = ops.iter().all(|o| o == "sign" || o == "verify");
            let any_signing = ops.iter().any(|o| o == "sign" || o == "verify");
            if (u == "sig" && !signing_ops) || (u != "sig" && any_signing) {
                return Err(JoseError::KeyRejected(
                    "JWK `use` and `key_ops` contradict each other".into(),
                ));
            }
        }
        let allowed = allowed_material(kty);
        if let Some(foreign) = MATERIAL_MEMBERS
            .iter()
            .find(|m| obj.contains_key(**m) && !allowed.contains(*m))
        {
            if *foreign == "oth" {
                return Err(JoseError::Unsupported(
                    "multi-prime RSA keys (`oth`)".into(),
                ));
            }
            return Err(JoseError::KeyRejected(format!(
                "JWK of kty {} carries the member `{foreign}`",
                untrusted(kty)
            )));
        }

        let material = match kty {
            "OKP" => parse_okp(obj, known)?,
            "EC" => parse_ec(obj)?,
            "RSA" => parse_rsa(obj)?,
            "oct" => parse_oct(obj)?,
            other => {
                return Err(JoseError::Unsupported(format!(
                    "JWK kty {}",
                    untrusted(other)
                )));
            }
        };

        // The algorithm is judged after the material, so a key that is bad
        // in itself is reported as such whatever it claims to be for.
        let alg = match opt_str(obj, "alg")? {
            None => None,
            Some(s) => Some(s.parse::<Alg>().map_err(|e| match e {
                JoseError::Unsupported(m) => JoseError::Unsupported(format!("JWK alg: {m}")),
                _ => JoseError::KeyRejected(format!("JWK alg {} is refused", untrusted(s))),
            })?),
        };

        if let Some(a) = alg
            && !algs_for(&material).contains(&a)
        {
            return Err(JoseError::KeyRejected(format!(
                "JWK alg {a} does not fit a {} key",
                describe(&material)
            )));
        }

        Ok(Jwk {
            material,
            kid,
            alg,
            use_,
            key_ops,
        })
    }

    /// Like [`Jwk::from_json`], but refuses any private key material
    /// (including symmetric keys): for keys that arrive from outside.
    pub fn from_public_json(v: &Value) -> Result<Jwk, JoseError> {
        Jwk::from_json(v)?.public_only()
    }

    /// This key, refused if it holds private (or secret) material.
    fn public_only(self) -> Result<Jwk, JoseError> {
        if self.is_private() {
            return Err(JoseError::KeyRejected(
                "private key material where a public key is expected".into(),
            ));
        }
        Ok(self)
    }

    /// Parses a JWK Set (`{"keys": [...]}`) strictly: every key must parse,
    /// no two keys may share a `kid`, and public and private (or secret)
    /// keys may not be mixed.
    pub fn set_from_json(v: &Value) -> Result<Vec<Jwk>, JoseError> {
        let keys = v
            .as_object()
            .and_then(|o| o.get("keys"))
            .and_then(Value::as_array)
            .ok_or_else(|| JoseError::Malformed("a JWK Set needs a `keys` array".into()))?;
        if keys.len() > SET_MAX {
            return Err(JoseError::TooLarge);
        }
        let mut out: Vec<Jwk> = Vec::with_capacity(keys.len());
        for k in keys {
            let jwk = Jwk::from_json(k)?;
            if let Some(kid) = jwk.kid()
                && out.iter().any(|o| o.kid() == Some(kid))
            {
                return Err(JoseError::KeyRejected(format!(
                    "JWK Set has two keys with kid {}",
                    untrusted(kid)
                )));
            }
            if out
                .first()
                .is_some_and(|f| f.is_private() != jwk.is_private())
            {
                return Err(JoseError::KeyRejected(
                    "JWK Set mixes public and private keys".into(),
                ));
            }
            out.push(jwk);
        }
        Ok(out)
    }

    /// A copy without private parts. (An `oct` key becomes unusable.)
    pub fn public(&self) -> Jwk {
        let material = match &self.material {
            Material::Ed25519 { x, .. } => Material::Ed25519 { x: *x, d: None },
            Material::Ec { curve, x, y, .. } => Material::Ec {
                curve: *curve,
                x: x.clone(),
                y: y.clone(),
                d: None,
            },
            Material::Rsa { n, e, .. } => Material::Rsa {
                n: n.clone(),
                e: e.clone(),
                private: None,
            },
            Material::Oct { .. } => Material::Oct { k: None },
        };
        Jwk {
            material,
            kid: self.kid.clone(),
            alg: self.alg,
            use_: self.use_.clone(),
            key_ops: self.key_ops.clone(),
        }
    }

    /// The public JWK as JSON. Never emits `d`, `p`, `q`, `dp`, `dq`, `qi` or `k`.
    pub fn to_public_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("kty".into(), self.kty().into());
        match &self.material {
            Material::Ed25519 { x, .. } => {
                m.insert("crv".into(), "Ed25519".into());
                m.insert("x".into(), b64url_encode(x).into());
            }
            Material::Ec { curve, x, y, .. } => {
                m.insert("crv".into(), curve.name().into());
                m.insert("x".into(), b64url_encode(x).into());
                m.insert("y".into(), b64url_encode(y).into());
            }
            Material::Rsa { n, e, .. } => {
                m.insert("n".into(), b64url_encode(n).into());
                m.insert("e".into(), b64url_encode(e).into());
            }
            Material::Oct { .. } => {}
        }
        if let Some(kid) = &self.kid {
            m.insert("kid".into(), kid.clone().into());
        }
        if let Some(alg) = self.alg {
            m.insert("alg".into(), alg.as_str().into());
        }
        if let Some(u) = &self.use_ {
            m.insert("use".into(), u.clone().into());
        }
        if let Some(ops) = &self.key_ops {
            m.insert(
                "key_ops".into(),
                Value::Array(ops.iter().map(|o| o.clone().into()).collect()),
            );
        }
        Value::Object(m)
    }

    /// RFC 7638 thumbprint: base64url(SHA-256) of the required members in
    /// lexicographic order, without whitespace. (For an `oct` key stripped
    /// by [`Jwk::public`], `k` is taken as empty.)
    pub fn thumbprint(&self) -> String {
        // Every value is base64url or a fixed ASCII name: nothing to escape.
        let canonical = match &self.material {
            Material::Ed25519 { x, .. } => format!(
                r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
                b64url_encode(x)
            ),
            Material::Ec { curve, x, y, .. } => format!(
                r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                curve.name(),
                b64url_encode(x),
                b64url_encode(y)
            ),
            Material::Rsa { n, e, .. } => format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                b64url_encode(e),
                b64url_encode(n)
            ),
            Material::Oct { k } => format!(
                r#"{{"k":"{}","kty":"oct"}}"#,
                k.as_ref().map(|s| b64url_encode(&s.0)).unwrap_or_default()
            ),
        };
        b64url_encode(ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()).as_ref())
    }

    /// The key ID, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The key's declared algorithm, if any.
    pub fn alg(&self) -> Option<Alg> {
        self.alg
    }

    /// True if the key holds private (or, for `oct`, secret) material.
    pub fn is_private(&self) -> bool {
        match &self.material {
            Material::Ed25519 { d, .. } | Material::Ec { d, .. } => d.is_some(),
            Material::Rsa { private, .. } => private.is_some(),
            Material::Oct { k } => k.is_some(),
        }
    }

    /// The algorithms this key may be used with: its `alg` if it declares
    /// one, otherwise every algorithm its type and curve allow.
    pub fn allowed_algs(&self) -> Vec<Alg> {
        match self.alg {
            Some(a) => vec![a],
            None => algs_for(&self.material).to_vec(),
        }
    }

    pub(crate) fn kty(&self) -> &'static str {
        match &self.material {
            Material::Ed25519 { .. } => "OKP",
            Material::Ec { .. } => "EC",
            Material::Rsa { .. } => "RSA",
            Material::Oct { .. } => "oct",
        }
    }

    fn crv(&self) -> Option<&'static str> {
        match &self.material {
            Material::Ed25519 { .. } => Some("Ed25519"),
            Material::Ec { curve, .. } => Some(curve.name()),
            _ => None,
        }
    }

    /// Refuses keys that are not for verifying signatures with `alg`.
    pub(crate) fn check_for_verify(&self, alg: Alg) -> Result<(), JoseError> {
        if !algs_for(&self.material).contains(&alg) {
            return Err(JoseError::KeyRejected(format!(
                "{alg} cannot be used with a {} key",
                describe(&self.material)
            )));
        }
        if let Some(own) = self.alg
            && own != alg
        {
            return Err(JoseError::KeyRejected(format!(
                "the key is for {own}, not {alg}"
            )));
        }
        if let Some(u) = &self.use_
            && u != "sig"
        {
            return Err(JoseError::KeyRejected(
                "the key's `use` is not \"sig\"".into(),
            ));
        }
        if let Some(ops) = &self.key_ops
            && !ops.iter().any(|o| o == "verify")
        {
            return Err(JoseError::KeyRejected(
                "the key's `key_ops` do not include \"verify\"".into(),
            ));
        }
        Ok(())
    }

    /// Builds a public key from parts we made ourselves (signing keys).
    pub(crate) fn from_parts(material: Material, kid: String, alg: Alg) -> Jwk {
        Jwk {
            material,
            kid: Some(kid),
            alg: Some(alg),
            use_: Some("sig".into()),
            key_ops: None,
        }
    }

    pub(crate) fn oct_secret(&self) -> Option<&[u8]> {
        match &self.material {
            Material::Oct { k: Some(k) } => Some(&k.0),
            _ => None,
        }
    }
}

pub(crate) fn ed25519_public(x: [u8; 32]) -> Material {
    Material::Ed25519 { x, d: None }
}

pub(crate) fn ec_public(curve_p256: bool, point: &[u8]) -> Option<Material> {
    let curve = if curve_p256 { Curve::P256 } else { Curve::P384 };
    let len = curve.coordinate_len();
    let (tag, xy) = point.split_first()?;
    if *tag != 4 || xy.len() != 2 * len {
        return None;
    }
    let (x, y) = xy.split_at(len);
    Some(Material::Ec {
        curve,
        x: x.to_vec(),
        y: y.to_vec(),
        d: None,
    })
}

fn describe(m: &Material) -> String {
    match m {
        Material::Ed25519 { .. } => "OKP/Ed25519".into(),
        Material::Ec { curve, .. } => format!("EC/{}", curve.name()),
        Material::Rsa { n, .. } => format!("RSA-{}", bit_len(n)),
        Material::Oct { .. } => "oct".into(),
    }
}

fn parse_okp(obj: &Map<String, Value>, known: Option<&[u8; 32]>) -> Result<Material, JoseError> {
    let crv = req_str(obj, "crv")?;
    if crv != "Ed25519" {
        return Err(JoseError::Unsupported(format!(
            "OKP curve {}",
            untrusted(crv)
        )));
    }
    let x: [u8; 32] = exact_len(req_bytes(obj, "x")?, 32, "x")?
        .try_into()
        .map_err(|_| JoseError::KeyRejected("JWK member `x` must be exactly 32 bytes".into()))?;
    if known != Some(&x) && !crate::ed25519_point::is_valid_public_key(&x) {
        return Err(JoseError::KeyRejected(
            "Ed25519 `x` is not a usable curve point".into(),
        ));
    }
    let d = match bytes_member(obj, "d")? {
        None => None,
        Some(d) => {
            let d = Secret(exact_len(d, 32, "d")?);
            signature::Ed25519KeyPair::from_seed_and_public_key(&d.0, &x)
                .map_err(|_| JoseError::KeyRejected("Ed25519 `d` does not belong to `x`".into()))?;
            Some(d)
        }
    };
    Ok(Material::Ed25519 { x, d })
}

fn parse_ec(obj: &Map<String, Value>) -> Result<Material, JoseError> {
    let crv = req_str(obj, "crv")?;
    let curve = match crv {
        "P-256" => Curve::P256,
        "P-384" => Curve::P384,
        other => {
            return Err(JoseError::Unsupported(format!(
                "EC curve {}",
                untrusted(other)
            )));
        }
    };
    let len = curve.coordinate_len();
    let x = exact_len(req_bytes(obj, "x")?, len, "x")?;
    let y = exact_len(req_bytes(obj, "y")?, len, "y")?;
    let mut point = Vec::with_capacity(1 + 2 * len);
    point.push(4u8);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    if !ec_point_is_valid(curve, &point) {
        return Err(JoseError::KeyRejected(format!(
            "the point is not on {}",
            curve.name()
        )));
    }
    let d = match bytes_member(obj, "d")? {
        None => None,
        Some(d) => {
            let d = Secret(exact_len(d, len, "d")?);
            let signing = match curve {
                Curve::P256 => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                Curve::P384 => &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            };
            signature::EcdsaKeyPair::from_private_key_and_public_key(
                signing,
                &d.0,
                &point,
                &SystemRandom::new(),
            )
            .map_err(|_| JoseError::KeyRejected("EC `d` does not belong to the point".into()))?;
            Some(d)
        }
    };
    Ok(Material::Ec { curve, x, y, d })
}

fn parse_rsa(obj: &Map<String, Value>) -> Result<Material, JoseError> {
    let n = uint_member(obj, "n")?;
    let e = uint_member(obj, "e")?;
    let bits = bit_len(&n);
    if bits < RSA_MIN_BITS {
        return Err(JoseError::KeyRejected(format!(
            "RSA modulus of {bits} bits; at least {RSA_MIN_BITS} required"
        )));
    }
    if bits > RSA_MAX_BITS {
        return Err(JoseError::KeyRejected(format!(
            "RSA modulus of {bits} bits; at most {RSA_MAX_BITS} supported"
        )));
    }
    if n.last().is_none_or(|b| b & 1 == 0) {
        return Err(JoseError::KeyRejected("RSA modulus is even".into()));
    }
    // e: odd, 3 <= e < 2^32 (ring's own bound is 2^33 - 1).
    if e.len() > 4 {
        return Err(JoseError::KeyRejected("RSA exponent is too large".into()));
    }
    let e_val = e.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    if e_val < 3 || e_val & 1 == 0 {
        return Err(JoseError::KeyRejected(
            "RSA exponent must be odd and at least 3".into(),
        ));
    }
    if crate::roca::has_fingerprint(&n) {
        return Err(JoseError::KeyRejected(
            "RSA modulus has the ROCA fingerprint (CVE-2017-15361)".into(),
        ));
    }
    const PRIVATE: [&str; 6] = ["d", "p", "q", "dp", "dq", "qi"];
    let present = PRIVATE.iter().filter(|m| obj.contains_key(**m)).count();
    let private = if present == 0 {
        None
    } else if present < PRIVATE.len() {
        return Err(JoseError::Unsupported(
            "RSA private keys need all of d, p, q, dp, dq, qi".into(),
        ));
    } else {
        let private = RsaPrivate {
            d: Secret(req_bytes(obj, "d")?),
            p: Secret(req_bytes(obj, "p")?),
            q: Secret(req_bytes(obj, "q")?),
            dp: Secret(req_bytes(obj, "dp")?),
            dq: Secret(req_bytes(obj, "dq")?),
            qi: Secret(req_bytes(obj, "qi")?),
        };
        let components = ring::rsa::KeyPairComponents {
            public_key: ring::rsa::PublicKeyComponents {
                n: n.as_slice(),
                e: e.as_slice(),
            },
            d: private.d.0.as_slice(),
            p: private.p.0.as_slice(),
            q: private.q.0.as_slice(),
            dP: private.dp.0.as_slice(),
            dQ: private.dq.0.as_slice(),
            qInv: private.qi.0.as_slice(),
        };
        let pair = signature::RsaKeyPair::from_components(&components).map_err(|_| {
            JoseError::KeyRejected("RSA private parts are inconsistent or unsupported".into())
        })?;
        // ring checks dP and dQ only when signing: do it once now.
        let mut sig = vec![0u8; pair.public().modulus_len()];
        pair.sign(
            &signature::RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            b"mandate-jose key check",
            &mut sig,
        )
        .map_err(|_| JoseError::KeyRejected("RSA private parts are inconsistent".into()))?;
        Some(private)
    };
    Ok(Material::Rsa { n, e, private })
}

fn parse_oct(obj: &Map<String, Value>) -> Result<Material, JoseError> {
    let k = Secret(req_bytes(obj, "k")?);
    if k.0.len() < HMAC_MIN_BYTES {
        return Err(JoseError::KeyRejected(format!(
            "symmetric key shorter than {HMAC_MIN_BYTES} bytes"
        )));
    }
    if k.0.len() > HMAC_MAX_BYTES {
        return Err(JoseError::KeyRejected(format!(
            "symmetric key longer than {HMAC_MAX_BYTES} bytes"
        )));
    }
    Ok(Material::Oct { k: Some(k) })
}
