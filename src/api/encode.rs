//! Writing XML-RPC responses. dxr's encoder goes through serde and quick-xml's serializer,
//! which showed up at the top of the API's profile; responses are plain trees of values, so
//! this writes them straight into one string. Values are escaped per XML; `<nil/>` does not
//! exist in our responses (HAAS-API.md §2.0), so there is no case for it.

use std::fmt::Write;

use dxr::Value;

fn escape(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

fn value(out: &mut String, v: &Value) {
    out.push_str("<value>");
    match v {
        Value::Integer(i) => {
            let _ = write!(out, "<i4>{i}</i4>");
        }
        Value::Boolean(b) => {
            let _ = write!(out, "<boolean>{}</boolean>", u8::from(*b));
        }
        Value::String(s) => {
            out.push_str("<string>");
            escape(out, s);
            out.push_str("</string>");
        }
        Value::Double(d) => {
            let _ = write!(out, "<double>{d}</double>");
        }
        Value::DateTime(t) => {
            let _ = write!(out, "<dateTime.iso8601>{t}</dateTime.iso8601>");
        }
        Value::Base64(b) => {
            use base64::Engine;
            out.push_str("<base64>");
            out.push_str(&base64::engine::general_purpose::STANDARD.encode(b));
            out.push_str("</base64>");
        }
        Value::Struct(members) => {
            out.push_str("<struct>");
            for (name, v) in members {
                out.push_str("<member><name>");
                escape(out, name);
                out.push_str("</name>");
                value(out, v);
                out.push_str("</member>");
            }
            out.push_str("</struct>");
        }
        Value::Array(items) => {
            out.push_str("<array><data>");
            for v in items {
                value(out, v);
            }
            out.push_str("</data></array>");
        }
        // dxr's Value is non-exhaustive; anything newer goes through dxr's own encoder.
        other => out.push_str(
            other
                .to_xml()
                .unwrap_or_default()
                .trim_start_matches("<value>")
                .trim_end_matches("</value>"),
        ),
    }
    out.push_str("</value>");
}

/// The `<methodResponse>` element for `v` (the caller adds the XML declaration).
pub fn response(v: &Value) -> String {
    let mut out = String::with_capacity(1024);
    out.push_str("<methodResponse><params><param>");
    value(&mut out, v);
    out.push_str("</param></params></methodResponse>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::args::{int, s, st};

    #[test]
    fn responses_parse_back_to_the_same_value() {
        let v = Value::Struct(st([
            ("requestId", s("a-b")),
            ("text", s("<&>\"' ünï\r\n")),
            ("n", int(-42)),
            ("ok", Value::Boolean(true)),
            ("bytes", Value::Base64(vec![0, 1, 255])),
            ("list", Value::Array(vec![s(""), Value::Struct(st([]))])),
        ]));
        let xml = response(&v);
        let parsed = dxr::MethodResponse::from_xml(&xml).unwrap().value;
        assert_eq!(parsed, v);
        assert!(!xml.contains("<nil"));
    }
}
