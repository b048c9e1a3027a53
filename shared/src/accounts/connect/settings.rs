//! The deployment's side of the connect flow: where the callback is, and which frontend
//! origins a browser may be sent back to (no open redirect).

/// The callback's path under the public base URL.
pub const CALLBACK_PATH: &str = "/api/user/integrations/oauth/callback";

/// What a deployment's connect flow needs besides the providers: where the callback is, and
/// which frontend origins a browser may be sent back to.
#[derive(Debug, Clone, Default)]
pub struct ConnectSettings {
    /// `{PUBLIC_API_BASE_URL}/api/user/integrations/oauth/callback`.
    pub callback_url: String,
    /// The frontend origins (`CORS_ALLOWED_ORIGINS`), e.g. `https://app.pipewise.example`.
    pub allowed_origins: Vec<String>,
}

impl ConnectSettings {
    /// From the functions' settings: `PUBLIC_API_BASE_URL` and `CORS_ALLOWED_ORIGINS`.
    pub fn from_source(source: &crate::config::ConfigSource<'_>) -> Self {
        use crate::config::vars;
        let base = source
            .optional(vars::PUBLIC_API_BASE_URL)
            .unwrap_or_default();
        Self {
            callback_url: format!("{}{CALLBACK_PATH}", base.trim_end_matches('/')),
            allowed_origins: source
                .optional(vars::CORS_ALLOWED_ORIGINS)
                .unwrap_or_default()
                .split(',')
                .map(|origin| origin.trim().to_owned())
                .filter(|origin| !origin.is_empty())
                .collect(),
        }
    }

    /// Whether `url` may receive the browser: an absolute http(s) URL on an allowed origin,
    /// without credentials.
    pub(super) fn allows(&self, url: &str) -> bool {
        let Ok(parsed) = url::Url::parse(url) else {
            return false;
        };
        if !matches!(parsed.scheme(), "http" | "https")
            || !parsed.username().is_empty()
            || parsed.password().is_some()
        {
            return false;
        }
        let origin = parsed.origin().ascii_serialization();
        self.allowed_origins
            .iter()
            .any(|allowed| allowed.trim_end_matches('/') == origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowed_origins_receive_the_browser() {
        let settings = ConnectSettings {
            callback_url: String::new(),
            allowed_origins: vec!["https://app.pipewise.example".into()],
        };
        assert!(settings.allows("https://app.pipewise.example/settings?tab=1"));
        for refused in [
            "https://app.pipewise.example.evil.example/",
            "https://evil.example/?https://app.pipewise.example",
            "http://app.pipewise.example/",
            "https://user:pw@app.pipewise.example/",
            "javascript:alert(1)",
            "//app.pipewise.example/",
            "/relative",
        ] {
            assert!(!settings.allows(refused), "{refused}");
        }
    }
}
