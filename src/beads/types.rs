//! The value types of beads: ids, statuses, kinds and priorities, each parsed once.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

crate::db_enum!(
    /// Where a bead is in its life.
    BeadStatus, BeadStatus, "snake_case", {
    Open => "open",
    InProgress => "in_progress",
    Blocked => "blocked",
    Deferred => "deferred",
    Closed => "closed",
    Review => "review",
    Landing => "landing",
});

impl BeadStatus {
    /// The statuses in which an agent holds a bead under a lease: its work (`in_progress`)
    /// or an agent's review of that work (`review`, with an assignee).
    pub const HELD: [BeadStatus; 2] = [BeadStatus::InProgress, BeadStatus::Review];
}

crate::db_enum!(BeadType, BeadType, "snake_case", {
    Task => "task",
    Bug => "bug",
    Feature => "feature",
    Epic => "epic",
    Chore => "chore",
    Decision => "decision",
});

crate::db_enum!(
    /// Why a bead is held back on purpose.
    BlockedReason, BlockedReason, "snake_case", {
    NeedsHuman => "needs_human",
    LoopDetected => "loop_detected",
    TooManyAttempts => "too_many_attempts",
    GatewayUnavailable => "gateway_unavailable",
    MergeConflict => "merge_conflict",
    Manual => "manual",
    SandboxUnavailable => "sandbox_unavailable",
    CheckUnavailable => "check_unavailable",
});

impl BlockedReason {
    /// The reasons Loom clears by itself (a gateway outage ends and the ticker reopens).
    pub const SELF_CLEARING: [BlockedReason; 1] = [BlockedReason::GatewayUnavailable];

    /// What a person does to clear it; `None` when Loom clears it by itself.
    pub fn remedy(self) -> Option<&'static str> {
        Some(match self {
            BlockedReason::NeedsHuman => {
                "the agent asked a question: answer it in a comment, then reopen the bead"
            }
            BlockedReason::LoopDetected => {
                "the agent went round in circles: make the description clearer or split the \
                 bead, then reopen it"
            }
            BlockedReason::TooManyAttempts => {
                "every attempt failed: read the last run and its error, fix the cause or the \
                 description, then reopen the bead"
            }
            BlockedReason::MergeConflict => {
                "its branch conflicts with the project branch: reopen it so an agent merges the \
                 new tip and resolves the conflict, or resolve it on the branch yourself"
            }
            BlockedReason::Manual => "a person blocked it: reopen it when the reason is gone",
            BlockedReason::SandboxUnavailable => {
                "Loom could not confine the agent's commands: an admin repairs the sandbox (see \
                 the overview), then reopen the bead"
            }
            BlockedReason::CheckUnavailable => {
                "the project's check could not run (it timed out, its command was not found, or \
                 no sandbox could be made): fix the check or the sandbox, then reopen the bead \
                 (its work waits on its branch)"
            }
            BlockedReason::GatewayUnavailable => return None,
        })
    }
}

crate::db_enum!(
    /// The kinds of stored dependency edge. `parent-child` is a bead's `parent` instead.
    EdgeKind, DependencyKind, "kebab-case", {
    Blocks => "blocks",
    Related => "related",
    DiscoveredFrom => "discovered-from",
});

/// The four dependency kinds of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DependencyKind {
    /// `depends_on` must close first.
    Blocks,
    /// The bead is a child of `depends_on`.
    ParentChild,
    Related,
    DiscoveredFrom,
}

impl DependencyKind {
    /// The stored edge kind, or None for parent-child (kept as the bead's parent).
    pub fn edge(self) -> Option<EdgeKind> {
        match self {
            DependencyKind::Blocks => Some(EdgeKind::Blocks),
            DependencyKind::Related => Some(EdgeKind::Related),
            DependencyKind::DiscoveredFrom => Some(EdgeKind::DiscoveredFrom),
            DependencyKind::ParentChild => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DependencyKind::Blocks => "blocks",
            DependencyKind::ParentChild => "parent-child",
            DependencyKind::Related => "related",
            DependencyKind::DiscoveredFrom => "discovered-from",
        }
    }
}

impl From<EdgeKind> for DependencyKind {
    fn from(kind: EdgeKind) -> Self {
        match kind {
            EdgeKind::Blocks => DependencyKind::Blocks,
            EdgeKind::Related => DependencyKind::Related,
            EdgeKind::DiscoveredFrom => DependencyKind::DiscoveredFrom,
        }
    }
}

/// Urgency from 0 (most urgent) to 4. Accepted as a number or as `"P0".."P4"`; sent as a
/// number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, utoipa::ToSchema)]
#[schema(value_type = i16, minimum = 0, maximum = 4)]
pub struct Priority(i16);

impl Priority {
    pub const DEFAULT: Priority = Priority(2);

    pub fn new(value: i64) -> Result<Self> {
        if (0..=4).contains(&value) {
            Ok(Priority(value as i16))
        } else {
            Err(invalid_priority(&value.to_string()))
        }
    }

