package dcgmtest

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// promSeries is one element of a vector result.
type promSeries struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"` // [unix seconds, "value"]
}

// promAnswer is the Prometheus HTTP API's envelope.
type promAnswer struct {
	Status    string    `json:"status"`
	ErrorType string    `json:"errorType,omitempty"`
	Error     string    `json:"error,omitempty"`
	Data      *promData `json:"data,omitempty"`
}

type promData struct {
	ResultType string       `json:"resultType"`
	Result     []promSeries `json:"result"`
}

// errorTypes are the errorType Prometheus gives with each status.
var errorTypes = map[int]string{
	http.StatusBadRequest:          "bad_data",
	http.StatusUnprocessableEntity: "execution",
	http.StatusServiceUnavailable:  "unavailable",
	http.StatusInternalServerError: "internal",
}

// serveQuery answers GET or POST /api/v1/query for a bare metric name, as
// a Prometheus that scrapes this exporter (job "dcgm-exporter") would: a
// DCGM field it does not serve is an empty vector, any other expression
// is bad_data.
func (s *Server) serveQuery(w http.ResponseWriter, r *http.Request) {
	s.queries.Add(1)
	st := s.state()
	if st.status != 0 {
		errorType := errorTypes[st.status]
		if errorType == "" {
			errorType = "internal"
		}
		writeJSON(w, st.status, promAnswer{Status: "error", ErrorType: errorType, Error: "dcgmtest: failing as asked"})
		return
	}
	query := strings.TrimSpace(r.FormValue("query"))
	if query == "" || strings.ContainsAny(query, "{}()[] \t+-*/=!~,\"") {
		writeJSON(w, http.StatusBadRequest, promAnswer{Status: "error", ErrorType: "bad_data", Error: "dcgmtest answers bare metric names only, not " + strconv.Quote(query)})
		return
	}
	a := promAnswer{Status: "success", Data: &promData{ResultType: "vector", Result: []promSeries{}}}
	f, ok := fieldNamed(query)
	if ok && !slices.Contains(st.omit, query) {
		now := float64(time.Now().UnixMilli()) / 1000
		for _, g := range st.gpus {
			for _, labels := range series(g) {
				m := map[string]string{"__name__": f.name, "instance": r.Host, "job": "dcgm-exporter"}
				for _, l := range labels {
					m[l.name] = l.value
				}
				if st.nodeLabel != "" {
					m[st.nodeLabel] = g.Node
				}
				a.Data.Result = append(a.Data.Result, promSeries{Metric: m, Value: [2]any{now, f.value(g)}})
			}
		}
	}
	writeJSON(w, http.StatusOK, a)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
