package engine

import "runtime/debug"

// zstdVersion returns the compress module version linked in, for the
// manifest's record of which encoder wrote the payloads.
func zstdVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/klauspost/compress" {
				return d.Version
			}
		}
	}
	return "unknown"
}
