//! The message as written (RFC 5322, MIME), read and written the way both providers need:
//! headers unfolded and RFC 2047 words decoded, transfer encodings undone, the text part of a
//! multipart body, address lists, the message ids a reply names, and subjects compared without
//! their `Re:`.

use base64::Engine;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Value, json};

/// Graph's MIME body: standard base64, with or without padding.
pub(super) const BASE64_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A message's headers, unfolded, in order, values as written; its body as sent and as text.
#[derive(Debug, Clone, Default)]
pub(super) struct Written {
    pub(super) headers: Vec<(String, String)>,
    pub(super) encoded_body: String,
    pub(super) body: String,
}

impl Written {
    pub(super) fn parse(raw: &str) -> Self {
        let raw = raw.replace("\r\n", "\n");
        let (head, body) = match raw.find("\n\n") {
            Some(end) => (&raw[..end], &raw[end + 2..]),
            None => (raw.as_str(), ""),
        };
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.lines() {
            if line.starts_with([' ', '\t']) {
                // A folded line continues the header above it (RFC 5322 §2.2.3).
                if let Some((_, value)) = headers.last_mut() {
                    value.push(' ');
                    value.push_str(line.trim());
                }
            } else if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
        }
        let text = body_text(&headers, body);
        Self {
            headers,
            encoded_body: body.to_owned(),
            body: text,
        }
    }

    pub(super) fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }

    /// A header's value with RFC 2047 words decoded.
    pub(super) fn text(&self, name: &str) -> Option<String> {
        self.header(name).map(decode_words)
    }

    pub(super) fn set(&mut self, name: &str, value: &str) {
        match self
            .headers
            .iter_mut()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
        {
            Some((_, existing)) => *existing = value.to_owned(),
            None => self.headers.push((name.to_owned(), value.to_owned())),
        }
    }

    pub(super) fn subject(&self) -> String {
        self.text("Subject").unwrap_or_default()
    }

    pub(super) fn message_id(&self) -> String {
        self.header("Message-ID").unwrap_or_default().to_owned()
    }

    /// The message ids it answers, the most recent first (`In-Reply-To`, then `References`
    /// from its end).
    pub(super) fn answered_ids(&self) -> Vec<String> {
        let mut ids = message_ids(self.header("In-Reply-To").unwrap_or_default());
        ids.extend(
            message_ids(self.header("References").unwrap_or_default())
                .into_iter()
                .rev(),
        );
        ids
    }

    pub(super) fn recipients(&self) -> Vec<Address> {
        ["To", "Cc", "Bcc"]
            .iter()
            .filter_map(|name| self.header(name))
            .flat_map(addresses)
            .collect()
    }

    pub(super) fn from(&self) -> Option<Address> {
        self.header("From")
            .and_then(|from| addresses(from).into_iter().next())
    }

    /// The message again, as the provider keeps it (headers possibly changed).
    pub(super) fn render(&self) -> String {
        let mut raw = String::new();
        for (name, value) in &self.headers {
            raw.push_str(&format!("{name}: {value}\r\n"));
        }
        raw.push_str("\r\n");
        raw.push_str(&self.encoded_body.replace('\n', "\r\n"));
        raw
    }

    pub(super) fn snippet(&self) -> String {
        self.body
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(200)
            .collect()
    }

    pub(super) fn mime_type(&self) -> String {
        self.header("Content-Type")
            .and_then(|value| value.split(';').next())
            .map(|value| value.trim().to_ascii_lowercase())
            .unwrap_or_else(|| "text/plain".to_owned())
    }
}

