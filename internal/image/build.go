package image

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Platforms are the platforms `make image` builds.
var Platforms = []v1.Platform{
	{OS: "linux", Architecture: "amd64"},
	{OS: "linux", Architecture: "arm64"},
}

// PlatformString is "linux/amd64".
func PlatformString(p v1.Platform) string { return p.OS + "/" + p.Architecture }

// History lines, one per layer: what `docker history` shows.
const (
	historyBase   = "cairn-image: CA bundle, tzdata, passwd/group, Caddyfile, /data, /config, /tmp"
	historyBinary = "cairn-image: " + BinaryPath
)

// Spec is one build: the metadata, the base layer's sources and one binary
// per platform.
type Spec struct {
	Metadata Metadata
	Sources  Sources
	// Binaries maps "linux/amd64" to the path of a static cairn-caddy built
	// for it.
	Binaries map[string]string
}

// Build assembles the multi-platform image index. Each binary must be a
// static ELF executable for its platform's architecture: a binary for the
// wrong machine, or one linked against a C library the image does not
// have, is refused here rather than failing when a container starts.
func Build(spec Spec) (v1.ImageIndex, error) {
	if err := spec.Metadata.Validate(); err != nil {
		return nil, err
	}
	if len(spec.Binaries) == 0 {
		return nil, fmt.Errorf("image: no binary to pack")
	}
	baseEntries, err := BaseEntries(spec.Sources)
	if err != nil {
		return nil, err
	}
	base, err := newLayer(baseEntries, spec.Metadata)
	if err != nil {
		return nil, fmt.Errorf("base layer: %w", err)
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, plat := range sortedKeys(spec.Binaries) {
		p, err := v1.ParsePlatform(plat)
		if err != nil {
			return nil, fmt.Errorf("platform %q: %w", plat, err)
		}
		img, err := platformImage(*p, spec.Binaries[plat], base, spec.Metadata)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", plat, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: p},
		})
	}
	return mutate.Annotations(idx, annotations(spec.Metadata)).(v1.ImageIndex), nil
}

// annotations repeat the labels on the index and manifests, where
// registries show them.
func annotations(m Metadata) map[string]string {
	a := m.Labels()
	delete(a, LabelDescription) // long, and in the config already
	return a
}

func platformImage(p v1.Platform, binaryPath string, base v1.Layer, m Metadata) (v1.Image, error) {
	binary, err := os.ReadFile(binaryPath)
	if err != nil {
		return nil, err
	}
	if err := checkBinary(binary, p); err != nil {
		return nil, fmt.Errorf("%s: %w", binaryPath, err)
	}
	bin, err := newLayer([]Entry{BinaryEntry(binary)}, m)
	if err != nil {
		return nil, fmt.Errorf("binary layer: %w", err)
	}
	created := v1.Time{Time: m.Created.UTC()}
	cfg := &v1.ConfigFile{
		Architecture: p.Architecture,
		OS:           p.OS,
		Variant:      p.Variant,
		Created:      created,
		Config:       Config(m),
		RootFS:       v1.RootFS{Type: "layers"},
	}
	img, err := mutate.ConfigFile(empty.Image, cfg)
	if err != nil {
		return nil, err
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, MediaType: types.OCILayer, History: v1.History{Created: created, CreatedBy: historyBase}},
		mutate.Addendum{Layer: bin, MediaType: types.OCILayer, History: v1.History{Created: created, CreatedBy: historyBinary}},
	)
	if err != nil {
		return nil, err
	}
	return mutate.Annotations(img, annotations(m)).(v1.Image), nil
}

// newLayer packs entries as a gzip-compressed OCI layer.
func newLayer(entries []Entry, m Metadata) (v1.Layer, error) {
	raw, err := layerTar(entries, m.Created)
	if err != nil {
		return nil, err
	}
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(raw)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressionLevel(gzip.BestCompression),
		// The layout and each docker archive read the compressed bytes
		// again: compress the binary once.
		tarball.WithCompressedCaching)
}

// elfMachine maps GOARCH names to ELF machine types.
var elfMachine = map[string]elf.Machine{
	"amd64": elf.EM_X86_64,
	"arm64": elf.EM_AARCH64,
}

// checkBinary refuses anything but a static executable for p: the image has
// no dynamic loader and no C library.
func checkBinary(binary []byte, p v1.Platform) error {
	f, err := elf.NewFile(bytes.NewReader(binary))
	if err != nil {
		return fmt.Errorf("not an ELF executable: %w", err)
	}
	defer f.Close()
	want, ok := elfMachine[p.Architecture]
	if !ok {
		return fmt.Errorf("no ELF machine known for architecture %q", p.Architecture)
	}
	if f.Machine != want {
		return fmt.Errorf("built for %s, not %s (%s)", f.Machine, p.Architecture, want)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("dynamically linked (it names an interpreter); build with CGO_ENABLED=0")
		}
	}
	return nil
}

