package pluginconfig

// SharedResource is one resource the plugin shares, as the ledger needs it:
// what the node advertises and how many shares each GPU provides.
type SharedResource struct {
	// Name is the resource the node advertises and pods request, e.g.
	// nvidia.com/gpu.shared.
	Name string `json:"name"`
	// Original is the resource being shared, e.g. nvidia.com/gpu.
	Original string `json:"original"`
	// Replicas is the number of shares per GPU.
	Replicas int `json:"replicas"`
	// Strategy is StrategyTimeSlicing or StrategyMPS.
	Strategy string `json:"strategy"`
	// Renamed reports whether Name differs from Original.
	Renamed bool `json:"renamed"`
	// FailRequestsGreaterThanOne reports whether a pod asking for more than
	// one share fails admission.
	FailRequestsGreaterThanOne bool `json:"failRequestsGreaterThanOne"`
}

// Strategy returns the sharing strategy the plugin applies: mps wins over
// timeSlicing when both list resources, as in the plugin.
func (s Sharing) Strategy() string {
	_, strategy := s.active()
	return strategy
}

func (s Sharing) active() (*ReplicatedResources, string) {
	switch {
	case s.MPS != nil && len(s.MPS.Resources) > 0:
		return s.MPS, StrategyMPS
	case s.TimeSlicing != nil && len(s.TimeSlicing.Resources) > 0:
		return s.TimeSlicing, StrategyTimeSlicing
	}
	return nil, StrategyNone
}

// SharedResources lists, for each shared resource, what the plugin will
// actually advertise. It follows the plugin rather than the letter of the
// file: renameByDefault yields <name>.shared, an explicit rename is
// overridden or dropped, bare names get the nvidia.com/ prefix, and MPS
// fails requests greater than one unless the file says false. It returns nil
// when nothing is shared.
func (c *Config) SharedResources() []SharedResource {
	if c == nil {
		return nil
	}
	rr, strategy := c.Sharing.active()
	if rr == nil {
		return nil
	}
	failGreaterThanOne := isTrue(rr.FailRequestsGreaterThanOne)
	if strategy == StrategyMPS && rr.FailRequestsGreaterThanOne == nil {
		failGreaterThanOne = true
	}
	renamed := isTrue(rr.RenameByDefault)
	out := make([]SharedResource, 0, len(rr.Resources))
	for _, r := range rr.Resources {
		original := qualify(r.Name)
		name := original
		if renamed {
			name += SharedSuffix
		}
		out = append(out, SharedResource{
			Name:                       name,
			Original:                   original,
			Replicas:                   r.Replicas,
			Strategy:                   strategy,
			Renamed:                    renamed,
			FailRequestsGreaterThanOne: failGreaterThanOne,
		})
	}
	return out
}
