//! Query-string parsing that supports repeated parameters (`tag=a&tag=b`)
//! and rejects unknown ones, so a misspelt filter never silently matches all.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::error::{ApiError, ApiResult};

/// The raw query pairs of a request.
pub struct QueryPairs(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> ApiResult<Self> {
        let query = parts.uri.query().unwrap_or("");
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect();
        // PostgreSQL rejects NUL in text parameters, and no stored value can
        // contain one, so a decoded NUL is a client error on every backend.
        if pairs
            .iter()
            .any(|(name, value)| name.contains('\0') || value.contains('\0'))
        {
            return Err(ApiError::InvalidParameter(
                "query parameters must not contain NUL characters".into(),
            ));
        }
        Ok(QueryPairs(pairs))
    }
}

impl QueryPairs {
    /// Rejects any parameter outside `allowed`.
    ///
    /// # Errors
    /// [`ApiError::InvalidParameter`] naming the first unknown parameter.
    pub fn only(&self, allowed: &[&str]) -> ApiResult<()> {
        match self.0.iter().find(|(name, _)| !allowed.contains(&name.as_str())) {
            None => Ok(()),
            Some((name, _)) => Err(ApiError::InvalidParameter(format!(
                "unknown query parameter `{}`; allowed: {}",
                name.chars().take(64).collect::<String>(),
                allowed.join(", ")
            ))),
        }
    }

    /// The single value of `name`; repeating it is an error.
    ///
    /// # Errors
    /// [`ApiError::InvalidParameter`] when given more than once.
    pub fn single<'a>(&'a self, name: &'a str) -> ApiResult<Option<&'a str>> {
        let mut values = self.all(name);
        let first = values.next();
        if values.next().is_some() {
            return Err(ApiError::InvalidParameter(format!("`{name}` may be given only once")));
        }
        Ok(first)
    }

    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// `limit`, 1 to 100, default `default`.
    ///
    /// # Errors
    /// [`ApiError::InvalidParameter`] outside the range.
    pub fn limit(&self, default: u32) -> ApiResult<u32> {
        match self.single("limit")? {
            None => Ok(default),
            Some(raw) => match raw.parse::<u32>() {
                Ok(limit) if (1..=100).contains(&limit) => Ok(limit),
                _ => Err(ApiError::InvalidParameter(
                    "`limit` must be a whole number from 1 to 100".into(),
                )),
            },
        }
    }
}
