package consumer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cxbridge/cxbridge/internal/config"
	"github.com/cxbridge/cxbridge/internal/retry"
)

// KafkaSetupError is a Kafka connection problem that waiting does not fix:
// the brokers refuse the SASL credentials, or the TLS handshake fails
// (untrusted certificate, wrong host name, no TLS on the port). The worker
// does not start; the text names the settings to check and never holds
// the password.
type KafkaSetupError struct {
	Broker string // the broker that refused; empty when all did
	msg    string
	Err    error // kafka-go's or crypto/tls's error
}

func (e *KafkaSetupError) Error() string { return e.msg }

func (e *KafkaSetupError) Unwrap() error { return e.Err }

// probeTimeout bounds one connection attempt: dial, TLS, SASL, ApiVersions
// and a metadata request.
const probeTimeout = 10 * time.Second

// closedLimit is how many attempts in a row may see the brokers close the
// connection at the same early step before that is taken for a mismatch
// of the settings rather than brokers starting or restarting.
const closedLimit = 3

// Steps at which a broker closing the connection hints at a mismatch of
// the settings, and what to check then.
var (
	stepTLS = probeStep{"during the TLS handshake without a byte of answer",
		"check that the brokers' listener uses TLS (unset --kafka-tls for a plaintext one) and the port in --kafka-brokers"}
	stepPlain = probeStep{"before answering the first request (the connection has no TLS)",
		"the listener likely requires TLS: set --kafka-tls (and --kafka-tls-ca-file), and check the port in --kafka-brokers"}
	stepMetadata = probeStep{"on a metadata request after answering ApiVersions (the connection has no SASL)",
		"the brokers likely require SASL authentication: set --kafka-sasl-mechanism, --kafka-sasl-username and --kafka-sasl-password (" +
			config.EnvVar("kafka-sasl-password") + ")"}
)

type probeStep struct{ what, hint string }

// closedEarly is a broker that accepted the TCP connection, then closed it
// at step.
type closedEarly struct {
	step probeStep
	err  error
}

func (e *closedEarly) Error() string {
	return "connection closed " + e.step.what + ": " + e.err.Error()
}

func (e *closedEarly) Unwrap() error { return e.err }

