//! Read and dismissed state: set once, per reader for tenant-wide notifications, invisible to
//! others; counts; marking all read; deleting.

use roomcast_inbox::{Change, Counts, Owner, Recipients};

use crate::support::{ids, note, reader, tagged, Db};

on_both!(
    counts_follow_the_readers_state,
    read_and_dismiss_change_once,
    others_notifications_answer_as_missing,
    mark_all_read_marks_the_unread_and_undismissed,
    the_backend_deletes_any_of_the_tenant,
);

fn urgent() -> Vec<String> {
    vec!["urgent".into(), "high".into()]
}

async fn counts_follow_the_readers_state(db: Db) {
    let store = db.open().await;
    let (ann, bob) = (reader("ann"), reader("bob"));
    let both = Recipients::Users(vec!["ann".into(), "bob".into()]);
    let empty = store.counts(&ann, &urgent()).await.unwrap();
    assert_eq!(empty, Counts::default());

    let a = store
        .create("t1", &both, &tagged("a", "info", "urgent"), 1)
        .await
        .unwrap();
    store
        .create("t1", &both, &tagged("b", "info", "low"), 2)
        .await
        .unwrap();
    let c = store
        .create("t1", &both, &tagged("c", "info", "high"), 3)
        .await
        .unwrap();
    let w1 = store
        .create(
            "t1",
            &Recipients::Tenant,
            &tagged("w1", "info", "urgent"),
            4,
        )
        .await
        .unwrap();
    let w2 = store
        .create(
            "t1",
            &Recipients::Tenant,
            &tagged("w2", "info", "medium"),
            5,
        )
        .await
        .unwrap();
    store
        .create("t2", &Recipients::Tenant, &tagged("x", "info", "urgent"), 6)
        .await
        .unwrap();
    let fresh = Counts {
        total: 5,
        unread: 5,
        urgent: 3,
    };
    assert_eq!(store.counts(&ann, &urgent()).await.unwrap(), fresh);
    let only_urgent = store.counts(&ann, &["urgent".into()]).await.unwrap();
    assert_eq!(only_urgent.urgent, 2);
    assert_eq!(store.counts(&ann, &[]).await.unwrap().urgent, 0);

    store.mark_read(&ann, a[0].id, 10).await.unwrap(); // own, urgent
    store.dismiss(&ann, c[0].id, 11).await.unwrap(); // ann's "c": dismissed, unread, high
    store.mark_read(&ann, w1[0].id, 12).await.unwrap(); // tenant-wide, urgent
    store.dismiss(&ann, w2[0].id, 13).await.unwrap(); // tenant-wide
    let ann_counts = store.counts(&ann, &urgent()).await.unwrap();
    assert_eq!(
        ann_counts,
        Counts {
            total: 3,
            unread: 1,
            urgent: 0
        }
    );
    assert_eq!(
        store.counts(&bob, &urgent()).await.unwrap(),
        fresh,
        "ann's state is hers"
    );
    let stranger = Owner::new("t2", "ann");
    let theirs = store.counts(&stranger, &urgent()).await.unwrap();
    assert_eq!(
        theirs,
        Counts {
            total: 1,
            unread: 1,
            urgent: 1
        }
    );
}

async fn read_and_dismiss_change_once(db: Db) {
    let store = db.open().await;
    let ann = reader("ann");
    let own = store
        .create(
            "t1",
            &Recipients::Users(vec!["ann".into()]),
            &note("own"),
            1,
        )
        .await
        .unwrap();
    let wide = store
        .create("t1", &Recipients::Tenant, &note("wide"), 2)
        .await
        .unwrap();
    for id in [own[0].id, wide[0].id] {
        assert_eq!(
            store.mark_read(&ann, id, 10).await.unwrap(),
            Some(Change::Changed)
        );
        assert_eq!(
            store.mark_read(&ann, id, 20).await.unwrap(),
            Some(Change::Unchanged)
        );
        assert_eq!(
            store.dismiss(&ann, id, 30).await.unwrap(),
            Some(Change::Changed)
        );
        assert_eq!(
            store.dismiss(&ann, id, 40).await.unwrap(),
            Some(Change::Unchanged)
        );
        let seen = store.get(&ann, id).await.unwrap().unwrap();
        assert_eq!(
            (seen.read_at, seen.dismissed_at),
            (Some(10), Some(30)),
            "first times kept"
        );
    }
    // Dismissing first, then reading: each state on its own.
    let later = store
        .create("t1", &Recipients::Tenant, &note("later"), 3)
        .await
        .unwrap();
    assert_eq!(
        store.dismiss(&ann, later[0].id, 50).await.unwrap(),
        Some(Change::Changed)
    );
    assert_eq!(
        store.mark_read(&ann, later[0].id, 60).await.unwrap(),
        Some(Change::Changed)
    );
    let seen = store.get(&ann, later[0].id).await.unwrap().unwrap();
    assert_eq!((seen.read_at, seen.dismissed_at), (Some(60), Some(50)));
}

