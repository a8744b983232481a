//! Printing text that came from outside (endpoint reports, audit details) on a terminal.
//!
//! An endpoint controls its error messages and the file names it reports. Printed raw, an
//! escape sequence in them could clear the operator's screen, rewrite earlier lines, set the
//! window title or hide text (bidirectional overrides). [`escape_untrusted`] renders every
//! control character visibly instead, so what the operator reads is what the endpoint sent.

use std::borrow::Cow;
use std::fmt::Write;

/// Unicode format characters that reorder or hide text (bidirectional embeddings, overrides
/// and isolates); shown escaped like control characters.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every control character (C0, DEL, C1, bidirectional controls) written as a
/// visible escape: `\n`, `\r`, `\t`, `\x1b`, `\u{9b}`. Plain text is returned unchanged.
pub(crate) fn escape_untrusted(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() || is_bidi_control(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if c.is_control() || is_bidi_control(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_not_interpreted() {
        assert_eq!(escape_untrusted("plain text é"), "plain text é");
        assert_eq!(
            escape_untrusted("a\x1b[2Jb\x07\r\n\t\x7f\u{9b}c\u{202e}"),
            "a\\x1b[2Jb\\x07\\r\\n\\t\\x7f\\u{9b}c\\u{202e}"
        );
    }
}
