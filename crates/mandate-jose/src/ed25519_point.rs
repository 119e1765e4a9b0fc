//! Does a 32-byte string decode to a point of edwards25519 (RFC 8032 §5.1.3)?
//!
//! *ring* checks this only when it verifies a signature; a JWK parser wants
//! to refuse a bogus key at once. This is a plain, variable-time check on
//! public data: field arithmetic mod p = 2^255 - 19 in five 51-bit limbs.
//! Besides decodability it refuses the identity and the other small-order
//! points, for which a signature says nothing about who made it.

const MASK: u64 = (1 << 51) - 1;

#[derive(Clone, Copy, PartialEq, Eq)]
struct Fe([u64; 5]);

const ZERO: Fe = Fe([0, 0, 0, 0, 0]);
const ONE: Fe = Fe([1, 0, 0, 0, 0]);

fn carry(l: [u128; 5]) -> Fe {
    let [mut r0, mut r1, mut r2, mut r3, mut r4] = l;
    let mask = u128::from(MASK);
    // After a pass only r0 can still exceed 51 bits (by the folded-back top
    // carry); two more passes settle it, so eight is a generous bound.
    for _ in 0..8 {
        r1 += r0 >> 51;
        r0 &= mask;
        r2 += r1 >> 51;
        r1 &= mask;
        r3 += r2 >> 51;
        r2 &= mask;
        r4 += r3 >> 51;
        r3 &= mask;
        r0 += (r4 >> 51) * 19;
        r4 &= mask;
        if r0 <= mask {
            break;
        }
    }
    Fe([low(r0), low(r1), low(r2), low(r3), low(r4)])
}

fn low(x: u128) -> u64 {
    u64::try_from(x & u128::from(u64::MAX)).unwrap_or(0)
}

fn add(a: Fe, b: Fe) -> Fe {
    let Fe([a0, a1, a2, a3, a4]) = a;
    let Fe([b0, b1, b2, b3, b4]) = b;
    carry([
        u128::from(a0) + u128::from(b0),
        u128::from(a1) + u128::from(b1),
        u128::from(a2) + u128::from(b2),
        u128::from(a3) + u128::from(b3),
        u128::from(a4) + u128::from(b4),
    ])
}

/// a - b, computed as a + 4p - b so no limb goes negative.
fn sub(a: Fe, b: Fe) -> Fe {
    let Fe([a0, a1, a2, a3, a4]) = a;
    let Fe([b0, b1, b2, b3, b4]) = b;
    let four_p0 = 4 * ((1u128 << 51) - 19);
    let four_pi = 4 * ((1u128 << 51) - 1);
    carry([
        u128::from(a0) + four_p0 - u128::from(b0),
        u128::from(a1) + four_pi - u128::from(b1),
        u128::from(a2) + four_pi - u128::from(b2),
        u128::from(a3) + four_pi - u128::from(b3),
        u128::from(a4) + four_pi - u128::from(b4),
    ])
}

fn mul(a: Fe, b: Fe) -> Fe {
    let Fe([a0, a1, a2, a3, a4]) = a;
    let Fe([b0, b1, b2, b3, b4]) = b;
    let m = |x: u64, y: u64| u128::from(x) * u128::from(y);
    // 2^255 = 19 (mod p): limbs that overflow past 2^255 fold back times 19.
    carry([
        m(a0, b0) + 19 * (m(a1, b4) + m(a2, b3) + m(a3, b2) + m(a4, b1)),
        m(a0, b1) + m(a1, b0) + 19 * (m(a2, b4) + m(a3, b3) + m(a4, b2)),
        m(a0, b2) + m(a1, b1) + m(a2, b0) + 19 * (m(a3, b4) + m(a4, b3)),
        m(a0, b3) + m(a1, b2) + m(a2, b1) + m(a3, b0) + 19 * m(a4, b4),
        m(a0, b4) + m(a1, b3) + m(a2, b2) + m(a3, b1) + m(a4, b0),
    ])
}

