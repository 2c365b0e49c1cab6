//! XML-RPC values as nhn stores them: the struct type every layer passes around, its small
//! constructors, and the codec of the `requests` table's `args` and `result` columns (a struct
//! written as one XML-RPC `<value>`). It sits below both the API and the job engine, so that the
//! job engine and the facility layer never import the API.

use std::collections::BTreeMap;

use base64::Engine;
use dxr::Value;

/// An XML-RPC struct, members in name order.
pub type Struct = BTreeMap<String, Value>;

/// A struct from `(name, value)` pairs.
pub fn st<const N: usize>(members: [(&str, Value); N]) -> Struct {
    members
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

/// A string value.
pub fn s(v: impl Into<String>) -> Value {
    Value::String(v.into())
}

/// A struct as stored in the `requests` table.
pub fn encode(v: &Struct) -> String {
    Value::Struct(v.clone()).to_xml().unwrap_or_default()
}

/// A stored struct; anything unreadable is the empty struct.
pub fn decode(xml: &str) -> Struct {
    match Value::from_xml(xml) {
        Ok(Value::Struct(m)) => m,
        _ => Struct::new(),
    }
}

/// A string member, or "" when it is missing or not a string.
pub fn text(m: &Struct, key: &str) -> String {
    match m.get(key) {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    }
}

/// An XML-RPC value as JSON (the typed facility commands carry Init* settings this way).
pub fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::String(s) => J::String(s.clone()),
        Value::Integer(i) => J::from(*i),
        Value::Boolean(b) => J::Bool(*b),
        // XML-RPC's int is 32 bits, so larger counts travel as doubles (nhn agent's byte
        // counts); a whole double comes back as an integer so that it reads as one.
        Value::Double(d) if d.fract() == 0.0 && d.abs() < 9.0e15 => J::from(*d as i64),
        Value::Double(d) => J::from(*d),
        // writeFile's content: configure mode decodes it again when it builds the bundle.
        Value::Base64(b) => J::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Value::Array(a) => J::Array(a.iter().map(to_json).collect()),
        Value::Struct(m) => J::Object(m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()),
        other => J::String(other.to_xml().unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structs_round_trip_through_the_stored_form() {
        let v = st([("vmId", s("vm-1")), ("force", Value::Boolean(true))]);
        assert_eq!(decode(&encode(&v)), v);
        assert_eq!(decode("not xml"), Struct::new());
        assert_eq!(text(&v, "vmId"), "vm-1");
        assert_eq!(text(&v, "force"), "");
    }
}
