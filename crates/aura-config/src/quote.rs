//! Writing values into configuration text: the one TOML quoting used by everything that
//! writes or edits `server.toml` and `client.toml` (`aura server-init`,
//! `aura provision-client`, the demo and the end-to-end tests).

/// `s` as a TOML basic string, quotes included: `"` and `\` are escaped, and so is every
/// control character (as `\uXXXX`), which a TOML basic string may not hold raw. Parsing
/// the result gives back `s` exactly.
pub fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn toml_string_escapes_and_round_trips() {
        assert_eq!(toml_string("vpn.example.com"), "\"vpn.example.com\"");
        assert_eq!(toml_string("/tmp/a\"b\\c"), "\"/tmp/a\\\"b\\\\c\"");
        assert_eq!(toml_string("a\nb\u{7f}"), "\"a\\u000Ab\\u007F\"");
        for s in [
            "",
            "plain",
            "quote\" back\\slash",
            "tab\tnew\nline\r\u{1}",
            "ünï €",
        ] {
            let doc = format!("k = {}\n", toml_string(s));
            let table: toml::Table = toml::from_str(&doc).unwrap();
            assert_eq!(table["k"].as_str(), Some(s), "{doc}");
        }
    }
}
