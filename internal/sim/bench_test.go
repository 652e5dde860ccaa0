package sim_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cxbridge/cxbridge/internal/testutil/benchutil"

	"github.com/cxbridge/cxbridge/internal/sim"
)

// BenchmarkSimPublish measures accepted publishes per second over loopback
// HTTP/1.1 with keep-alive, from parallel clients (8 per CPU) in the same
// process, each publish with a new correlation id (so each is recorded).
//
//   - client=net-http: net/http clients, as the bridge sends; the client side
//     costs about as much CPU as the simulator.
//   - client=raw: a lean HTTP/1.1 client writing prepared requests on its own
//     keep-alive connection; measures what the simulator itself can take.
//
// RunParallel with SetParallelism(8) runs 8 × GOMAXPROCS clients (16 on 2
// CPUs), each on its own connection. Besides publishes/s it reports, where
// /proc is readable (Linux) and the run lasts 1s or more, cpu-us/publish
// (this process's CPU time per publish, client and simulator together),
// cpu-cores and busy-cores (this process's and the whole machine's CPU time
// / wall time).
//
//	go test -run '^$' -bench BenchmarkSimPublish -benchtime 3s -count 5 ./internal/sim/
func BenchmarkSimPublish(b *testing.B) {
	b.Run("client=net-http", func(b *testing.B) { benchPublish(b, netHTTPClient) })
	b.Run("client=raw", func(b *testing.B) { benchPublish(b, rawClient) })
}

// publishFunc publishes on one client until pb is done.
type publishFunc func(b *testing.B, base, tok string, next *atomic.Int64, pb *testing.PB)

func benchPublish(b *testing.B, client publishFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, base, err := sim.Start(ctx, "127.0.0.1:0", sim.Config{})
	if err != nil {
		b.Fatal(err)
	}
	tok := fetchToken(b, http.DefaultClient, base)
	http.DefaultClient.CloseIdleConnections()
	var next atomic.Int64
	b.SetParallelism(8)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := benchutil.ReadCPU()
	b.RunParallel(func(pb *testing.PB) { client(b, base, tok, &next, pb) })
	cpu1 := benchutil.ReadCPU()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "publishes/s")
	benchutil.ReportCPU(b, cpu0, cpu1)
	if st := s.Stats(); st.Accepted != int64(b.N) || st.Distinct != int64(b.N) {
		b.Errorf("stats %+v, want %d accepted", st, b.N)
	}
}

// benchBody appends the publish body of id.
func benchBody(dst []byte, id string) []byte {
	dst = append(dst, `{"eventType":"bench.event","source":"bench","timestamp":"2024-01-02T03:04:05.678Z","correlationId":"`...)
	dst = append(dst, id...)
	dst = append(dst, `","traceId":"t-`...)
	dst = append(dst, id...)
	return append(dst, `","data":{"key":"k","n":1}}`...)
}

func netHTTPClient(b *testing.B, base, tok string, next *atomic.Int64, pb *testing.PB) {
	tr := &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	url := base + "/api/v2/events/publish"
	body := make([]byte, 0, 256)
	for pb.Next() {
		id := "bench-" + strconv.FormatInt(next.Add(1), 10)
		body = benchBody(body[:0], id)
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		req.Header = http.Header{
			"Authorization":    {"Bearer " + tok},
			"Content-Type":     {"application/json"},
			"X-Correlation-Id": {id},
			"X-Trace-Id":       {"t-" + id},
			"X-Source-System":  {"bench"},
		}
		resp, err := hc.Do(req)
		if err != nil {
			b.Error(err)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Errorf("status %d", resp.StatusCode)
			return
		}
	}
}

func rawClient(b *testing.B, base, tok string, next *atomic.Int64, pb *testing.PB) {
	host := strings.TrimPrefix(base, "http://")
	conn, err := net.Dial("tcp", host)
	if err != nil {
		b.Error(err)
		return
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	var req, body []byte
	for pb.Next() {
		id := "bench-" + strconv.FormatInt(next.Add(1), 10)
		body = benchBody(body[:0], id)
		req = fmt.Appendf(req[:0], "POST /api/v2/events/publish HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"+
			"Content-Type: application/json\r\nX-Correlation-ID: %s\r\nX-Trace-ID: t-%s\r\nX-Source-System: bench\r\n"+
			"Content-Length: %d\r\n\r\n", host, tok, id, id, len(body))
		req = append(req, body...)
		if _, err := conn.Write(req); err != nil {
			b.Error(err)
			return
		}
		if err := readRawResponse(br); err != nil {
			b.Error(err)
			return
		}
	}
}

// readRawResponse reads one response and fails unless it is a 200.
func readRawResponse(br *bufio.Reader) error {
	status, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(status, []byte("HTTP/1.1 200 ")) {
		return fmt.Errorf("status line %q", status)
	}
	n := -1
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			n, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	if n < 0 {
		return fmt.Errorf("no Content-Length")
	}
	_, err = br.Discard(n)
	return err
}