pub(super) fn header_in<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(header, _)| header.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// The text of a body: the first `text/plain` part of a multipart one, its transfer encoding
/// (base64, quoted-printable) undone.
fn body_text(headers: &[(String, String)], body: &str) -> String {
    let content_type = header_in(headers, "Content-Type").unwrap_or("text/plain");
    if content_type.to_ascii_lowercase().starts_with("multipart/") {
        let Some(boundary) = content_parameter(content_type, "boundary") else {
            return body.to_owned();
        };
        let delimiter = format!("--{boundary}");
        for part in body.split(delimiter.as_str()).skip(1) {
            if part.starts_with("--") {
                break;
            }
            let part = Written::parse(part.trim_start_matches('\n'));
            let kind = part.mime_type();
            if kind == "text/plain" || kind.starts_with("multipart/") {
                return part.body.trim_end_matches('\n').to_owned();
            }
        }
        return String::new();
    }
    let encoding = header_in(headers, "Content-Transfer-Encoding")
        .unwrap_or("7bit")
        .trim()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "base64" => BASE64_ANY_PADDING
            .decode(body.split_whitespace().collect::<String>())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_else(|_| body.to_owned()),
        "quoted-printable" => quoted_printable(body, false),
        _ => body.to_owned(),
    }
}

/// A parameter of a structured header value (`boundary` of `Content-Type`).
fn content_parameter(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|parameter| {
        let (key, value) = parameter.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().trim_matches('"').to_owned())
    })
}

