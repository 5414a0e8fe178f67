package engine

import (
	"context"
	"fmt"

	"github.com/seedship/seedship/seed"
	"github.com/seedship/seedship/store"
)

// openFallback opens the image in fb and checks that it is the same image
// as im (the same manifest hash): only then are its bytes interchangeable
// with ours.
func openFallback(ctx context.Context, fb store.Store, im *seed.Image) (*seed.Image, error) {
	fim, err := seed.Open(ctx, fb)
	if err != nil {
		return nil, fmt.Errorf("%w: fallback %s: %w", ErrBadInput, fb, err)
	}
	if got, want := fim.Manifest().Hash, im.Manifest().Hash; got != want {
		return nil, fmt.Errorf("%w: fallback %s holds another image (manifest %x, want %x): give a copy of the same image",
			ErrBadInput, fb, got[:8], want[:8])
	}
	if im.Encrypted() {
		// The same manifest bytes: the fallback shares im's manifest,
		// and so its key once im is unlocked (seed.Image.Unlock).
		return im.In(fb), nil
	}
	return fim, nil
}
