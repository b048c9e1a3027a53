//! Classifying a key name (rule 1 of the [module doc](super)): the key is cut into lower-case
//! words, glued words are cut on the vocabulary, and the words are matched against the credential
//! nouns, their qualifiers and the describing words that follow them.

use super::vocabulary::{
    AUTH_QUALIFIERS, GLUE_WORDS, IGNORED_TRAILING_WORDS, KEY_NOUNS, NOT_SECRET_WORDS,
    PUBLIC_KEY_QUALIFIERS, READABLE_TAILS, SECRET_NOUNS, SECRET_PHRASES, SECRET_STEMS,
    TOKEN_COUNT_QUALIFIERS, WEAK_SECRET_NOUNS,
};

/// Every vocabulary list, for cutting glued words.
const DICTIONARY: &[&[&str]] = &[
    SECRET_STEMS,
    SECRET_NOUNS,
    KEY_NOUNS,
    PUBLIC_KEY_QUALIFIERS,
    WEAK_SECRET_NOUNS,
    AUTH_QUALIFIERS,
    TOKEN_COUNT_QUALIFIERS,
    READABLE_TAILS,
    IGNORED_TRAILING_WORDS,
    GLUE_WORDS,
];

/// Shortest piece a glued word is cut into.
const MIN_GLUED_PIECE: usize = 2;

/// Longest piece a glued word is cut into (the longest vocabulary word is shorter).
const MAX_GLUED_PIECE: usize = 16;

/// Longer words are not cut (bounds the work per key).
const MAX_GLUED_WORD: usize = 48;

/// Cuts a key into lower-case words: at `-`, `_`, `.`, spaces and any other non-alphanumeric
/// character, where a lower-case letter meets an upper-case one (`accessToken`), before the last
/// capital of an acronym (`APIKey` → `api`, `key`; `XApiKey` → `x`, `api`, `key`), and where
/// letters meet digits (`oauth2Token` → `oauth`, `2`, `token`). Digit-only words are ignored by
/// the secret rule.
pub fn normalise_key(key: &str) -> Vec<String> {
    let chars: Vec<char> = key.chars().collect();
    let mut words = Vec::new();
    let mut current = String::new();
    for (index, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            flush_word(&mut words, &mut current);
            continue;
        }
        if let Some(&previous) = index.checked_sub(1).and_then(|i| chars.get(i))
            && previous.is_alphanumeric()
        {
            let next = chars.get(index + 1).copied();
            let boundary = (previous.is_lowercase() && c.is_uppercase())
                || previous.is_numeric() != c.is_numeric()
                || (previous.is_uppercase()
                    && c.is_uppercase()
                    && next.is_some_and(char::is_lowercase));
            if boundary {
                flush_word(&mut words, &mut current);
            }
        }
        current.extend(c.to_lowercase());
    }
    flush_word(&mut words, &mut current);
    words
}

fn flush_word(words: &mut Vec<String>, current: &mut String) {
    if !current.is_empty() {
        words.push(std::mem::take(current));
    }
}

fn in_dictionary(word: &str) -> bool {
    DICTIONARY.iter().any(|list| list.contains(&word))
        || SECRET_PHRASES.iter().any(|phrase| phrase.contains(&word))
}

/// For every start offset of `word`, the fewest dictionary words spelling the rest of it.
fn fewest_words(word: &str) -> Vec<Option<Vec<&str>>> {
    let length = word.len();
    let mut best: Vec<Option<Vec<&str>>> = vec![None; length + 1];
    if let Some(end) = best.last_mut() {
        *end = Some(Vec::new());
    }
    for start in (0..length).rev() {
        let mut chosen: Option<Vec<&str>> = None;
        let last_end = length.min(start + MAX_GLUED_PIECE);
        for end in (start + MIN_GLUED_PIECE..=last_end).rev() {
            let Some(piece) = word.get(start..end) else {
                continue;
            };
            if !in_dictionary(piece) {
                continue;
            }
            let Some(Some(rest)) = best.get(end) else {
                continue;
            };
            if chosen
                .as_ref()
                .is_none_or(|current| rest.len() + 1 < current.len())
            {
                chosen = Some(std::iter::once(piece).chain(rest.iter().copied()).collect());
            }
        }
        if let Some(slot) = best.get_mut(start) {
            *slot = chosen;
        }
    }
    best
}

/// Cuts a glued lower-case word on the vocabulary (see [`GLUE_WORDS`]).
fn expand_glued(word: String) -> Vec<String> {
    cut_glued(&word).unwrap_or_else(|| vec![word])
}

fn cut_glued(word: &str) -> Option<Vec<String>> {
    if word.len() < 2 * MIN_GLUED_PIECE
        || word.len() > MAX_GLUED_WORD
        || !word.bytes().all(|b| b.is_ascii_lowercase())
        || in_dictionary(word)
    {
        return None;
    }
    let best = fewest_words(word);
    // The whole word or, failing that, its longest suffix spelt with two or more words; after an
    // unknown head only with 3+ letter words (so `monkey` is not `m on key`).
    let spelt = best
        .iter()
        .enumerate()
        .find_map(|(start, words)| match words {
            Some(words)
                if words.len() >= 2
                    && (start == 0 || words.iter().all(|piece| piece.len() > MIN_GLUED_PIECE)) =>
            {
                Some((start, words))
            }
            _ => None,
        });
    if let Some((start, words)) = spelt {
        let head = word
            .get(..start)
            .filter(|head| !head.is_empty())
            .map(str::to_owned);
        return Some(
            head.into_iter()
                .chain(words.iter().map(|piece| (*piece).to_owned()))
                .collect(),
        );
    }
    ["tokens", "token"].into_iter().find_map(|noun| {
        word.strip_suffix(noun)
            .filter(|head| !head.is_empty())
            .map(|head| vec![head.to_owned(), noun.to_owned()])
    })
}

