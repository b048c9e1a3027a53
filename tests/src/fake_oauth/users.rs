//! Who signs in at each provider: the person behind a consent, and so behind every token and
//! identity answer of the grant it starts ([`Identity`], one type per provider).

use super::Provider;

/// Who signs in at X.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XUser {
    /// X's user id.
    pub id: String,
    /// The handle, without `@`.
    pub username: String,
    /// The display name.
    pub name: String,
}

impl Default for XUser {
    fn default() -> Self {
        Self {
            id: "2244994945".into(),
            username: "ada".into(),
            name: "Ada".into(),
        }
    }
}

/// Who signs in at Google.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoogleUser {
    /// The mailbox address.
    pub email: String,
}

impl Default for GoogleUser {
    fn default() -> Self {
        Self {
            email: "ada@example.com".into(),
        }
    }
}

/// Who signs in at Microsoft.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MicrosoftUser {
    /// The object id (Graph's `id`).
    pub id: String,
    /// The mailbox address; Graph answers `null` for an account without one.
    pub mail: Option<String>,
    /// The sign-in name.
    pub user_principal_name: String,
    /// The display name.
    pub display_name: String,
}

impl Default for MicrosoftUser {
    fn default() -> Self {
        Self {
            id: "ms-ada-1".into(),
            mail: Some("ada@contoso.example".into()),
            user_principal_name: "ada@contoso.example".into(),
            display_name: "Ada".into(),
        }
    }
}

/// Who signs in at Instagram (a professional account).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstagramUser {
    /// The professional account's id (`user_id` on `/me`, the one messages are sent as).
    pub user_id: String,
    /// The username.
    pub username: String,
}

impl Default for InstagramUser {
    fn default() -> Self {
        Self {
            user_id: "17841400000000001".into(),
            username: "ada.studio".into(),
        }
    }
}

impl InstagramUser {
    /// The app-scoped id Meta gives the same person (`id` on `/me`, `user_id` in the code
    /// exchange's answer). The stand-in's is `26` followed by the account's id: any value would
    /// do as long as the two differ, as Meta's do, so a service reading the wrong one is caught.
    pub fn app_scoped_id(&self) -> String {
        format!("26{}", self.user_id)
    }
}

/// Who signs in, at which provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// At X.
    X(XUser),
    /// At Google.
    Google(GoogleUser),
    /// At Microsoft.
    Microsoft(MicrosoftUser),
    /// At Instagram.
    Instagram(InstagramUser),
}

impl Identity {
    /// The provider this person signs in at.
    pub fn provider(&self) -> Provider {
        match self {
            Identity::X(_) => Provider::X,
            Identity::Google(_) => Provider::Google,
            Identity::Microsoft(_) => Provider::Microsoft,
            Identity::Instagram(_) => Provider::Instagram,
        }
    }

    /// Who signs in at `provider` until a test says otherwise.
    pub(super) fn default_at(provider: Provider) -> Self {
        match provider {
            Provider::X => XUser::default().into(),
            Provider::Google => GoogleUser::default().into(),
            Provider::Microsoft => MicrosoftUser::default().into(),
            Provider::Instagram => InstagramUser::default().into(),
        }
    }
}

impl From<XUser> for Identity {
    fn from(user: XUser) -> Self {
        Identity::X(user)
    }
}

impl From<GoogleUser> for Identity {
    fn from(user: GoogleUser) -> Self {
        Identity::Google(user)
    }
}

impl From<MicrosoftUser> for Identity {
    fn from(user: MicrosoftUser) -> Self {
        Identity::Microsoft(user)
    }
}

impl From<InstagramUser> for Identity {
    fn from(user: InstagramUser) -> Self {
        Identity::Instagram(user)
    }
}
