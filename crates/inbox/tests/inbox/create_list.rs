//! Creating for users and for a tenant, reading back, listing newest first with a cursor, and
//! each filter on the reader's view.

use roomcast_inbox::{Filter, NewNotification, Owner, Recipients};
use serde_json::json;

use crate::support::{ids, note, reader, tagged, Db};

on_both!(
    creates_for_users_and_for_a_tenant,
    lists_newest_first_with_a_cursor,
    filters_apply_to_the_readers_view,
);

async fn creates_for_users_and_for_a_tenant(db: Db) {
    let store = db.open().await;
    let users = Recipients::Users(vec!["ann".into(), "bob".into(), "ann".into()]);
    let full = NewNotification {
        action_url: Some("https://example.test/orders/7".into()),
        action_label: Some("Open".into()),
        metadata: Some(json!({"source": "orders", "tags": ["a", "b"]})),
        data: Some(json!({"order": 7, "total": 12.5, "paid": true, "note": null})),
        ..tagged("Order shipped", "success", "high")
    };
    let created = store.create("t1", &users, &full, 1_000).await.unwrap();
    assert_eq!(created.len(), 2, "a user named twice gets one");
    assert_eq!(created[0].user.as_deref(), Some("ann"));
    assert_eq!(created[1].user.as_deref(), Some("bob"));
    assert!(created[0].id < created[1].id);
    for n in &created {
        assert_eq!(n.tenant, "t1");
        assert_eq!(
            (n.title.as_str(), n.kind.as_str()),
            ("Order shipped", "success")
        );
        assert_eq!(
            (n.read_at, n.dismissed_at, n.created_at),
            (None, None, 1_000)
        );
        assert_eq!(n.data["total"], json!(12.5));
    }
    // What was returned is what is stored.
    let ann = reader("ann");
    assert_eq!(
        store.get(&ann, created[0].id).await.unwrap().as_ref(),
        Some(&created[0])
    );
    assert_eq!(
        store
            .get(&reader("bob"), created[1].id)
            .await
            .unwrap()
            .as_ref(),
        Some(&created[1])
    );
    assert_eq!(
        store.get(&ann, created[1].id).await.unwrap(),
        None,
        "bob's is not ann's"
    );

    let wide = store
        .create("t1", &Recipients::Tenant, &note("Maintenance"), 2_000)
        .await
        .unwrap();
    assert_eq!(wide.len(), 1);
    assert_eq!(wide[0].user, None);
    assert_eq!(
        (wide[0].metadata.clone(), wide[0].data.clone()),
        (json!(null), json!(null))
    );
    for user in ["ann", "bob", "carol"] {
        let seen = store.get(&reader(user), wide[0].id).await.unwrap();
        assert_eq!(seen.as_ref(), Some(&wide[0]), "{user} sees the tenant's");
    }
    let stranger = Owner::new("t2", "ann");
    assert_eq!(store.get(&stranger, wide[0].id).await.unwrap(), None);
    assert_eq!(store.get(&stranger, created[0].id).await.unwrap(), None);

    let nobody = Recipients::Users(Vec::new());
    assert!(store
        .create("t1", &nobody, &note("x"), 3_000)
        .await
        .unwrap()
        .is_empty());
}

async fn lists_newest_first_with_a_cursor(db: Db) {
    let store = db.open().await;
    let ann = reader("ann");
    let mut expected = Vec::new();
    for i in 0..7 {
        let to = if i % 3 == 1 {
            Recipients::Tenant
        } else {
            Recipients::Users(vec!["ann".into()])
        };
        let created = store
            .create("t1", &to, &note(&format!("n{i}")), i)
            .await
            .unwrap();
        expected.push(created[0].id);
        // Others' notifications in between, never listed for ann.
        let bob = Recipients::Users(vec!["bob".into()]);
        store.create("t1", &bob, &note("bob's"), i).await.unwrap();
        let other = Recipients::Users(vec!["ann".into()]);
        store.create("t2", &other, &note("t2"), i).await.unwrap();
        store
            .create("t2", &Recipients::Tenant, &note("t2"), i)
            .await
            .unwrap();
    }
    expected.reverse();

    let all = Filter::default();
    let first = store.list(&ann, &all, None, 3).await.unwrap();
    let got: Vec<i64> = first.notifications.iter().map(|n| n.id).collect();
    assert_eq!(got, expected[..3]);
    assert_eq!(first.next, Some(expected[2]));
    let second = store.list(&ann, &all, first.next, 3).await.unwrap();
    let got: Vec<i64> = second.notifications.iter().map(|n| n.id).collect();
    assert_eq!(got, expected[3..6]);
    assert_eq!(second.next, Some(expected[5]));
    let last = store.list(&ann, &all, second.next, 3).await.unwrap();
    let got: Vec<i64> = last.notifications.iter().map(|n| n.id).collect();
    assert_eq!(got, expected[6..]);
    assert_eq!(last.next, None, "nothing follows the last page");

    // A page that ends exactly at the last notification says so.
    let exact = store
        .list(&ann, &all, Some(expected[0] + 1), 7)
        .await
        .unwrap();
    assert_eq!(exact.notifications.len(), 7);
    assert_eq!(exact.next, None);
    // A limit of 0 is taken as 1.
    let one = store.list(&ann, &all, None, 0).await.unwrap();
    assert_eq!(one.notifications.len(), 1);
    assert_eq!(one.next, Some(expected[0]));
    assert_eq!(ids(&*store, &ann).await, expected);
}