// Output says where Write put the image.
type Output struct {
	// Layout is the OCI image layout directory (index.json, blobs/).
	Layout string `json:"layout"`
	// DockerArchives maps each platform to a `docker load` tarball.
	DockerArchives map[string]string `json:"docker_archives"`
	// Index is the image index's digest.
	Index string `json:"index"`
	// Tags are the references written.
	Tags []string `json:"tags"`
}

// Write writes idx as an OCI image layout in dir/oci, one entry per tag
// (org.opencontainers.image.ref.name), and one `docker load` archive per
// platform in dir, each carrying every tag as repo:tag. Docker's classic
// archive holds one platform an image name, hence one file each.
func Write(idx v1.ImageIndex, dir, repo string, tags []string) (Output, error) {
	if len(tags) == 0 {
		return Output{}, fmt.Errorf("image: no tag to write")
	}
	refs := make([]name.Tag, 0, len(tags))
	for _, t := range tags {
		ref, err := name.NewTag(repo+":"+t, name.StrictValidation)
		if err != nil {
			return Output{}, fmt.Errorf("tag %q: %w", t, err)
		}
		refs = append(refs, ref)
	}
	digest, err := idx.Digest()
	if err != nil {
		return Output{}, err
	}
	out := Output{Layout: filepath.Join(dir, "oci"), DockerArchives: map[string]string{}, Index: digest.String()}
	if err := os.RemoveAll(out.Layout); err != nil {
		return Output{}, err
	}
	lp, err := layout.Write(out.Layout, empty.Index)
	if err != nil {
		return Output{}, fmt.Errorf("writing the OCI layout: %w", err)
	}
	for _, ref := range refs {
		if err := lp.AppendIndex(idx, layout.WithAnnotations(map[string]string{
			"org.opencontainers.image.ref.name": ref.TagStr(),
			"io.containerd.image.name":          ref.Name(),
		})); err != nil {
			return Output{}, fmt.Errorf("writing the OCI layout: %w", err)
		}
		out.Tags = append(out.Tags, ref.Name())
	}

	im, err := idx.IndexManifest()
	if err != nil {
		return Output{}, err
	}
	for _, desc := range im.Manifests {
		img, err := idx.Image(desc.Digest)
		if err != nil {
			return Output{}, err
		}
		plat := PlatformString(*desc.Platform)
		file := filepath.Join(dir, fmt.Sprintf("cairn-caddy-%s-%s.docker.tar", desc.Platform.OS, desc.Platform.Architecture))
		byRef := map[name.Reference]v1.Image{}
		for _, ref := range refs {
			byRef[ref] = img
		}
		if err := tarball.MultiRefWriteToFile(file, byRef); err != nil {
			return Output{}, fmt.Errorf("writing %s: %w", file, err)
		}
		out.DockerArchives[plat] = file
	}
	sort.Strings(out.Tags)
	return out, nil
}

// Size is one platform image's size: the layers as they are unpacked
// (uncompressed) and as a registry stores and sends them (compressed, with
// the config and manifest).
type Size struct {
	Platform     string `json:"platform"`
	Uncompressed int64  `json:"uncompressed"`
	Compressed   int64  `json:"compressed"`
}

// Sizes returns each platform image's size in idx.
func Sizes(idx v1.ImageIndex) ([]Size, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var out []Size
	for _, desc := range im.Manifests {
		img, err := idx.Image(desc.Digest)
		if err != nil {
			return nil, err
		}
		s := Size{Platform: PlatformString(*desc.Platform)}
		m, err := img.Manifest()
		if err != nil {
			return nil, err
		}
		s.Compressed = desc.Size + m.Config.Size
		layers, err := img.Layers()
		if err != nil {
			return nil, err
		}
		for _, l := range layers {
			c, err := l.Size()
			if err != nil {
				return nil, err
			}
			s.Compressed += c
			rc, err := l.Uncompressed()
			if err != nil {
				return nil, err
			}
			n, err := io.Copy(io.Discard, rc)
			rc.Close()
			if err != nil {
				return nil, err
			}
			s.Uncompressed += n
		}
		out = append(out, s)
	}
	return out, nil
}

// ReadLayout reads back an OCI layout Write wrote: its index.json (one
// entry per tag) and the image index the entries name.
func ReadLayout(dir string) (*v1.IndexManifest, v1.ImageIndex, error) {
	lp, err := layout.FromPath(dir)
	if err != nil {
		return nil, nil, err
	}
	outer, err := lp.ImageIndex()
	if err != nil {
		return nil, nil, err
	}
	om, err := outer.IndexManifest()
	if err != nil {
		return nil, nil, err
	}
	if len(om.Manifests) == 0 {
		return nil, nil, fmt.Errorf("%s: index.json names no image", dir)
	}
	idx, err := outer.ImageIndex(om.Manifests[0].Digest)
	if err != nil {
		return nil, nil, err
	}
	return om, idx, nil
}
