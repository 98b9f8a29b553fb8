//! Byte-exact vectors from the Socket.IO v5 document, the validation rules, and the
//! `decode(encode(x)) == x` property.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};
use serde_json::value::RawValue;

use super::*;
use crate::socketio::binary::{placeholder, Reassembler};

fn json(s: &str) -> RawJson {
    RawJson::from(RawValue::from_string(s.to_owned()).unwrap())
}

fn nsp(s: &'static str) -> Cow<'static, str> {
    Cow::Borrowed(s)
}

fn encode(packet: &Packet) -> Vec<u8> {
    let mut out = BytesMut::new();
    packet.encode(&mut out);
    out.to_vec()
}

fn decoded(text: &[u8]) -> Result<Packet, Error> {
    decode(text).map(|(packet, count)| {
        assert_eq!(count, 0);
        packet
    })
}

#[test]
fn protocol_document_vectors() {
    let vectors: Vec<(&[u8], Packet)> = vec![
        (
            b"0",
            Packet::Connect {
                nsp: nsp("/"),
                data: None,
            },
        ),
        (
            br#"0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}"#,
            Packet::Connect {
                nsp: nsp("/admin"),
                data: Some(json(r#"{"sid":"oSO0OpakMV_3jnilAAAA"}"#)),
            },
        ),
        (
            br#"0/admin,{"token":"123"}"#,
            Packet::Connect {
                nsp: nsp("/admin"),
                data: Some(json(r#"{"token":"123"}"#)),
            },
        ),
        (
            br#"0{"sid":"wZX3oN0bSVIhsaknAAAI"}"#,
            Packet::Connect {
                nsp: nsp("/"),
                data: Some(json(r#"{"sid":"wZX3oN0bSVIhsaknAAAI"}"#)),
            },
        ),
        (
            br#"4{"message":"Not authorized"}"#,
            Packet::ConnectError {
                nsp: nsp("/"),
                data: json(r#"{"message":"Not authorized"}"#),
            },
        ),
        (
            br#"2["foo"]"#,
            Packet::Event {
                nsp: nsp("/"),
                id: None,
                data: json(r#"["foo"]"#),
            },
        ),
        (
            br#"2["hello",1]"#,
            Packet::Event {
                nsp: nsp("/"),
                id: None,
                data: json(r#"["hello",1]"#),
            },
        ),
        (
            br#"2/admin,["bar"]"#,
            Packet::Event {
                nsp: nsp("/admin"),
                id: None,
                data: json(r#"["bar"]"#),
            },
        ),
        (
            br#"2/admin,["bye"]"#,
            Packet::Event {
                nsp: nsp("/admin"),
                id: None,
                data: json(r#"["bye"]"#),
            },
        ),
        (
            br#"212["foo"]"#,
            Packet::Event {
                nsp: nsp("/"),
                id: Some(12),
                data: json(r#"["foo"]"#),
            },
        ),
        (
            br#"2/admin,1["tellme"]"#,
            Packet::Event {
                nsp: nsp("/admin"),
                id: Some(1),
                data: json(r#"["tellme"]"#),
            },
        ),
        (
            br#"312[]"#,
            Packet::Ack {
                nsp: nsp("/"),
                id: 12,
                data: json("[]"),
            },
        ),
        (
            br#"3/admin,13["bar"]"#,
            Packet::Ack {
                nsp: nsp("/admin"),
                id: 13,
                data: json(r#"["bar"]"#),
            },
        ),
        (
            br#"3/admin,456["ok"]"#,
            Packet::Ack {
                nsp: nsp("/admin"),
                id: 456,
                data: json(r#"["ok"]"#),
            },
        ),
        (b"1", Packet::Disconnect { nsp: nsp("/") }),
        (b"1/admin,", Packet::Disconnect { nsp: nsp("/admin") }),
        (
            b"0/admin,",
            Packet::Connect {
                nsp: nsp("/admin"),
                data: None,
            },
        ),
    ];
    for (wire, packet) in vectors {
        assert_eq!(
            decoded(wire).as_ref(),
            Ok(&packet),
            "{}",
            String::from_utf8_lossy(wire)
        );
        assert_eq!(encode(&packet), wire, "{packet:?}");
    }
}

#[test]
fn binary_header_announces_its_attachments() {
    let (packet, count) = decode(br#"51-["baz",{"_placeholder":true,"num":0}]"#).unwrap();
    assert_eq!(count, 1);
    let Packet::BinaryEvent { data, .. } = packet else {
        panic!("{packet:?}");
    };
    assert_eq!(data.value, serde_json::json!(["baz", placeholder(0)]));
    assert!(data.attachments.is_empty());
}

#[test]
fn lenient_forms_of_the_reference_parser() {
    // A namespace without its comma runs to the end; the main namespace may be spelled out.
    assert_eq!(
        decoded(b"1/admin"),
        Ok(Packet::Disconnect { nsp: nsp("/admin") })
    );
    assert_eq!(decoded(br#"2/,["a"]"#), decoded(br#"2["a"]"#));
    // Leading zeros in ids, and whitespace around the JSON.
    assert_eq!(decoded(br#"3007[]"#), decoded(br#"37[]"#));
    assert_eq!(decoded(b"2 [\"a\"] "), decoded(br#"2["a"]"#));
    // Any string event name that is not reserved, escaped or not.
    assert!(decoded(br#"2["\u00e9v\u00e9nement",{"_placeholder":true,"num":0}]"#).is_ok());
}

#[test]
fn rejects_malformed_packets() {
    let cases: [(&[u8], Error); 31] = [
        (b"", Error::Empty),
        (b"7", Error::UnknownType),
        (b"a", Error::UnknownType),
        (br#"5["a"]"#, Error::InvalidAttachmentCount),
        (br#"5x-["a"]"#, Error::InvalidAttachmentCount),
        (br#"51["a"]"#, Error::InvalidAttachmentCount),
        (
            br#"599999999999999999999-["a"]"#,
            Error::InvalidAttachmentCount,
        ),
        (b"2/\xff,[\"a\"]", Error::InvalidNamespace),
        (br#"299999999999999999999["a"]"#, Error::InvalidAckId),
        (br#"01{}"#, Error::InvalidAckId),
        (br#"17"#, Error::InvalidAckId),
        (br#"4/x,1{}"#, Error::InvalidAckId),
        (br#"3["x"]"#, Error::MissingAckId),
        (br#"60-["x"]"#, Error::MissingAckId),
        (b"2", Error::InvalidPayload),
        (b"2[]", Error::InvalidPayload),
        (b"2[1]", Error::InvalidPayload),
        (b"2{}", Error::InvalidPayload),
        (br#"2"x""#, Error::InvalidPayload),
        (b"3/admin,1{}", Error::InvalidPayload),
        (b"0[]", Error::InvalidPayload),
        (b"1/admin,{}", Error::InvalidPayload),
        (b"4", Error::InvalidPayload),
        (br#"4"Not authorized""#, Error::InvalidPayload),
        (br#"50-{}"#, Error::InvalidPayload),
        (br#"2["connect"]"#, Error::ReservedEventName),
        (br#"2["\u0063onnect"]"#, Error::ReservedEventName),
        (
            br#"51-["disconnect",{"_placeholder":true,"num":0}]"#,
            Error::ReservedEventName,
        ),
        (b"2[", Error::InvalidJson),
        (br#"2["a"]x"#, Error::InvalidJson),
        (br#"21-["x"]"#, Error::InvalidJson),
    ];
    for (wire, err) in cases {
        assert_eq!(
            decode(wire).map(|p| p.0),
            Err(err),
            "{}",
            String::from_utf8_lossy(wire)
        );
    }
}

/// xorshift64: the property test needs no crate.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize].clone()
    }
}

fn random_binary(rng: &mut Rng) -> BinaryData {
    let mut attachments = crate::socketio::Attachments::new();
    let mut args = vec![serde_json::json!("up")];
    for i in 0..rng.below(4) {
        let part = Bytes::from(vec![i as u8; i as usize]);
        args.push(serde_json::json!({ "at": i, "part": attachments.push(part) }));
    }
    BinaryData {
        value: serde_json::Value::Array(args),
        attachments: attachments.into_vec(),
    }
}

fn random_packet(rng: &mut Rng) -> Packet {
    let nsp = Cow::Owned(
        rng.pick(&["/", "/admin", "/a/b", "/ü-€", "/x?y=1"])
            .to_owned(),
    );
    let id = [None, Some(0), Some(7), Some(u64::MAX)][rng.below(4) as usize];
    let args = rng.pick(&[
        "",
        r#","a\"b""#,
        ",1,2.5,null",
        r#",{"k":[true,{}]}"#,
        r#","\u001e""#,
    ]);
    let event = json(&format!(
        r#"["{}"{args}]"#,
        rng.pick(&["message", "é", "a,b", "1"])
    ));
    let object = json(rng.pick(&["{}", r#"{"token":"123"}"#, r#"{"a":{"b":[]}}"#]));
    match rng.below(7) {
        0 => Packet::Connect {
            nsp,
            data: rng.pick(&[None, Some(object)]),
        },
        1 => Packet::Disconnect { nsp },
        2 => Packet::Event {
            nsp,
            id,
            data: event,
        },
        3 => Packet::Ack {
            nsp,
            id: id.unwrap_or(1),
            data: json("[1,\"x\"]"),
        },
        4 => Packet::ConnectError { nsp, data: object },
        5 => Packet::BinaryEvent {
            nsp,
            id,
            data: random_binary(rng),
        },
        _ => Packet::BinaryAck {
            nsp,
            id: id.unwrap_or(2),
            data: random_binary(rng),
        },
    }
}

#[test]
fn property_decode_inverts_encode() {
    let mut rng = Rng(0x853c_49e6_748f_ea9b);
    for _ in 0..3000 {
        let packet = random_packet(&mut rng);
        let mut r = Reassembler::default();
        let mut out = r.on_text(&encode(&packet)).unwrap();
        for part in packet.attachments() {
            out = r.on_binary(part.clone()).unwrap();
        }
        assert_eq!(out.as_ref(), Some(&packet));
    }
}

#[test]
fn binary_floats_survive_reencoding() {
    // Binary packets are parsed into `Value`s and re-serialized when relayed: numbers must
    // come back bit for bit (serde_json's `float_roundtrip`).
    let text = br#"50-["f",0.1,1.7976931348623157e308,5e-324,2.2250738585072014e-308,0.30000000000000004,9007199254740993,-0.0]"#;
    let (packet, _) = decode(text).unwrap();
    let again = encode(&packet);
    assert_eq!(decode(&again).unwrap().0, packet);
    assert_eq!(
        &again[..],
        br#"50-["f",0.1,1.7976931348623157e+308,5e-324,2.2250738585072014e-308,0.30000000000000004,9007199254740993,-0.0]"#
    );
}
