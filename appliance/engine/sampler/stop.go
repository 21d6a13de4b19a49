package sampler

import "strings"

// StopMatcher finds stop sequences in text that arrives in pieces. Text that could be the
// beginning of a stop sequence is held back until the following pieces show whether the stop
// completes, so the emitted stream never contains any part of a stop sequence.
type StopMatcher struct {
	stops   []string
	pending string
	stopped bool
}

// NewStopMatcher returns a matcher for the given stop sequences; empty strings are ignored.
func NewStopMatcher(stops []string) *StopMatcher {
	m := &StopMatcher{}
	for _, s := range stops {
		if s != "" {
			m.stops = append(m.stops, s)
		}
	}
	return m
}

// Push adds a piece of text. It returns the text that is safe to emit now and whether a stop
// sequence has been completed; once it has, the text from the stop sequence on is dropped and
// further pushes return nothing.
func (m *StopMatcher) Push(piece string) (emit string, stopped bool) {
	if m.stopped {
		return "", true
	}
	if len(m.stops) == 0 {
		return piece, false
	}
	buf := m.pending + piece
	first := -1
	for _, s := range m.stops {
		if i := strings.Index(buf, s); i >= 0 && (first < 0 || i < first) {
			first = i
		}
	}
	if first >= 0 {
		m.stopped = true
		m.pending = ""
		return buf[:first], true
	}
	hold := m.partialSuffix(buf)
	m.pending = buf[len(buf)-hold:]
	return buf[:len(buf)-hold], false
}

// Flush returns the held-back text at the end of generation (it did not become a stop).
func (m *StopMatcher) Flush() string {
	p := m.pending
	m.pending = ""
	return p
}

// Stopped reports whether a stop sequence has been seen.
func (m *StopMatcher) Stopped() bool { return m.stopped }

// partialSuffix returns the length of the longest suffix of buf that is a proper prefix of some
// stop sequence. Stop sequences and buf are UTF-8, and a prefix of a stop sequence starts with
// a leading byte, so the cut never splits a character of buf.
func (m *StopMatcher) partialSuffix(buf string) int {
	best := 0
	for _, s := range m.stops {
		for n := min(len(s)-1, len(buf)); n > best; n-- {
			if strings.HasSuffix(buf, s[:n]) {
				best = n
				break
			}
		}
	}
	return best
}