/// Quoted-printable (RFC 2045 §6.7), or RFC 2047's `Q` when `underscore_is_space`.
fn quoted_printable(text: &str, underscore_is_space: bool) -> String {
    let input = text.as_bytes();
    let mut bytes = Vec::with_capacity(input.len());
    let mut at = 0;
    while at < input.len() {
        match input[at] {
            b'=' if input.get(at + 1) == Some(&b'\n') => at += 2,
            b'=' => match input
                .get(at + 1..at + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            {
                Some(byte) => {
                    bytes.push(byte);
                    at += 3;
                }
                None => {
                    bytes.push(b'=');
                    at += 1;
                }
            },
            b'_' if underscore_is_space => {
                bytes.push(b' ');
                at += 1;
            }
            byte => {
                bytes.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A header value with its RFC 2047 encoded words (`=?UTF-8?B?...?=`) decoded; the space
/// between two adjacent words goes (RFC 2047 §6.2).
pub(super) fn decode_words(value: &str) -> String {
    let mut decoded = String::new();
    let mut rest = value;
    let mut after_word = false;
    while let Some(start) = rest.find("=?") {
        let (before, candidate) = rest.split_at(start);
        match encoded_word(candidate) {
            Some((text, length)) => {
                if !(after_word && before.trim().is_empty()) {
                    decoded.push_str(before);
                }
                decoded.push_str(&text);
                rest = &candidate[length..];
                after_word = true;
            }
            None => {
                decoded.push_str(before);
                decoded.push_str("=?");
                rest = &candidate[2..];
                after_word = false;
            }
        }
    }
    decoded.push_str(rest);
    decoded
}

/// One encoded word at the start of `text` (which starts with `=?`): its text and length.
fn encoded_word(text: &str) -> Option<(String, usize)> {
    let mut pieces = text[2..].splitn(3, '?');
    let charset = pieces.next()?;
    let encoding = pieces.next()?;
    let rest = pieces.next()?;
    let end = rest.find("?=")?;
    let payload = &rest[..end];
    if payload.contains(char::is_whitespace) {
        return None;
    }
    let text = match encoding {
        "B" | "b" => {
            String::from_utf8_lossy(&BASE64_ANY_PADDING.decode(payload).ok()?).into_owned()
        }
        "Q" | "q" => quoted_printable(payload, true),
        _ => return None,
    };
    Some((text, 2 + charset.len() + 1 + encoding.len() + 1 + end + 2))
}

/// A subject as a header value: itself when ASCII, else one UTF-8 `B` word.
pub(super) fn encode_words(text: &str) -> String {
    if text.is_ascii() {
        text.to_owned()
    } else {
        format!("=?UTF-8?B?{}?=", STANDARD.encode(text.as_bytes()))
    }
}

/// A mailbox in an address header: `Name <address>` or a bare address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Address {
    name: String,
    pub(super) address: String,
}

impl Address {
    /// Graph's `recipient`: `{"emailAddress": {name, address}}`, the address as the name when
    /// there is none.
    pub(super) fn graph(&self) -> Value {
        let name = if self.name.is_empty() {
            &self.address
        } else {
            &self.name
        };
        json!({"emailAddress": {"name": name, "address": self.address}})
    }
}

/// The mailboxes of an address list (commas inside quotes or angle brackets do not split).
pub(super) fn addresses(value: &str) -> Vec<Address> {
    let mut list = Vec::new();
    let mut current = String::new();
    let (mut quoted, mut angled) = (false, false);
    for character in value.chars() {
        match character {
            '"' => quoted = !quoted,
            '<' if !quoted => angled = true,
            '>' if !quoted => angled = false,
            ',' if !quoted && !angled => {
                list.extend(address(&current));
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(character);
    }
    list.extend(address(&current));
    list
}

pub(super) fn address(text: &str) -> Option<Address> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    Some(match (text.rfind('<'), text.rfind('>')) {
        (Some(open), Some(close)) if open < close => Address {
            name: decode_words(text[..open].trim().trim_matches('"').trim()),
            address: text[open + 1..close].trim().to_owned(),
        },
        _ => Address {
            name: String::new(),
            address: text.to_owned(),
        },
    })
}

/// Whether Gmail takes `text` for an address: something before the `@`, a dotted domain after.
pub(super) fn is_deliverable(text: &str) -> bool {
    match text.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !text.contains(char::is_whitespace)
        }
        None => false,
    }
}

/// The `<...>` message ids in an `In-Reply-To` or `References` value.
fn message_ids(value: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut rest = value;
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>') else {
            break;
        };
        ids.push(rest[open..open + close + 1].to_owned());
        rest = &rest[open + close + 1..];
    }
    ids
}

/// The subject without its reply and forward prefixes, for comparing a reply with what it answers.
pub(super) fn topic(subject: &str) -> String {
    let mut rest = subject.trim();
    'strip: loop {
        for prefix in ["re:", "fwd:", "fw:", "aw:", "wg:", "sv:"] {
            if rest.len() >= prefix.len() && rest[..prefix.len()].eq_ignore_ascii_case(prefix) {
                rest = rest[prefix.len()..].trim_start();
                continue 'strip;
            }
        }
        break;
    }
    rest.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_mailbox::test_client::outreach_mime;

    #[test]
    fn fake_mailbox_reads_folded_encoded_and_multipart_messages() {
        let written = Written::parse(&outreach_mime(
            "Ada <ada@example.com>",
            "bob@client.example",
            "Café tomorrow?",
            "<pw.1@example.com>",
            "Line one\r\nLine two",
        ));
        assert_eq!(written.subject(), "Café tomorrow?");
        assert_eq!(written.body, "Line one\r\nLine two");
        assert_eq!(written.from().expect("a From").address, "ada@example.com");

        let folded = Written::parse(
            "From: =?UTF-8?Q?Jos=C3=A9?= <jose@client.example>\r\nTo: a@x.example, \"Last, First\" <b@y.example>\r\n\
             References: <a@x.example>\r\n <b@x.example>\r\nSubject: =?UTF-8?B?UmU6?= =?UTF-8?B?IGhp?=\r\n\
             Content-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n--b1\r\n\
             Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
             caf=C3=A9 =\r\nau lait\r\n--b1\r\nContent-Type: text/html\r\n\r\n<p>no</p>\r\n--b1--\r\n",
        );
        assert_eq!(
            folded.text("From").as_deref(),
            Some("José <jose@client.example>")
        );
        assert_eq!(folded.subject(), "Re: hi");
        assert_eq!(folded.recipients().len(), 2);
        assert_eq!(
            folded.answered_ids(),
            ["<b@x.example>", "<a@x.example>"],
            "the most recent reference first"
        );
        assert_eq!(folded.body, "café au lait");
        assert_eq!(topic("RE: Fwd: re:  Hello"), "hello");
    }
}
