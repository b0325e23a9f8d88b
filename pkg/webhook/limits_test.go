package webhook

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// rawReview wraps a pod's JSON in a CREATE review as the API server sends it.
func rawReview(pod string) []byte {
	return []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"0b1c","kind":{"group":"","version":"v1","kind":"Pod"},` +
		`"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"media","operation":"CREATE","object":` + pod + `}}`)
}

// filledPod is a pod asking for the nvidia profile whose JSON is prefix,
// then items (item formatted with its index) until size bytes, then suffix.
func filledPod(prefix, item, suffix string, size int) string {
	var b strings.Builder
	b.WriteString(`{"metadata":{"name":"p","annotations":{"gpu-directories":"nvidia"`)
	b.WriteString(prefix)
	for i := 0; b.Len() < size; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, item, i)
	}
	b.WriteString(suffix)
	return b.String()
}

// repeat is n copies of item (formatted with its index), comma separated.
func repeat(item string, n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf(item, i)
	}
	return strings.Join(parts, ",")
}

// TestWorstAllowedRequestHeap measures what one admission allocates
// (TotalAlloc, which bounds how far it can raise the heap) for the pods
// that cost most per byte, each as large as the limits allow. Before the
// limits, one 4 MiB pod of empty containers allocated 1,094 MiB and one of
// volumes 384 MiB.
func TestWorstAllowedRequestHeap(t *testing.T) {
	const bound = 64 << 20
	size := int(DefaultLimits.MaxBodyBytes) - 1024 // room for the review around the pod
	env := `{"name":"e%d"}`
	for _, tc := range []struct {
		name string
		pod  string
		code int
	}{
		{"annotations", filledPod(",", `"a%d":""`, `}},"spec":{"containers":[{"name":"c"}]}}`, size), 200},
		{"env", filledPod(`}},"spec":{"containers":[{"name":"c","env":[`, env, `]}]}}`, size), 200},
		{"volume mounts", filledPod(`}},"spec":{"containers":[{"name":"c","volumeMounts":[`, `{"name":"m%[1]d","mountPath":"/m%[1]d"}`, `]}]}}`, size), 200},
		{"most containers", filledPod(`}},"spec":{"containers":[`+repeat(`{"name":"c%d"}`, DefaultLimits.MaxContainers-1)+`,{"name":"last","env":[`, env, `]}]}}`, size), 200},
		{"most volumes", filledPod(`}},"spec":{"volumes":[`+repeat(`{"name":"v%d","emptyDir":{}}`, DefaultLimits.MaxVolumes)+`],"containers":[{"name":"c","env":[`, env, `]}]}}`, size), 200},
		{"containers over the bound", filledPod(`}},"spec":{"containers":[`, `{"name":"c%d"}`, `]}}`, size), 200},
		{"volumes over the bound", filledPod(`}},"spec":{"containers":[{"name":"c"}],"volumes":[`, `{"name":"v%d"}`, `]}}`, size), 200},
		{"4 MiB of containers", filledPod(`}},"spec":{"containers":[`, `{"name":"c%d"}`, `]}}`, 4<<20), http.StatusRequestEntityTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHandler()
			body := rawReview(tc.pod)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/mutate", bytes.NewReader(body)))
			runtime.ReadMemStats(&after)
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("%d-byte request: HTTP %d, allocated %.1f MiB", len(body), rec.Code, float64(alloc)/(1<<20))
			if rec.Code != tc.code {
				t.Fatalf("HTTP %d, want %d: %s", rec.Code, tc.code, rec.Body.String())
			}
			if alloc > bound {
				t.Errorf("one admission allocated %d MiB, over the %d MiB bound", alloc>>20, bound>>20)
			}
		})
	}
}

func TestLimitsDenyWithTheFix(t *testing.T) {
	h := newTestHandler()
	h.SetLimits(Limits{MaxContainers: 2, MaxVolumes: 1, MaxPatchOperations: 2})
	for name, tc := range map[string]struct{ pod, want string }{
		"containers": {`{"metadata":{"name":"p","annotations":{"gpu-directories":"nvidia"}},"spec":{"initContainers":[{"name":"i"}],"containers":[{"name":"a"},{"name":"b"}]}}`,
			"the pod has 3 containers (init and ephemeral included), over the webhook's bound of 2: split the workload"},
		"volumes": {`{"metadata":{"name":"p","annotations":{"gpu-directories":"nvidia"}},"spec":{"containers":[{"name":"a"}],"volumes":[{"name":"x","emptyDir":{}},{"name":"y","emptyDir":{}}]}}`,
			"the pod has 2 volumes, over the webhook's bound of 1: mount fewer"},
		"patch": {`{"metadata":{"name":"p","annotations":{"gpu-directories":"nvidia"}},"spec":{"containers":[{"name":"a"}]}}`,
			"injecting nvidia into this pod takes 3 patch operations, over the webhook's bound of 2: name fewer profiles"},
	} {
		t.Run(name, func(t *testing.T) {
			resp := admitRaw(t, h, rawReview(tc.pod))
			if resp.Allowed || resp.Result == nil || !strings.Contains(resp.Result.Message, tc.want) {
				t.Errorf("got allowed=%v %+v, want a denial saying %q", resp.Allowed, resp.Result, tc.want)
			}
		})
	}
}

// TestConcurrencyBound: with every admission slot taken, a request waits
// QueueWait and is then answered 429 with Retry-After, counted as busy;
// once a slot frees, requests are admitted again.
func TestConcurrencyBound(t *testing.T) {
	h := newTestHandler()
	h.SetLimits(Limits{MaxConcurrent: 2, QueueWait: 50 * time.Millisecond})
	// Hold both slots as two slow admissions would.
	h.slots <- struct{}{}
	h.slots <- struct{}{}
	body := rawReview(`{"metadata":{"name":"p","annotations":{"gpu-directories":"nvidia"}},"spec":{"containers":[{"name":"a"}]}}`)
	var wg sync.WaitGroup
	codes := make([]*httptest.ResponseRecorder, 3)
	for i := range codes {
		codes[i] = httptest.NewRecorder()
		wg.Go(func() { h.ServeHTTP(codes[i], httptest.NewRequest(http.MethodPost, "/mutate", bytes.NewReader(body))) })
	}
	wg.Wait()
	for _, rec := range codes {
		if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "1" || !strings.Contains(rec.Body.String(), "--max-concurrent-admissions") {
			t.Errorf("with no slot free: HTTP %d, Retry-After %q, %q", rec.Code, rec.Header().Get("Retry-After"), rec.Body.String())
		}
	}
	if got := testutil.ToFloat64(h.metrics.badRequests.WithLabelValues("busy")); got != 3 {
		t.Errorf("busy refusals counted %v, want 3", got)
	}
	// A request whose caller gives up stops waiting at once.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/mutate", bytes.NewReader(body)).WithContext(ctx))
	if rec.Code != http.StatusTooManyRequests {
		t.Errorf("cancelled request: HTTP %d", rec.Code)
	}
	<-h.slots
	if resp := admitRaw(t, h, body); !resp.Allowed {
		t.Errorf("with a slot free the pod was not admitted: %v", resp.Result)
	}
}
