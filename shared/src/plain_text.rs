//! Free text the API stores and later puts into emails, direct messages and the UI (target names
//! and notes, account labels): it may not carry characters that change how other text is shown
//! or parsed there.
//!
//! Refused everywhere: every Unicode control character (`Cc`: NUL, ESC, DEL, C1 controls, ...),
//! the bidirectional overrides, embeddings and isolates (U+202A-U+202E, U+2066-U+2069, U+061C,
//! U+200E, U+200F) and the line and paragraph separators (U+2028, U+2029). Multi-line text
//! (notes) may keep tab, line feed and carriage return.

/// Whether text may hold line breaks and tabs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// One line: no tab, CR or LF (names, labels).
    Single,
    /// Tabs and line breaks allowed (notes).
    Multi,
}

/// The problem sentence for text that holds a refused character, or `None` when it is clean.
pub fn check(text: &str, lines: Lines) -> Option<&'static str> {
    let refused = text.chars().any(|c| match c {
        '\t' | '\n' | '\r' => lines == Lines::Single,
        '\u{202A}'..='\u{202E}'
        | '\u{2066}'..='\u{2069}'
        | '\u{061C}'
        | '\u{200E}'
        | '\u{200F}'
        | '\u{2028}'
        | '\u{2029}' => true,
        c => c.is_control(),
    });
    refused.then_some(match lines {
        Lines::Single => "may not contain control characters, line breaks or bidirectional overrides",
        Lines::Multi => "may not contain control characters (other than tab and line breaks) or bidirectional overrides",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_overrides_are_refused_and_ordinary_text_is_kept() {
        for bad in [
            "a\u{0}b",
            "a\rb",
            "a\nb",
            "a\u{1b}[31m",
            "\u{7f}",
            "\u{85}",
            "a\u{202E}gnp.exe",
            "\u{2066}x",
            "\u{200F}",
            "a\u{2028}b",
        ] {
            assert!(check(bad, Lines::Single).is_some(), "{bad:?}");
        }
        for bad in ["a\u{0}b", "a\u{202E}b", "\u{1b}"] {
            assert!(check(bad, Lines::Multi).is_some(), "{bad:?}");
        }
        for good in [
            "Ada Lovelace",
            "José Ñúñez",
            "李小龙",
            "Zoë 👩‍💻",
            "O'Brien-Smith",
        ] {
            assert_eq!(check(good, Lines::Single), None, "{good:?}");
        }
        assert_eq!(check("line 1\r\nline 2\tend", Lines::Multi), None);
    }
}
