//! Arbitrary text frames through the native protocol parser, and what parses back through the
//! encoders.
//!
//! A parsed message, written in canonical form by `encode_client`, must parse to the same
//! message; the server messages built from it, and the error reply of a refused frame, must be
//! single JSON objects (checked with the parser itself: a server `type` reads as
//! `unknown_type`, which it only reports for a well-formed object). Run:
//! `cargo +nightly fuzz run native_parse seeds/native_parse`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use roomcast_server::native::proto::{self, ClientMessage, ErrorCode};

/// Panics unless `json` is one well-formed JSON object with a string `type`.
fn assert_object(json: &[u8]) {
    match proto::parse(json) {
        Err(e) if e.code == ErrorCode::UnknownType => {}
        other => panic!("{:?} is not a server message: {other:?}", String::from_utf8_lossy(json)),
    }
}

fuzz_target!(|data: &[u8]| {
    let message = match proto::parse(data) {
        Ok(message) => message,
        Err(e) => {
            assert!(matches!(e.code, ErrorCode::BadRequest | ErrorCode::UnknownType));
            assert!(e.id.is_none_or(|id| id <= proto::MAX_ID));
            return assert_object(&proto::encode_reply_error(e.id, e.code, &e.message));
        }
    };

    let again = proto::parse(&proto::encode_client(&message));
    assert_eq!(again.as_ref(), Ok(&message));

    match &message {
        ClientMessage::Publish { id, room, event, data, ns } => {
            let ns = ns.as_deref().unwrap_or("/");
            assert_object(&proto::encode_event(Some(room), ns, event, data, *id, room));
            assert_object(&proto::encode_event(None, ns, event, data, 0, ""));
            assert_object(&proto::encode_reply_ok(*id));
        }
        ClientMessage::Subscribe { id, room, ns, tenant, .. }
        | ClientMessage::Unsubscribe { id, room, ns, tenant } => {
            let tenant = tenant.as_deref().unwrap_or("");
            let rooms = [room.clone(), ns.clone().unwrap_or_default()];
            assert_object(&proto::encode_welcome(room, tenant, tenant, &rooms, *id, Some(*id)));
            assert_object(&proto::encode_reply_error(Some(*id), ErrorCode::Forbidden, room));
            if let ClientMessage::Subscribe { since: Some(since), .. } = &message {
                let position = Some((since.offset, since.epoch.as_str()));
                assert_object(&proto::encode_reply_recovered(*id, true, position));
            }
        }
        ClientMessage::Auth { token, .. } => {
            assert_object(&proto::encode_disconnect(proto::CloseCode::AuthFailed, token));
        }
        ClientMessage::Refresh { id, token } => {
            assert_object(&proto::encode_reply_ok_expires(*id, *id));
            assert_object(&proto::encode_reply_error(Some(*id), ErrorCode::InvalidToken, token));
        }
        ClientMessage::Ping { id } => assert_object(&proto::encode_pong(*id)),
        _ => {}
    }
});
