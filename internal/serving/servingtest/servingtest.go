// Package servingtest checks, over a real connection, that a server cuts
// off clients that hold it: a trickled request body and an idle keep-alive
// connection.
package servingtest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// patience bounds each wait for the server to close a connection; the
// server's own timeouts in these tests are far shorter.
const patience = 10 * time.Second

// TrickledBodyCut sends the headers of a POST to path with a large body,
// then one byte every few milliseconds, and fails t unless the server
// closes the connection within patience.
func TrickledBodyCut(t *testing.T, dial func() (net.Conn, error), path string) {
	t.Helper()
	conn, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n", path); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		// The pace of a slow client, not a synchronisation: it writes until
		// the server hangs up or the test ends.
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			if _, err := conn.Write([]byte(" ")); err != nil {
				return
			}
		}
	}()
	waitClosed(t, conn, conn, "a trickled request body")
}

// IdleClosed sends one complete GET to path on a keep-alive connection,
// reads the answer, and fails t unless the server then closes the idle
// connection within patience.
func IdleClosed(t *testing.T, dial func() (net.Conn, error), path string) {
	t.Helper()
	conn, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: test\r\n\r\n", path); err != nil {
		t.Fatal(err)
	}
	if err := conn.SetReadDeadline(time.Now().Add(patience)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.Close {
		t.Fatalf("GET %s: the server closed after the answer instead of keeping the connection alive", path)
	}
	waitClosed(t, conn, br, "an idle keep-alive connection")
}

// waitClosed reads r (conn, or a reader buffering it) until the server
// closes conn (EOF or a reset) and fails t if patience runs out first.
func waitClosed(t *testing.T, conn net.Conn, r io.Reader, what string) {
	t.Helper()
	if err := conn.SetReadDeadline(time.Now().Add(patience)); err != nil {
		t.Fatal(err)
	}
	_, err := io.Copy(io.Discard, r)
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		t.Fatalf("the server kept %s open for %v: set its read and idle timeouts", what, patience)
	}
}
