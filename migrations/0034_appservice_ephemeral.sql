-- Where each appservice is in the ephemeral streams (receipts, typing, presence,
-- to-device) when its registration asks for them; NULL until the first round.
ALTER TABLE appservice_state ADD COLUMN ephemeral_pos JSONB;
