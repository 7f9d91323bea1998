DROP TABLE chat_events;
DROP TABLE chat_messages;
DROP TYPE chat_state;
DROP TYPE chat_role;
DROP TABLE conversations;
DROP TYPE conversation_status;
