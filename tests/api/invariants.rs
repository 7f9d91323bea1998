//! Many concurrent changes through the API, then a check that the maintained readiness
//! columns equal what a from-scratch computation gives.

use std::sync::{Arc, Mutex};

use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use serde_json::json;

use crate::support::{TestApp, spawn};

/// xorshift: reproducible randomness without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

async fn random_op(app: &TestApp, rng: &mut Rng, ids: &Mutex<Vec<String>>) -> u16 {
    let (a, b) = {
        let ids = ids.lock().unwrap();
        (ids[rng.below(ids.len())].clone(), ids[rng.below(ids.len())].clone())
    };
    let res = match rng.below(9) {
        0 | 1 => {
            let mut body = json!({"project": "inv", "title": "random"});
            if rng.below(3) == 0 {
                body["parent"] = json!(a);
            }
            if rng.below(2) == 0 {
                body["depends_on"] = json!([b]);
            }
            let res = app.post("/api/v1/beads", body).await;
            if let Some(id) = res.body["id"].as_str() {
                ids.lock().unwrap().push(id.to_owned());
            }
            res
        }
        2 | 3 => app.depend(&a, &b, "blocks").await,
        4 => {
            app.delete(
                &format!("/api/v1/beads/{a}/dependencies"),
                Some(json!({"depends_on": b, "kind": "blocks"})),
            )
            .await
        }
        5 => app.close(&a).await,
        6 => app.post(&format!("/api/v1/beads/{a}/reopen"), json!({})).await,
        7 => app.post(&format!("/api/v1/beads/{a}/block"), json!({"reason": "random"})).await,
        _ => app.depend(&a, &b, "parent-child").await,
    };
    res.status.as_u16()
}

#[derive(QueryableByName)]
struct Wrong {
    #[diesel(sql_type = Text)]
    id: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readiness_columns_stay_exact_under_concurrent_changes() {
    let app = Arc::new(spawn().await);
    app.project("inv").await;
    let mut seed = Vec::new();
    for i in 0..10 {
        seed.push(app.bead("inv", &format!("seed {i}"), json!({})).await);
    }
    let ids = Arc::new(Mutex::new(seed));
    let workers: Vec<_> = (0..6u64)
        .map(|w| {
            let (app, ids) = (app.clone(), ids.clone());
            tokio::spawn(async move {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (w + 1));
                let mut statuses = Vec::new();
                for _ in 0..40 {
                    statuses.push(random_op(&app, &mut rng, &ids).await);
                }
                statuses
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for w in workers {
        statuses.extend(w.await.unwrap());
    }
    assert!(statuses.iter().all(|s| *s < 500), "no request may fail inside: {statuses:?}");
    assert!(statuses.iter().filter(|s| **s < 300).count() > 60, "most operations took effect");

    let mut conn = app.pool.get().await.unwrap();
    let wrong_counts: Vec<Wrong> = diesel::sql_query(
        "SELECT b.id FROM beads b WHERE b.open_blockers <> (SELECT count(*) FROM bead_dependencies d \
           JOIN beads x ON x.id = d.depends_on \
          WHERE d.bead_id = b.id AND d.kind = 'blocks' AND x.status <> 'closed')",
    )
    .load(&mut conn)
    .await
    .unwrap();
    assert!(
        wrong_counts.is_empty(),
        "open_blockers wrong for {:?}",
        wrong_counts.iter().map(|w| &w.id).collect::<Vec<_>>()
    );
    let wrong_holds: Vec<Wrong> = diesel::sql_query(
        "WITH RECURSIVE t(id, held) AS ( \
           SELECT id, NULL::text FROM beads WHERE parent_id IS NULL \
           UNION ALL \
           SELECT c.id, CASE WHEN p.status IN ('blocked', 'deferred') \
                               OR (p.status <> 'closed' AND p.open_blockers > 0) THEN p.id ELSE t.held END \
             FROM t JOIN beads p ON p.id = t.id JOIN beads c ON c.parent_id = p.id) \
         SELECT b.id FROM beads b JOIN t ON t.id = b.id WHERE b.held_by IS DISTINCT FROM t.held",
    )
    .load(&mut conn)
    .await
    .unwrap();
    assert!(
        wrong_holds.is_empty(),
        "held_by wrong for {:?}",
        wrong_holds.iter().map(|w| &w.id).collect::<Vec<_>>()
    );
    let cycles: Vec<Wrong> = diesel::sql_query(
        "WITH RECURSIVE walk(start, id, depth) AS ( \
           SELECT bead_id, depends_on, 1 FROM bead_dependencies WHERE kind = 'blocks' \
           UNION \
           SELECT w.start, d.depends_on, w.depth + 1 FROM walk w \
             JOIN bead_dependencies d ON d.bead_id = w.id AND d.kind = 'blocks' WHERE w.depth < 500) \
         SELECT DISTINCT start AS id FROM walk WHERE start = id",
    )
    .load(&mut conn)
    .await
    .unwrap();
    assert!(
        cycles.is_empty(),
        "blocks cycle through {:?}",
        cycles.iter().map(|w| &w.id).collect::<Vec<_>>()
    );
    let closed_parent_open_child: Vec<Wrong> = diesel::sql_query(
        "SELECT c.id FROM beads c JOIN beads p ON p.id = c.parent_id \
          WHERE p.status = 'closed' AND c.status <> 'closed'",
    )
    .load(&mut conn)
    .await
    .unwrap();
    assert!(closed_parent_open_child.is_empty(), "a closed parent with open children");
}
