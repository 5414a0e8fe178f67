package sign

import (
	"errors"
	"strings"
	"testing"
)

// receiptBytes stands for a restore receipt: any bytes sign the same way.
var receiptBytes = []byte("{\n  \"format\": \"seedship-restore-receipt\",\n  \"version\": 1\n}\n")

// TestReceiptNamespace: a receipt signed with SignNamespace(ReceiptNamespace)
// is checked by ssh-keygen -Y verify -n seedship-receipt and by
// VerifyNamespace, and never passes as a manifest's signature (namespace
// seedship), for us or for ssh-keygen; nor does a manifest's signature
// pass as a receipt's.
func TestReceiptNamespace(t *testing.T) {
	k := makeKey(t, "ed25519", "")
	allowed := "ops@example.com " + k.keyFields() + "\n"
	trust := trustOf(t, allowed)
	s := k.signer(t)
	sig, err := s.SignNamespace(receiptBytes, ReceiptNamespace)
	if err != nil {
		t.Fatal(err)
	}
	if out, ok := opensshVerify(t, allowed, "ops@example.com", ReceiptNamespace, receiptBytes, sig); !ok {
		t.Fatalf("ssh-keygen -Y verify -n %s refused our receipt signature: %s", ReceiptNamespace, out)
	}
	if out, ok := opensshVerify(t, allowed, "ops@example.com", Namespace, receiptBytes, sig); ok {
		t.Fatalf("ssh-keygen -Y verify -n %s accepted a receipt signature: %s", Namespace, out)
	}
	who, err := VerifyNamespace(receiptBytes, sig, trust, ReceiptNamespace)
	if err != nil || who.Principals != "ops@example.com" {
		t.Fatalf("VerifyNamespace = %v, %v; want ops@example.com", who, err)
	}
	// ssh-keygen's own receipt signature is accepted too.
	if _, err := VerifyNamespace(receiptBytes, opensshSign(t, k, ReceiptNamespace, receiptBytes), trust, ReceiptNamespace); err != nil {
		t.Fatalf("VerifyNamespace of ssh-keygen's signature: %v", err)
	}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"receipt signature as a manifest's", func() error { _, err := Verify(receiptBytes, sig, trust); return err }(),
			`namespace "seedship-receipt", not "seedship": it is no seedship manifest's signature`},
		{"receipt signature as a manifest's, by namespace", func() error {
			_, err := VerifyNamespace(receiptBytes, sig, trust, Namespace)
			return err
		}(), `it is no seedship manifest's signature`},
		{"manifest signature as a receipt's", func() error {
			msig, err := s.Sign(receiptBytes)
			if err != nil {
				t.Fatal(err)
			}
			_, err = VerifyNamespace(receiptBytes, msig, trust, ReceiptNamespace)
			return err
		}(), `namespace "seedship", not "seedship-receipt": it is no seedship restore receipt's signature`},
		{"altered receipt", func() error {
			_, err := VerifyNamespace(append([]byte{' '}, receiptBytes...), sig, trust, ReceiptNamespace)
			return err
		}(), "does not match the receipt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !errors.Is(tc.err, ErrBadSignature) || !strings.Contains(tc.err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrBadSignature containing %q", tc.err, tc.want)
			}
		})
	}
	if _, err := s.SignNamespace(receiptBytes, ""); err == nil {
		t.Fatal("SignNamespace with an empty namespace succeeded")
	}
}

// TestReceiptNamespaceTrustOptions: a trust line's namespaces="…" option
// decides for receipts as ssh-keygen does: a line for "seedship" only
// does not trust the key's receipts.
func TestReceiptNamespaceTrustOptions(t *testing.T) {
	k := makeKey(t, "ed25519", "")
	sig, err := k.signer(t).SignNamespace(receiptBytes, ReceiptNamespace)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		namespaces string
		accept     bool
	}{
		{`namespaces="seedship"`, false},
		{`namespaces="seedship,seedship-receipt"`, true},
		{`namespaces="seedship*"`, true},
		{`namespaces="seedship-receipt"`, true},
	} {
		t.Run(tc.namespaces, func(t *testing.T) {
			allowed := "ops@example.com " + tc.namespaces + " " + k.keyFields() + "\n"
			_, err := VerifyNamespace(receiptBytes, sig, trustOf(t, allowed), ReceiptNamespace)
			if tc.accept != (err == nil) || (err != nil && !errors.Is(err, ErrUntrusted)) {
				t.Fatalf("VerifyNamespace = %v, want accept=%v (else ErrUntrusted)", err, tc.accept)
			}
			if out, ok := opensshVerify(t, allowed, "ops@example.com", ReceiptNamespace, receiptBytes, sig); ok != tc.accept {
				t.Fatalf("ssh-keygen -Y verify accept=%v, want %v: %s", ok, tc.accept, out)
			}
		})
	}
}