async fn filters_apply_to_the_readers_view(db: Db) {
    let store = db.open().await;
    let ann = reader("ann");
    let bob = reader("bob");
    let only_ann = Recipients::Users(vec!["ann".into()]);
    let own_info = store
        .create("t1", &only_ann, &tagged("a", "info", "low"), 1)
        .await
        .unwrap();
    let own_warn = store
        .create("t1", &only_ann, &tagged("b", "warning", "urgent"), 2)
        .await
        .unwrap();
    let own_err = store
        .create("t1", &only_ann, &tagged("c", "error", "high"), 3)
        .await
        .unwrap();
    let wide_info = store
        .create("t1", &Recipients::Tenant, &tagged("d", "info", "urgent"), 4)
        .await
        .unwrap();
    let wide_err = store
        .create("t1", &Recipients::Tenant, &tagged("e", "error", "low"), 5)
        .await
        .unwrap();
    let (own_info, own_warn, own_err) = (own_info[0].id, own_warn[0].id, own_err[0].id);
    let (wide_info, wide_err) = (wide_info[0].id, wide_err[0].id);

    store.mark_read(&ann, own_info, 10).await.unwrap();
    store.mark_read(&ann, wide_info, 11).await.unwrap();
    store.dismiss(&ann, own_err, 12).await.unwrap();
    store.dismiss(&ann, wide_err, 13).await.unwrap();

    let listed = |filter: Filter, owner| {
        let store = store.clone();
        async move {
            let page = store.list(&owner, &filter, None, 100).await.unwrap();
            page.notifications.iter().map(|n| n.id).collect::<Vec<_>>()
        }
    };
    let read = |read| Filter {
        read: Some(read),
        ..Filter::default()
    };
    let dismissed = |dismissed| Filter {
        dismissed: Some(dismissed),
        ..Filter::default()
    };
    let kind = |kind: &str| Filter {
        kind: Some(kind.into()),
        ..Filter::default()
    };
    let priority = |p: &str| Filter {
        priority: Some(p.into()),
        ..Filter::default()
    };

    let everything = vec![wide_err, wide_info, own_err, own_warn, own_info];
    assert_eq!(
        listed(Filter::default(), ann.clone()).await,
        everything,
        "dismissed included"
    );
    assert_eq!(
        listed(read(true), ann.clone()).await,
        vec![wide_info, own_info]
    );
    assert_eq!(
        listed(read(false), ann.clone()).await,
        vec![wide_err, own_err, own_warn]
    );
    assert_eq!(
        listed(dismissed(true), ann.clone()).await,
        vec![wide_err, own_err]
    );
    assert_eq!(
        listed(dismissed(false), ann.clone()).await,
        vec![wide_info, own_warn, own_info]
    );
    assert_eq!(
        listed(kind("error"), ann.clone()).await,
        vec![wide_err, own_err]
    );
    assert_eq!(
        listed(priority("urgent"), ann.clone()).await,
        vec![wide_info, own_warn]
    );
    let unread_visible = Filter {
        read: Some(false),
        dismissed: Some(false),
        ..Filter::default()
    };
    assert_eq!(listed(unread_visible, ann.clone()).await, vec![own_warn]);
    let none = Filter {
        kind: Some("info".into()),
        priority: Some("high".into()),
        ..Filter::default()
    };
    assert_eq!(listed(none, ann.clone()).await, Vec::<i64>::new());

    // Ann's receipts are hers: bob sees the tenant's notifications unread and not dismissed.
    assert_eq!(
        listed(read(false), bob.clone()).await,
        vec![wide_err, wide_info]
    );
    assert_eq!(
        listed(dismissed(true), bob.clone()).await,
        Vec::<i64>::new()
    );
    let seen = store.get(&ann, wide_info).await.unwrap().unwrap();
    assert_eq!((seen.read_at, seen.dismissed_at), (Some(11), None));
    let seen = store.get(&bob, wide_info).await.unwrap().unwrap();
    assert_eq!((seen.read_at, seen.dismissed_at), (None, None));
}
