//! Racing calls on separate connections: of those that set the same state, exactly one is told
//! it changed it.

use std::sync::Arc;

use roomcast_inbox::{Change, Owner, Recipients, Store};

use crate::support::{note, reader, Db};

on_both!(racing_marks_change_once);

/// How many calls race.
const RACERS: usize = 20;

async fn racing_marks_change_once(db: Db) {
    let store: Arc<dyn Store> = Arc::new(db.open_with(|o| o.max_connections = 8).await);
    let ann = reader("ann");
    let own = store
        .create(
            "t1",
            &Recipients::Users(vec!["ann".into()]),
            &note("own"),
            1,
        )
        .await
        .unwrap()[0]
        .id;
    let wide = store
        .create("t1", &Recipients::Tenant, &note("wide"), 2)
        .await
        .unwrap()[0]
        .id;

    for id in [own, wide] {
        let reads = race(&store, &ann, id, false).await;
        assert_eq!(changed(&reads), 1, "mark_read of {id}: {reads:?}");
        let dismissals = race(&store, &ann, id, true).await;
        assert_eq!(changed(&dismissals), 1, "dismiss of {id}: {dismissals:?}");
    }
    let counts = store.counts(&ann, &[]).await.unwrap();
    assert_eq!((counts.total, counts.unread), (0, 0));
}

/// `RACERS` tasks marking `id` read (or dismissed) at once, each at its own time.
async fn race(
    store: &Arc<dyn Store>,
    owner: &Owner,
    id: i64,
    dismiss: bool,
) -> Vec<Option<Change>> {
    let start = Arc::new(tokio::sync::Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|i| {
            let (store, owner, start) = (store.clone(), owner.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let now = 100 + i as i64;
                if dismiss {
                    store.dismiss(&owner, id, now).await.unwrap()
                } else {
                    store.mark_read(&owner, id, now).await.unwrap()
                }
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    outcomes
}

fn changed(outcomes: &[Option<Change>]) -> usize {
    assert!(outcomes.iter().all(Option::is_some), "{outcomes:?}");
    outcomes
        .iter()
        .filter(|o| **o == Some(Change::Changed))
        .count()
}
