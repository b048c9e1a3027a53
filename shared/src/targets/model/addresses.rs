//! Email addresses, X (Twitter) handles and Instagram usernames: parse-don't-validate
//! newtypes that hold only normalised, checked values.

/// An email address, trimmed, lower-cased and checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// Parses an address: one `@`, a local part of 1-64 plain characters, a domain of dotted
    /// labels with a top-level label of letters; at most 254 characters.
    pub fn parse(value: &str) -> Result<Self, &'static str> {
        let email = value.trim().to_lowercase();
        const PROBLEM: &str = "must be a valid email address";
        if email.is_empty() || email.len() > 254 {
            return Err(PROBLEM);
        }
        let (local, domain) = email.split_once('@').ok_or(PROBLEM)?;
        let local_ok = (1..=64).contains(&local.len())
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~.-".contains(&b));
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|label| {
                (1..=63).contains(&label.len())
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
            && labels
                .last()
                .is_some_and(|tld| tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic()));
        if local_ok && domain_ok {
            Ok(Self(email))
        } else {
            Err(PROBLEM)
        }
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An X (Twitter) handle without `@`: 1-15 of `[A-Za-z0-9_]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwitterHandle(String);

impl TwitterHandle {
    /// Parses a handle, stripping one leading `@`.
    pub fn parse(value: &str) -> Result<Self, &'static str> {
        let handle = value.trim();
        let handle = handle.strip_prefix('@').unwrap_or(handle);
        if (1..=15).contains(&handle.len())
            && handle
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            Ok(Self(handle.to_owned()))
        } else {
            Err("must be 1-15 letters, digits or '_' (an optional leading '@' is removed)")
        }
    }

    /// The handle.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An Instagram username: 1-30 of `[A-Za-z0-9._]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstagramHandle(String);

impl InstagramHandle {
    /// Parses a username, stripping one leading `@`.
    pub fn parse(value: &str) -> Result<Self, &'static str> {
        let handle = value.trim();
        let handle = handle.strip_prefix('@').unwrap_or(handle);
        if (1..=30).contains(&handle.len())
            && handle
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._".contains(&b))
        {
            Ok(Self(handle.to_owned()))
        } else {
            Err("must be 1-30 letters, digits, '.' or '_'")
        }
    }

    /// The username.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse(" Ada@Example.COM ")
                .as_ref()
                .map(Email::as_str),
            Ok("ada@example.com")
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "ada@exa_mple.com",
            "ada..x@example.com",
            "ada@-example.com",
            "ada@example.c0m",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn handles_are_stripped_and_checked() {
        assert_eq!(
            TwitterHandle::parse("@ada_l")
                .as_ref()
                .map(TwitterHandle::as_str),
            Ok("ada_l")
        );
        assert!(TwitterHandle::parse("@").is_err());
        assert!(TwitterHandle::parse("a_very_long_handle_16").is_err());
        assert!(TwitterHandle::parse("ada.l").is_err());
        assert_eq!(
            InstagramHandle::parse("ada.l_1")
                .as_ref()
                .map(InstagramHandle::as_str),
            Ok("ada.l_1")
        );
        assert!(InstagramHandle::parse("ada-l").is_err());
    }
}
