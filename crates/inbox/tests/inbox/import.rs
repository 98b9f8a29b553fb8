//! The bulk load: rows stored as given, over several statements of one call, then listed and
//! counted like created ones, with no retention applied.

use roomcast_inbox::{Filter, Store, StoreError};

use crate::support::{ids, note, reader, tagged, Db};

on_both!(imported_rows_are_listed_and_counted);

async fn imported_rows_are_listed_and_counted(db: Db) {
    // A bound far below what is imported: the import keeps every row.
    let store = db.open_with(|o| o.max_per_user = 10).await;
    let (ann, bob) = (reader("ann"), reader("bob"));
    // More than two statements' worth; every 10th high, every 3rd read.
    let rows: Vec<_> = (0..1_000i64)
        .map(|i| {
            let priority = if i % 10 == 0 { "high" } else { "low" };
            let read_at = (i % 3 == 0).then_some(50_000 + i);
            (
                tagged(&format!("n{i}"), "info", priority),
                1_000 + i,
                read_at,
            )
        })
        .collect();
    assert_eq!(store.import("t1", Some("ann"), &rows).await.unwrap(), 1_000);
    let wide = [(note("for everyone"), 9_000, None)];
    assert_eq!(store.import("t1", None, &wide).await.unwrap(), 1);
    assert_eq!(store.import("t1", Some("ann"), &[]).await.unwrap(), 0);
    let refused = store
        .import("t1", None, &[(note("read by whom?"), 9_001, Some(9_002))])
        .await;
    assert!(
        matches!(refused, Err(StoreError::Invalid(_))),
        "{refused:?}"
    );

    let listed = ids(&store, &ann).await;
    assert_eq!(listed.len(), 1_001);
    assert!(listed.windows(2).all(|w| w[0] > w[1]), "newest first");
    assert_eq!(
        ids(&store, &bob).await.len(),
        1,
        "bob sees the tenant's only"
    );

    // Ids follow the order given: the newest of ann's own is the last row.
    let page = store
        .list(&ann, &Filter::default(), Some(listed[0]), 2)
        .await
        .unwrap();
    let newest = &page.notifications[0];
    assert_eq!(
        (newest.title.as_str(), newest.created_at, newest.read_at),
        ("n999", 1_999, Some(50_999))
    );
    assert_eq!(
        (
            page.notifications[1].title.as_str(),
            page.notifications[1].read_at
        ),
        ("n998", None)
    );

    // 334 of ann's are read; of the 100 high ones, the 34 multiples of 30 are.
    let counts = store.counts(&ann, &["high".into()]).await.unwrap();
    assert_eq!(
        (counts.total, counts.unread, counts.urgent),
        (1_001, 667, 66)
    );
    let unread = Filter {
        read: Some(false),
        ..Filter::default()
    };
    let page = store.list(&ann, &unread, None, 10_000).await.unwrap();
    assert_eq!(page.notifications.len(), 667);
    assert!(page.notifications.iter().all(|n| n.read_at.is_none()));
}
