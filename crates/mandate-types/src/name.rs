//! Plain names: what can stand in a file name, a URL path segment and a quoted header
//! parameter as it is, without escaping.

/// 1 to 128 characters of `a-z A-Z 0-9 . _ -`, not starting with `.`.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::is_plain_name;

    #[test]
    fn plain_names_and_the_rest() {
        for ok in ["fx", "bank-2", "a.b_c", &"x".repeat(128)] {
            assert!(is_plain_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".hidden",
            "a/b",
            "x\",error=\"evil",
            "a b",
            "a\r\nb",
            "é",
            &"x".repeat(129),
        ] {
            assert!(!is_plain_name(bad), "{bad:?}");
        }
    }
}
