package deploytest

import (
	"strings"
	"testing"
)

// --- docker-compose.yml: the broker's data and its images -------------------

// The broker keeps its data in a named volume (declared at the top level)
// at Redpanda's data directory, and the topics job runs the broker's own
// image (its rpk matches the broker).
func TestComposeBrokerVolumeAndImages(t *testing.T) {
	var f struct {
		Volumes  map[string]any `yaml:"volumes"`
		Services map[string]struct {
			Image   string   `yaml:"image"`
			Volumes []string `yaml:"volumes"`
		} `yaml:"services"`
	}
	loadYAML(t, "docker-compose.yml", &f)
	rp := f.Services["redpanda"]
	var volume string
	for _, v := range rp.Volumes {
		src, dst, _ := strings.Cut(v, ":")
		dst, _, _ = strings.Cut(dst, ":")
		if dst == "/var/lib/redpanda/data" {
			volume = src
		}
	}
	switch {
	case volume == "":
		t.Errorf("redpanda: volumes %q mount nothing at /var/lib/redpanda/data: the broker's data dies with its container", rp.Volumes)
	case strings.HasPrefix(volume, ".") || strings.HasPrefix(volume, "/"):
		t.Errorf("redpanda: its data is the bind mount %q, want a named volume", volume)
	default:
		if _, ok := f.Volumes[volume]; !ok {
			t.Errorf("redpanda: the volume %q is not declared under the top-level volumes %v", volume, f.Volumes)
		}
	}
	const repo = "docker.redpanda.com/redpandadata/"
	if !strings.HasPrefix(rp.Image, repo+"redpanda:v") {
		t.Errorf("redpanda: image %q, want %sredpanda:vX.Y.Z", rp.Image, repo)
	}
	if got := f.Services["topics"].Image; got != rp.Image {
		t.Errorf("topics: image %q, the broker runs %q: rpk should be the broker's", got, rp.Image)
	}
	if got := f.Services["console"].Image; !strings.HasPrefix(got, repo+"console:v3.") {
		t.Errorf("console: image %q, want Redpanda Console 3 (%sconsole:v3.…)", got, repo)
	}
}
