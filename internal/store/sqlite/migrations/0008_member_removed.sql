-- Removal versus leave (docs/moderation.md, docs/privacy.md): true on the
-- rows of an account whose membership another member ended (removeMember,
-- or leaveConvo naming someone else), false for a voluntary leave. It
-- keeps one bit and no actor: enough for RedeemInvite to refuse an
-- untargeted invite to a removed account, so removal sticks unless a
-- member adds the account back or an invite names it. Re-adding the
-- account clears it.
ALTER TABLE members ADD COLUMN removed INTEGER NOT NULL DEFAULT 0;
