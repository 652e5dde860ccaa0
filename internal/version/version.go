// Package version holds the build's version, set at link time by the Makefile.
package version

import (
	"runtime"
	"runtime/debug"
)

// Version is set with -ldflags "-X github.com/cxbridge/cxbridge/internal/version.Version=…".
var Version = "dev"

// Info describes the running build.
type Info struct {
	Version   string `json:"version"`
	Revision  string `json:"revision"`
	GoVersion string `json:"go_version"`
}

// Get returns the build's version, VCS revision (when recorded) and Go version.
func Get() Info {
	info := Info{Version: Version, Revision: "unknown", GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				info.Revision = s.Value
			}
		}
	}
	return info
}
