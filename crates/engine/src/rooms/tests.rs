//! Tests of the room index.

use super::*;
use crate::queue::QueueLimits;

fn member(format: WireFormat) -> Member {
    Member {
        id: ConnId::next(),
        format,
        queue: Arc::new(OutQueue::new(QueueLimits::default())),
    }
}

fn ids(members: &[Member]) -> Vec<ConnId> {
    let mut v: Vec<ConnId> = members.iter().map(|m| m.id).collect();
    v.sort();
    v
}

#[test]
fn same_room_name_in_two_tenants_is_two_rooms() {
    let idx = RoomIndex::new(10);
    let (a, b) = (member(WireFormat::Native), member(WireFormat::Native));
    idx.register("a", "1", a.clone());
    idx.register("b", "1", b.clone());
    idx.join(a.id, &RoomKey::new("a", "/", "order:1")).unwrap();
    idx.join(b.id, &RoomKey::new("b", "/", "order:1")).unwrap();
    let mut out = Vec::new();
    idx.collect_members(&RoomKey::new("a", "/", "order:1"), &mut out);
    assert_eq!(ids(&out), vec![a.id]);
    out.clear();
    idx.collect_tenant("b", &mut out);
    assert_eq!(ids(&out), vec![b.id]);
    out.clear();
    idx.collect_user("a", "1", &mut out);
    assert_eq!(ids(&out), vec![a.id]);
}

#[test]
fn namespaces_are_separate() {
    let idx = RoomIndex::new(10);
    let a = member(WireFormat::Native);
    idx.register("t", "1", a.clone());
    idx.join(a.id, &RoomKey::new("t", "/chat", "r")).unwrap();
    assert_eq!(idx.room_size(&RoomKey::new("t", "/", "r")), 0);
    assert_eq!(idx.room_size(&RoomKey::new("t", "/chat", "r")), 1);
}

#[test]
fn join_leave_and_unregister() {
    let idx = RoomIndex::new(2);
    let a = member(WireFormat::Native);
    idx.register("t", "u", a.clone());
    let k1 = RoomKey::new("t", "/", "r1");
    let k2 = RoomKey::new("t", "/", "r2");
    assert_eq!(idx.join(a.id, &k1), Ok(true));
    assert_eq!(idx.join(a.id, &k1), Ok(false));
    assert_eq!(idx.join(a.id, &k2), Ok(true));
    assert_eq!(
        idx.join(a.id, &RoomKey::new("t", "/", "r3")),
        Err(JoinError::TooManyRooms)
    );
    assert!(idx.leave(a.id, &k1));
    assert!(!idx.leave(a.id, &k1));
    assert_eq!(idx.rooms_of(a.id), vec![k2.clone()]);
    idx.unregister(a.id);
    assert_eq!(idx.room_size(&k2), 0);
    assert_eq!(idx.connection_count(), 0);
    assert!(idx.tenant_counts().is_empty());
    assert_eq!(idx.join(a.id, &k1), Err(JoinError::NotRegistered));
}

#[derive(Default)]
struct Log(std::sync::Mutex<Vec<(bool, String)>>);

impl Transitions for Log {
    fn first_in(&self, room: &RoomKey) {
        self.0.lock().unwrap().push((true, room.room.to_string()));
    }
    fn last_out(&self, room: &RoomKey) {
        self.0.lock().unwrap().push((false, room.room.to_string()));
    }
    fn tenant_first(&self, tenant: &str) {
        self.0
            .lock()
            .unwrap()
            .push((true, format!("tenant {tenant}")));
    }
    fn tenant_last(&self, tenant: &str) {
        self.0
            .lock()
            .unwrap()
            .push((false, format!("tenant {tenant}")));
    }
}

#[test]
fn first_in_and_last_out_are_reported() {
    let idx = RoomIndex::new(10);
    let log = Arc::new(Log::default());
    let weak: std::sync::Weak<dyn Transitions> = Arc::downgrade(&log) as _;
    idx.observe(weak);
    let (a, b) = (member(WireFormat::Native), member(WireFormat::SocketIo));
    idx.register("t", "u", a.clone());
    idx.register_in("t", "u", "/", b.clone());
    let k = RoomKey::new("t", "/", "r");
    idx.join(a.id, &k).unwrap();
    idx.join(b.id, &k).unwrap();
    idx.join(a.id, &k).unwrap();
    assert!(idx.leave(a.id, &k));
    idx.register_with_rooms(
        "t",
        "v",
        member(WireFormat::Native),
        &[RoomKey::new("t", "/", "s")],
    );
    idx.unregister(b.id);
    idx.join(a.id, &k).unwrap();
    assert_eq!(
        *log.0.lock().unwrap(),
        vec![
            (true, "tenant t".to_owned()),
            (true, "r".to_owned()),
            (true, "s".to_owned()),
            (false, "r".to_owned()),
            (true, "r".to_owned()),
        ]
    );
}