async fn others_notifications_answer_as_missing(db: Db) {
    let store = db.open().await;
    let (ann, bob) = (reader("ann"), reader("bob"));
    let stranger = Owner::new("t2", "ann");
    let anns = store
        .create("t1", &Recipients::Users(vec!["ann".into()]), &note("a"), 1)
        .await
        .unwrap();
    let wide = store
        .create("t1", &Recipients::Tenant, &note("w"), 2)
        .await
        .unwrap();
    let (anns, wide) = (anns[0].id, wide[0].id);
    let unknown = wide + 1_000;

    for (owner, id) in [
        (&bob, anns),
        (&stranger, anns),
        (&stranger, wide),
        (&ann, unknown),
    ] {
        assert_eq!(
            store.mark_read(owner, id, 10).await.unwrap(),
            None,
            "{owner:?} {id}"
        );
        assert_eq!(
            store.dismiss(owner, id, 10).await.unwrap(),
            None,
            "{owner:?} {id}"
        );
        assert_eq!(store.get(owner, id).await.unwrap(), None, "{owner:?} {id}");
    }
    // Nothing changed, for anyone.
    for id in [anns, wide] {
        let seen = store.get(&ann, id).await.unwrap().unwrap();
        assert_eq!((seen.read_at, seen.dismissed_at), (None, None));
    }
    assert_eq!(
        store.counts(&stranger, &[]).await.unwrap(),
        Counts::default()
    );
    assert_eq!(ids(&*store, &stranger).await, Vec::<i64>::new());
    // A user named like nobody's user still sees only the tenant's.
    let odd = reader("");
    assert_eq!(ids(&*store, &odd).await, vec![wide]);
}

async fn mark_all_read_marks_the_unread_and_undismissed(db: Db) {
    let store = db.open().await;
    let (ann, bob) = (reader("ann"), reader("bob"));
    let to_ann = Recipients::Users(vec!["ann".into()]);
    let mut own = Vec::new();
    for i in 0..5 {
        own.push(store.create("t1", &to_ann, &note("own"), i).await.unwrap()[0].id);
    }
    let w1 = store
        .create("t1", &Recipients::Tenant, &note("w1"), 5)
        .await
        .unwrap()[0]
        .id;
    let w2 = store
        .create("t1", &Recipients::Tenant, &note("w2"), 6)
        .await
        .unwrap()[0]
        .id;
    let w3 = store
        .create("t1", &Recipients::Tenant, &note("w3"), 7)
        .await
        .unwrap()[0]
        .id;
    store.mark_read(&ann, own[0], 10).await.unwrap();
    store.dismiss(&ann, own[1], 10).await.unwrap();
    store.mark_read(&ann, w1, 10).await.unwrap();
    store.dismiss(&ann, w2, 10).await.unwrap();

    // Own: 3 of 5 (one read, one dismissed); tenant-wide: w3 only.
    assert_eq!(store.mark_all_read(&ann, 100).await.unwrap(), 4);
    assert_eq!(store.mark_all_read(&ann, 200).await.unwrap(), 0);
    let counts = store.counts(&ann, &[]).await.unwrap();
    assert_eq!((counts.total, counts.unread), (6, 0));
    let seen = |id| {
        let store = store.clone();
        let ann = ann.clone();
        async move { store.get(&ann, id).await.unwrap().unwrap() }
    };
    assert_eq!(seen(own[0]).await.read_at, Some(10), "already read: kept");
    assert_eq!(seen(own[1]).await.read_at, None, "dismissed: left unread");
    assert_eq!(seen(own[2]).await.read_at, Some(100));
    assert_eq!(seen(w1).await.read_at, Some(10));
    assert_eq!(seen(w2).await.read_at, None);
    assert_eq!(seen(w3).await.read_at, Some(100));
    // Bob's state is his own.
    assert_eq!(store.counts(&bob, &[]).await.unwrap().unread, 3);
    assert_eq!(store.mark_all_read(&bob, 300).await.unwrap(), 3);
}

async fn the_backend_deletes_any_of_the_tenant(db: Db) {
    let store = db.open().await;
    let ann = reader("ann");
    let own = store
        .create("t1", &Recipients::Users(vec!["ann".into()]), &note("a"), 1)
        .await
        .unwrap()[0]
        .id;
    let wide = store
        .create("t1", &Recipients::Tenant, &note("w"), 2)
        .await
        .unwrap()[0]
        .id;
    store.mark_read(&ann, wide, 3).await.unwrap();

    assert!(!store.delete("t2", own).await.unwrap(), "another tenant's");
    assert!(store.delete("t1", own).await.unwrap());
    assert!(!store.delete("t1", own).await.unwrap(), "already gone");
    assert_eq!(db.rows("receipts").await, 1);
    assert!(store.delete("t1", wide).await.unwrap(), "with its receipts");
    assert_eq!(db.rows("receipts").await, 0);
    assert_eq!(store.get(&ann, wide).await.unwrap(), None);
    assert_eq!(store.mark_read(&ann, wide, 4).await.unwrap(), None);
    assert_eq!(ids(&*store, &ann).await, Vec::<i64>::new());
}
