package attest

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
)

// Services a run shares across every node, as UnreachableError names them.
const (
	ServiceTlog   = "transparency log"
	ServiceTSA    = "timestamp authority"
	ServiceFulcio = "certificate authority (Fulcio)"
	ServiceKMS    = "KMS"
)

// UnreachableError is a service every node needs — a transparency log, a
// timestamp authority, a certificate authority, a KMS — that could not be
// reached at all: no connection (refused, unknown host, no route, a dial
// that timed out). Sign starts no more nodes after one: every other node
// would meet it too. It matches ErrUnreachable.
type UnreachableError struct {
	// Service is one of the Service constants.
	Service string
	// URL is where the service was looked for: its URL, or a KMS key
	// reference.
	URL string
	Err error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("%s %s cannot be reached (%s)", e.Service, e.URL, reason(e.Err))
}

// Unwrap returns ErrUnreachable and the cause.
func (e *UnreachableError) Unwrap() []error { return []error{ErrUnreachable, e.Err} }

// Unreachable returns err as an *UnreachableError for service at url when
// it says the service could not be connected to at all; other errors (an
// answer the service gave, a timeout once connected) are returned as they
// are.
func Unreachable(service, url string, err error) error {
	var u *UnreachableError
	if err == nil || errors.As(err, &u) || !noConnection(err) {
		return err
	}
	return &UnreachableError{Service: service, URL: url, Err: err}
}

// noConnection says err is a failure to connect: a dial error, a refused
// connection, an unknown host, an unreachable network. Client libraries
// that flatten errors into text are recognised by the words Go's net
// package uses.
func noConnection(err error) bool {
	var op *net.OpError
	var dns *net.DNSError
	switch {
	case errors.As(err, &dns),
		errors.As(err, &op) && op.Op == "dial",
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return true
	}
	msg := err.Error()
	for _, s := range []string{"dial tcp", "dial udp", "connection refused", "no such host", "network is unreachable", "no route to host"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// reason is the innermost message of err: "dial tcp 127.0.0.1:1: connect:
// connection refused" rather than every layer's retelling of it.
func reason(err error) string {
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Error()
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return dns.Error()
	}
	msg := err.Error()
	if i := strings.LastIndex(msg, "dial "); i >= 0 {
		return msg[i:]
	}
	return msg
}
