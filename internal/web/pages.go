package web

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/url"
	"path"
	"strconv"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Static is what the pages load: pages.css under /_cairn/ (the Caddy module
// serves it with Caddy's file_server).
func Static() fs.FS {
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err) // the embed pattern above guarantees the directory
	}
	return sub
}

var pages = template.Must(template.New("").ParseFS(templateFS, "templates/*.html"))

// Site is what the server-rendered pages need: the validated config and
// the download list.
type Site struct {
	Config    Config
	Downloads []Download
	qr        template.HTML
}

// NewSite validates cfg and downloads and renders the connect QR code
// once.
func NewSite(cfg Config, downloads []Download) (*Site, error) {
	if err := cfg.Normalize(); err != nil {
		return nil, err
	}
	ds := append([]Download(nil), downloads...)
	for _, d := range ds {
		if err := d.Validate(); err != nil {
			return nil, err
		}
	}
	SortDownloads(ds)
	svg, err := QRSVG(cfg.ConnectURI(), "QR code to connect to "+cfg.Name)
	if err != nil {
		return nil, err
	}
	// The SVG holds numbers and the escaped title only (QRSVG); the one
	// gosec exclusion for this (.ci/gosec.json) says so too.
	return &Site{Config: cfg, Downloads: ds, qr: template.HTML(svg)}, nil
}

// ThemeCSS is /_cairn/theme.css: the branding accent colour as a CSS
// variable, so the pages need no inline style. The colour is validated as
// #rrggbb.
func (s *Site) ThemeCSS() []byte {
	accent := s.Config.Branding.AccentColor
	if accent == "" {
		accent = "#1d5fa8"
	}
	return []byte(":root{--accent:" + accent + "}\n")
}

type pageData struct {
	Site  *Site
	Title string
	Page  string
	// connect
	ConnectURI string
	// ConnectHref is ConnectURI for an href: html/template would otherwise
	// replace a cairn: URL with #ZgotmplZ. It is built from the validated
	// service URL and DID, each percent-encoded.
	ConnectHref template.URL
	QR          template.HTML
	// download
	Detected string
	Sections []osSection
}

type osSection struct {
	OS       string
	Label    string
	Open     bool
	Builds   []downloadRow
	Detected bool
}

type downloadRow struct {
	Download
	File      string
	SizeHuman string
	Hint      string
	Command   string
}

// ConnectPage renders /connect.
func (s *Site) ConnectPage() ([]byte, error) {
	return render("connect.html", pageData{Site: s, Title: "Connect", Page: "connect", ConnectURI: s.Config.ConnectURI(), ConnectHref: template.URL(s.Config.ConnectURI()), QR: s.qr})
}

// DownloadPage renders /download for a visitor whose User-Agent says ua:
// the section of the visitor's OS comes first and is open.
func (s *Site) DownloadPage(ua string) ([]byte, error) {
	detected := DetectOS(ua)
	var sections []osSection
	for _, os := range OSes {
		sec := osSection{OS: os, Label: osLabels[os], Detected: os == detected}
		for _, d := range s.Downloads {
			if d.OS != os {
				continue
			}
			file := fileName(d.URL)
			sec.Builds = append(sec.Builds, downloadRow{Download: d, File: file, SizeHuman: humanSize(d.Size), Hint: verifyHint[os], Command: verifyCommand(os, file, d.SHA256)})
		}
		if len(sec.Builds) == 0 {
			continue
		}
		if sec.Detected {
			sec.Open = true
			sections = append([]osSection{sec}, sections...)
		} else {
			sections = append(sections, sec)
		}
	}
	if detected == "" && len(sections) > 0 {
		sections[0].Open = true
	}
	return render("download.html", pageData{Site: s, Title: "Download", Page: "download", Detected: detected, Sections: sections})
}

func render(name string, data pageData) ([]byte, error) {
	var b bytes.Buffer
	if err := pages.ExecuteTemplate(&b, name, data); err != nil {
		return nil, fmt.Errorf("render %s: %w", name, err)
	}
	return b.Bytes(), nil
}

var osLabels = map[string]string{"windows": "Windows", "macos": "macOS", "linux": "Linux", "android": "Android", "ios": "iOS"}

var verifyHint = map[string]string{
	"windows": "In PowerShell, in the folder you downloaded to; it prints True when the file is intact:",
	"macos":   "In Terminal, in the folder you downloaded to; it prints OK when the file is intact:",
	"linux":   "In a terminal, in the folder you downloaded to; it prints OK when the file is intact:",
	"android": "On a computer before copying the file to the phone (Linux shown; on macOS use shasum -a 256 --check):",
	"ios":     "On a computer before installing (macOS shown; on Linux use sha256sum --check):",
}

// verifyCommand is the command that checks file against sum on os.
func verifyCommand(os, file, sum string) string {
	switch os {
	case "windows":
		return fmt.Sprintf(`(Get-FileHash -Algorithm SHA256 -LiteralPath .\%s).Hash -eq "%s"`, file, sum)
	case "macos", "ios":
		return fmt.Sprintf(`echo "%s  %s" | shasum -a 256 --check`, sum, file)
	default:
		return fmt.Sprintf(`echo "%s  %s" | sha256sum --check`, sum, file)
	}
}

// fileName is the last path element of a download URL (Validate made sure
// it is a plain file name).
func fileName(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return path.Base(u.Path)
}

func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
