//! What is kept: each user's newest notifications up to the bound, those younger than the
//! maximum age, and everything acknowledged across a reopening of the store.

use std::time::Duration;

use roomcast_inbox::{Recipients, SqlStore, Store};

use crate::support::{ids, note, reader, Db};

on_both!(
    users_keep_their_newest,
    prune_deletes_by_age,
    prune_deletes_in_batches,
    a_reopened_store_keeps_what_it_acknowledged,
    servers_starting_together_migrate_once,
);

async fn users_keep_their_newest(db: Db) {
    let store = db.open_with(|o| o.max_per_user = 3).await;
    let (ann, bob) = (reader("ann"), reader("bob"));
    let wide = store
        .create("t1", &Recipients::Tenant, &note("w"), 0)
        .await
        .unwrap()[0]
        .id;
    let bobs = store
        .create("t1", &Recipients::Users(vec!["bob".into()]), &note("b"), 0)
        .await
        .unwrap()[0]
        .id;
    let mut anns = Vec::new();
    for i in 1..=5 {
        let to = Recipients::Users(vec!["ann".into()]);
        anns.push(store.create("t1", &to, &note("a"), i).await.unwrap()[0].id);
    }
    // Ann keeps her 3 newest; the tenant's is not hers to count, and bob's is his.
    assert_eq!(
        ids(&store, &ann).await,
        vec![anns[4], anns[3], anns[2], wide]
    );
    assert_eq!(ids(&store, &bob).await, vec![bobs, wide]);
    // Creating for several users bounds each.
    let both = Recipients::Users(vec!["ann".into(), "bob".into()]);
    let created = store.create("t1", &both, &note("ab"), 6).await.unwrap();
    assert_eq!(
        ids(&store, &ann).await,
        vec![created[0].id, anns[4], anns[3], wide]
    );
    assert_eq!(ids(&store, &bob).await, vec![created[1].id, bobs, wide]);
    // Another tenant's user of the same name is another user.
    let other = Recipients::Users(vec!["ann".into()]);
    store.create("t2", &other, &note("t2"), 7).await.unwrap();
    assert_eq!(ids(&store, &ann).await.len(), 4);
}

async fn prune_deletes_by_age(db: Db) {
    let store = db.open_with(|o| o.max_age = Duration::from_secs(1)).await;
    let ann = reader("ann");
    let both = Recipients::Users(vec!["ann".into(), "bob".into()]);
    store
        .create("t1", &both, &note("old"), 1_000)
        .await
        .unwrap();
    let old_wide = store
        .create("t1", &Recipients::Tenant, &note("old"), 1_000)
        .await
        .unwrap()[0]
        .id;
    store.mark_read(&ann, old_wide, 1_500).await.unwrap();
    let edge = store
        .create("t1", &Recipients::Tenant, &note("edge"), 4_500)
        .await
        .unwrap()[0]
        .id;
    let young = store
        .create("t1", &both, &note("young"), 5_000)
        .await
        .unwrap()[0]
        .id;

    // Older than 5,500 - 1,000 ms: the two old own ones and the old tenant-wide one.
    assert_eq!(db.rows("receipts").await, 1);
    assert_eq!(store.prune(5_500).await.unwrap(), 3);
    assert_eq!(
        db.rows("receipts").await,
        0,
        "the receipts went with theirs"
    );
    assert_eq!(ids(&store, &ann).await, vec![young, edge]);
    assert_eq!(store.mark_read(&ann, old_wide, 6_000).await.unwrap(), None);
    assert_eq!(store.prune(5_500).await.unwrap(), 0);
}

async fn prune_deletes_in_batches(db: Db) {
    let store = db
        .open_with(|o| o.max_age = Duration::from_millis(10))
        .await;
    // Two batches of 1,000 and one more, created in one transaction.
    let users = Recipients::Users((0..2_001).map(|i| format!("user{i}")).collect());
    assert_eq!(
        store
            .create("t1", &users, &note("bulk"), 0)
            .await
            .unwrap()
            .len(),
        2_001
    );
    assert_eq!(store.prune(100).await.unwrap(), 2_001);
    assert_eq!(ids(&store, &reader("user0")).await, Vec::<i64>::new());
}

async fn a_reopened_store_keeps_what_it_acknowledged(db: Db) {
    let ann = reader("ann");
    let (own, wide) = {
        let store = db.open().await;
        let to = Recipients::Users(vec!["ann".into()]);
        let own = store.create("t1", &to, &note("own"), 1).await.unwrap()[0].id;
        let wide = store
            .create("t1", &Recipients::Tenant, &note("wide"), 2)
            .await
            .unwrap()[0]
            .id;
        store.mark_read(&ann, own, 3).await.unwrap();
        store.dismiss(&ann, wide, 4).await.unwrap();
        (own, wide)
        // Dropped without closing.
    };
    let store = db.open().await;
    assert_eq!(ids(&*store, &ann).await, vec![wide, own]);
    assert_eq!(
        store.get(&ann, own).await.unwrap().unwrap().read_at,
        Some(3)
    );
    assert_eq!(
        store.get(&ann, wide).await.unwrap().unwrap().dismissed_at,
        Some(4)
    );
    // New ids keep growing.
    let to = Recipients::Users(vec!["ann".into()]);
    let next = store.create("t1", &to, &note("next"), 5).await.unwrap()[0].id;
    assert!(next > wide);
}

async fn servers_starting_together_migrate_once(db: Db) {
    let connecting: Vec<_> = (0..4)
        .map(|_| {
            let options = db.options();
            tokio::spawn(async move { SqlStore::connect(&options).await })
        })
        .collect();
    let mut stores = Vec::new();
    for task in connecting {
        stores.push(task.await.unwrap().unwrap());
    }
    let kind = if db.is_sqlite() { "sqlite" } else { "postgres" };
    assert!(stores.iter().all(|s| s.kind() == kind));
    let to = Recipients::Users(vec!["ann".into()]);
    let id = stores[0].create("t1", &to, &note("a"), 1).await.unwrap()[0].id;
    for store in &stores {
        assert!(store.get(&reader("ann"), id).await.unwrap().is_some());
    }
}
