package engine

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seal"
	"github.com/seedship/seedship/store"
)

func TestKindOf(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want Kind
	}{
		{"nil", nil, KindOK},
		{"cancelled", fmt.Errorf("read: %w", context.Canceled), KindInterrupted},
		{"cancelled wins over integrity", errors.Join(ErrIntegrity, context.Canceled), KindInterrupted},
		{"bad input", fmt.Errorf("%w: --chunk-size 0", ErrBadInput), KindBadInput},
		{"locked is bad input once the engine says so", fmt.Errorf("%w: %w", ErrBadInput, store.ErrLocked), KindBadInput},
		{"integrity", fmt.Errorf("%w: 3 chunks", ErrIntegrity), KindIntegrity},
		{"format damage", fmt.Errorf("segment: %w", format.ErrChecksum), KindIntegrity},
		{"no key opens an encrypted image", fmt.Errorf("image: %w", format.ErrNoKey), KindBadInput},
		{"no identity given opens it", fmt.Errorf("image: %w", seal.ErrNoIdentity), KindBadInput},
		{"a sealed chunk fails authentication", fmt.Errorf("chunk 3: %w: %w", format.ErrChecksum, seal.ErrAuthentication), KindIntegrity},
		{"full disk", fmt.Errorf("put data/00000001.seg: %w", store.ErrNoSpace), KindResumable},
		{"marked resumable", Resumable(errors.New("connection reset")), KindResumable},
		{"plain runtime", errors.New("connection reset"), KindRuntime},
	} {
		if got := KindOf(tc.err); got != tc.want {
			t.Errorf("%s: KindOf(%v) = %v; want %v", tc.name, tc.err, got, tc.want)
		}
	}
	// Resumable never hides a more telling kind.
	for _, err := range []error{context.Canceled, ErrBadInput, ErrIntegrity} {
		if got := KindOf(Resumable(err)); got == KindResumable {
			t.Errorf("Resumable(%v) made it resumable", err)
		}
	}
}
