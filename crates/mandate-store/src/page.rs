use serde::{Deserialize, Serialize};

/// Where a listing resumes: the id of the last item of the previous page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Cursor(pub String);

/// A page of a listing, in ascending id (creation) order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `after` to read the next page; absent on the last page.
    pub next: Option<Cursor>,
}

impl<T> Page<T> {
    /// A last page with nothing on it.
    pub fn empty() -> Self {
        Page {
            items: Vec::new(),
            next: None,
        }
    }
}

/// A bad paging request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageRequestError {
    #[error("`limit` must be between 1 and {max}, got {got}")]
    Limit { got: u32, max: u32 },
    #[error("`after` is not a valid cursor")]
    Cursor,
}

/// How much of a listing to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    after: Option<Cursor>,
    limit: u32,
}

impl PageRequest {
    pub const DEFAULT_LIMIT: u32 = 50;
    pub const MAX_LIMIT: u32 = 500;

    /// Checks a caller's paging parameters. A cursor is an id; anything longer than an
    /// id or with characters no id has is rejected before it reaches a query.
    pub fn new(after: Option<String>, limit: Option<u32>) -> Result<Self, PageRequestError> {
        let limit = limit.unwrap_or(Self::DEFAULT_LIMIT);
        if limit == 0 || limit > Self::MAX_LIMIT {
            return Err(PageRequestError::Limit {
                got: limit,
                max: Self::MAX_LIMIT,
            });
        }
        let after = match after {
            None => None,
            Some(c)
                if !c.is_empty()
                    && c.len() <= 64
                    && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
            {
                Some(Cursor(c))
            }
            Some(_) => return Err(PageRequestError::Cursor),
        };
        Ok(Self { after, limit })
    }

    pub fn first(limit: u32) -> Self {
        Self {
            after: None,
            limit: limit.clamp(1, Self::MAX_LIMIT),
        }
    }

    pub fn after(&self) -> Option<&str> {
        self.after.as_ref().map(|c| c.0.as_str())
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Builds a page from up to `limit + 1` rows read in id order: the extra row only
    /// tells that there is more.
    pub fn page<T>(&self, mut rows: Vec<T>, id: impl Fn(&T) -> String) -> Page<T> {
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = if more {
            rows.last().map(|last| Cursor(id(last)))
        } else {
            None
        };
        Page { items: rows, next }
    }
}

impl Default for PageRequest {
    fn default() -> Self {
        Self::first(Self::DEFAULT_LIMIT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_cursors_are_checked() {
        assert!(PageRequest::new(None, Some(0)).is_err());
        assert!(PageRequest::new(None, Some(501)).is_err());
        assert!(PageRequest::new(Some("' OR 1=1 --".into()), None).is_err());
        assert!(PageRequest::new(Some("x".repeat(65)), None).is_err());
        assert!(PageRequest::new(Some(String::new()), None).is_err());
        let p = PageRequest::new(Some("mnd_0190".into()), Some(2)).unwrap();
        assert_eq!(p.after(), Some("mnd_0190"));
        let page = p.page(vec![1, 2, 3], |n| n.to_string());
        assert_eq!(page.items, vec![1, 2]);
        assert_eq!(page.next, Some(Cursor("2".into())));
        let page = p.page(vec![1, 2], |n| n.to_string());
        assert_eq!(page.next, None);
    }
}
