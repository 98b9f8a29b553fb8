//! The emitters' real messages, captured from Redis (`tests/vectors/emitter/README.md` says
//! how), decoded field by field; then the same messages cut short and damaged, which must
//! come back as errors, never as a panic.

use std::sync::Arc;

use bytes::Bytes;
use roomcast_broker::{Payload, Publication, Target};
use serde_json::json;

use super::*;

const NODE: &str = include_str!("../../tests/vectors/emitter/node.tsv");
const PYTHON: &str = include_str!("../../tests/vectors/emitter/python.tsv");

fn vectors(file: &'static str) -> impl Iterator<Item = (&'static str, &'static str, Vec<u8>)> {
    file.lines().map(|line| {
        let mut fields = line.split('\t');
        let (name, channel, hex) = (
            fields.next().unwrap(),
            fields.next().unwrap(),
            fields.next().unwrap(),
        );
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        (name, channel, bytes)
    })
}

fn vector(file: &'static str, name: &str) -> (&'static str, Vec<u8>) {
    let (_, channel, bytes) = vectors(file)
        .find(|(n, _, _)| *n == name)
        .unwrap_or_else(|| panic!("no vector {name}"));
    (channel, bytes)
}

/// Rooms `tenant:<tenant>` name their tenant.
fn from_room() -> TenantRule {
    TenantRule::FromRoom(RoomPattern::parse("tenant:{tenant}").unwrap())
}

fn fixed() -> TenantRule {
    TenantRule::Fixed("acme".into())
}

fn node(name: &str, rule: &TenantRule) -> Result<EmitterCommand, EmitterError> {
    node_key("socket.io", name, rule)
}

fn node_key(key: &str, name: &str, rule: &TenantRule) -> Result<EmitterCommand, EmitterError> {
    let (channel, bytes) = vector(NODE, name);
    decode_node(key, channel, &bytes, rule)
}

fn python(name: &str, rule: &TenantRule) -> Result<EmitterCommand, EmitterError> {
    decode_python(&vector(PYTHON, name).1, rule)
}

fn strs(names: &[Arc<str>]) -> Vec<&str> {
    names.iter().map(|name| &**name).collect()
}

/// A publication to rooms of tenant `acme`, with its rooms.
fn to_rooms(command: Result<EmitterCommand, EmitterError>) -> (Publication, Vec<String>) {
    let (publication, skip_sids) = published(command);
    assert!(skip_sids.is_empty());
    let Target::Tenant {
        tenant,
        rooms,
        users,
    } = &publication.target
    else {
        panic!("not to rooms: {:?}", publication.target);
    };
    assert_eq!(&**tenant, "acme");
    assert!(users.is_empty());
    let rooms = rooms.iter().map(|room| room.to_string()).collect();
    (publication, rooms)
}

fn published(command: Result<EmitterCommand, EmitterError>) -> (Publication, Vec<Arc<str>>) {
    match command {
        Ok(EmitterCommand::Publish {
            publication,
            skip_sids,
        }) => (publication, skip_sids),
        other => panic!("not a publication: {other:?}"),
    }
}

/// The argument array's text and the attachments.
fn args(publication: &Publication) -> (&str, &[Bytes]) {
    match &publication.payload {
        Payload::Args { array, attachments } => (array.get(), attachments),
        Payload::Json(_) => panic!("not arguments"),
    }
}

fn plain(publication: &Publication, ns: &str, event: &str, array: &str) {
    assert_eq!(&*publication.ns, ns);
    assert_eq!(&*publication.event, event);
    assert_eq!(args(publication), (array, &[][..]));
    assert_eq!(publication.exclude, None);
    assert_eq!(publication.idempotency_key, None);
    assert!(publication.positions.is_empty());
}

