//! Database URLs as they may be shown: in logs, errors and `Debug` output.

/// A URL with its password (if any) replaced by `***`, for logs and errors.
pub fn redact_url(url: &str) -> String {
    // PostgreSQL also takes the password as a query parameter.
    let url = &match url.split_once('?') {
        Some((base, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => p.to_string(),
                })
                .collect();
            format!("{base}?{}", params.join("&"))
        }
        None => url.to_string(),
    };
    // scheme://user:password@host...: only the part before the first '@'
    // after the scheme can hold a password.
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            let redacted = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_string()
            };
            format!("{}{}{}", &url[..scheme_end], redacted, &rest[at..])
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://firmup:s3cret@db:5432/firmup?sslmode=require"),
            "postgres://firmup:***@db:5432/firmup?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://db/firmup?user=u&password=s3cret&sslmode=require"),
            "postgres://db/firmup?user=u&password=***&sslmode=require"
        );
        assert_eq!(
            redact_url("sqlite:///var/lib/firmup.db"),
            "sqlite:///var/lib/firmup.db"
        );
    }
}
