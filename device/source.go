package device

import "errors"

// ErrSourceChanged is returned (wrapped, naming the source and what
// changed) by [Source.CheckUnchanged] when a capture source was written
// while it was read: an image of it would be neither its old state nor its
// new one.
var ErrSourceChanged = errors.New("device: source changed while it was read")
