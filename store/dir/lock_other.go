//go:build !unix && !windows

package dir

import (
	"context"
	"fmt"

	"github.com/seedship/seedship/store"
)

// Lock fails with an error wrapping [store.ErrNoLock]: directory locks use
// flock(2), which this system lacks.
func (s *Store) Lock(ctx context.Context, owner string) (func(context.Context) error, error) {
	return nil, fmt.Errorf("dir: cannot lock %s: directory locks need flock, which this system lacks: %w", s.root, store.ErrNoLock)
}
