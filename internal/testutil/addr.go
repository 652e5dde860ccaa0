package testutil

import (
	"fmt"
	"math/rand/v2"
	"net"
)

// FreeAddr returns a loopback address that nothing listened on a moment
// ago, for a server (a broker, an admin port) that a test starts later or
// names to a process before it starts.
//
// The port is drawn below Linux's ephemeral range (32768–60999), from
// which the kernel picks the local port of every outgoing connection and
// of every listen on port 0: a port from there, closed and listened on
// again later, can meanwhile be taken by one of the many connections the
// tests, their workers and a real Kafka broker open. None is given a port
// below it.
func FreeAddr() (string, error) {
	var last error
	for range 100 {
		port := 20000 + rand.IntN(12000)
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			last = err
			continue
		}
		addr := ln.Addr().String()
		if err := ln.Close(); err != nil {
			return "", err
		}
		return addr, nil
	}
	return "", fmt.Errorf("no free port below the ephemeral range: %w", last)
}
