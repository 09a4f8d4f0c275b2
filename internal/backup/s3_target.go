package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Config says where an S3 target keeps archives.
type S3Config struct {
	// Endpoint is host[:port] of the S3-compatible service; empty means
	// AWS (s3.amazonaws.com).
	Endpoint string
	Bucket   string
	// Prefix is a "directory" inside the bucket; archives are Prefix/name.
	Prefix string
	Region string
	// Insecure talks plain HTTP, for a service on loopback.
	Insecure bool
	// Credentials; nil reads AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY
	// (or MINIO_ROOT_USER/…), then an EC2/ECS role. Never from the URL.
	Credentials *credentials.Credentials
}

// S3 is a Target in S3-compatible object storage, through minio-go.
type S3 struct {
	cfg    S3Config
	client *minio.Client
}

// s3PartSize bounds the memory an upload of unknown length buffers: one
// part. 16 MiB parts allow archives up to 160 GB (10,000 parts).
const s3PartSize = 16 << 20

// NewS3 builds an S3 target; it connects to nothing until used.
func NewS3(cfg S3Config) (*S3, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("s3 target: no bucket")
	}
	endpoint := cfg.Endpoint
	if endpoint == "" {
		endpoint = "s3.amazonaws.com"
	}
	creds := cfg.Credentials
	if creds == nil {
		creds = credentials.NewChainCredentials([]credentials.Provider{
			&credentials.EnvAWS{}, &credentials.EnvMinio{}, &credentials.IAM{},
		})
	}
	client, err := minio.New(endpoint, &minio.Options{Creds: creds, Secure: !cfg.Insecure, Region: cfg.Region, BucketLookup: minio.BucketLookupAuto})
	if err != nil {
		return nil, fmt.Errorf("s3 target: %w", err)
	}
	cfg.Prefix = strings.Trim(cfg.Prefix, "/")
	return &S3{cfg: cfg, client: client}, nil
}

func (s *S3) key(name string) string {
	if s.cfg.Prefix == "" {
		return name
	}
	return s.cfg.Prefix + "/" + name
}

// Put uploads r in parts of s3PartSize; S3 shows the object only once
// the upload completes, and a failed multipart upload is aborted.
func (s *S3) Put(ctx context.Context, name string, r io.Reader) error {
	if err := checkName(name); err != nil {
		return err
	}
	_, err := s.client.PutObject(ctx, s.cfg.Bucket, s.key(name), r, -1, minio.PutObjectOptions{
		ContentType: "application/octet-stream", PartSize: s3PartSize,
		// Unsigned payloads: TLS protects the body in transit and the archive
		// authenticates itself; aws-chunked signing is not understood by
		// every S3-compatible service.
		DisableContentSha256: true,
	})
	if err != nil {
		return fmt.Errorf("uploading %s to %s: %w", name, s, err)
	}
	return nil
}

// Open downloads name.
func (s *S3) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if _, err := s.client.StatObject(ctx, s.cfg.Bucket, s.key(name), minio.StatObjectOptions{}); err != nil {
		if minio.ToErrorResponse(err).Code == "NoSuchKey" {
			return nil, fmt.Errorf("%w: %s in %s", ErrNoArchive, name, s)
		}
		return nil, fmt.Errorf("reading %s from %s: %w", name, s, err)
	}
	obj, err := s.client.GetObject(ctx, s.cfg.Bucket, s.key(name), minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading %s from %s: %w", name, s, err)
	}
	return obj, nil
}

// List lists the archives under the prefix.
func (s *S3) List(ctx context.Context) ([]Archive, error) {
	prefix := ""
	if s.cfg.Prefix != "" {
		prefix = s.cfg.Prefix + "/"
	}
	var as []Archive
	for obj := range s.client.ListObjects(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: prefix}) {
		if obj.Err != nil {
			return nil, fmt.Errorf("listing %s: %w", s, obj.Err)
		}
		name := path.Base(obj.Key)
		t, ok := parseArchiveName(name)
		if !ok || obj.Key != s.key(name) {
			continue
		}
		as = append(as, Archive{Name: name, Size: obj.Size, Created: t})
	}
	sortArchives(as)
	return as, nil
}

// Delete removes name.
func (s *S3) Delete(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := s.client.RemoveObject(ctx, s.cfg.Bucket, s.key(name), minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("deleting %s from %s: %w", name, s, err)
	}
	return nil
}

// String names the bucket and prefix, without credentials.
func (s *S3) String() string {
	u := url.URL{Scheme: "s3", Host: s.cfg.Bucket, Path: "/" + s.cfg.Prefix}
	if s.cfg.Endpoint != "" {
		u.RawQuery = url.Values{"endpoint": {s.cfg.Endpoint}}.Encode()
	}
	return u.String()
}

// parseS3 reads s3://bucket/prefix?endpoint=host:port&region=r&insecure=1.
func parseS3(spec string) (*S3, error) {
	u, err := url.Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("backup target %q: %w", spec, err)
	}
	if u.User != nil {
		return nil, errors.New("s3 target: put credentials in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, not in the URL")
	}
	q := u.Query()
	for k := range q {
		if k != "endpoint" && k != "region" && k != "insecure" {
			return nil, fmt.Errorf("s3 target: unknown parameter %q (want endpoint, region, insecure)", k)
		}
	}
	insecure := false
	switch q.Get("insecure") {
	case "", "0", "false":
	case "1", "true":
		insecure = true
	default:
		return nil, errors.New("s3 target: insecure must be true or false")
	}
	return NewS3(S3Config{Endpoint: q.Get("endpoint"), Bucket: u.Host, Prefix: u.Path, Region: q.Get("region"), Insecure: insecure})
}

var _ Target = (*S3)(nil)
