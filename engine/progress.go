package engine

import (
	"sync/atomic"
	"time"
)

// Progress is a snapshot of a running operation, safe to read from the
// goroutine that receives it.
type Progress struct {
	Done  int64 // raw bytes processed
	Total int64 // raw bytes in all
	Start time.Time
}

// Meter counts bytes from many goroutines and reports at most every tick.
type Meter struct {
	done  atomic.Int64
	total int64
	start time.Time
	last  atomic.Int64 // unix nanos of the last report
	fn    func(Progress)
}

// NewMeter returns a meter that reports to fn (which may be nil).
func NewMeter(total int64, fn func(Progress)) *Meter {
	return &Meter{total: total, start: time.Now(), fn: fn}
}

const progressTick = 200 * time.Millisecond

// Add counts n more bytes done; safe for concurrent use.
func (m *Meter) Add(n int64) {
	d := m.done.Add(n)
	if m.fn == nil {
		return
	}
	now := time.Now().UnixNano()
	last := m.last.Load()
	if now-last < int64(progressTick) && d < m.total {
		return
	}
	if m.last.CompareAndSwap(last, now) {
		m.fn(Progress{Done: d, Total: m.total, Start: m.start})
	}
}