/// The words the vocabulary is matched against: [`normalise_key`], digits dropped, glued words cut.
fn vocabulary_words(key: &str) -> Vec<String> {
    normalise_key(key)
        .into_iter()
        .filter(|word| !word.chars().all(char::is_numeric))
        .flat_map(expand_glued)
        .collect()
}

fn has_secret_stem(word: &str) -> bool {
    !NOT_SECRET_WORDS.contains(&word) && SECRET_STEMS.iter().any(|stem| word.contains(*stem))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NameClass {
    /// The key names a credential.
    Secret,
    /// A bare `key`/`keys`: secret when the value looks like an opaque token.
    BareKey,
    /// Not a credential by name.
    Readable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strength {
    /// Secret unless a readable tail follows.
    Strong,
    /// Secret only at the end, or before `code`/`codes`.
    Weak,
}

/// Whether the last word of `head` ends a credential noun, and how strongly.
fn occurrence(head: &[&str]) -> Option<Strength> {
    let (&noun, earlier) = head.split_last()?;
    let before = earlier.last().copied();
    if KEY_NOUNS.contains(&noun) {
        return before
            .filter(|qualifier| {
                let counted = noun == "keys" && TOKEN_COUNT_QUALIFIERS.contains(qualifier);
                !counted && !PUBLIC_KEY_QUALIFIERS.contains(qualifier)
            })
            .map(|_| Strength::Strong);
    }
    if SECRET_NOUNS.contains(&noun) {
        let counted = matches!(noun, "token" | "tokens")
            && before.is_some_and(|qualifier| TOKEN_COUNT_QUALIFIERS.contains(&qualifier));
        return (!counted).then_some(Strength::Strong);
    }
    if let Some(before) = before
        && SECRET_PHRASES
            .iter()
            .any(|[first, second]| *first == before && *second == noun)
    {
        return Some(Strength::Strong);
    }
    if WEAK_SECRET_NOUNS.contains(&noun) {
        let qualified =
            noun != "auth" || before.is_none_or(|qualifier| AUTH_QUALIFIERS.contains(&qualifier));
        return qualified.then_some(Strength::Weak);
    }
    None
}

pub(super) fn classify_name(key: &str) -> NameClass {
    let owned = vocabulary_words(key);
    if owned.iter().any(|word| has_secret_stem(word)) {
        return NameClass::Secret;
    }
    let mut words: Vec<&str> = owned.iter().map(String::as_str).collect();
    while words.len() > 1
        && words
            .last()
            .is_some_and(|last| IGNORED_TRAILING_WORDS.contains(last))
    {
        words.pop();
    }
    if let [only] = words.as_slice()
        && KEY_NOUNS.contains(only)
    {
        return NameClass::BareKey;
    }
    for end in (0..words.len()).rev() {
        let Some((head, rest)) = words.split_at_checked(end + 1) else {
            continue;
        };
        match occurrence(head) {
            Some(Strength::Strong) => {
                let describes = rest
                    .last()
                    .is_some_and(|last| READABLE_TAILS.contains(last));
                return if describes {
                    NameClass::Readable
                } else {
                    NameClass::Secret
                };
            }
            Some(Strength::Weak) if matches!(rest, [] | ["code" | "codes"]) => {
                return NameClass::Secret;
            }
            _ => {}
        }
    }
    NameClass::Readable
}

/// Whether a configuration key names a credential (rule 1 of the [module doc](super)). A bare
/// `key` is not a secret by its name alone; [`split`](super::split) seals it when its value looks
/// like an opaque token.
pub fn is_secret_field(key: &str) -> bool {
    classify_name(key) == NameClass::Secret
}

pub(super) fn joined_words(key: &str) -> String {
    normalise_key(key).join("_")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::secrets::tests::{READABLE_KEYS, SECRET_KEYS};

    #[test]
    fn secret_names_follow_the_documented_vocabulary() {
        for key in SECRET_KEYS {
            assert!(is_secret_field(key), "{key} should be secret");
        }
        for key in READABLE_KEYS {
            assert!(!is_secret_field(key), "{key} should stay readable");
        }
    }

    #[test]
    fn keys_are_cut_into_words() {
        let cases: &[(&str, &[&str])] = &[
            ("XApiKey", &["x", "api", "key"]),
            ("APIKey", &["api", "key"]),
            ("accessToken", &["access", "token"]),
            (
                "aws_secret-access.key id",
                &["aws", "secret", "access", "key", "id"],
            ),
            ("oauth2Token", &["oauth", "2", "token"]),
            ("IDToken", &["id", "token"]),
            ("max_tokens", &["max", "tokens"]),
        ];
        for (key, words) in cases {
            assert_eq!(normalise_key(key), *words, "{key}");
        }
        assert_eq!(vocabulary_words("mailgunapikey"), ["mailgun", "api", "key"]);
        assert_eq!(vocabulary_words("maxtokens"), ["max", "tokens"]);
        assert_eq!(vocabulary_words("tokenizer"), ["tokenizer"]);
    }
}
