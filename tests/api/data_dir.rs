//! A `loom serve` holds its data dir alone, and starting it removes the git locks a killed
//! one left in its clones.

use crate::support::db::TestDb;
use crate::support::serve::Server;

#[tokio::test]
async fn a_data_dir_serves_one_process_and_a_start_clears_the_git_locks_a_kill_left() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let env = [("LOOM_DATA_DIR", dir.path().to_string_lossy().into_owned())];
    let mut first = Server::start(&db.url, &env);
    first.port().await;

    let mut second = Server::start(&db.url, &env);
    let status = second.child.wait().await.unwrap();
    assert!(!status.success(), "{}", second.log());
    let log = second.log();
    assert!(log.contains("another Loom process is using the data directory"), "{log}");

    // What a `kill -9` in the middle of a fetch leaves in a clone.
    first.kill_hard().await;
    let lock = dir.path().join("repos/web/refs/remotes/origin/main.lock");
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    std::fs::write(&lock, "").unwrap();
    let mut third = Server::start(&db.url, &env);
    third.port().await;
    assert!(!lock.exists(), "the stale lock is gone");
    let log = third.log();
    assert!(log.contains("removed a git lock file a stopped process left"), "{log}");
}
