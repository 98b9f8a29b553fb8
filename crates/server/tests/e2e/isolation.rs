//! Tenant isolation under a randomized (seeded, hence repeatable) mix of publishes: every
//! connection receives exactly the events meant for it, and nothing from another tenant,
//! although every tenant uses the same room names and user ids.

use std::collections::{BTreeSet, HashMap};

use serde_json::{json, Value};

use crate::harness::{token, Client, Config, Server, PLATFORM_KEY};

const TENANTS: usize = 8;
const USERS: [&str; 3] = ["1", "2", "3"];
const ORDER_ROOMS: usize = 5;
const PUBLISHES: usize = 300;
const SEED: u64 = 0x5eed_cafe_f00d_0001;

/// SplitMix64: small, seeded, the same sequence on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn tenant_name(t: usize) -> String {
    format!("iso-{t}")
}

fn tenant_key(t: usize) -> String {
    format!("iso-key-{t}")
}

/// One connection and what the test knows about it.
struct Conn {
    tenant: usize,
    user: &'static str,
    /// Rooms of `/` it is in: auto-joined and subscribed.
    rooms: BTreeSet<String>,
    client: Client,
    expected: BTreeSet<u64>,
}

/// Where one publish goes.
enum Target {
    Tenant {
        tenant: usize,
        rooms: Vec<String>,
        users: Vec<String>,
        broadcast: bool,
    },
    Platform,
}

impl Target {
    /// How many events this publish gives `conn`: one per targeted room it is in (each room
    /// is a stream of its own), else one if a user or broadcast target reaches it.
    fn deliveries(&self, conn: &Conn) -> usize {
        match self {
            Target::Platform => 1,
            Target::Tenant {
                tenant,
                rooms,
                users,
                broadcast,
            } => {
                if *tenant != conn.tenant {
                    return 0;
                }
                if *broadcast {
                    return 1;
                }
                let mut distinct: Vec<&String> =
                    rooms.iter().filter(|r| conn.rooms.contains(*r)).collect();
                distinct.sort();
                distinct.dedup();
                match distinct.len() {
                    0 => usize::from(users.iter().any(|u| u == conn.user)),
                    n => n,
                }
            }
        }
    }
}

fn room_pool(rng: &mut Rng) -> String {
    match rng.below(10) {
        0..=5 => format!("order:{}", 1 + rng.below(ORDER_ROOMS)),
        6 | 7 => format!("user:{}", 1 + rng.below(USERS.len() + 1)),
        _ => format!("tenant:{}", tenant_name(rng.below(TENANTS))),
    }
}

