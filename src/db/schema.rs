// @generated automatically by Diesel CLI.

pub mod sql_types {
    #[derive(diesel::query_builder::QueryId, Clone, diesel::sql_types::SqlType)]
    #[diesel(postgres_type(name = "agent_status"))]
    pub struct AgentStatus;

    #[derive(diesel::query_builder::QueryId, Clone, diesel::sql_types::SqlType)]
    #[diesel(postgres_type(name = "bead_status"))]
    pub struct BeadStatus;

    #[derive(diesel::query_builder::QueryId, Clone, diesel::sql_types::SqlType)]
    #[diesel(postgres_type(name = "bead_type"))]
    pub struct BeadType;

    #[derive(diesel::query_builder::QueryId, Clone, diesel::sql_types::SqlType)]
    #[diesel(postgres_type(name = "blocked_reason"))]
    pub struct BlockedReason;

    #[derive(diesel::query_builder::QueryId, Clone, diesel::sql_types::SqlType)]
    #[diesel(postgres_type(name = "chat_role"))]
    pub struct ChatRole;

    #[derive(diesel::query_builder::QueryId, Clone, diesel::sql_types::SqlType)]
    #[diesel(postgres_type(name = "chat_state"))]
    pub struct ChatState;

    #[derive(diesel::query_builder::QueryId, Clone, diesel::sql_types::SqlType)]
    #[diesel(postgres_type(name = "conversation_status"))]
    pub struct ConversationStatus;

    #[derive(diesel::query_builder::QueryId, Clone, diesel::sql_types::SqlType)]
    #[diesel(postgres_type(name = "dependency_kind"))]
    pub struct DependencyKind;

    #[derive(diesel::query_builder::QueryId, Clone, diesel::sql_types::SqlType)]
    #[diesel(postgres_type(name = "run_outcome"))]
    pub struct RunOutcome;

    #[derive(diesel::query_builder::QueryId, Clone, diesel::sql_types::SqlType)]
    #[diesel(postgres_type(name = "user_role"))]
    pub struct UserRole;
}