#[test]
fn node_broadcast_to_the_namespace_needs_a_fixed_tenant() {
    let (p, skip) = published(node("broadcast", &fixed()));
    assert_eq!(
        p.target,
        Target::TenantWide {
            tenant: "acme".into()
        }
    );
    assert!(skip.is_empty());
    plain(&p, "/", "hello", r#"["world"]"#);
    assert!(p.except.is_empty());
    assert!(!p.volatile);
    assert_eq!(
        node("broadcast", &from_room()).unwrap_err(),
        EmitterError::NoTenant
    );
}

#[test]
fn node_one_room() {
    for rule in [from_room(), fixed()] {
        let (p, rooms) = to_rooms(node("one_room", &rule));
        assert_eq!(rooms, ["tenant:acme"]);
        plain(&p, "/", "order:shipped", r#"[{"id":7,"items":[1,2]}]"#);
        assert!(p.except.is_empty());
        assert!(!p.volatile);
    }
}

#[test]
fn node_rooms_with_except() {
    let (p, rooms) = to_rooms(node("rooms_except", &from_room()));
    assert_eq!(rooms, ["tenant:acme", "vip"]);
    assert_eq!(strs(&p.except), ["banned", "muted"]);
    plain(&p, "/", "note", r#"["x"]"#);
}

#[test]
fn node_volatile() {
    let (p, rooms) = to_rooms(node("volatile", &from_room()));
    assert_eq!(rooms, ["tenant:acme"]);
    assert!(p.volatile);
    plain(&p, "/", "typing", r#"[{"user":"u1"}]"#);
}

#[test]
fn node_binary_arguments_become_attachments() {
    let (p, _) = to_rooms(node("binary", &from_room()));
    assert_eq!(&*p.event, "file");
    let (array, attachments) = args(&p);
    assert_eq!(
        array,
        r#"[{"_placeholder":true,"num":0},{"name":"a.bin","thumb":{"_placeholder":true,"num":1}}]"#
    );
    assert_eq!(attachments, [&[0u8, 1, 2, 255][..], &b"hi"[..]]);
}

#[test]
fn node_multiple_arguments() {
    let (p, _) = to_rooms(node("multi_args", &from_room()));
    plain(
        &p,
        "/",
        "multi",
        r#"[1,"two",[3],{"four":4},null,true,1.5,"é€😀"]"#,
    );
}

#[test]
fn node_namespace_and_key() {
    let (p, rooms) = to_rooms(node_key("rc", "namespace_key", &from_room()));
    assert_eq!(rooms, ["tenant:acme"]);
    plain(&p, "/admin", "audit", r#"[{"ok":true}]"#);
    assert!(matches!(
        node("namespace_key", &from_room()),
        Err(EmitterError::Malformed(_))
    ));
}

#[test]
fn node_dates_numbers_and_typed_arrays() {
    let (p, _) = to_rooms(node("types", &from_room()));
    assert!(!p.volatile, "compress is no volatile flag");
    let (array, attachments) = args(&p);
    assert_eq!(
        array,
        r#"["2024-05-06T07:08:09.123Z","1970-01-01T00:00:00.000Z",null,-5,1099511627776,null,{"_placeholder":true,"num":0},-0.25]"#
    );
    assert_eq!(attachments, [&[9u8, 8][..]]);
}

#[test]
fn node_numeric_room() {
    let (p, rooms) = to_rooms(node("numeric_room", &fixed()));
    assert_eq!(rooms, ["42"]);
    plain(&p, "/", "n", "[]");
    assert_eq!(
        node("numeric_room", &from_room()).unwrap_err(),
        EmitterError::NoTenant
    );
}

#[test]
fn node_sockets_join() {
    let Ok(EmitterCommand::Rooms {
        change: RoomChange::Join,
        tenant,
        ns,
        sockets,
        rooms,
    }) = node("sockets_join", &from_room())
    else {
        panic!("not a join");
    };
    assert_eq!((&*tenant, &*ns), ("acme", "/"));
    assert_eq!(
        sockets,
        Sockets::InRooms {
            rooms: vec!["tenant:acme".into()],
            except: vec!["banned".into()],
        }
    );
    assert_eq!(strs(&rooms), ["lobby"]);
}

#[test]
fn node_sockets_leave() {
    let Ok(EmitterCommand::Rooms {
        change: RoomChange::Leave,
        tenant,
        ns,
        sockets,
        rooms,
    }) = node("sockets_leave", &from_room())
    else {
        panic!("not a leave");
    };
    assert_eq!((&*tenant, &*ns), ("acme", "/"));
    assert_eq!(
        sockets,
        Sockets::InRooms {
            rooms: vec!["tenant:acme".into()],
            except: Vec::new(),
        }
    );
    assert_eq!(strs(&rooms), ["lobby", "vip"]);
}

#[test]
fn node_disconnect_sockets() {
    let Ok(EmitterCommand::Disconnect {
        tenant,
        ns,
        sockets,
        close,
    }) = node("disconnect_close", &from_room())
    else {
        panic!("not a disconnect");
    };
    assert_eq!((&*tenant, &*ns, close), ("acme", "/", true));
    assert_eq!(
        sockets,
        Sockets::InRooms {
            rooms: vec!["tenant:acme".into()],
            except: Vec::new(),
        }
    );

    let Ok(EmitterCommand::Disconnect {
        tenant,
        sockets,
        close,
        ..
    }) = node("disconnect_all", &fixed())
    else {
        panic!("not a disconnect");
    };
    assert_eq!((&*tenant, close), ("acme", false));
    assert_eq!(
        sockets,
        Sockets::InRooms {
            rooms: Vec::new(),
            except: Vec::new(),
        }
    );
    assert_eq!(
        node("disconnect_all", &from_room()).unwrap_err(),
        EmitterError::NoTenant
    );
}

#[test]
fn node_server_side_emit_is_ignored() {
    assert!(matches!(
        node("server_side_emit", &from_room()),
        Ok(EmitterCommand::Ignored(_))
    ));
}

#[test]
fn python_emit_to_the_namespace() {
    let (p, skip) = published(python("emit_broadcast", &fixed()));
    assert_eq!(
        p.target,
        Target::TenantWide {
            tenant: "acme".into()
        }
    );
    assert!(skip.is_empty());
    plain(&p, "/", "hello", r#"[{"a": 1}]"#);
    assert!(!p.volatile);
    assert!(p.except.is_empty());
    assert_eq!(
        python("emit_broadcast", &from_room()).unwrap_err(),
        EmitterError::NoTenant
    );
}

#[test]
fn python_emit_to_a_room_skipping_a_sid() {
    let (p, skip) = published(python("emit_room_skip_sid", &from_room()));
    assert_eq!(
        p.target,
        Target::Tenant {
            tenant: "acme".into(),
            rooms: vec!["tenant:acme".into()],
            users: Vec::new(),
        }
    );
    assert_eq!(strs(&skip), ["sid123"]);
    plain(&p, "/", "note", r#"["x"]"#);
}

#[test]
fn python_multiple_arguments() {
    let (p, rooms) = to_rooms(python("emit_multi_args", &from_room()));
    assert_eq!(rooms, ["tenant:acme"]);
    assert_eq!(&*p.ns, "/admin");
    assert_eq!(&*p.event, "multi");
    let (array, attachments) = args(&p);
    assert!(attachments.is_empty());
    let array: serde_json::Value = serde_json::from_str(array).unwrap();
    assert_eq!(array, json!([1, "two", [3], null, 1.5, "é€😀"]));
}

#[test]
fn python_rooms_and_sids_as_lists() {
    let (p, skip) = published(python("emit_rooms_list", &from_room()));
    assert_eq!(p.target.rooms(), [Arc::from("tenant:acme"), "vip".into()]);
    assert_eq!(strs(&skip), ["s1", "s2"]);
    plain(&p, "/", "list", "[[1, 2]]");
}

#[test]
fn python_binary_arguments_become_attachments() {
    let (p, _) = to_rooms(python("emit_binary", &from_room()));
    assert_eq!(&*p.event, "file");
    let (array, attachments) = args(&p);
    assert_eq!(
        array,
        r#"[{"_placeholder": true, "num": 0}, {"name": "a.bin", "thumb": {"_placeholder": true, "num": 1}}]"#
    );
    assert_eq!(attachments, [&[0u8, 1, 2, 255][..], &b"hi"[..]]);
}

#[test]
fn python_none_is_no_argument() {
    let (p, _) = to_rooms(python("emit_no_args", &from_room()));
    plain(&p, "/", "ping", "[]");
}

#[test]
fn python_sync_manager_writes_the_same() {
    let (p, _) = to_rooms(python("sync_emit", &from_room()));
    plain(&p, "/", "hello", r#"["sync"]"#);
}

#[test]
fn python_enter_and_leave_room() {
    let Ok(EmitterCommand::Rooms {
        change: RoomChange::Join,
        tenant,
        ns,
        sockets,
        rooms,
    }) = python("enter_room", &from_room())
    else {
        panic!("not a join");
    };
    assert_eq!((&*tenant, &*ns), ("acme", "/"));
    assert_eq!(sockets, Sockets::Sid("sid-remote".into()));
    assert_eq!(strs(&rooms), ["tenant:acme"]);

    let Ok(EmitterCommand::Rooms {
        change: RoomChange::Leave,
        tenant,
        ns,
        sockets,
        rooms,
    }) = python("leave_room", &from_room())
    else {
        panic!("not a leave");
    };
    assert_eq!((&*tenant, &*ns), ("acme", "/admin"));
    assert_eq!(sockets, Sockets::Sid("sid-remote".into()));
    assert_eq!(strs(&rooms), ["tenant:acme"]);
}

#[test]
fn python_close_room_empties_it() {
    let Ok(EmitterCommand::Rooms {
        change: RoomChange::Leave,
        tenant,
        ns,
        sockets,
        rooms,
    }) = python("close_room", &from_room())
    else {
        panic!("not a leave");
    };
    assert_eq!((&*tenant, &*ns), ("acme", "/"));
    assert_eq!(
        sockets,
        Sockets::InRooms {
            rooms: vec!["tenant:acme".into()],
            except: Vec::new(),
        }
    );
    assert_eq!(strs(&rooms), ["tenant:acme"]);
}

#[test]
fn python_disconnect_names_no_room() {
    let Ok(EmitterCommand::Disconnect {
        tenant,
        ns,
        sockets,
        close,
    }) = python("disconnect", &fixed())
    else {
        panic!("not a disconnect");
    };
    assert_eq!((&*tenant, &*ns, close), ("acme", "/", false));
    assert_eq!(sockets, Sockets::Sid("sid-remote".into()));
    assert_eq!(
        python("disconnect", &from_room()).unwrap_err(),
        EmitterError::NoTenant
    );
}

#[test]
fn python_emit_with_callback_is_published_without_it() {
    let (p, _) = published(python("emit_callback", &fixed()));
    assert_eq!(p.target.rooms(), [Arc::from("sid-remote")]);
    plain(&p, "/", "question", "[1]");
}

#[test]
fn python_callbacks_between_servers_are_ignored() {
    let message = br#"{"method": "callback", "host_id": "h", "sid": "s", "namespace": "/", "id": 1, "args": [2]}"#;
    assert!(matches!(
        decode_python(message, &fixed()),
        Ok(EmitterCommand::Ignored(_))
    ));
}

#[test]
fn python_5_14_0_sent_the_one_argument() {
    let (p, _) = to_rooms(python("v5_14_0_emit_room", &from_room()));
    plain(&p, "/", "hello", r#"[{"a": 1}]"#);
    // A tuple arrived as a list, which servers of that version sent as one argument.
    let (p, _) = to_rooms(python("v5_14_0_emit_tuple", &from_room()));
    plain(&p, "/", "multi", r#"[[1, "two"]]"#);
}

#[test]
fn python_pickles_are_refused() {
    for name in ["v5_11_4_emit_room", "v5_11_4_emit_tuple"] {
        assert_eq!(python(name, &fixed()).unwrap_err(), EmitterError::Pickled);
    }
}

#[test]
fn every_vector_decodes() {
    for (name, channel, bytes) in vectors(NODE) {
        let key = channel.split(['#', '-']).next().unwrap();
        assert!(
            decode_node(key, channel, &bytes, &fixed()).is_ok(),
            "{name}"
        );
    }
    for (name, _, bytes) in vectors(PYTHON).filter(|(n, _, _)| !n.starts_with("v5_11")) {
        assert!(decode_python(&bytes, &fixed()).is_ok(), "{name}");
    }
}

/// A node broadcast whose one argument is `depth` arrays deep.
fn nested_broadcast(depth: usize) -> Vec<u8> {
    let mut message = vec![0x93, 0xa1, b'u'];
    message.extend_from_slice(&[0x82, 0xa4]);
    message.extend_from_slice(b"type");
    message.push(0x02);
    message.push(0xa4);
    message.extend_from_slice(b"data");
    message.extend_from_slice(&[0x92, 0xa1, b'e']);
    message.extend(std::iter::repeat_n(0x91, depth - 1));
    message.push(0x90);
    message.push(0x80);
    message
}

#[test]
fn nesting_is_bounded() {
    // The argument array is one level; its argument adds the rest.
    assert!(decode_node_emitter("k", "k#/#", &nested_broadcast(MAX_DEPTH - 1), &fixed()).is_ok());
    assert_eq!(
        decode_node_emitter("k", "k#/#", &nested_broadcast(MAX_DEPTH), &fixed()).unwrap_err(),
        EmitterError::TooDeep
    );
    assert_eq!(
        decode_node_emitter("k", "k#/#", &nested_broadcast(10_000), &fixed()).unwrap_err(),
        EmitterError::TooDeep
    );
    let python = |depth: usize| {
        let data = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let message =
            format!(r#"{{"method": "emit", "event": "e", "data": {data}, "binary": false}}"#);
        decode_python(message.as_bytes(), &fixed())
    };
    assert!(python(MAX_DEPTH).is_ok());
    assert_eq!(python(MAX_DEPTH + 1).unwrap_err(), EmitterError::TooDeep);
    assert!(python(100_000).is_err());
}

#[test]
fn size_is_bounded() {
    let big = vec![b' '; MAX_MESSAGE_BYTES + 1];
    for result in [
        decode_python(&big, &fixed()),
        decode_node("k", "k#/#", &big, &fixed()),
        decode_node("k", "k-request#/#", &big, &fixed()),
    ] {
        assert_eq!(result.unwrap_err(), EmitterError::TooLarge(big.len()));
    }
    let zeros = |n: usize| vec!["0"; n].join(",");
    let python = |n: usize| {
        let message = format!(
            r#"{{"method":"emit","event":"e","data":[{}],"binary":false}}"#,
            zeros(n)
        );
        decode_python(message.as_bytes(), &fixed())
    };
    // The message, its four keys and their values: nine values beside the zeros.
    assert!(python(MAX_VALUES - 9).is_ok());
    assert!(matches!(
        python(MAX_VALUES - 8),
        Err(EmitterError::TooManyValues)
    ));
    let mut node = nested_broadcast(1);
    node.truncate(node.len() - 2);
    node.push(0xdd);
    node.extend_from_slice(&u32::try_from(MAX_VALUES).unwrap().to_be_bytes());
    node.resize(node.len() + MAX_VALUES, 0x00);
    node.push(0x80);
    assert!(matches!(
        decode_node_emitter("k", "k#/#", &node, &fixed()),
        Err(EmitterError::TooManyValues)
    ));
}

/// xorshift64: reproducible noise without a dependency.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn decode_all(channel: &str, bytes: &[u8]) {
    for rule in [fixed(), from_room()] {
        let key = channel.split(['#', '-']).next().unwrap_or_default();
        let _ = decode_node(key, channel, bytes, &rule);
        let _ = decode_python(bytes, &rule);
    }
}

#[test]
fn cut_or_damaged_messages_are_errors_not_panics() {
    let all: Vec<_> = vectors(NODE).chain(vectors(PYTHON)).collect();
    for (name, channel, bytes) in &all {
        for len in 0..bytes.len() {
            decode_all(channel, &bytes[..len]);
            if !channel.contains("-request") && *channel != "socketio" {
                let key = channel.split('#').next().unwrap();
                assert!(
                    decode_node(key, channel, &bytes[..len], &fixed()).is_err(),
                    "{name} cut at {len}"
                );
            }
        }
    }
    let mut noise = Noise(0x5eed_1234_abcd_0001);
    for _ in 0..20_000 {
        let (_, channel, bytes) = &all[noise.below(all.len())];
        let mut bytes = bytes.clone();
        for _ in 0..1 + noise.below(4) {
            let at = noise.below(bytes.len());
            bytes[at] = noise.next() as u8;
        }
        decode_all(channel, &bytes);
    }
    for _ in 0..5_000 {
        let bytes: Vec<u8> = (0..noise.below(64)).map(|_| noise.next() as u8).collect();
        decode_all("socket.io#/#", &bytes);
        decode_all("socket.io-request#/#", &bytes);
    }
}