    pub fn parse(text: &str) -> Result<Self> {
        let t = text.trim();
        let digits = t.strip_prefix(['P', 'p']).unwrap_or(t);
        digits.parse::<i64>().map_err(|_| invalid_priority(text)).and_then(Priority::new)
    }

    pub fn get(self) -> i16 {
        self.0
    }
}

fn invalid_priority(got: &str) -> Error {
    Error::invalid("invalid_priority", format!("priority is 0-4 (or P0-P4), got {got}"))
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "P{}", self.0)
    }
}

impl Serialize for Priority {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_i16(self.0)
    }
}

impl<'de> Deserialize<'de> for Priority {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(i64),
            Text(String),
        }
        let parsed = match Raw::deserialize(d)? {
            Raw::Num(n) => Priority::new(n),
            Raw::Text(t) => Priority::parse(&t),
        };
        parsed.map_err(serde::de::Error::custom)
    }
}

/// A priority as a client sends it: a number or `"P0".."P4"`, checked when the request is.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum PriorityInput {
    Number(i64),
    Text(String),
}

impl PriorityInput {
    pub fn parse(&self) -> Result<Priority> {
        match self {
            PriorityInput::Number(n) => Priority::new(*n),
            PriorityInput::Text(t) => Priority::parse(t),
        }
    }
}

/// A bead id: `<project prefix>-<base36>` for a root bead, `<parent id>.<n>` for a child.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BeadId(String);

impl BeadId {
    pub fn parse(raw: &str) -> Option<BeadId> {
        let (root, children) = match raw.split_once('.') {
            Some((root, rest)) => (root, Some(rest)),
            None => (raw, None),
        };
        let (prefix, hash) = root.rsplit_once('-')?;
        let prefix_ok = crate::projects::check_slug(prefix, "", "").is_ok();
        let hash_ok = (3..=12).contains(&hash.len())
            && hash.chars().all(|c| c.is_ascii_digit() || c.is_ascii_lowercase());
        let children_ok = children.is_none_or(|rest| {
            rest.split('.')
                .all(|n| (1..=6).contains(&n.len()) && n.chars().all(|c| c.is_ascii_digit()))
        });
        (prefix_ok && hash_ok && children_ok && raw.len() <= 100).then(|| BeadId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A fresh root id: `length` random base36 characters after the prefix.
    pub fn random(prefix: &str, length: usize) -> Result<BeadId> {
        const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let mut bytes = vec![0u8; length];
        getrandom::fill(&mut bytes)
            .map_err(|e| Error::Internal(anyhow::anyhow!("no randomness available: {e}")))?;
        // 252 is the largest multiple of 36 below 256; the small bias is irrelevant for ids.
        let hash: String = bytes.iter().map(|b| ALPHABET[(*b as usize) % 36] as char).collect();
        Ok(BeadId(format!("{prefix}-{hash}")))
    }

    pub fn child(parent: &str, n: i32) -> BeadId {
        BeadId(format!("{parent}.{n}"))
    }
}

impl fmt::Display for BeadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks and normalises labels: trimmed, lowercased, de-duplicated, at most 20 of 1–50
/// characters from letters, digits and `-_.:/`.
pub fn normalize_labels(labels: Vec<String>) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::with_capacity(labels.len());
    for raw in labels {
        let label = raw.trim().to_lowercase();
        let ok = (1..=50).contains(&label.chars().count())
            && label.chars().all(|c| c.is_alphanumeric() || "-_.:/".contains(c));
        if !ok {
            return Err(Error::invalid(
                "invalid_label",
                format!("a label is 1-50 letters, digits or -_.:/ characters, got {raw:?}"),
            ));
        }
        if !out.contains(&label) {
            out.push(label);
        }
    }
    if out.len() > 20 {
        return Err(Error::invalid("too_many_labels", "a bead has at most 20 labels"));
    }
    Ok(out)
}

/// Checks a title: 1–200 characters once trimmed.
pub fn check_title(title: &str) -> Result<String> {
    let t = title.trim();
    if t.is_empty() {
        return Err(Error::invalid("title_required", "a bead needs a title"));
    }
    if t.chars().count() > 200 {
        return Err(Error::invalid("title_too_long", "a title is at most 200 characters"));
    }
    Ok(t.to_owned())
}

pub fn check_description(text: &str) -> Result<()> {
    if text.len() > 100_000 {
        return Err(Error::invalid(
            "description_too_long",
            "a description is at most 100000 bytes",
        ));
    }
    Ok(())
}

/// A persona name as beads reference it: the same shape as a slug.
pub fn check_persona(name: &str) -> Result<()> {
    crate::projects::check_slug(name, "invalid_persona", "a persona name")
}

#[cfg(test)]
mod tests {
    use super::BlockedReason;

    #[test]
    fn every_reason_a_person_must_clear_says_how() {
        for reason in BlockedReason::ALL {
            let heals = BlockedReason::SELF_CLEARING.contains(reason);
            assert_eq!(reason.remedy().is_none(), heals, "{reason}");
        }
    }
}