/// a^e, e given as four little-endian 64-bit words (the tests' reference).
#[cfg(test)]
fn pow(a: Fe, e: [u64; 4]) -> Fe {
    let mut r = ONE;
    for word in e.iter().rev() {
        for bit in (0..64).rev() {
            r = mul(r, r);
            if (word >> bit) & 1 == 1 {
                r = mul(r, a);
            }
        }
    }
    r
}

/// The unique representative in [0, p).
fn canonical(a: Fe) -> Fe {
    let Fe(l) = carry(a.0.map(u128::from));
    let [l0, l1, l2, l3, l4] = l;
    let top = MASK;
    if l4 == top && l3 == top && l2 == top && l1 == top && l0 >= MASK - 18 {
        Fe([l0 - (MASK - 18), 0, 0, 0, 0])
    } else {
        Fe(l)
    }
}

#[cfg(test)]
fn small(n: u64) -> Fe {
    Fe([n, 0, 0, 0, 0])
}

/// p - 2, for inversion by Fermat (the tests check the constants below with it).
#[cfg(test)]
const P_MINUS_2: [u64; 4] = [u64::MAX - 20, u64::MAX, u64::MAX, 0x7fff_ffff_ffff_ffff];
/// (p - 5) / 8 = 2^252 - 3, for the tests' plain exponentiation.
#[cfg(test)]
const P_MINUS_5_OVER_8: [u64; 4] = [
    0xffff_ffff_ffff_fffd,
    u64::MAX,
    u64::MAX,
    0x0fff_ffff_ffff_ffff,
];

/// a squared `n` times.
fn square_times(a: Fe, n: u32) -> Fe {
    (0..n).fold(a, |r, _| mul(r, r))
}

/// a^((p - 5) / 8) = a^(2^252 - 3), the one exponentiation of RFC 8032 §5.1.3's
/// decoding, by the usual addition chain: 252 squarings and 11 multiplications
/// instead of square-and-multiply's 500 or so.
fn pow_p58(a: Fe) -> Fe {
    let a2 = mul(a, a);
    let a9 = mul(a, square_times(a2, 2));
    let a11 = mul(a2, a9);
    let a_5 = mul(a9, mul(a11, a11)); // a^(2^5 - 1)
    let a_10 = mul(square_times(a_5, 5), a_5);
    let a_20 = mul(square_times(a_10, 10), a_10);
    let a_40 = mul(square_times(a_20, 20), a_20);
    let a_50 = mul(square_times(a_40, 10), a_10);
    let a_100 = mul(square_times(a_50, 50), a_50);
    let a_200 = mul(square_times(a_100, 100), a_100);
    let a_250 = mul(square_times(a_200, 50), a_50);
    mul(square_times(a_250, 2), a)
}

/// d = -121665 / 121666, in limbs.
const D: Fe = Fe([
    0x0003_4dca_1359_78a3,
    0x0001_a828_3b15_6ebd,
    0x0005_e7a2_6001_c029,
    0x0007_39c6_63a0_3cbb,
    0x0005_2036_cee2_b6ff,
]);
/// sqrt(-1) = 2^((p - 1) / 4), in limbs.
const SQRT_M1: Fe = Fe([
    0x0006_1b27_4a0e_a0b0,
    0x0000_d5a5_fc8f_189d,
    0x0007_ef5e_9cbd_0c60,
    0x0007_8595_a680_4c9e,
    0x0002_b832_4804_fc1d,
]);

#[cfg(test)]
fn invert(a: Fe) -> Fe {
    pow(a, P_MINUS_2)
}

/// Splits 32 little-endian bytes into the y limbs and the sign bit of x.
fn decode(bytes: &[u8; 32]) -> (Fe, bool) {
    let mut w = [0u64; 4];
    for (slot, chunk) in w.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        *slot = u64::from_le_bytes(b);
    }
    let [w0, w1, w2, w3] = w;
    let sign = (w3 >> 63) == 1;
    let y = Fe([
        w0 & MASK,
        ((w0 >> 51) | (w1 << 13)) & MASK,
        ((w1 >> 38) | (w2 << 26)) & MASK,
        ((w2 >> 25) | (w3 << 39)) & MASK,
        (w3 >> 12) & MASK,
    ]);
    (y, sign)
}

