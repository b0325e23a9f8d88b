package signals

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// defaultHTTP gives up after 5 s: the arbiter polls, and a hung exporter
// must cost one late decision, not stop them all.
var defaultHTTP = &http.Client{Timeout: 5 * time.Second}

func httpClient(c *http.Client) *http.Client {
	if c == nil {
		return defaultHTTP
	}
	return c
}

// maxBody bounds what is read from any answer: a dcgm-exporter page for
// eight GPUs with pod mapping is well under 1 MiB.
const maxBody = 16 << 20

// get fetches url and returns the status code with the body, whatever the
// code: Prometheus explains its errors in the body of a 4xx or 5xx.
func get(ctx context.Context, client *http.Client, url, accept string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Accept", accept)
	resp, err := httpClient(client).Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("reading the answer: %w", err)
	}
	return resp.StatusCode, body, nil
}

// snippet is the start of a body, for an error message.
func snippet(body []byte) string {
	s := string(bytes.TrimSpace(body))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
