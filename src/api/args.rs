//! A method's named arguments (the `args` struct of `method(auth, args)`), read with typed
//! accessors that turn a missing member or a wrong XML-RPC type into `InvalidParams` (-32602)
//! naming the member. Unknown members are rejected before the method runs, against the
//! member list in the method table.

use dxr::Value;
use sha2::{Digest, Sha256};

use super::fault::{ApiError, ErrorType, fail};
use crate::inventory::{Page, Window};

/// A struct of XML-RPC values, as the API returns them.
pub use crate::codec::{Struct, s, st};

#[derive(Debug, Clone, Default)]
pub struct Args {
    members: Struct,
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Integer(_) => "int",
        Value::Boolean(_) => "boolean",
        Value::String(_) => "string",
        Value::Double(_) => "double",
        Value::DateTime(_) => "dateTime.iso8601",
        Value::Base64(_) => "base64",
        Value::Struct(_) => "struct",
        Value::Array(_) => "array",
        _ => "an unsupported type",
    }
}

fn wrong_type<T>(name: &str, want: &str, got: &Value) -> Result<T, ApiError> {
    fail(
        ErrorType::InvalidParams,
        format!("member {name:?} must be {want}, got {}", kind(got)),
    )
}

impl Args {
    /// Takes the optional second parameter; rejects a non-struct and members not in `allowed`.
    pub fn parse(method: &str, param: Option<Value>, allowed: &[&str]) -> Result<Args, ApiError> {
        let members = match param {
            None => Struct::new(),
            Some(Value::Struct(m)) => m,
            Some(other) => {
                return fail(
                    ErrorType::InvalidParams,
                    format!(
                        "the second parameter of {method} must be a struct of named arguments, got {}",
                        kind(&other)
                    ),
                );
            }
        };
        if let Some(unknown) = members.keys().find(|k| !allowed.contains(&k.as_str())) {
            return fail(
                ErrorType::InvalidParams,
                format!(
                    "unknown member {unknown:?} in the arguments of {method}; it takes {}",
                    if allowed.is_empty() {
                        "no arguments".to_owned()
                    } else {
                        allowed.join(", ")
                    }
                ),
            );
        }
        Ok(Args { members })
    }

    pub fn members(&self) -> &Struct {
        &self.members
    }

    /// Replaces member `old` by `new` with `value` (e.g. a plaintext secret by its hash).
    pub fn replace(&mut self, old: &str, new: &str, value: Value) {
        self.members.remove(old);
        self.members.insert(new.to_owned(), value);
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.members.get(name)
    }

    fn required(&self, name: &str) -> Result<&Value, ApiError> {
        self.get(name).ok_or_else(|| {
            ApiError::new(ErrorType::InvalidParams, format!("missing member {name:?}"))
        })
    }

    pub fn str(&self, name: &str) -> Result<&str, ApiError> {
        match self.required(name)? {
            Value::String(s) => Ok(s),
            other => wrong_type(name, "a string", other),
        }
    }

    pub fn opt_str(&self, name: &str) -> Result<Option<&str>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => wrong_type(name, "a string", other),
        }
    }

    pub fn int(&self, name: &str) -> Result<i64, ApiError> {
        match self.required(name)? {
            Value::Integer(i) => Ok(i64::from(*i)),
            other => wrong_type(name, "an int", other),
        }
    }

    pub fn opt_int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Integer(i)) => Ok(Some(i64::from(*i))),
            Some(other) => wrong_type(name, "an int", other),
        }
    }

    pub fn opt_bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Boolean(b)) => Ok(Some(*b)),
            Some(other) => wrong_type(name, "a boolean", other),
        }
    }

    pub fn opt_str_list(&self, name: &str) -> Result<Option<Vec<String>>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => wrong_type(name, "an array of strings", other),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => wrong_type(name, "an array of strings", other),
        }
    }

    pub fn base64(&self, name: &str) -> Result<&[u8], ApiError> {
        match self.required(name)? {
            Value::Base64(b) => Ok(b),
            other => wrong_type(name, "base64", other),
        }
    }

    /// `offset`/`limit` of list calls: defaults 0 and 100, limit at most 1000.
    pub fn page(&self) -> Result<Window, ApiError> {
        let offset = self.opt_int("offset")?.unwrap_or(0);
        let limit = self.opt_int("limit")?.unwrap_or(100);
        if offset < 0 {
            return fail(ErrorType::InvalidParams, "offset must be 0 or more");
        }
        if !(1..=1000).contains(&limit) {
            return fail(
                ErrorType::InvalidParams,
                format!("limit must be between 1 and 1000, got {limit}"),
            );
        }
        Ok(Window { offset, limit })
    }

    /// The idempotency token of allocate* and async calls, if given.
    pub fn client_token(&self) -> Result<Option<&str>, ApiError> {
        let token = self.opt_str("clientToken")?;
        if let Some(t) = token
            && (t.is_empty() || t.len() > 64)
        {
            return fail(
                ErrorType::InvalidParams,
                "clientToken must be 1 to 64 characters",
            );
        }
        Ok(token)
    }

    /// A digest of the arguments other than `clientToken`, to tell a replay from a conflict.
    pub fn digest(&self) -> String {
        let mut rest = self.members.clone();
        rest.remove("clientToken");
        let xml = Value::Struct(rest).to_xml().unwrap_or_default();
        Sha256::digest(xml.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// An int member; values beyond i4 are clamped (the API only sends small counts and sizes).
pub fn int(v: i64) -> Value {
    Value::Integer(i32::try_from(v).unwrap_or(if v < 0 { i32::MIN } else { i32::MAX }))
}

/// A list method's answer: `{totalCount, <member>: [...]}` with each item shaped by `shape`.
pub fn list<T>(member: &str, page: Page<T>, shape: impl FnMut(T) -> Struct) -> Struct {
    let items = page
        .items
        .into_iter()
        .map(shape)
        .map(Value::Struct)
        .collect();
    st([
        ("totalCount", int(page.total)),
        (member, Value::Array(items)),
    ])
}
