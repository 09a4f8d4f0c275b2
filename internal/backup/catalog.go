package backup

// Kind is the neutral type of a column in an archive.
type Kind string

// The column kinds.
const (
	KindText  Kind = "text"
	KindInt   Kind = "int"
	KindBytes Kind = "bytes"
	KindTime  Kind = "time" // Unix microseconds
	KindBool  Kind = "bool"
)

// Column is one column of a table in an archive.
type Column struct {
	Name string `json:"name"`
	Kind Kind   `json:"kind"`
}

// Table is one table of the store, as archives carry it.
type Table struct {
	Name    string   `json:"name"`
	Columns []Column `json:"columns"`
	// OrderBy is the primary key, so a dump is deterministic.
	OrderBy string `json:"-"`
}

// Counter is an identity or AUTOINCREMENT column whose next value restore
// must carry over, so that no cursor or id is ever handed out twice.
type Counter struct {
	Table  string
	Column string
}

// counters are the store's generated keys: event cursors (clients resume
// from them) and Welcome ids.
var counters = []Counter{{"events", "cursor"}, {"welcomes", "id"}}

// counterName names c in a manifest.
func (c Counter) name() string { return c.Table + "." + c.Column }

// catalog is the store's tables at schemaVersion, in an order that
// satisfies foreign keys on insert. Every table a migration adds must be
// listed here or in excludedTables: TestCatalogCoversSchema fails
// otherwise.
var catalog = []Table{
	{Name: "convos", OrderBy: "id", Columns: []Column{
		{"id", KindText}, {"creator_did", KindText}, {"cipher_suite", KindText}, {"name", KindText},
		{"description", KindText}, {"epoch", KindInt}, {"last_seq", KindInt}, {"created_at", KindTime},
		{"last_activity_at", KindTime}}},
	{Name: "members", OrderBy: "convo_id, member_did", Columns: []Column{
		{"convo_id", KindText}, {"member_did", KindText}, {"user_did", KindText}, {"device_id", KindText},
		{"role", KindText}, {"joined_at", KindTime}, {"left_at", KindTime},
		{"role_granted_at", KindTime}, {"role_granted_by", KindText}, {"needs_rejoin", KindBool},
		{"removed", KindBool}}},
	{Name: "messages", OrderBy: "convo_id, seq", Columns: []Column{
		{"convo_id", KindText}, {"seq", KindInt}, {"epoch", KindInt}, {"msg_id", KindText},
		{"ciphertext", KindBytes}, {"padded_size", KindInt}, {"received_bucket", KindTime},
		{"expires_at", KindTime}}},
	{Name: "commits", OrderBy: "convo_id, epoch", Columns: []Column{
		{"convo_id", KindText}, {"epoch", KindInt}, {"seq", KindInt}}},
	{Name: "group_infos", OrderBy: "convo_id", Columns: []Column{
		{"convo_id", KindText}, {"epoch", KindInt}, {"data", KindBytes}, {"updated_at", KindTime}}},
	{Name: "welcomes", OrderBy: "id", Columns: []Column{
		{"id", KindInt}, {"convo_id", KindText}, {"epoch", KindInt}, {"data", KindBytes},
		{"created_at", KindTime}}},
	{Name: "welcome_recipients", OrderBy: "welcome_id, recipient_did", Columns: []Column{
		{"welcome_id", KindInt}, {"recipient_did", KindText}, {"consumed_at", KindTime}}},
	{Name: "key_packages", OrderBy: "ref", Columns: []Column{
		{"ref", KindText}, {"owner_did", KindText}, {"device_id", KindText}, {"cipher_suite", KindText},
		{"data", KindBytes}, {"created_at", KindTime}, {"expires_at", KindTime}, {"last_resort", KindBool},
		{"consumed_at", KindTime}, {"used_in_convo", KindText}, {"data_sha256", KindText},
		{"welcome_digest", KindBytes}, {"welcome_reserved_until", KindTime}, {"welcome_used_at", KindTime}}},
	{Name: "devices", OrderBy: "owner_did, device_id", Columns: []Column{
		{"owner_did", KindText}, {"device_id", KindText}, {"name", KindText}, {"uuid", KindText},
		{"signature_key", KindBytes}, {"registered_at", KindTime}, {"last_seen_at", KindTime}}},
	{Name: "pending_device_additions", OrderBy: "id", Columns: []Column{
		{"id", KindText}, {"convo_id", KindText}, {"user_did", KindText}, {"device_id", KindText},
		{"rejoin", KindBool}, {"key_package_ref", KindText}, {"status", KindText}, {"claimed_by", KindText},
		{"claimed_until", KindTime}, {"created_at", KindTime}, {"expires_at", KindTime}}},
	{Name: "events", OrderBy: "cursor", Columns: []Column{
		{"cursor", KindInt}, {"convo_id", KindText}, {"kind", KindText}, {"message_id", KindText},
		{"epoch", KindInt}, {"created_bucket", KindTime}}},
	{Name: "event_horizon", OrderBy: "id", Columns: []Column{
		{"id", KindInt}, {"purged_through", KindInt}}},
	{Name: "idempotency", OrderBy: "digest", Columns: []Column{
		{"digest", KindBytes}, {"request_hash", KindBytes}, {"response", KindBytes}, {"created_at", KindTime}}},
	// The audit chain travels whole, anchor included, so that `cairn-caddy
	// audit verify` verifies the restored log with the restored audit key.
	{Name: "audit_log", OrderBy: "seq", Columns: []Column{
		{"seq", KindInt}, {"at", KindTime}, {"event_type", KindText}, {"actor", KindText}, {"target", KindText},
		{"metadata", KindText}, {"ip", KindText}, {"mac", KindBytes}}},
	{Name: "audit_anchor", OrderBy: "id", Columns: []Column{
		{"id", KindInt}, {"seq", KindInt}, {"mac", KindBytes}}},
	{Name: "bans", OrderBy: "did_hash", Columns: []Column{
		{"did_hash", KindText}, {"created_at", KindTime}}},
	{Name: "convo_policies", OrderBy: "convo_id", Columns: []Column{
		{"convo_id", KindText}, {"allow_invites", KindBool}, {"admin_only_invites", KindBool},
		{"allow_member_add", KindBool}, {"allow_member_remove", KindBool}, {"require_admin_approval", KindBool},
		{"max_members", KindInt}, {"updated_at", KindTime}, {"updated_by", KindText}}},
	{Name: "reports", OrderBy: "id", Columns: []Column{
		{"id", KindText}, {"convo_id", KindText}, {"target_did", KindText}, {"category", KindText},
		{"sealed", KindBytes}, {"status", KindText}, {"action", KindText}, {"created_at", KindTime},
		{"resolved_at", KindTime}}},
	{Name: "invites", OrderBy: "id", Columns: []Column{
		{"id", KindText}, {"convo_id", KindText}, {"psk_hash", KindText}, {"created_by", KindText},
		{"target_did", KindText}, {"created_at", KindTime}, {"expires_at", KindTime}, {"max_uses", KindInt},
		{"use_count", KindInt}, {"revoked_at", KindTime}, {"revoked_by", KindText}}},
	{Name: "opt_ins", OrderBy: "did", Columns: []Column{
		{"did", KindText}, {"opted_in_at", KindTime}}},
	// Push tokens travel sealed; the push key travels with the data
	// directory's files (push-token.key), so a restore can open them.
	{Name: "push_tokens", OrderBy: "owner_did, device_id", Columns: []Column{
		{"owner_did", KindText}, {"device_id", KindText}, {"provider", KindText},
		{"sealed_token", KindBytes}, {"registered_at", KindTime}}},
	// Chat requests travel with their sealed previews; the preview key
	// travels with the data directory's files (chat-preview.key).
	{Name: "chat_requests", OrderBy: "id", Columns: []Column{
		{"id", KindText}, {"sender_did", KindText}, {"recipient_did", KindText}, {"status", KindText},
		{"group_id", KindText}, {"sealed_preview", KindBytes}, {"message_count", KindInt}, {"created_at", KindTime},
		{"expires_at", KindTime}, {"closed_at", KindTime}}},
	{Name: "chat_request_messages", OrderBy: "request_id, seq", Columns: []Column{
		{"request_id", KindText}, {"seq", KindInt}, {"ciphertext", KindBytes}, {"padded_size", KindInt},
		{"eph_pub_key", KindBytes}}},
	{Name: "chat_request_blocks", OrderBy: "block_hash", Columns: []Column{
		{"block_hash", KindBytes}, {"created_at", KindTime}}},
	{Name: "chat_request_settings", OrderBy: "did", Columns: []Column{
		{"did", KindText}, {"allow_followers_bypass", KindBool}, {"allow_following_bypass", KindBool},
		{"auto_expire_days", KindInt}}},
}

// singletonTables always hold their one row once migrated, so they do not
// make a store non-empty.
var singletonTables = map[string]bool{"event_horizon": true, "audit_anchor": true}

// excludedTables are store tables an archive leaves out: the schema
// bookkeeping, which restore's migration recreates.
var excludedTables = map[string]bool{"schema_migrations": true}

// SchemaVersion is the store schema version catalog describes. Backups
// are taken and restored at this version only.
const SchemaVersion = 8
