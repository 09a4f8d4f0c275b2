package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"

	"github.com/jackc/pgx/v5"

	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/store/open"
)

// cipherSuite is the MLS suite the seeded conversations declare.
const cipherSuite = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519"

// convo is one seeded conversation: its id (the hex MLS group id) and the
// indexes of its member users; members[0] sends.
type convo struct {
	id      string
	members []int
}

// seed creates the conversations directly in the store the gateway will
// open, before it starts: adding a thousand members through the API would
// need a thousand real MLS key packages and a commit, which is not what
// this tool measures. Each user is a device-less member of one
// conversation.
func seed(ctx context.Context, st store.Store, ids *identities, convos, members int) ([]convo, error) {
	out := make([]convo, convos)
	for c := range convos {
		gid := make([]byte, 16)
		if _, err := rand.Read(gid); err != nil {
			return nil, fmt.Errorf("random group id: %w", err)
		}
		cv := convo{id: hex.EncodeToString(gid), members: make([]int, members)}
		nm := make([]store.NewMember, members)
		for m := range members {
			u := c*members + m
			cv.members[m] = u
			nm[m] = store.NewMember{MemberDID: ids.did(u)}
		}
		nm[0].Role = store.RoleAdmin
		if _, err := st.CreateConvo(ctx, store.NewConvo{
			ID: cv.id, CreatorDID: ids.did(cv.members[0]), CipherSuite: cipherSuite, Members: nm,
		}); err != nil {
			return nil, fmt.Errorf("create conversation %d of %d members: %w", c, members, err)
		}
		out[c] = cv
	}
	return out, nil
}

// openStore opens and migrates the store the gateway will be configured
// with, through the same opener as the gateway's cairn app, so both agree
// on the database (for SQLite: the data directory's cairn.db).
func openStore(ctx context.Context, cfg open.Config) (store.Store, error) {
	st, err := open.New(cfg)
	if err != nil {
		return nil, err
	}
	if _, err := st.Migrate(ctx); err != nil {
		st.Close()
		return nil, fmt.Errorf("migrate %s: %w", cfg, err)
	}
	return st, nil
}

// freshPostgres creates an empty database next to adminURL's and returns
// its URL and a function that drops it.
func freshPostgres(ctx context.Context, adminURL string) (string, func(), error) {
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", nil, fmt.Errorf("connect to PostgreSQL at %s: %w", redactURL(adminURL), err)
	}
	defer admin.Close(context.Background())
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return "", nil, fmt.Errorf("random database name: %w", err)
	}
	name := "cairn_load_" + hex.EncodeToString(b)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, fmt.Errorf("create database %s: %w", name, err)
	}
	u, err := url.Parse(adminURL)
	if err != nil {
		return "", nil, fmt.Errorf("parse -pg-url: %w", err)
	}
	u.Path = "/" + name
	drop := func() {
		c, err := pgx.Connect(context.Background(), adminURL)
		if err != nil {
			fmt.Fprintf(os.Stderr, "drop database %s: %v\n", name, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			fmt.Fprintf(os.Stderr, "drop database %s: %v\n", name, err)
		}
	}
	return u.String(), drop, nil
}

// redactURL drops a password from a URL for error messages.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
