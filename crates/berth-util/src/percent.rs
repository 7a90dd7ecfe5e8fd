//! Percent-encoding of values put into URLs (RFC 3986): everything but the
//! unreserved characters `A-Z a-z 0-9 - . _ ~` is encoded, non-ASCII as its
//! UTF-8 bytes.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Every byte but the unreserved characters.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// [`COMPONENT`] with `/` left as is.
const PATH: &AsciiSet = &COMPONENT.remove(b'/');

/// One URL component (a query value, a path segment): nothing in the result
/// can end it early or split it.
pub fn encode_component(value: &str) -> String {
    utf8_percent_encode(value, COMPONENT).to_string()
}

/// Like [`encode_component`], but `/` stays: for values that are repository
/// names (`team/app`), readable in a URL and meant to be split there.
pub fn encode_path(value: &str) -> String {
    utf8_percent_encode(value, PATH).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreserved_characters_stay() {
        let unreserved = "AZaz09-._~";
        assert_eq!(encode_component(unreserved), unreserved);
        assert_eq!(encode_path(unreserved), unreserved);
        assert_eq!(encode_component(""), "");
    }

    #[test]
    fn delimiters_and_spaces_are_encoded() {
        assert_eq!(
            encode_component("a b&c=d?e#f+g%h"),
            "a%20b%26c%3Dd%3Fe%23f%2Bg%25h"
        );
        assert_eq!(encode_component("team/app"), "team%2Fapp");
        assert_eq!(encode_component("owner:x@y"), "owner%3Ax%40y");
    }

    #[test]
    fn only_the_path_encoder_keeps_slashes() {
        assert_eq!(encode_path("team/app"), "team/app");
        assert_eq!(encode_path("a b/c?d"), "a%20b/c%3Fd");
    }

    #[test]
    fn non_ascii_is_encoded_as_utf8_bytes() {
        assert_eq!(encode_component("é"), "%C3%A9");
        assert_eq!(encode_path("ünï/cödé"), "%C3%BCn%C3%AF/c%C3%B6d%C3%A9");
        assert_eq!(encode_component("🐳"), "%F0%9F%90%B3");
    }
}
