//! The kinds of event: one name per thing that happens, used as the activity row's `kind`,
//! the SSE `event:` field and the NATS subject (`loom.<kind>`).

use std::fmt;
use std::str::FromStr;

macro_rules! kinds {
    ($($variant:ident = $name:literal $(, $flag:ident)?;)*) => {
        /// Everything Loom reports. `Ephemeral` kinds travel on the bus and the streams only;
        /// the rest are activity rows first.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Kind { $($variant,)* }

        impl Kind {
            pub const ALL: &[Kind] = &[$(Kind::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self { $(Kind::$variant => $name,)* }
            }

            /// True for kinds never stored as activity (too frequent, or only live).
            pub fn is_ephemeral(self) -> bool {
                match self { $(Kind::$variant => kinds!(@flag $($flag)?),)* }
            }
        }

        impl FromStr for Kind {
            type Err = UnknownKind;
            fn from_str(s: &str) -> Result<Kind, UnknownKind> {
                match s { $($name => Ok(Kind::$variant),)* _ => Err(UnknownKind(s.to_owned())) }
            }
        }
    };
    (@flag ephemeral) => { true };
    (@flag) => { false };
}

kinds! {
    BeadCreated = "bead.created";
    BeadUpdated = "bead.updated";
    BeadClaimed = "bead.claimed";
    BeadClosed = "bead.closed";
    BeadBlocked = "bead.blocked";
    BeadDeferred = "bead.deferred";
    BeadReopened = "bead.reopened";
    BeadReview = "bead.review";
    BeadLanding = "bead.landing";
    BeadApproved = "bead.approved";
    BeadChangesRequested = "bead.changes_requested";
    BeadSentBack = "bead.sent_back";
    DependencyAdded = "dependency.added";
    DependencyRemoved = "dependency.removed";
    CommentAdded = "comment.added";
    AgentCreated = "agent.created";
    AgentUpdated = "agent.updated";
    AgentDeleted = "agent.deleted";
    AgentStatus = "agent.status";
    ProjectCreated = "project.created";
    ProjectUpdated = "project.updated";
    ProjectDeleted = "project.deleted";
    ProjectRepo = "project.repo";
    RunStarted = "run.started";
    RunStep = "run.step", ephemeral;
    RunEnded = "run.ended";
    GitCommit = "git.commit";
    GitMerged = "git.merged";
    CheckFinished = "check.finished";
    GatewayHealth = "gateway.health";
    ScheduleCreated = "schedule.created";
    ScheduleUpdated = "schedule.updated";
    ScheduleDeleted = "schedule.deleted";
    ScheduleFired = "schedule.fired";
    ScheduleSkipped = "schedule.skipped";
    ScheduleFailed = "schedule.failed";
    ScheduleDisabled = "schedule.disabled";
    TickerHealed = "ticker.healed";
    SpendLimited = "spend.limited";
    SpendResumed = "spend.resumed";
    ConversationStarted = "conversation.started";
    ConversationHandedOff = "conversation.handed_off";
    ChatDelta = "chat.delta", ephemeral;
    ChatReply = "chat.reply", ephemeral;
    Notification = "notification", ephemeral;
}

impl Kind {
    /// Kinds that go only on a stream of their own, not the activity feed: a notification is
    /// for one person; a conversation's replies (many a second) are on its own stream, and
    /// a reply handed to another replica to write is for that replica alone.
    pub fn has_own_stream(self) -> bool {
        matches!(self, Kind::Notification | Kind::ChatDelta | Kind::ChatReply)
    }
}

impl Kind {
    /// Kinds after which some bead may have become dispatchable, or an agent free.
    pub fn may_ready_work(self) -> bool {
        matches!(
            self,
            Kind::BeadCreated
                | Kind::BeadUpdated
                | Kind::BeadClosed
                | Kind::BeadReopened
                | Kind::DependencyRemoved
                | Kind::AgentCreated
                | Kind::AgentUpdated
                | Kind::AgentStatus
                | Kind::RunEnded
                | Kind::ConversationHandedOff
                | Kind::ScheduleFired
                | Kind::TickerHealed
                | Kind::SpendResumed
        )
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Kind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Kind, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event kind {0:?}")]
pub struct UnknownKind(pub String);

/// A `kind` filter: an exact kind (`bead.closed`) or a family (`bead` or `bead.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KindFilter {
    Exact(Kind),
    Family(String),
}

impl KindFilter {
    pub fn parse(s: &str) -> Result<KindFilter, UnknownKind> {
        if let Ok(k) = s.parse() {
            return Ok(KindFilter::Exact(k));
        }
        let family = s.strip_suffix(".*").unwrap_or(s);
        let known = Kind::ALL.iter().any(|k| k.as_str().split('.').next() == Some(family));
        if known && !family.contains('.') {
            Ok(KindFilter::Family(family.to_owned()))
        } else {
            Err(UnknownKind(s.to_owned()))
        }
    }

    /// A filter of the activity feed: a filter naming only kinds that have a stream of their
    /// own (`Kind::has_own_stream`) names nothing the feed has.
    pub fn parse_for_feed(s: &str) -> Result<KindFilter, UnknownKind> {
        let f = KindFilter::parse(s)?;
        if Kind::ALL.iter().filter(|k| f.matches(**k)).all(|k| k.has_own_stream()) {
            return Err(UnknownKind(s.to_owned()));
        }
        Ok(f)
    }

    pub fn matches(&self, kind: Kind) -> bool {
        match self {
            KindFilter::Exact(k) => *k == kind,
            KindFilter::Family(f) => kind.as_str().split('.').next() == Some(f.as_str()),
        }
    }

    /// The SQL `LIKE` pattern or exact name for a query on `activity.kind`.
    pub fn like_pattern(&self) -> String {
        match self {
            KindFilter::Exact(k) => k.as_str().to_owned(),
            KindFilter::Family(f) => format!("{f}.%"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_name() {
        for k in Kind::ALL {
            assert_eq!(k.as_str().parse::<Kind>(), Ok(*k));
            let json = serde_json::to_string(k).expect("serialises");
            assert_eq!(serde_json::from_str::<Kind>(&json).expect("parses"), *k);
        }
        assert!("bead.exploded".parse::<Kind>().is_err());
    }

    #[test]
    fn kinds_written_by_sql_statements_are_known() {
        // claims.rs and the executor's pickup write these in SQL text, outside the typed path.
        for name in ["bead.claimed", "bead.closed", "run.ended", "run.started"] {
            assert!(name.parse::<Kind>().is_ok(), "{name}");
        }
    }

    #[test]
    fn handing_a_conversation_off_wakes_dispatchers() {
        // Its bead is ready again; a conversation starting readies nothing by itself (an
        // agent it frees says so with its own `run.ended`).
        assert!(Kind::ConversationHandedOff.may_ready_work());
        assert!(!Kind::ConversationStarted.may_ready_work());
    }

    #[test]
    fn filters_take_a_kind_or_a_family() {
        let f = KindFilter::parse("bead").expect("family");
        assert!(f.matches(Kind::BeadClosed) && !f.matches(Kind::RunEnded));
        assert_eq!(KindFilter::parse("bead.*").expect("family"), f);
        assert_eq!(f.like_pattern(), "bead.%");
        let e = KindFilter::parse("run.ended").expect("exact");
        assert!(e.matches(Kind::RunEnded) && !e.matches(Kind::RunStarted));
        assert!(KindFilter::parse("beads").is_err());
        assert!(KindFilter::parse("bead.nope").is_err());
        assert!(KindFilter::parse("").is_err());
    }
}
