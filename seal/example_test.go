package seal_test

import (
	"bytes"
	"fmt"
	"log"
	"strings"

	"filippo.io/age"

	"github.com/seedship/seedship/seal"
)

// The life of an encrypted image's key: a capture makes and wraps it,
// seals a chunk and digests it; a restore unwraps it with an identity
// and opens the chunk.
func Example() {
	// Capture: a fresh root key, wrapped for a recipient.
	id, err := age.GenerateX25519Identity()
	if err != nil {
		log.Fatal(err)
	}
	recipients, err := seal.ParseRecipientsFile("team.txt", strings.NewReader("# ops\n"+id.Recipient().String()+"\n"))
	if err != nil {
		log.Fatal(err)
	}
	root := seal.NewRootKey()
	wrapped, err := seal.Wrap(root, recipients, "")
	if err != nil {
		log.Fatal(err)
	}
	imageID := [16]byte{0x5e, 0xed}
	keys, err := seal.DeriveKeys(root, imageID)
	if err != nil {
		log.Fatal(err)
	}
	raw := bytes.Repeat([]byte("source block "), 10000)
	digest := keys.NewDigester().Chunk(raw, 0, nil)
	ad := seal.ChunkAD{ImageID: imageID, Index: 0, Codec: 0x81, RawLen: uint32(len(raw))}
	payload := keys.SealChunk(nil, raw, ad)

	// Restore: unwrap with the identity, open, check the digest.
	got, err := seal.Unwrap(wrapped, []age.Identity{id})
	if err != nil {
		log.Fatal(err)
	}
	rkeys, err := seal.DeriveKeys(got, imageID)
	if err != nil {
		log.Fatal(err)
	}
	plain, err := rkeys.OpenChunk(nil, payload, ad)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(bytes.Equal(plain, raw), rkeys.NewDigester().Chunk(plain, 0, nil) == digest)
	fmt.Println(len(payload) - len(raw))

	// A stranger's identity does not open it.
	stranger, err := age.GenerateX25519Identity()
	if err != nil {
		log.Fatal(err)
	}
	_, err = seal.Unwrap(wrapped, []age.Identity{stranger})
	fmt.Println(err)
	// Output:
	// true true
	// 28
	// no identity given opens this image's key: the image is encrypted for 1 age X25519 recipient(s) and none of the 1 identities given matches: give the age-keygen identity file of one of its recipients, or its passphrase file
}