#[test]
fn a_tenant_is_reported_when_it_comes_and_goes() {
    let idx = RoomIndex::new(10);
    let log = Arc::new(Log::default());
    let weak: std::sync::Weak<dyn Transitions> = Arc::downgrade(&log) as _;
    idx.observe(weak);
    let (a, admin) = (member(WireFormat::Native), member(WireFormat::Native));
    idx.register("t", "u", a.clone());
    idx.register("platform", "root", admin.clone());
    // A platform admin observing a room of another tenant keeps that tenant here.
    let k = RoomKey::new("other", "/", "r");
    idx.join(admin.id, &k).unwrap();
    idx.unregister(a.id);
    assert!(idx.leave(admin.id, &k));
    idx.unregister(admin.id);
    let log = log.0.lock().unwrap().clone();
    let tenants: Vec<_> = log
        .iter()
        .filter(|(_, e)| e.starts_with("tenant"))
        .collect();
    assert_eq!(
        tenants,
        vec![
            &(true, "tenant t".to_owned()),
            &(true, "tenant platform".to_owned()),
            &(true, "tenant other".to_owned()),
            &(false, "tenant t".to_owned()),
            &(false, "tenant other".to_owned()),
            &(false, "tenant platform".to_owned()),
        ]
    );
}

#[test]
fn namespaced_members_reach_their_namespace_only() {
    let idx = RoomIndex::new(10);
    let (native, chat, admin) = (
        member(WireFormat::Native),
        member(WireFormat::SocketIo),
        member(WireFormat::SocketIo),
    );
    idx.register("t", "u", native.clone());
    idx.register_in("t", "u", "/chat", chat.clone());
    idx.register_in("t", "u", "/admin", admin.clone());
    assert_eq!(idx.namespace_of(chat.id).as_deref(), Some("/chat"));
    assert_eq!(idx.namespace_of(native.id), None);
    let mut out = Vec::new();
    idx.collect_user_in("t", "u", "/chat", &mut out);
    assert_eq!(ids(&out), ids(&[native.clone(), chat.clone()]));
    out.clear();
    idx.collect_tenant_in("t", "/admin", &mut out);
    assert_eq!(ids(&out), ids(&[native.clone(), admin.clone()]));
    out.clear();
    idx.collect_tenant_in("other", "/admin", &mut out);
    assert!(out.is_empty());
    idx.unregister(chat.id);
    assert_eq!(idx.namespace_of(chat.id), None);
}

#[test]
fn collect_members_of_a_room() {
    let idx = RoomIndex::new(10);
    let a = member(WireFormat::Native);
    idx.register("t", "u", a.clone());
    let k = RoomKey::new("t", "/", "r");
    idx.join(a.id, &k).unwrap();
    let mut out = Vec::new();
    idx.collect_members(&k, &mut out);
    idx.collect_members(&RoomKey::new("t", "/", "none"), &mut out);
    assert_eq!(ids(&out), vec![a.id]);
}

#[test]
fn counts_per_tenant_and_user() {
    let idx = RoomIndex::new(10);
    for (t, u) in [("a", "1"), ("a", "1"), ("a", "2"), ("b", "9")] {
        idx.register(t, u, member(WireFormat::Native));
    }
    let counts = idx.tenant_counts();
    assert_eq!(counts.len(), 2);
    assert_eq!((counts[0].connections, counts[0].users), (3, 2));
    assert_eq!(idx.user_connections("a", "1").len(), 2);
    assert_eq!(idx.users("a", 10), vec!["1".to_string(), "2".to_string()]);
    assert!(idx.user_connections("b", "1").is_empty());
}

#[derive(Default)]
struct Recording {
    closes: std::sync::Mutex<Vec<String>>,
}

impl Control for Recording {
    fn close(&self, how: Closing<'_>) {
        let what = match how {
            Closing::Disconnect(reason) => format!("disconnect {reason}"),
            Closing::GoingAway => "going away".to_owned(),
        };
        self.closes.lock().unwrap().push(what);
    }
    fn session_id(&self) -> String {
        "s".to_owned()
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[test]
fn live_table_tracks_every_connection_and_closes_late_comers() {
    let idx = Arc::new(RoomIndex::new(4));
    let (a, b) = (
        Arc::new(Recording::default()),
        Arc::new(Recording::default()),
    );
    let (ida, idb) = (ConnId::next(), ConnId::next());
    let ta = idx.track(ida, WireFormat::Native, a.clone());
    let tb = idx.track(idb, WireFormat::SocketIo, b.clone());
    assert_eq!(idx.live_count(), 2);
    assert_eq!(idx.live_connections(WireFormat::Native).len(), 1);
    let live = idx.live_connection(idb).unwrap();
    assert_eq!(live.format, WireFormat::SocketIo);
    live.control.close(Closing::Disconnect("bye"));
    assert_eq!(*b.closes.lock().unwrap(), ["disconnect bye"]);
    assert!(live.control.as_any().downcast_ref::<Recording>().is_some());
    drop(tb);
    assert!(idx.live_connection(idb).is_none());

    idx.close_live();
    assert_eq!(*a.closes.lock().unwrap(), ["going away"]);
    // A connection that arrives once closing began is sent away at once.
    let c = Arc::new(Recording::default());
    let _tc = idx.track(ConnId::next(), WireFormat::Native, c.clone());
    assert_eq!(*c.closes.lock().unwrap(), ["going away"]);
    drop(ta);
    assert_eq!(idx.live_count(), 1);
}