// CheckKafka connects to the brokers with the worker's TLS and SASL
// settings (dial, TLS handshake, SASL exchange, ApiVersions, metadata)
// until one answers. A broker that cannot be reached is retried, with a
// backoff from 250ms up to maxWait, for as long as ctx lasts: brokers come
// up late (the consumer, trying to join the group alongside, logs each
// attempt). A *KafkaSetupError (SASL refused, TLS certificate not
// trusted…) is returned at once; brokers closing the connection at the
// same early step closedLimit times in a row give one too. It returns nil
// once connected, else the error or ctx's error. onErr, when set, sees
// every failed attempt's error, and nil at the end.
func CheckKafka(ctx context.Context, k *config.Kafka, dialer *kafka.Dialer, log *slog.Logger, maxWait time.Duration, onErr func(error)) error {
	if onErr == nil {
		onErr = func(error) {}
	}
	var lastStep probeStep
	same := 0
	policy := retry.Policy{Base: min(250*time.Millisecond, maxWait), Max: maxWait,
		OnRetry: func(attempt int, err error, wait time.Duration) {
			onErr(err)
			log.Debug("Kafka connection check failed; retrying", "brokers", k.Brokers, "attempt", attempt, "retry_in", wait.String(), "error", err.Error())
		}}
	err := retry.Do(ctx, policy, func(int) error {
		err := probeKafka(ctx, k, dialer)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return retry.Permanent(ctx.Err())
		}
		if setup, ok := errors.AsType[*KafkaSetupError](err); ok {
			return retry.Permanent(setup)
		}
		closed, ok := errors.AsType[*closedEarly](err)
		switch {
		case !ok:
			lastStep, same = probeStep{}, 0
		case closed.step == lastStep:
			same++
		default:
			lastStep, same = closed.step, 1
		}
		if same >= closedLimit {
			return retry.Permanent(&KafkaSetupError{Err: err, msg: fmt.Sprintf("kafka: the brokers (%s) closed the connection %s on %d attempts in a row: %s",
				k.Brokers, closed.step.what, same, closed.step.hint)})
		}
		return err
	})
	if err == nil {
		onErr(nil)
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// probeKafka tries each broker once; nil as soon as one answers. A setup
// error from any broker is returned at once: credentials and certificates
// are the cluster's, not one broker's.
func probeKafka(ctx context.Context, k *config.Kafka, dialer *kafka.Dialer) error {
	var errs []error
	for _, addr := range k.BrokerList() {
		err := probeBroker(ctx, dialer, addr)
		if err == nil {
			return nil
		}
		if setup := classifyKafkaError(k, addr, err); setup != nil {
			return setup
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
		if ctx.Err() != nil {
			break
		}
	}
	return errors.Join(errs...)
}

// probeBroker dials addr the way the consumer does (TLS, SASL), then asks
// for the API versions and the cluster metadata, within probeTimeout.
func probeBroker(ctx context.Context, dialer *kafka.Dialer, addr string) error {
	deadline := time.Now().Add(probeTimeout)
	d := *dialer
	d.Timeout = probeTimeout
	next := d.DialFunc
	if next == nil {
		next = (&net.Dialer{}).DialContext
	}
	var cc atomic.Pointer[countingConn]
	d.DialFunc = func(ctx context.Context, network, address string) (net.Conn, error) {
		c, err := next(ctx, network, address)
		if err != nil {
			return nil, err
		}
		// kafka-go sets no deadline on the TLS handshake and the SASL
		// exchange: one on the socket bounds them.
		_ = c.SetDeadline(deadline)
		counted := &countingConn{Conn: c}
		cc.Store(counted)
		return counted, nil
	}
	// early tells a broker that closed the connection without sending a
	// byte: a TLS mismatch when it repeats.
	early := func(err error) error {
		if c := cc.Load(); c != nil && c.read.Load() == 0 && isClosed(err) {
			if dialer.TLS != nil {
				return &closedEarly{step: stepTLS, err: err}
			}
			return &closedEarly{step: stepPlain, err: err}
		}
		return err
	}
	// The SASL exchange reads without watching ctx: a shutdown ends it.
	stopDial := context.AfterFunc(ctx, func() {
		if c := cc.Load(); c != nil {
			_ = c.SetDeadline(time.Now())
		}
	})
	conn, err := d.DialContext(ctx, "tcp", addr)
	stopDial()
	if err != nil {
		return early(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	versions, err := conn.ApiVersions()
	if err != nil {
		return early(fmt.Errorf("ApiVersions: %w", err))
	}
	if setup := checkVersions(addr, versions); setup != nil {
		return setup
	}
	if _, err := conn.Brokers(); err != nil {
		if dialer.SASLMechanism == nil && isClosed(err) {
			return &closedEarly{step: stepMetadata, err: err}
		}
		return fmt.Errorf("metadata: %w", err)
	}
	return nil
}

// countingConn counts the bytes read.
type countingConn struct {
	net.Conn
	read atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

// isClosed reports whether err is the peer closing the connection.
func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// classifyKafkaError returns a *KafkaSetupError for what waiting does not
// fix, nil for what may be a broker still starting or a network problem.
func classifyKafkaError(k *config.Kafka, addr string, err error) *KafkaSetupError {
	if setup, ok := errors.AsType[*KafkaSetupError](err); ok {
		return setup
	}
	setup := func(format string, args ...any) *KafkaSetupError {
		return &KafkaSetupError{Broker: addr, Err: err, msg: "kafka: " + fmt.Sprintf(format, args...)}
	}
	switch {
	case errors.Is(err, kafka.SASLAuthenticationFailed):
		return setup("SASL authentication failed for user %q (mechanism %s) at broker %s: check --kafka-sasl-username / --kafka-sasl-password (%s or %s), and that the user exists for that mechanism (--kafka-sasl-mechanism)",
			k.SASLUsername, k.SASLMechanism, addr, config.EnvVar("kafka-sasl-password"), config.FileEnvVar("kafka-sasl-password"))
	case errors.Is(err, kafka.UnsupportedSASLMechanism):
		return setup("broker %s does not accept SASL mechanism %s: check --kafka-sasl-mechanism (plain, scram-sha-256 or scram-sha-512)", addr, k.SASLMechanism)
	case errors.Is(err, kafka.IllegalSASLState):
		return setup("broker %s does not expect SASL on this listener: check --kafka-sasl-mechanism (unset it for a listener without SASL) and the port in --kafka-brokers", addr)
	}
	if unknownCA, ok := errors.AsType[x509.UnknownAuthorityError](err); ok {
		return setup("the TLS certificate of broker %s is not trusted (%v): check --kafka-tls-ca-file (the CA that signed the brokers' certificates; default: the system's)", addr, unknownCA)
	}
	if hostname, ok := errors.AsType[x509.HostnameError](err); ok {
		return setup("the TLS certificate of broker %s is not valid for that host name (%v): check the host names in --kafka-brokers against the certificate", addr, hostname)
	}
	if invalid, ok := errors.AsType[x509.CertificateInvalidError](err); ok {
		return setup("the TLS certificate of broker %s is not valid (%v): check the brokers' certificates", addr, invalid)
	}
	if verify, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
		return setup("the TLS certificate of broker %s cannot be verified (%v): check --kafka-tls-ca-file", addr, verify.Err)
	}
	if _, ok := errors.AsType[tls.RecordHeaderError](err); ok {
		return setup("broker %s does not speak TLS on that port: check --kafka-tls (unset it for a listener without TLS) and the port in --kafka-brokers", addr)
	}
	if alert, ok := errors.AsType[tls.AlertError](err); ok {
		return setup("broker %s refused the TLS handshake (%v): check --kafka-tls-cert-file / --kafka-tls-key-file (a client certificate the broker trusts) and --kafka-tls-ca-file", addr, alert)
	}
	return nil
}
