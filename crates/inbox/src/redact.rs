//! [`redact`]: database URLs without their passwords, for logs, errors and `Debug`.

use crate::error::StoreError;

/// `url` with its password, in the user information or a `password` parameter, replaced by
/// `***`, for logs and errors.
pub fn redact(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            match authority.rsplit_once('@') {
                Some((userinfo, host)) if userinfo.contains(':') => {
                    let user = userinfo.split(':').next().unwrap_or_default();
                    format!("{scheme}://{user}:***@{host}{path}")
                }
                _ => base.to_owned(),
            }
        }
        None => base.to_owned(),
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => param.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

/// The passwords `url` holds, as written in it.
fn passwords(url: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    if let Some((_, rest)) = base.split_once("://") {
        let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
        if let Some((userinfo, _)) = authority.rsplit_once('@') {
            if let Some((_, password)) = userinfo.split_once(':') {
                found.push(password);
            }
        }
    }
    for param in query.split('&') {
        if let Some((key, value)) = param.split_once('=') {
            if key.eq_ignore_ascii_case("password") {
                found.push(value);
            }
        }
    }
    found.retain(|p| !p.is_empty());
    found
}

/// `message` without `url`'s passwords, should a driver's message quote them.
pub(crate) fn scrub(message: &str, url: &str) -> String {
    passwords(url)
        .into_iter()
        .fold(message.to_owned(), |m, password| m.replace(password, "***"))
}

/// A connection's error, scrubbed of `url`'s passwords and naming the database it was for.
pub(crate) fn scrub_error(error: StoreError, url: &str, redacted: &str) -> StoreError {
    match error {
        StoreError::Unavailable(m) => {
            StoreError::Unavailable(format!("{redacted}: {}", scrub(&m, url)))
        }
        StoreError::Invalid(m) => StoreError::Invalid(format!("{redacted}: {}", scrub(&m, url))),
        StoreError::Migration(m) => StoreError::Migration(scrub(&m, url)),
        StoreError::Database(m) => StoreError::Database(format!("{redacted}: {}", scrub(&m, url))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_logs() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/inbox"),
            "postgres://app:***@db:5432/inbox"
        );
        assert_eq!(
            redact("postgres://db/inbox?user=app&password=s3cret&sslmode=require"),
            "postgres://db/inbox?user=app&password=***&sslmode=require"
        );
        assert_eq!(redact("postgres://app@db/inbox"), "postgres://app@db/inbox");
        assert_eq!(
            redact("sqlite:///var/lib/a@b/inbox.db"),
            "sqlite:///var/lib/a@b/inbox.db"
        );
        assert_eq!(redact("not a url"), "not a url");
    }

    #[test]
    fn driver_messages_lose_the_password() {
        let url = "postgres://app:s3cret@db/inbox?password=other";
        assert_eq!(scrub("auth failed for s3cret", url), "auth failed for ***");
        assert_eq!(scrub("other and s3cret", url), "*** and ***");
        let error = scrub_error(StoreError::Unavailable("s3cret".into()), url, &redact(url));
        assert!(!error.to_string().contains("s3cret"), "{error}");
    }
}
