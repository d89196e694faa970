//! JSON text written by hand where it is built per event or per session (timeline
//! entries, session details): a `serde_json::Value` would cost an allocation per key and
//! value.

/// Appends `s` as a JSON string literal, escaped exactly as `serde_json` escapes it.
pub fn push_string(out: &mut String, s: &str) {
    out.push('"');
    // Almost every value needs no escape: one branch-free pass (which the compiler
    // vectorises) says so, and the text is copied whole.
    let plain_text = s.bytes().fold(true, |plain, b| {
        plain & (b >= 0x20 && b != b'"' && b != b'\\')
    });
    if plain_text {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut plain = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(s.get(plain..i).unwrap_or_default());
        if escape.is_empty() {
            out.push_str(&format!("\\u{b:04x}"));
        } else {
            out.push_str(escape);
        }
        plain = i + 1;
    }
    out.push_str(s.get(plain..).unwrap_or_default());
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped_as_serde_json_does() {
        for s in [
            "PJSIP/reception-00000a1f",
            "a\"b\\c\nd\re\tf\u{1}g",
            "кириллица",
            "",
        ] {
            let mut out = String::new();
            push_string(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }
}
