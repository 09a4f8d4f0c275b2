package web

import "strings"

// DetectOS guesses the visitor's operating system from a User-Agent header,
// returning one of OSes or "" when it cannot tell. It only picks which
// download section opens first, and this package keeps nothing of it. iOS
// is checked before macOS (an iPad's Safari may say "Macintosh" but also
// "Mobile"), and Android before Linux (Android user agents say both).
func DetectOS(ua string) string {
	switch {
	case strings.Contains(ua, "Android"):
		return "android"
	case strings.Contains(ua, "iPhone"), strings.Contains(ua, "iPad"), strings.Contains(ua, "iPod"),
		strings.Contains(ua, "Macintosh") && strings.Contains(ua, "Mobile/"):
		return "ios"
	case strings.Contains(ua, "Windows"):
		return "windows"
	case strings.Contains(ua, "Macintosh"), strings.Contains(ua, "Mac OS X"):
		return "macos"
	case strings.Contains(ua, "Linux"), strings.Contains(ua, "X11"), strings.Contains(ua, "CrOS"):
		return "linux"
	}
	return ""
}