fn random_users(rng: &mut Rng) -> Vec<String> {
    // "4" has no connection anywhere.
    (0..1 + rng.below(2))
        .map(|_| (1 + rng.below(USERS.len() + 1)).to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomized_publishes_never_cross_tenants() {
    let keys: Vec<String> = (0..TENANTS)
        .map(|t| {
            format!(
                "{{ tenant = \"{}\", key = \"{}\" }}",
                tenant_name(t),
                tenant_key(t)
            )
        })
        .collect();
    let config = Config::new().set("api.tenant_keys", &format!("[{}]", keys.join(", ")));
    let server = Server::start(config).await;
    let mut rng = Rng(SEED);

    // Every tenant: users 1, 2, 3, and a second connection of user 1.
    let mut conns = Vec::new();
    for tenant in 0..TENANTS {
        for user in USERS.iter().chain(std::iter::once(&"1")) {
            let mut client = server.connect(&token(user, &tenant_name(tenant))).await;
            let mut rooms: BTreeSet<String> = client.welcome["rooms"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap().to_owned())
                .collect();
            assert_eq!(
                rooms,
                BTreeSet::from([
                    format!("user:{user}"),
                    format!("tenant:{}", tenant_name(tenant))
                ])
            );
            for n in 1..=ORDER_ROOMS {
                if rng.chance(50) {
                    let room = format!("order:{n}");
                    client.join(&room).await;
                    rooms.insert(room);
                }
            }
            conns.push(Conn {
                tenant,
                user,
                rooms,
                client,
                expected: BTreeSet::new(),
            });
        }
    }

    let mut http = server.http_conn().await;
    let mut refused = 0;
    for marker in 0..PUBLISHES as u64 {
        let tenant = rng.below(TENANTS);
        let target = match rng.below(100) {
            0..=49 => Target::Tenant {
                tenant,
                rooms: (0..1 + rng.below(3)).map(|_| room_pool(&mut rng)).collect(),
                users: if rng.chance(20) {
                    random_users(&mut rng)
                } else {
                    vec![]
                },
                broadcast: false,
            },
            50..=74 => Target::Tenant {
                tenant,
                rooms: vec![],
                users: random_users(&mut rng),
                broadcast: false,
            },
            75..=89 => Target::Tenant {
                tenant,
                rooms: vec![],
                users: vec![],
                broadcast: true,
            },
            90..=94 => Target::Platform,
            _ => {
                // A tenant key aimed at another tenant: refused, nothing delivered.
                let other = (tenant + 1 + rng.below(TENANTS - 1)) % TENANTS;
                let body = json!({
                    "tenant": tenant_name(other), "rooms": ["order:1"], "users": ["1"],
                    "event": "iso", "data": {"m": marker}
                });
                let (status, answer) = http
                    .request(
                        "POST",
                        "/api/publish",
                        Some(&tenant_key(tenant)),
                        Some(&body.to_string()),
                    )
                    .await;
                assert_eq!(status, 403, "{body}: {answer}");
                refused += 1;
                continue;
            }
        };
        let (key, body) = match &target {
            Target::Platform => (
                PLATFORM_KEY.to_owned(),
                json!({"broadcast": true, "event": "iso", "data": {"m": marker}}),
            ),
            Target::Tenant {
                tenant,
                rooms,
                users,
                broadcast,
            } => {
                let mut body = json!({"event": "iso", "data": {"m": marker}});
                if *broadcast {
                    body["broadcast"] = json!(true);
                }
                if !rooms.is_empty() {
                    body["rooms"] = json!(rooms);
                }
                if !users.is_empty() {
                    body["users"] = json!(users);
                }
                // Half with the platform key naming the tenant, half with the tenant's own
                // key (naming it or not).
                if rng.chance(50) {
                    body["tenant"] = json!(tenant_name(*tenant));
                    (PLATFORM_KEY.to_owned(), body)
                } else {
                    if rng.chance(50) {
                        body["tenant"] = json!(tenant_name(*tenant));
                    }
                    (tenant_key(*tenant), body)
                }
            }
        };
        let mut reached = 0;
        for conn in &mut conns {
            let n = target.deliveries(conn);
            if n > 0 {
                conn.expected.insert(marker);
                reached += n;
            }
        }
        let answer = http.publish_with(&key, &body).await;
        assert_eq!(answer["delivered"], reached, "{body}: {answer}");
    }
    assert!(
        refused > 0,
        "the mix includes refused cross-tenant publishes"
    );

    // Everything was queued before its publish returned; a ping round trip per connection
    // brings it all in.
    let mut total = 0;
    for conn in &mut conns {
        conn.client.sync().await;
        let events = conn.client.take_buffered();
        let mut got = BTreeSet::new();
        let mut copies = BTreeSet::new();
        let mut last_offset: HashMap<String, u64> = HashMap::new();
        for event in &events {
            assert_eq!(event["type"], "event", "{event}");
            let marker = event["data"]["m"].as_u64().unwrap();
            got.insert(marker);
            assert!(
                copies.insert((marker, event["room"].to_string())),
                "marker {marker} arrived twice for one room at user {} of {}",
                conn.user,
                tenant_name(conn.tenant)
            );
            if let Some(room) = event["room"].as_str() {
                let offset = event["offset"].as_u64().unwrap();
                if offset > 0 {
                    let last = last_offset.insert(room.to_owned(), offset).unwrap_or(0);
                    assert!(offset > last, "room {room}: offset {offset} after {last}");
                }
            }
        }
        let unexpected: Vec<_> = got.difference(&conn.expected).collect();
        let missing: Vec<_> = conn.expected.difference(&got).collect();
        assert!(
            unexpected.is_empty() && missing.is_empty(),
            "user {} of {} (rooms {:?}): unexpected {unexpected:?}, missing {missing:?}",
            conn.user,
            tenant_name(conn.tenant),
            conn.rooms
        );
        total += got.len();
    }
    assert!(total > PUBLISHES, "the mix delivers plenty: {total}");
}

#[tokio::test]
async fn only_the_platform_admin_role_observes_other_tenants() {
    let server = Server::start(Config::new().set("auth.admin_role", "\"super_admin\"")).await;
    let admin_token = crate::harness::sign(&json!({
        "sub": "root", "tenant_id": "platform", "roles": ["super_admin"],
        "exp": crate::harness::now_unix() + 3600
    }));
    let mut admin = server.connect(&admin_token).await;
    let mut user = server.connect_user("7", "globex").await;

    let reply = admin
        .request(json!({"type": "subscribe", "room": "order:1", "tenant": "acme"}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    let reply = user
        .request(json!({"type": "subscribe", "room": "order:1", "tenant": "acme"}))
        .await;
    assert_eq!(crate::harness::error_code(&reply), "forbidden", "{reply}");

    server
        .publish(json!({"tenant": "acme", "rooms": ["order:1"], "event": "observed"}))
        .await;
    let event = admin.recv_event().await;
    assert_eq!(event["event"], "observed", "{event}");
    assert_eq!(event["room"], "order:1", "{event}");
    // The admin's own tenant's room of the same name is another room.
    server
        .publish(json!({"tenant": "platform", "rooms": ["order:1"], "event": "own"}))
        .await;
    admin.sync().await;
    assert!(admin.take_buffered().is_empty());

    let reply = admin
        .request(json!({"type": "unsubscribe", "room": "order:1", "tenant": "acme"}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    server
        .publish(json!({"tenant": "acme", "rooms": ["order:1"], "event": "after"}))
        .await;
    admin.sync().await;
    assert!(admin.take_buffered().is_empty());
    user.sync().await;
    assert!(user.take_buffered().is_empty());
}

#[tokio::test]
async fn refresh_without_the_admin_role_ends_observation() {
    let server = Server::start(Config::new().set("auth.admin_role", "\"super_admin\"")).await;
    let claims = |roles: Value| {
        json!({
            "sub": "root", "tenant_id": "platform", "roles": roles,
            "exp": crate::harness::now_unix() + 3600
        })
    };
    let mut admin = server
        .connect(&crate::harness::sign(&claims(json!(["super_admin"]))))
        .await;
    let reply = admin
        .request(json!({"type": "subscribe", "room": "order:1", "tenant": "acme"}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");

    let demoted = crate::harness::sign(&claims(json!([])));
    let reply = admin
        .request(json!({"type": "refresh", "token": demoted}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    server
        .publish(json!({"tenant": "acme", "rooms": ["order:1"], "event": "hidden"}))
        .await;
    admin.sync().await;
    assert!(admin.take_buffered().is_empty());
}