diesel::table! {
    activity (id) {
        id -> Int8,
        created_at -> Timestamptz,
        kind -> Text,
        project_id -> Nullable<Text>,
        bead_id -> Nullable<Text>,
        actor_user_id -> Nullable<Uuid>,
        actor_agent_id -> Nullable<Uuid>,
        data -> Jsonb,
        tx -> Int8,
        origin -> Text,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::sql_types::AgentStatus;

    agents (id) {
        id -> Uuid,
        name -> Text,
        persona -> Text,
        project_id -> Nullable<Text>,
        status -> AgentStatus,
        last_heartbeat_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> Uuid,
        user_id -> Uuid,
        name -> Text,
        token_hash -> Bytea,
        prefix -> Text,
        created_at -> Timestamptz,
        last_used_at -> Nullable<Timestamptz>,
        expires_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::sql_types::DependencyKind;

    bead_dependencies (bead_id, depends_on, kind) {
        bead_id -> Text,
        depends_on -> Text,
        kind -> DependencyKind,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::sql_types::BeadType;
    use super::sql_types::BeadStatus;
    use super::sql_types::BlockedReason;

    beads (id) {
        id -> Text,
        project_id -> Text,
        title -> Text,
        description -> Text,
        bead_type -> BeadType,
        priority -> Int2,
        status -> BeadStatus,
        blocked_reason -> Nullable<BlockedReason>,
        blocked_note -> Nullable<Text>,
        labels -> Array<Text>,
        persona -> Nullable<Text>,
        assignee_agent_id -> Nullable<Uuid>,
        parent_id -> Nullable<Text>,
        created_by_user_id -> Nullable<Uuid>,
        created_by_agent_id -> Nullable<Uuid>,
        close_reason -> Nullable<Text>,
        attempts -> Int4,
        last_error -> Nullable<Text>,
        not_before -> Nullable<Timestamptz>,
        defer_until -> Nullable<Timestamptz>,
        lease_expires_at -> Nullable<Timestamptz>,
        open_blockers -> Int4,
        held_by -> Nullable<Text>,
        child_seq -> Int4,
        version -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        closed_at -> Nullable<Timestamptz>,
        schedule_id -> Nullable<Uuid>,
        paired_in -> Nullable<Uuid>,
        landing_sha -> Nullable<Text>,
        landing_since -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    checks (id) {
        id -> Uuid,
        project_id -> Text,
        beads -> Array<Text>,
        base_sha -> Text,
        tip_sha -> Text,
        command -> Nullable<Text>,
        outcome -> Nullable<Text>,
        exit_code -> Nullable<Int4>,
        output -> Text,
        landed -> Bool,
        worker -> Uuid,
        heartbeat_at -> Timestamptz,
        started_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    chat_events (id) {
        id -> Int8,
        conversation_id -> Uuid,
        message_id -> Nullable<Int8>,
        kind -> Text,
        data -> Jsonb,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::sql_types::ChatRole;
    use super::sql_types::ChatState;

    chat_messages (id) {
        id -> Int8,
        conversation_id -> Uuid,
        role -> ChatRole,
        author_user_id -> Nullable<Uuid>,
        author_agent_id -> Nullable<Uuid>,
        body -> Text,
        state -> ChatState,
        prompt_tokens -> Int8,
        completion_tokens -> Int8,
        error -> Nullable<Text>,
        lease_expires_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    comments (id) {
        id -> Uuid,
        bead_id -> Text,
        author_user_id -> Nullable<Uuid>,
        author_agent_id -> Nullable<Uuid>,
        body -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::sql_types::ConversationStatus;

    conversations (id) {
        id -> Uuid,
        project_id -> Text,
        bead_id -> Nullable<Text>,
        agent_id -> Nullable<Uuid>,
        persona -> Text,
        title -> Text,
        status -> ConversationStatus,
        created_by_user_id -> Nullable<Uuid>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    executor_leases (project_id) {
        project_id -> Text,
        owner -> Uuid,
        owner_name -> Text,
        acquired_at -> Timestamptz,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    feed_cursors (name) {
        name -> Text,
        tx -> Int8,
        id -> Int8,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    gateway_calls (id) {
        id -> Int8,
        created_at -> Timestamptz,
        run_id -> Nullable<Uuid>,
        agent_id -> Nullable<Uuid>,
        model -> Text,
        attempt -> Int4,
        streamed -> Bool,
        ok -> Bool,
        http_status -> Nullable<Int2>,
        prompt_tokens -> Int8,
        completion_tokens -> Int8,
        latency_ms -> Int8,
        error -> Nullable<Text>,
    }
}

diesel::table! {
    notifications (id) {
        id -> Int8,
        user_id -> Uuid,
        reason -> Text,
        subject -> Text,
        project_id -> Nullable<Text>,
        bead_id -> Nullable<Text>,
        activity_id -> Int8,
        title -> Text,
        count -> Int4,
        seq -> Int8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        read_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    personas (name) {
        name -> Text,
        display_name -> Text,
        role -> Text,
        description -> Text,
        labels -> Array<Text>,
        instructions -> Text,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    project_watchers (project_id, user_id) {
        project_id -> Text,
        user_id -> Uuid,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    projects (id) {
        id -> Text,
        name -> Text,
        repo -> Text,
        branch -> Text,
        prefix -> Text,
        max_parallel -> Int4,
        max_attempts -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        token_budget -> Nullable<Int8>,
        max_in_progress -> Nullable<Int4>,
        max_awaiting_merge -> Nullable<Int4>,
        network -> Text,
        setup_command -> Nullable<Text>,
        repo_state -> Text,
        repo_error -> Nullable<Text>,
        repo_checked_at -> Nullable<Timestamptz>,
        check_command -> Nullable<Text>,
        check_timeout_s -> Int4,
        review -> Text,
        max_train -> Int4,
        max_review_rounds -> Int4,
        landing_error -> Nullable<Text>,
        landing_error_since -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    run_steps (id) {
        id -> Int8,
        run_id -> Uuid,
        turn -> Int4,
        action -> Jsonb,
        ok -> Bool,
        result -> Text,
        prompt_tokens -> Int8,
        completion_tokens -> Int8,
        started_at -> Timestamptz,
        duration_ms -> Int8,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::sql_types::RunOutcome;

    runs (id) {
        id -> Uuid,
        bead_id -> Text,
        agent_id -> Nullable<Uuid>,
        attempt -> Int4,
        started_at -> Timestamptz,
        ended_at -> Nullable<Timestamptz>,
        outcome -> Nullable<RunOutcome>,
        turns -> Int4,
        prompt_tokens -> Int8,
        completion_tokens -> Int8,
        error -> Nullable<Text>,
        worker -> Nullable<Uuid>,
        resumes -> Int4,
        summary -> Nullable<Text>,
        merged_sha -> Nullable<Text>,
        kind -> Text,
    }
}

diesel::table! {
    spend_holds (scope) {
        scope -> Text,
        project_id -> Nullable<Text>,
        spent -> Int8,
        budget -> Int8,
        since -> Timestamptz,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::sql_types::BeadType;

    schedules (id) {
        id -> Uuid,
        project_id -> Text,
        cron -> Text,
        title -> Text,
        description -> Text,
        bead_type -> BeadType,
        priority -> Int2,
        labels -> Array<Text>,
        persona -> Nullable<Text>,
        enabled -> Bool,
        next_run_at -> Timestamptz,
        last_run_at -> Nullable<Timestamptz>,
        last_bead_id -> Nullable<Text>,
        created_by_user_id -> Nullable<Uuid>,
        version -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    sessions (id_hash) {
        id_hash -> Bytea,
        user_id -> Uuid,
        csrf_token -> Text,
        created_at -> Timestamptz,
        last_seen_at -> Timestamptz,
        expires_at -> Timestamptz,
        address -> Nullable<Text>,
        user_agent -> Nullable<Text>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::sql_types::UserRole;

    users (id) {
        id -> Uuid,
        username -> Text,
        password_hash -> Text,
        role -> UserRole,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::joinable!(agents -> personas (persona));
diesel::joinable!(agents -> projects (project_id));
diesel::joinable!(api_tokens -> users (user_id));
diesel::joinable!(beads -> projects (project_id));
diesel::joinable!(beads -> schedules (schedule_id));
diesel::joinable!(beads -> users (created_by_user_id));
diesel::joinable!(chat_events -> chat_messages (message_id));
diesel::joinable!(checks -> projects (project_id));
diesel::joinable!(chat_events -> conversations (conversation_id));
diesel::joinable!(chat_messages -> agents (author_agent_id));
diesel::joinable!(chat_messages -> conversations (conversation_id));
diesel::joinable!(chat_messages -> users (author_user_id));
diesel::joinable!(comments -> agents (author_agent_id));
diesel::joinable!(comments -> beads (bead_id));
diesel::joinable!(comments -> users (author_user_id));
diesel::joinable!(conversations -> agents (agent_id));
diesel::joinable!(conversations -> personas (persona));
diesel::joinable!(conversations -> projects (project_id));
diesel::joinable!(conversations -> users (created_by_user_id));
diesel::joinable!(executor_leases -> projects (project_id));
diesel::joinable!(notifications -> users (user_id));
diesel::joinable!(project_watchers -> projects (project_id));
diesel::joinable!(project_watchers -> users (user_id));
diesel::joinable!(run_steps -> runs (run_id));
diesel::joinable!(runs -> agents (agent_id));
diesel::joinable!(runs -> beads (bead_id));
diesel::joinable!(schedules -> projects (project_id));
diesel::joinable!(schedules -> users (created_by_user_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(spend_holds -> projects (project_id));

diesel::allow_tables_to_appear_in_same_query!(
    activity,
    agents,
    api_tokens,
    bead_dependencies,
    beads,
    chat_events,
    chat_messages,
    checks,
    comments,
    conversations,
    executor_leases,
    feed_cursors,
    gateway_calls,
    notifications,
    personas,
    project_watchers,
    projects,
    run_steps,
    runs,
    schedules,
    sessions,
    spend_holds,
    users,
);