/// Projective coordinates (X : Y : Z) with x = X/Z, y = Y/Z.
#[derive(Clone, Copy)]
struct Point {
    x: Fe,
    y: Fe,
    z: Fe,
}

/// Doubling on a = -1 twisted Edwards curves ("dbl-2008-hwcd"; T unused).
fn double(p: Point) -> Point {
    let a = mul(p.x, p.x);
    let b = mul(p.y, p.y);
    let c = add(mul(p.z, p.z), mul(p.z, p.z));
    let d = sub(ZERO, a);
    let xy = add(p.x, p.y);
    let e = sub(sub(mul(xy, xy), a), b);
    let g = add(d, b);
    let f = sub(g, c);
    let h = sub(d, b);
    Point {
        x: mul(e, f),
        y: mul(g, h),
        z: mul(f, g),
    }
}

/// True if `bytes` is the canonical encoding of a point of the curve that is
/// not of small order.
pub(crate) fn is_valid_public_key(bytes: &[u8; 32]) -> bool {
    let (y, sign) = decode(bytes);
    // y must be canonical (< p).
    if canonical(y) != y {
        return false;
    }
    // x^2 = u / v; RFC 8032 §5.1.3 finds the root candidate with one exponentiation
    // and no inversion: x = u v^3 (u v^7)^((p - 5) / 8).
    let yy = mul(y, y);
    let u = sub(yy, ONE);
    let v = add(mul(D, yy), ONE);
    let v3 = mul(mul(v, v), v);
    let uv7 = mul(mul(u, v3), mul(v3, v));
    let mut x = mul(mul(u, v3), pow_p58(uv7));
    let vxx = canonical(mul(v, mul(x, x)));
    if vxx == canonical(u) {
        // x is a root.
    } else if vxx == canonical(sub(ZERO, u)) {
        x = mul(x, SQRT_M1);
    } else {
        // u / v is not a square: no point has this y.
        return false;
    }
    if canonical(x) == ZERO && sign {
        return false;
    }
    // Either root will do for the order check: refuse points P with 8P = identity.
    let mut p = Point { x, y, z: ONE };
    for _ in 0..3 {
        p = double(p);
    }
    // identity is (0 : Z : Z : 0)
    let is_identity = canonical(p.x) == ZERO && canonical(sub(p.y, p.z)) == ZERO;
    !is_identity
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        reason = "tests fail loudly"
    )]
    use super::*;

    /// (p - 1) / 2, for Euler's criterion (the reference below).
    const HALF_P_MINUS_1: [u64; 4] = [u64::MAX - 9, u64::MAX, u64::MAX, 0x3fff_ffff_ffff_ffff];
    /// (p + 3) / 8, the reference's square root candidate.
    const P_PLUS_3_OVER_8: [u64; 4] = [
        0xffff_ffff_ffff_fffe,
        u64::MAX,
        u64::MAX,
        0x0fff_ffff_ffff_ffff,
    ];

    /// The earlier check, step by step (inversions, Euler's criterion, then the root):
    /// slower, and independent of the single exponentiation the check now uses.
    fn reference(bytes: &[u8; 32]) -> bool {
        let (y, sign) = decode(bytes);
        // y must be canonical (< p).
        if canonical(y) != y {
            return false;
        }
        // d = -121665 / 121666.
        let d = mul(sub(ZERO, small(121_665)), invert(small(121_666)));
        let yy = mul(y, y);
        let u = sub(yy, ONE);
        let v = add(mul(d, yy), ONE);
        // x^2 = u / v must be a square.
        let x2 = canonical(mul(u, invert(v)));
        if x2 == ZERO {
            if sign {
                return false;
            }
        } else if canonical(pow(x2, HALF_P_MINUS_1)) != ONE {
            return false;
        }
        // Recover x (either root will do for the order check), then refuse
        // points P with 8P = identity.
        let mut x = pow(x2, P_PLUS_3_OVER_8);
        if canonical(mul(x, x)) != x2 {
            // multiply by sqrt(-1) = 2^((p-1)/4)
            let sqrt_m1 = pow(
                small(2),
                [u64::MAX - 4, u64::MAX, u64::MAX, 0x1fff_ffff_ffff_ffff],
            );
            x = mul(x, sqrt_m1);
            if canonical(mul(x, x)) != x2 {
                return false;
            }
        }
        let mut p = Point { x, y, z: ONE };
        for _ in 0..3 {
            p = double(p);
        }
        // identity is (0 : Z : Z : 0)
        let is_identity = canonical(p.x) == ZERO && canonical(sub(p.y, p.z)) == ZERO;
        !is_identity
    }

    #[test]
    fn the_check_agrees_with_the_step_by_step_reference() {
        // Random strings (about half are points), each with the sign bit both ways,
        // and the small-order and non-canonical encodings of the other tests.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut points = 0;
        for _ in 0..400 {
            let mut bytes = [0u8; 32];
            for chunk in bytes.chunks_mut(8) {
                chunk.copy_from_slice(&next().to_le_bytes());
            }
            for sign in [0u8, 0x80] {
                bytes[31] = (bytes[31] & 0x7f) | sign;
                let ours = is_valid_public_key(&bytes);
                assert_eq!(ours, reference(&bytes), "{bytes:02x?}");
                points += usize::from(ours);
            }
        }
        assert!((300..500).contains(&points), "{points} points of 800");
    }

    #[test]
    fn the_addition_chain_is_the_exponentiation() {
        for n in [1u64, 2, 3, 19, 121_666, 0x7_ffff_ffff_ffff] {
            let a = small(n);
            assert!(
                canonical(pow_p58(a)) == canonical(pow(a, P_MINUS_5_OVER_8)),
                "{n}"
            );
        }
        let big = Fe([MASK, 0x1234_5678_9abc, MASK - 7, 42, MASK >> 1]);
        assert!(canonical(pow_p58(big)) == canonical(pow(big, P_MINUS_5_OVER_8)));
    }

    #[test]
    fn the_constants_are_what_they_say() {
        let d = mul(sub(ZERO, small(121_665)), invert(small(121_666)));
        assert!(canonical(d) == D);
        let sqrt_m1 = pow(
            small(2),
            [u64::MAX - 4, u64::MAX, u64::MAX, 0x1fff_ffff_ffff_ffff],
        );
        assert!(canonical(sqrt_m1) == SQRT_M1);
        assert!(canonical(mul(SQRT_M1, SQRT_M1)) == canonical(sub(ZERO, ONE)));
    }

    #[test]
    fn rfc8032_keys_are_points() {
        // RFC 8037 A.2 / RFC 8032 test 1 public key.
        let hexes = [
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        ];
        for h in hexes {
            let b: Vec<u8> = (0..32)
                .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            let arr: [u8; 32] = b.try_into().unwrap();
            assert!(is_valid_public_key(&arr), "{h}");
        }
    }

    #[test]
    fn identity_and_small_order_refused() {
        let mut id = [0u8; 32];
        id[0] = 1; // y = 1
        assert!(!is_valid_public_key(&id));
        let mut zero = [0u8; 32]; // y = 0: order 4
        assert!(!is_valid_public_key(&zero));
        zero[31] = 0x80;
        assert!(!is_valid_public_key(&zero));
        // y = p - 1 (order 2)
        let mut m1 = [0xffu8; 32];
        m1[0] = 0xec;
        m1[31] = 0x7f;
        assert!(!is_valid_public_key(&m1));
    }

    #[test]
    fn order_8_points_refused() {
        for h in [
            "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
            "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
        ] {
            let b: Vec<u8> = (0..32)
                .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            let arr: [u8; 32] = b.try_into().unwrap();
            assert!(!is_valid_public_key(&arr), "{h}");
        }
    }

    #[test]
    fn non_canonical_y_refused() {
        // y = p
        let mut p = [0xffu8; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        assert!(!is_valid_public_key(&p));
    }

    #[test]
    fn about_half_of_random_y_are_not_points() {
        let mut bad = 0;
        for i in 0u8..64 {
            let mut b = [0u8; 32];
            b[0] = i.wrapping_mul(37).wrapping_add(11);
            b[5] = i;
            b[17] = 0x42;
            if !is_valid_public_key(&b) {
                bad += 1;
            }
        }
        assert!(bad > 10 && bad < 54, "{bad}");
    }
}
