//! What the operator pages share: only the tenant's admins (humans in the
//! `mandate-admins` group) reach them. Anyone else is told there is nothing here,
//! exactly as for an id that does not exist, so the pages do not even confirm that
//! the thing asked for exists.

use std::str::FromStr;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mandate_domain::Principal;
use maud::Markup;

use crate::{Session, UiError};

/// The tenant's admin principal, or "nothing here".
pub(crate) fn admin_of(session: &Session) -> Result<Principal, UiError> {
    session.admin().ok_or(UiError::NotFound)
}

/// An id from a path: anything that does not parse is "nothing here".
pub(crate) fn path_id<T: FromStr>(raw: &str) -> Result<T, UiError> {
    raw.parse().map_err(|_| UiError::NotFound)
}

/// A page, answered with `400` when it shows a message about bad input.
pub(crate) fn answer(bad_input: bool, body: Markup) -> Response {
    let status = if bad_input {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    (status, body).into_response()
}

/// An URL as the console shows it: any `user:password@` part is hidden.
pub(crate) fn without_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some((authority, tail)) = rest.split_at_checked(end) else {
        return url.to_owned();
    };
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://…@{host}{tail}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::without_userinfo;

    #[test]
    fn userinfo_is_hidden() {
        assert_eq!(
            without_userinfo("https://u:p4ss@api.example/x@y?q=a@b"),
            "https://…@api.example/x@y?q=a@b"
        );
        assert_eq!(without_userinfo("http://h:1/p"), "http://h:1/p");
        assert_eq!(without_userinfo("odd"), "odd");
    }
}
