package tracing

import "testing"

// The endpoint logged at start-up never carries credentials.
func TestEndpointLoggedWithoutCredentials(t *testing.T) {
	for _, k := range []string{EnvEndpoint, EnvTracesEndpoint} {
		t.Setenv(k, "")
	}
	if got := endpoint(); got != "http://localhost:4318/v1/traces" {
		t.Errorf("default: %q", got)
	}
	t.Setenv(EnvEndpoint, "https://user:s3cret@collector:4318/")
	if got := endpoint(); got != "https://collector:4318/v1/traces" {
		t.Errorf("from %s: %q", EnvEndpoint, got)
	}
	t.Setenv(EnvTracesEndpoint, "https://u:s3cret@c:4318/custom/path?key=s3cret")
	if got := endpoint(); got != "https://c:4318/custom/path" {
		t.Errorf("from %s: %q", EnvTracesEndpoint, got)
	}
}
