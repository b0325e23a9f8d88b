package dcgmtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
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

// serveQuery answers GET or POST /api/v1/query for a metric name with
// optional label matchers (NAME or NAME{l="v",l=~"re",l!="v",l!~"re"}), as
// a Prometheus that scrapes this exporter (job "dcgm-exporter") would: a
// DCGM field it does not serve is an empty vector, any other expression
// is bad_data. Series added with AddPrometheusSeries are matched too.
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
	name, matchers, err := parseSelector(query)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, promAnswer{Status: "error", ErrorType: "bad_data", Error: "dcgmtest answers a metric name with label matchers only, not " + strconv.Quote(query) + ": " + err.Error()})
		return
	}
	a := promAnswer{Status: "success", Data: &promData{ResultType: "vector", Result: []promSeries{}}}
	// Added series come first: Prometheus promises no order, and a reader
	// must not depend on the exporter's series winning.
	for _, e := range st.extra {
		if e.Metric["__name__"] == name && matchers.match(e.Metric) {
			a.Data.Result = append(a.Data.Result, e)
		}
	}
	f, ok := fieldNamed(name)
	if ok && !slices.Contains(st.omit, name) {
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
				if matchers.match(m) {
					a.Data.Result = append(a.Data.Result, promSeries{Metric: m, Value: [2]any{now, f.value(g)}})
				}
			}
		}
	}
	writeJSON(w, http.StatusOK, a)
}

var (
	selectorRE = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?$`)
	matcherRE  = regexp.MustCompile(`^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"\s*$`)
)

// matcher is one label matcher; a regular expression is anchored, as in
// PromQL.
type matcher struct {
	label, op, value string
	re               *regexp.Regexp
}

type matchers []matcher

func (ms matchers) match(labels map[string]string) bool {
	for _, m := range ms {
		v := labels[m.label]
		var ok bool
		switch m.op {
		case "=", "!=":
			ok = v == m.value
		default:
			ok = m.re.MatchString(v)
		}
		if ok == strings.HasPrefix(m.op, "!") {
			return false
		}
	}
	return true
}

// parseSelector reads the PromQL subset the stand-in answers (values
// without commas or quotes).
func parseSelector(q string) (string, matchers, error) {
	sm := selectorRE.FindStringSubmatch(q)
	if sm == nil {
		return "", nil, errors.New("not a metric name")
	}
	var ms matchers
	if strings.TrimSpace(sm[2]) == "" {
		return sm[1], nil, nil
	}
	for _, part := range strings.Split(sm[2], ",") {
		mm := matcherRE.FindStringSubmatch(part)
		if mm == nil {
			return "", nil, fmt.Errorf("bad matcher %q", part)
		}
		m := matcher{label: mm[1], op: mm[2], value: mm[3]}
		if strings.Contains(m.op, "~") {
			re, err := regexp.Compile("^(?:" + m.value + ")$")
			if err != nil {
				return "", nil, err
			}
			m.re = re
		}
		ms = append(ms, m)
	}
	return sm[1], ms, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
