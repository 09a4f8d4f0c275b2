package atprototest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/bluesky-social/indigo/atproto/atcrypto"
)

// BlockCollection is the NSID of Bluesky block records.
const BlockCollection = "app.bsky.graph.block"

// PDS is a personal data server stand-in that serves app.bsky.graph.block
// records through the real com.atproto.repo.listRecords and getRecord
// shapes (records of other collections are empty). Tests publish, for each
// account, a DID document whose #atproto_pds service points here.
type PDS struct {
	*httptest.Server
	mu     sync.Mutex
	blocks map[string]map[string]blockRecord // repo DID → rkey → record
	seq    int
	// Down, when set, makes every request answer 503.
	down bool
	hits int
}

// blockRecord is one stored block.
type blockRecord struct {
	Subject   string
	CreatedAt string
}

// NewPDS starts a PDS stand-in, stopped when the test ends.
func NewPDS(t testing.TB) *PDS {
	t.Helper()
	p := &PDS{blocks: map[string]map[string]blockRecord{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /xrpc/com.atproto.repo.listRecords", p.listRecords)
	mux.HandleFunc("GET /xrpc/com.atproto.repo.getRecord", p.getRecord)
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.hits++
		down := p.down
		p.mu.Unlock()
		if down {
			xrpcError(w, http.StatusServiceUnavailable, "ServiceUnavailable", "down")
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	return p
}

// Block stores a block record of blocker naming subject and returns its
// AT-URI.
func (p *PDS) Block(blocker, subject string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seq++
	// TIDs sort by time; a zero-padded counter does too.
	rkey := "3l" + strconv.FormatInt(int64(1000000000+p.seq), 10)
	if p.blocks[blocker] == nil {
		p.blocks[blocker] = map[string]blockRecord{}
	}
	p.blocks[blocker][rkey] = blockRecord{Subject: subject, CreatedAt: time.Now().UTC().Format(time.RFC3339Nano)}
	return "at://" + blocker + "/" + BlockCollection + "/" + rkey
}

// Unblock deletes every block record of blocker naming subject.
func (p *PDS) Unblock(blocker, subject string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for rkey, b := range p.blocks[blocker] {
		if b.Subject == subject {
			delete(p.blocks[blocker], rkey)
		}
	}
}

// SetDown makes the stand-in answer 503 to everything (down) or serve again.
func (p *PDS) SetDown(down bool) {
	p.mu.Lock()
	p.down = down
	p.mu.Unlock()
}

// Hits returns how many requests the stand-in received.
func (p *PDS) Hits() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hits
}

// DIDDocumentWithPDS returns the DID document of did whose #atproto key is
// the multibase key and whose #atproto_pds service is pdsURL.
func DIDDocumentWithPDS(did, multibase, pdsURL string) []byte {
	doc, _ := json.Marshal(map[string]any{
		"@context": []string{"https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"},
		"id":       did,
		"verificationMethod": []map[string]string{{
			"id":                 did + "#atproto",
			"type":               "Multikey",
			"controller":         did,
			"publicKeyMultibase": multibase,
		}},
		"service": []map[string]string{{
			"id":              "#atproto_pds",
			"type":            "AtprotoPersonalDataServer",
			"serviceEndpoint": pdsURL,
		}},
	})
	return doc
}

// PublishWithPDS serves a DID document for did with a fresh P-256 key and
// its PDS at pdsURL (a block-source test needs the PDS, not the key).
func (p *PLC) PublishWithPDS(t testing.TB, did, pdsURL string) {
	t.Helper()
	k, err := atcrypto.GeneratePrivateKeyP256()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := k.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	p.PublishDocument(did, DIDDocumentWithPDS(did, pub.Multibase(), pdsURL))
}

// record is a com.atproto.repo.listRecords#record / getRecord output.
type record struct {
	URI   string         `json:"uri"`
	CID   string         `json:"cid"`
	Value map[string]any `json:"value"`
}

func (p *PDS) view(repo, rkey string, b blockRecord) record {
	return record{
		URI: "at://" + repo + "/" + BlockCollection + "/" + rkey,
		// A syntactically valid CIDv1 (dag-cbor, sha256); not the record's.
		CID:   "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm",
		Value: map[string]any{"$type": BlockCollection, "subject": b.Subject, "createdAt": b.CreatedAt},
	}
}

// listRecords serves com.atproto.repo.listRecords: newest first, limit
// 1-100 (default 50), cursor = the last rkey of the previous page.
func (p *PDS) listRecords(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	repo, coll := q.Get("repo"), q.Get("collection")
	if repo == "" || coll == "" {
		xrpcError(w, http.StatusBadRequest, "InvalidRequest", "repo and collection are required")
		return
	}
	limit := 50
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 100 {
			xrpcError(w, http.StatusBadRequest, "InvalidRequest", "limit must be 1-100")
			return
		}
		limit = n
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	out := struct {
		Cursor  string   `json:"cursor,omitempty"`
		Records []record `json:"records"`
	}{Records: []record{}}
	if coll == BlockCollection {
		var keys []string
		for k := range p.blocks[repo] {
			keys = append(keys, k)
		}
		sort.Sort(sort.Reverse(sort.StringSlice(keys)))
		cursor, last := q.Get("cursor"), ""
		for _, k := range keys {
			if cursor != "" && k >= cursor {
				continue
			}
			if len(out.Records) == limit {
				out.Cursor = last
				break
			}
			out.Records = append(out.Records, p.view(repo, k, p.blocks[repo][k]))
			last = k
		}
	}
	writeJSON(w, out)
}

// getRecord serves com.atproto.repo.getRecord; a missing record is 400
// RecordNotFound, as the reference PDS answers.
func (p *PDS) getRecord(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	repo, coll, rkey := q.Get("repo"), q.Get("collection"), q.Get("rkey")
	if repo == "" || coll == "" || rkey == "" {
		xrpcError(w, http.StatusBadRequest, "InvalidRequest", "repo, collection and rkey are required")
		return
	}
	p.mu.Lock()
	b, ok := p.blocks[repo][rkey]
	p.mu.Unlock()
	if coll != BlockCollection || !ok {
		xrpcError(w, http.StatusBadRequest, "RecordNotFound", "Could not locate record")
		return
	}
	writeJSON(w, p.view(repo, rkey, b))
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(v)
}

func xrpcError(w http.ResponseWriter, status int, name, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": name, "message": msg})
}
