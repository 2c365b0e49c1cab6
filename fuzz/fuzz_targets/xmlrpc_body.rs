//! XML-RPC: a `POST /RPC2` body through the decoding half of `api::rpc::call`, the part that
//! runs before any database access — UTF-8 check, `rpc::prescan` (nesting bound, no DTD, no
//! undefined entity) with the default `max_xml_depth`, dxr's `MethodCall::from_xml`, the lookup
//! in the method table, `KeyCache::key_id` of the credential, then `Args::parse` of the second parameter against the member list of
//! that method and of every method in `nhn::api::METHODS`, and the typed accessors the method
//! bodies use (`str`, `int`, `opt_bool`, `opt_str_list`, `base64`, `page`, `client_token`,
//! `digest`) on each member. Invariant checked: every rejection is a fault, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nhn::api::args::Args;
use nhn::api::auth::KeyCache;
use nhn::api::rpc::prescan;
use nhn::api::{METHODS, method};
use nhn::config::Api;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if prescan(text, Api::default().max_xml_depth).is_err() {
        return;
    }
    let Ok(call) = dxr::MethodCall::from_xml(text) else {
        return;
    };
    let mut params = call.params.into_iter();
    if let Some(dxr::Value::String(auth)) = params.next() {
        let _ = KeyCache::key_id(&auth);
    }
    let param = params.next();
    let named = method(&call.name).into_iter();
    for m in named.chain(METHODS.iter()) {
        let Ok(args) = Args::parse(m.name, param.clone(), m.members) else {
            continue;
        };
        for member in m.members {
            let _ = args.str(member);
            let _ = args.opt_str(member);
            let _ = args.int(member);
            let _ = args.opt_int(member);
            let _ = args.opt_bool(member);
            let _ = args.opt_str_list(member);
            let _ = args.base64(member);
        }
        let _ = args.page();
        let _ = args.client_token();
        let _ = args.digest();
    }
});
