//! Old rows as this service's requests, before anything is read or written here: the new user
//! id, an account's decrypted configuration as an [`UpsertAccountRequest`], a target's fields
//! validated into a [`TargetDraft`] under its derived id. Pure: every refusal is a report reason
//! (a stable code and the field names, never a value).

use std::collections::HashMap;

use fernet::Fernet;
use pipewise::accounts::AccountId;
use pipewise::accounts::model::UpsertAccountRequest;
use pipewise::auth::UserId;
use pipewise::targets::model::{TargetDraft, TargetId};
use serde_json::{Map, Value, json};

use super::decrypt::{Undecryptable, decrypt_configuration};
use super::{MigrationError, MigrationSettings, OldAccount, OldTarget};

/// `status_reason` of an account that was not connected in the old stack.
const DISCONNECTED: &str = "disconnected in the old stack";

/// Reads `old_id,new_sub` lines (a header line `old_id,new_sub` is allowed).
pub fn parse_user_map(text: &str) -> Result<HashMap<String, String>, MigrationError> {
    let mut map = HashMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (number == 0 && line.starts_with("old_id")) {
            continue;
        }
        let (old, new) = line
            .split_once(',')
            .map(|(old, new)| (old.trim(), new.trim()))
            .filter(|(old, new)| !old.is_empty() && !new.is_empty())
            .ok_or_else(|| {
                MigrationError::UserMap(format!("line {} is not old_id,new_sub", number + 1))
            })?;
        map.insert(old.to_owned(), new.to_owned());
    }
    Ok(map)
}

/// The new user id of an old one: the same id, or the user map's (`None`: not in the map).
pub(super) fn new_user(settings: &MigrationSettings, old: &str) -> Option<UserId> {
    match &settings.user_map {
        Some(map) => map.get(old).cloned().map(UserId::from_verified_sub),
        None => Some(UserId::from_verified_sub(old.to_owned())),
    }
}

/// An old account as the accounts service takes it.
pub(super) struct MappedAccount {
    /// Its id, parsed.
    pub account_id: AccountId,
    /// What the API would be sent.
    pub request: UpsertAccountRequest,
    /// The plaintext configuration, to compare with what is stored.
    pub configuration: Map<String, Value>,
    /// Connected in the old stack.
    pub connected: bool,
    /// The old timestamps, kept: (created, updated).
    pub timestamps: (String, String),
}

/// The request for an old account, its configuration decrypted with `key`.
pub(super) fn account_request(key: &Fernet, account: OldAccount) -> Result<MappedAccount, String> {
    let configuration = match decrypt_configuration(key, account.configuration) {
        Ok(configuration) => configuration,
        Err(Undecryptable::Token(path)) => {
            return Err(format!(
                "undecryptable: {path} does not verify under the key"
            ));
        }
        Err(Undecryptable::NotAnObject) => {
            return Err("undecryptable: configuration is not a JSON object".into());
        }
    };
    let request = json!({
        "account_id": account.account_id,
        "account_type": account.account_type,
        "configuration": configuration,
        "connected": account.connected,
        "status_reason": (!account.connected).then_some(DISCONNECTED),
    });
    let request: UpsertAccountRequest =
        serde_json::from_value(request).map_err(|_| "invalid: not an account".to_owned())?;
    let account_id = AccountId::parse(&request.account_id)
        .map_err(|_| "validation_failed: account_id".to_owned())?;
    Ok(MappedAccount {
        account_id,
        request,
        configuration,
        connected: account.connected,
        timestamps: (account.created_at, account.updated_at),
    })
}

/// An old target as the targets store takes it.
#[derive(Debug)]
pub(super) struct MappedTarget {
    /// Derived from the old creation time and id: the same row always gets the same id.
    pub id: TargetId,
    /// The fields, validated as the create route validates them.
    pub draft: TargetDraft,
    /// False when soft-deleted (stored as a deleted record).
    pub active: bool,
    /// The old timestamps, kept.
    pub created_at: String,
    /// The old timestamps, kept.
    pub updated_at: String,
}

/// The draft and id of an old target.
pub(super) fn target_draft(target: OldTarget) -> Result<MappedTarget, String> {
    let draft = target.fields.parse("").map_err(|problems| {
        let fields: Vec<String> = problems.into_iter().map(|p| p.field).collect();
        format!("validation_failed: {}", fields.join(", "))
    })?;
    Ok(MappedTarget {
        id: TargetId::derived(target.created_at_millis, &target.id),
        draft,
        active: target.active,
        created_at: target.created_at,
        updated_at: target.updated_at,
    })
}

#[cfg(test)]
mod tests {
    use pipewise::targets::model::CreateTargetRequest;

