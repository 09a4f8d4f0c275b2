// Command probe is a small static program the image tests cross-compile
// for the platforms they do not run (linux/arm64), to check the index
// carries each platform's own binary without spending minutes
// cross-compiling cairn-caddy; `make image` packs cairn-caddy itself.
package main

import "os"

func main() { _, _ = os.Stdout.WriteString("probe\n") }
