package policy

import (
	"fmt"
	"strings"
	"time"
)

// Hours are the daily windows a workload may hold the GPU, in one zone.
type Hours struct {
	Windows  []Window       `json:"windows"`
	Location *time.Location `json:"-"`
	// Spec is the annotation as written, plus the zone: "07:00-19:00 Europe/Berlin".
	Spec string `json:"spec"`
}

// Window is a daily window in minutes since midnight; End before Start
// crosses midnight. Start equal to End is the whole day.
type Window struct {
	Start, End int
}

// ParseHours reads "HH:MM-HH:MM[,HH:MM-HH:MM...]" in zone (UTC when nil).
func ParseHours(spec string, zone *time.Location) (*Hours, error) {
	if zone == nil {
		zone = time.UTC
	}
	h := &Hours{Location: zone, Spec: strings.TrimSpace(spec) + " " + zone.String()}
	for _, part := range strings.Split(spec, ",") {
		from, to, ok := strings.Cut(strings.TrimSpace(part), "-")
		if !ok {
			return nil, fmt.Errorf("window %q: want HH:MM-HH:MM, e.g. 07:00-19:00", strings.TrimSpace(part))
		}
		start, err := clock(from)
		if err != nil {
			return nil, err
		}
		end, err := clock(to)
		if err != nil {
			return nil, err
		}
		h.Windows = append(h.Windows, Window{Start: start, End: end})
	}
	return h, nil
}

// clock reads "HH:MM" (24:00 is the end of the day).
func clock(s string) (int, error) {
	t := strings.TrimSpace(s)
	var hh, mm int
	if n, err := fmt.Sscanf(t, "%d:%d", &hh, &mm); err != nil || n != 2 || len(t) != 5 || hh < 0 || mm < 0 || mm > 59 || hh > 24 || hh == 24 && mm != 0 {
		return 0, fmt.Errorf("%q is not a time of day: want HH:MM from 00:00 to 24:00", t)
	}
	return hh*60 + mm, nil
}

// Active says whether t falls in a window.
func (h *Hours) Active(t time.Time) bool {
	lt := t.In(h.Location)
	m := lt.Hour()*60 + lt.Minute()
	for _, w := range h.Windows {
		switch {
		case w.Start == w.End:
			return true
		case w.Start < w.End && m >= w.Start && m < w.End:
			return true
		case w.Start > w.End && (m >= w.Start || m < w.End):
			return true
		}
	}
	return false
}

// Next is the first minute after t at which Active changes, so a
// controller knows when to look again; the zero time when it never does.
func (h *Hours) Next(t time.Time) time.Time {
	now := h.Active(t)
	lt := t.In(h.Location)
	// Window edges fall on whole minutes; two days of minutes cover a
	// window crossing midnight and a daylight-saving jump.
	start := time.Date(lt.Year(), lt.Month(), lt.Day(), lt.Hour(), lt.Minute(), 0, 0, h.Location)
	for i := 1; i <= 2*24*60; i++ {
		c := start.Add(time.Duration(i) * time.Minute)
		if h.Active(c) != now {
			return c
		}
	}
	return time.Time{}
}