    use super::*;

    fn account(configuration: Value, connected: bool) -> OldAccount {
        OldAccount {
            user_id: "u1".into(),
            account_id: "crm-1".into(),
            account_type: "crm".into(),
            configuration,
            connected,
            created_at: "2024-01-02T03:04:05.000000Z".into(),
            updated_at: "2024-02-03T04:05:06.000000Z".into(),
        }
    }

    fn target(email: &str) -> OldTarget {
        OldTarget {
            id: uuid::Uuid::parse_str("6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b").unwrap(),
            user_id: "u1".into(),
            fields: CreateTargetRequest {
                name: "Ada".into(),
                email: Some(email.into()),
                ..Default::default()
            },
            active: false,
            created_at_millis: 1_700_000_000_000,
            created_at: "2023-11-14T22:13:20.000000Z".into(),
            updated_at: "2023-11-15T00:00:00.000000Z".into(),
        }
    }

    #[test]
    fn the_user_map_reads_pairs_and_a_header() {
        let map = parse_user_map("old_id,new_sub\n a , b \n\nc,d\n").unwrap();
        assert_eq!(
            map,
            HashMap::from([("a".into(), "b".into()), ("c".into(), "d".into())])
        );
        let Err(MigrationError::UserMap(problem)) = parse_user_map("a,b\nc\n") else {
            panic!("a line without a comma was accepted");
        };
        assert_eq!(problem, "line 2 is not old_id,new_sub");
        assert!(parse_user_map("a,\n").is_err());
    }

    #[test]
    fn users_keep_their_id_unless_a_map_says_otherwise() {
        let same = MigrationSettings::default();
        assert_eq!(new_user(&same, "u1").unwrap().as_str(), "u1");
        let mapped = MigrationSettings {
            user_map: Some(HashMap::from([("u1".into(), "cognito-sub".into())])),
            ..MigrationSettings::default()
        };
        assert_eq!(new_user(&mapped, "u1").unwrap().as_str(), "cognito-sub");
        assert!(new_user(&mapped, "u2").is_none());
    }

    #[test]
    fn an_account_becomes_the_apis_request_with_its_plaintext() {
        let key = Fernet::new(&Fernet::generate_key()).unwrap();
        let configuration = json!({"api_key": key.encrypt(b"sk_live_1"), "region": "eu"});
        let mapped = account_request(&key, account(configuration, false)).unwrap();
        assert_eq!(mapped.account_id.as_str(), "crm-1");
        assert_eq!(mapped.request.account_type, "crm");
        assert_eq!(mapped.request.connected, Some(false));
        assert_eq!(mapped.request.status_reason.as_deref(), Some(DISCONNECTED));
        let plain = json!({"api_key": "sk_live_1", "region": "eu"});
        assert_eq!(Value::Object(mapped.configuration), plain);
        assert_eq!(mapped.request.configuration.map(Value::Object), Some(plain));
        assert_eq!(mapped.timestamps.0, "2024-01-02T03:04:05.000000Z");

        let connected = account_request(&key, account(json!({}), true)).unwrap();
        assert_eq!(connected.request.status_reason, None);
    }

    #[test]
    fn an_account_that_cannot_be_mapped_says_why_without_its_values() {
        let key = Fernet::new(&Fernet::generate_key()).unwrap();
        let other = Fernet::new(&Fernet::generate_key()).unwrap();
        let undecryptable = json!({"password": other.encrypt(b"hunter2")});
        assert_eq!(
            account_request(&key, account(undecryptable, true))
                .err()
                .as_deref(),
            Some("undecryptable: configuration.password does not verify under the key")
        );
        assert_eq!(
            account_request(&key, account(json!("plain text"), true))
                .err()
                .as_deref(),
            Some("undecryptable: configuration is not a JSON object")
        );
        let mut bad_id = account(json!({}), true);
        bad_id.account_id = "no/slashes".into();
        assert_eq!(
            account_request(&key, bad_id).err().as_deref(),
            Some("validation_failed: account_id")
        );
    }

    #[test]
    fn a_target_keeps_its_state_and_gets_the_same_id_every_time() {
        let first = target_draft(target("Ada@Example.com")).unwrap();
        let again = target_draft(target("ada@example.com")).unwrap();
        assert_eq!(first.id, again.id);
        assert_eq!(
            first.draft.email.as_ref().map(|e| e.as_str()),
            Some("ada@example.com")
        );
        assert!(!first.active);
        assert_eq!(first.created_at, "2023-11-14T22:13:20.000000Z");
        assert_eq!(
            target_draft(target("not an email")).err().as_deref(),
            Some("validation_failed: email")
        );
    }
}
