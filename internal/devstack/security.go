package devstack

import (
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kfake"
)

// SASLUser is a user the embedded broker accepts when it requires SASL.
type SASLUser struct {
	// Mechanism is plain, scram-sha-256 or scram-sha-512 (the worker's
	// --kafka-sasl-mechanism values; upper case works too).
	Mechanism string
	User      string
	Password  string
}

// ParseSASLUser parses mechanism:user:password (the password may hold colons).
func ParseSASLUser(s string) (SASLUser, error) {
	parts := strings.SplitN(s, ":", 3)
	if len(parts) != 3 || parts[1] == "" || parts[2] == "" {
		return SASLUser{}, fmt.Errorf("SASL user %q: want mechanism:user:password", redactUser(s))
	}
	u := SASLUser{Mechanism: parts[0], User: parts[1], Password: parts[2]}
	if _, err := u.kfakeMechanism(); err != nil {
		return SASLUser{}, err
	}
	return u, nil
}

// redactUser keeps a password out of an error about a malformed user.
func redactUser(s string) string {
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		return s[:i+1] + "…"
	}
	return "…"
}

// kfakeMechanism is kfake's name of the mechanism.
func (u SASLUser) kfakeMechanism() (string, error) {
	switch strings.ToLower(u.Mechanism) {
	case "plain":
		return "PLAIN", nil
	case "scram-sha-256":
		return "SCRAM-SHA-256", nil
	case "scram-sha-512":
		return "SCRAM-SHA-512", nil
	}
	return "", fmt.Errorf("SASL user %q: mechanism %q: want plain, scram-sha-256 or scram-sha-512", u.User, u.Mechanism)
}

// securityOpts are the kfake options making the broker require TLS and SASL.
func securityOpts(cfg BrokerConfig) ([]kfake.Opt, error) {
	var opts []kfake.Opt
	if cfg.TLS != nil {
		opts = append(opts, kfake.TLS(cfg.TLS))
	}
	if len(cfg.SASLUsers) > 0 {
		opts = append(opts, kfake.EnableSASL())
		for _, u := range cfg.SASLUsers {
			m, err := u.kfakeMechanism()
			if err != nil {
				return nil, err
			}
			if u.User == "" || u.Password == "" {
				return nil, fmt.Errorf("SASL user %q (%s): user and password are required", u.User, u.Mechanism)
			}
			// A superuser: kfake checks no ACLs for it, like a broker
			// without an authorizer.
			opts = append(opts, kfake.Superuser(m, u.User, u.Password))
		}
	}
	return opts, nil
}
