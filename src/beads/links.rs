//! Reading a bead's links: what it depends on, what depends on it, its open blockers.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::model::{Bead, Link};
use super::types::{BeadStatus, DependencyKind, EdgeKind};
use crate::db::Conn;
use crate::db::schema::{bead_dependencies, beads};
use crate::error::Result;

impl Bead {
    /// Everything this bead depends on and everything that depends on it.
    pub async fn links(conn: &mut Conn, bead: &Bead) -> Result<(Vec<Link>, Vec<Link>)> {
        let out: Vec<(EdgeKind, String, String, BeadStatus)> = bead_dependencies::table
            .inner_join(beads::table.on(beads::id.eq(bead_dependencies::depends_on)))
            .filter(bead_dependencies::bead_id.eq(&bead.id))
            .select((bead_dependencies::kind, beads::id, beads::title, beads::status))
            .order(beads::id)
            .load(conn)
            .await?;
        let inbound: Vec<(EdgeKind, String, String, BeadStatus)> = bead_dependencies::table
            .inner_join(beads::table.on(beads::id.eq(bead_dependencies::bead_id)))
            .filter(bead_dependencies::depends_on.eq(&bead.id))
            .select((bead_dependencies::kind, beads::id, beads::title, beads::status))
            .order(beads::id)
            .limit(500)
            .load(conn)
            .await?;
        let children: Vec<(String, String, BeadStatus)> = beads::table
            .filter(beads::parent_id.eq(&bead.id))
            .select((beads::id, beads::title, beads::status))
            .order(beads::id)
            .limit(500)
            .load(conn)
            .await?;
        let edge = |(kind, id, title, status): (EdgeKind, String, String, BeadStatus)| Link {
            id,
            title,
            status,
            kind: kind.into(),
        };
        let mut dependencies: Vec<Link> = out.into_iter().map(edge).collect();
        if let Some(parent) = &bead.parent_id {
            let (title, status) = beads::table
                .find(parent)
                .select((beads::title, beads::status))
                .first::<(String, BeadStatus)>(conn)
                .await?;
            dependencies.push(Link {
                id: parent.clone(),
                title,
                status,
                kind: DependencyKind::ParentChild,
            });
        }
        let mut dependents: Vec<Link> = inbound.into_iter().map(edge).collect();
        dependents.extend(children.into_iter().map(|(id, title, status)| Link {
            id,
            title,
            status,
            kind: DependencyKind::ParentChild,
        }));
        Ok((dependencies, dependents))
    }
}

/// Used by the bead list to look up blockers for a page in one query.
pub(super) async fn open_blockers_of(
    conn: &mut Conn,
    ids: &[String],
) -> Result<Vec<(String, Link)>> {
    let rows: Vec<(String, String, String, BeadStatus)> = bead_dependencies::table
        .inner_join(beads::table.on(beads::id.eq(bead_dependencies::depends_on)))
        .filter(bead_dependencies::bead_id.eq_any(ids))
        .filter(bead_dependencies::kind.eq(EdgeKind::Blocks))
        .filter(beads::status.ne(BeadStatus::Closed))
        .select((bead_dependencies::bead_id, beads::id, beads::title, beads::status))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(of, id, title, status)| {
            (of, Link { id, title, status, kind: DependencyKind::Blocks })
        })
        .collect())
}
