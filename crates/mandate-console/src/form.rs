//! A submitted HTML form: `application/x-www-form-urlencoded`, at most [`MAX_FORM_BYTES`].
//! Fields are read by name; a checkbox group is every value of its name.

use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;

use crate::UiError;
use mandate_core::CoreError;

pub const MAX_FORM_BYTES: usize = 64 * 1024;

#[derive(Debug, Default, Clone)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    pub fn parse(body: &[u8]) -> Self {
        Self {
            pairs: form_urlencoded::parse(body).into_owned().collect(),
        }
    }

    /// The first value of `name`, trimmed; absent or blank is `None`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// The first value of `name` exactly as sent (passwords are not trimmed).
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every non-blank value of `name`, in the order sent.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
            .collect()
    }
}

impl<S: Send + Sync> FromRequest<S> for Form {
    type Rejection = UiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, UiError> {
        let form_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';').next().is_some_and(|t| {
                    t.trim()
                        .eq_ignore_ascii_case("application/x-www-form-urlencoded")
                })
            });
        if !form_type {
            return Err(CoreError::invalid("expected a submitted form").into());
        }
        let body = axum::body::to_bytes(req.into_body(), MAX_FORM_BYTES)
            .await
            .map_err(|_| CoreError::invalid("the form is too large"))?;
        Ok(Form::parse(&body))
    }
}

#[cfg(test)]
mod tests {
    use super::Form;

    #[test]
    fn reads_fields_and_groups() {
        let f = Form::parse(b"a=+x+&tool=one&tool=&tool=two&p=+keep+&bad=%FF%FE&a=second");
        assert_eq!(f.get("a"), Some("x"));
        assert_eq!(f.all("tool"), vec!["one", "two"]);
        assert_eq!(f.raw("p"), Some(" keep "));
        assert_eq!(f.get("missing"), None);
        // Invalid UTF-8 is replaced, never a failure.
        assert!(f.get("bad").is_some());
    }
}
