use crate::support::db::TestDb;

#[tokio::test]
async fn every_migration_applies_reverts_and_applies_again() {
    let db = TestDb::empty().await;
    let applied = loom::db::migrate(&db.url).await.unwrap();
    assert!(!applied.is_empty());
    loom::db::revert_all(&db.url).await.unwrap();
    let again = loom::db::migrate(&db.url).await.unwrap();
    assert_eq!(applied, again);
    assert!(loom::db::migrate(&db.url).await.unwrap().is_empty(), "a second run has nothing to do");
}
