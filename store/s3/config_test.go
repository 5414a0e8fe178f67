package s3

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/minio/minio-go/v7"

	"github.com/seedship/seedship/store"
)

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		in             string
		bucket, prefix string
		str            string
	}{
		{"s3://bucket", "bucket", "", "s3://bucket"},
		{"s3://bucket/", "bucket", "", "s3://bucket"},
		{"s3://bucket/a/b", "bucket", "a/b", "s3://bucket/a/b"},
		{"s3://bucket/a/b/", "bucket", "a/b", "s3://bucket/a/b"},
		{"s3://my.bucket-1/img", "my.bucket-1", "img", "s3://my.bucket-1/img"},
		{"s3://b-1/..a/a../.hidden/a b", "b-1", "..a/a../.hidden/a b", "s3://b-1/..a/a../.hidden/a b"},
		{"s3://123/x", "123", "x", "s3://123/x"},
	} {
		cfg, err := ParseURL(tc.in)
		if err != nil {
			t.Errorf("ParseURL(%q): %v", tc.in, err)
			continue
		}
		if cfg.Bucket != tc.bucket || cfg.Prefix != tc.prefix || cfg.String() != tc.str {
			t.Errorf("ParseURL(%q) = %q %q %q; want %q %q %q", tc.in, cfg.Bucket, cfg.Prefix, cfg.String(), tc.bucket, tc.prefix, tc.str)
		}
	}
}

// TestParseURLStrict: every URL that names a place other than the one
// written, or one S3 refuses, is an error naming the URL and the fix.
// Before the fix, s3://bkt//x was stored under x/.
func TestParseURLStrict(t *testing.T) {
	for _, tc := range []struct {
		in, why, fix string
	}{
		{"", "not an S3 URL", "s3://bucket"},
		{"bucket/prefix", "not an S3 URL", "s3://bucket"},
		{"s3:/bucket", "not an S3 URL", "s3://bucket"},
		{"https://bucket/x", "not an S3 URL", "s3://bucket"},
		{"S3://bucket/x", "lower-case", "write s3://bucket/x"},
		{"s3://", "no bucket name", "s3://bucket"},
		{"s3:///prefix", "no bucket name", "s3://bucket"},
		{"s3://bkt//x", "empty element", "write \"s3://bkt/x\""},
		{"s3://bkt/x//y", "empty element", "write \"s3://bkt/x/y\""},
		{"s3://bkt/x//", "empty element", "write \"s3://bkt/x\""},
		{"s3://bkt//", "empty element", "write \"s3://bkt\""},
		{"s3://bkt/x/../y", `".." element`, "without it"},
		{"s3://bkt/./x", `"." element`, "write \"s3://bkt/x\""},
		{"s3://bkt/..", `".." element`, "without it"},
		{"s3://bkt/a\\b", "backslash", "without it"},
		{"s3://bkt/a\x01b", "control character", "without it"},
		{"s3://bucket?x=1", "query string", `remove everything from "?"`},
		{"s3://bucket/x?versionId=3", "query string", `remove everything from "?"`},
		{"s3://bucket/x#frag", "fragment", `remove everything from "#"`},
		{"s3://key:secret@bucket/x", "credentials", "AWS_ACCESS_KEY_ID"},
		{"s3://b/x", "3 to 63 characters", "exact name"},
		{"s3://" + strings.Repeat("a", 64) + "/x", "3 to 63 characters", "exact name"},
		{"s3://Bucket/x", "upper-case", "exact name"},
		{"s3://my_bucket/x", "invalid character '_'", "exact name"},
		{"s3://bu cket/x", "invalid character ' '", "exact name"},
		{"s3://bucket:9000/x", "invalid character ':'", "exact name"},
		{"s3://-bucket/x", "begin and end", "exact name"},
		{"s3://bucket./x", "begin and end", "exact name"},
		{"s3://my..bucket/x", "adjacent periods", "exact name"},
		{"s3://192.168.5.4/x", "IP address", "exact name"},
		{"s3://xn--bucket/x", "reserved", "exact name"},
		{"s3://bucket-s3alias/x", "reserved", "exact name"},
	} {
		cfg, err := ParseURL(tc.in)
		if err == nil {
			t.Errorf("ParseURL(%q) = %+v; want an error", tc.in, cfg)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, strconv.Quote(tc.in)) || !strings.Contains(msg, tc.why) || !strings.Contains(msg, tc.fix) || strings.Contains(msg, "\n") {
			t.Errorf("ParseURL(%q) = %q; want one line naming the URL, %q and the fix %q", tc.in, msg, tc.why, tc.fix)
		}
	}
}

// FuzzParseURL: an accepted URL names exactly what it says, and its
// canonical form parses to the same Config.
func FuzzParseURL(f *testing.F) {
	for _, s := range []string{"s3://bucket", "s3://bucket/a/b/", "s3://bkt//x", "s3://bkt/./x", "s3://Bkt/x?y#z", "s3://a@b/c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		cfg, err := ParseURL(in)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error for %q spans lines: %q", in, err)
			}
			return
		}
		if checkBucketName(cfg.Bucket) != nil || checkKey(cfg.Prefix) != "" && cfg.Prefix != "" {
			t.Errorf("ParseURL(%q) accepted bucket %q, prefix %q", in, cfg.Bucket, cfg.Prefix)
		}
		if got := strings.TrimSuffix(in, "/"); cfg.String() != got {
			t.Errorf("ParseURL(%q).String() = %q: the URL was rewritten", in, cfg.String())
		}
		again, err := ParseURL(cfg.String())
		if err != nil || again != cfg {
			t.Errorf("ParseURL(%q) = %+v, but its String %q parses to %+v, %v", in, cfg, cfg.String(), again, err)
		}
	})
}

func TestConfigFromEnv(t *testing.T) {
	env := map[string]string{
		"AWS_ACCESS_KEY_ID":           "AKIA",
		"AWS_SECRET_ACCESS_KEY":       "secret",
		"AWS_SESSION_TOKEN":           "token",
		"AWS_PROFILE":                 "backup",
		"AWS_SHARED_CREDENTIALS_FILE": "/etc/creds",
		"AWS_DEFAULT_REGION":          "eu-west-1",
		"AWS_ENDPOINT_URL":            "https://generic.example",
		"AWS_CA_BUNDLE":               "/etc/ca.pem",
	}
	getenv := func(k string) string { return env[k] }
	cfg, err := configFromEnv("s3://b-1/p", getenv)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Bucket: "b-1", Prefix: "p", AccessKey: "AKIA", SecretKey: "secret", SessionToken: "token",
		Profile: "backup", CredentialsFile: "/etc/creds", Region: "eu-west-1", Endpoint: "https://generic.example", CABundle: "/etc/ca.pem"}
	if cfg != want {
		t.Errorf("configFromEnv = %+v\nwant %+v", cfg, want)
	}
	// The more specific variables win.
	env["AWS_REGION"] = "us-west-2"
	env["AWS_ENDPOINT_URL_S3"] = "http://127.0.0.1:9000"
	env["AWS_WEB_IDENTITY_TOKEN_FILE"] = "/var/run/token"
	cfg, _ = configFromEnv("s3://b-1/p", getenv)
	if cfg.Region != "us-west-2" || cfg.Endpoint != "http://127.0.0.1:9000" || !cfg.UseIAM {
		t.Errorf("configFromEnv = %+v; want AWS_REGION, AWS_ENDPOINT_URL_S3 and UseIAM", cfg)
	}
	if _, err := configFromEnv("bucket", getenv); err == nil {
		t.Error("configFromEnv of a bad URL: no error")
	}
}

func TestEndpoint(t *testing.T) {
	for _, tc := range []struct {
		in     string
		host   string
		secure bool
	}{
		{"", "s3.amazonaws.com", true},
		{"http://127.0.0.1:7070", "127.0.0.1:7070", false},
		{"https://minio.lan:9000/", "minio.lan:9000", true},
		{"minio.lan:9000", "minio.lan:9000", true},
		{"HTTP://Host", "Host", false},
	} {
		host, secure, err := Config{Endpoint: tc.in}.endpoint()
		if err != nil || host != tc.host || secure != tc.secure {
			t.Errorf("endpoint(%q) = %q, %v, %v; want %q, %v", tc.in, host, secure, err, tc.host, tc.secure)
		}
	}
	for _, in := range []string{"ftp://x", "http://", "http://host/path", "http://u:p@host", "http://host?x"} {
		if _, _, err := (Config{Endpoint: in}).endpoint(); err == nil {
			t.Errorf("endpoint(%q): no error", in)
		}
	}
}

func TestParsePathStyle(t *testing.T) {
	for in, want := range map[string]PathStyle{"": PathStyleAuto, "auto": PathStyleAuto, "path": PathStyleOn, "TRUE": PathStyleOn, "virtual": PathStyleOff, "false": PathStyleOff} {
		if got, err := ParsePathStyle(in); err != nil || got != want {
			t.Errorf("ParsePathStyle(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParsePathStyle("sideways"); err == nil {
		t.Error("ParsePathStyle(sideways): no error")
	}
}

func TestCheckKey(t *testing.T) {
	for _, k := range []string{"a", "manifest.ssm", "data/00000000.seg", "a/b/c", "..a", "a..", ".hidden"} {
		if r := checkKey(k); r != "" {
			t.Errorf("checkKey(%q) = %q; want valid", k, r)
		}
	}
	for _, k := range []string{"", "/a", "a/", "a//b", "./a", "a/./b", "../a", "a/..", "a\\b", "a\x00b", store.LockKey} {
		if checkKey(k) == "" {
			t.Errorf("checkKey(%q) is valid; want invalid", k)
		}
	}
}

func TestTranslateError(t *testing.T) {
	for _, tc := range []struct {
		op        string
		er        minio.ErrorResponse
		notExist  bool
		permanent bool
		kind      error
	}{
		{"get", minio.ErrorResponse{Code: "NoSuchKey", StatusCode: 404}, true, false, nil},
		{"stat", minio.ErrorResponse{Code: "404 Not Found", StatusCode: 404}, true, false, nil},
		{"get", minio.ErrorResponse{Code: "XAdminUserNotFound", StatusCode: 404}, false, true, ErrAccessDenied},
		{"put", minio.ErrorResponse{Code: "NoSuchUpload", StatusCode: 404}, false, false, nil},
		{"stat", minio.ErrorResponse{Code: "NotFound", StatusCode: 404}, true, false, nil},
		{"get", minio.ErrorResponse{Code: "NoSuchBucket", StatusCode: 404}, false, true, ErrNoBucket},
		{"get", minio.ErrorResponse{Code: "AccessDenied", StatusCode: 403}, false, true, ErrAccessDenied},
		{"get", minio.ErrorResponse{Code: "InvalidAccessKeyId", StatusCode: 403}, false, true, ErrAccessDenied},
		{"get", minio.ErrorResponse{Code: "SignatureDoesNotMatch", StatusCode: 403}, false, true, ErrAccessDenied},
		{"put", minio.ErrorResponse{Code: "SignatureDoesNotMatch", StatusCode: 403}, false, false, nil},
		{"put", minio.ErrorResponse{Code: "BadDigest", StatusCode: 400}, false, false, nil},
		{"get", minio.ErrorResponse{Code: "SlowDown", StatusCode: 503}, false, false, nil},
		{"get", minio.ErrorResponse{Code: "InternalError", StatusCode: 500}, false, false, nil},
		{"get", minio.ErrorResponse{Code: "RequestTimeout", StatusCode: 400}, false, false, nil},
		{"get", minio.ErrorResponse{Code: "TooManyRequests", StatusCode: 429}, false, false, nil},
		{"get", minio.ErrorResponse{Code: "RequestTimeTooSkewed", StatusCode: 403}, false, true, nil},
		{"put", minio.ErrorResponse{Code: "EntityTooLarge", StatusCode: 400}, false, true, nil},
		{"put", minio.ErrorResponse{Code: "InvalidArgument"}, false, true, nil},
		{"put", minio.ErrorResponse{Code: "XMinioStorageFull", StatusCode: 507}, false, false, store.ErrNoSpace},
		{"put", minio.ErrorResponse{Code: "QuotaExceeded", StatusCode: 403}, false, false, store.ErrNoSpace},
		{"put", minio.ErrorResponse{Code: "InsufficientStorage", StatusCode: 507}, false, false, store.ErrNoSpace},
	} {
		err := translateError(tc.op, "s3://b/k", tc.er)
		if got := errors.Is(err, store.ErrNotExist); got != tc.notExist {
			t.Errorf("%s %s: ErrNotExist = %v, want %v (%v)", tc.op, tc.er.Code, got, tc.notExist, err)
		}
		if got := errors.Is(err, store.ErrPermanent); got != tc.permanent {
			t.Errorf("%s %s: ErrPermanent = %v, want %v (%v)", tc.op, tc.er.Code, got, tc.permanent, err)
		}
		if tc.kind != nil && !errors.Is(err, tc.kind) {
			t.Errorf("%s %s: does not match %v (%v)", tc.op, tc.er.Code, tc.kind, err)
		}
		var er minio.ErrorResponse
		if !errors.As(err, &er) || er.Code != tc.er.Code {
			t.Errorf("%s %s: the minio error is not reachable with errors.As", tc.op, tc.er.Code)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s %s: message has several lines: %q", tc.op, tc.er.Code, err)
		}
	}
	if !errors.Is(ErrUnreachable, store.ErrPermanent) || !errors.Is(ErrNoBucket, store.ErrPermanent) || !errors.Is(ErrAccessDenied, store.ErrPermanent) {
		t.Error("a sentinel does not match store.ErrPermanent")
	}
}

func TestPartReader(t *testing.T) {
	const part = 10
	for _, tc := range []struct {
		n     int   // bytes the reader has
		size  int64 // declared
		parts []int // part sizes expected
		fail  bool
	}{
		{0, 0, []int{0}, false},
		{0, -1, []int{0}, false},
		{5, 5, []int{5}, false},
		{5, -1, []int{5}, false},
		{10, 10, []int{10}, false},
		{10, -1, []int{10}, false},
		{25, 25, []int{10, 10, 5}, false},
		{20, -1, []int{10, 10}, false},
		{20, 20, []int{10, 10}, false},
		{21, 20, nil, true},
		{19, 20, nil, true},
		{1, 0, nil, true},
		{0, 1, nil, true},
	} {
		src := data(tc.n)
		p := &partReader{r: iotest.HalfReader(bytes.NewReader(src)), size: tc.size}
		var got []int
		var all []byte
		var err error
		for {
			buf := make([]byte, part)
			var n int
			var last bool
			n, last, err = p.next(buf)
			if err != nil {
				break
			}
			got = append(got, n)
			all = append(all, buf[:n]...)
			if last {
				break
			}
		}
		if tc.fail {
			if !errors.Is(err, errSizeMismatch) {
				t.Errorf("n=%d size=%d: err %v; want a size mismatch", tc.n, tc.size, err)
			}
			continue
		}
		if err != nil || !equalInts(got, tc.parts) || !bytes.Equal(all, src) {
			t.Errorf("n=%d size=%d: parts %v, err %v; want %v", tc.n, tc.size, got, err, tc.parts)
		}
	}
	// A reader error passes through.
	boom := errors.New("boom")
	p := &partReader{r: io.MultiReader(bytes.NewReader(data(15)), iotest.ErrReader(boom)), size: -1}
	buf := make([]byte, part)
	if _, _, err := p.next(buf); err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.next(buf); !errors.Is(err, boom) {
		t.Errorf("reader error: %v; want boom", err)
	}
}

func data(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + 1)
	}
	return b
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestValidPrefix(t *testing.T) {
	for p, want := range map[string]bool{"": true, "a": true, "a/": true, "a/b": true, "data/0000": true, "a/..b": true,
		"/a": false, "a//": false, "../": false, "./x": false, "a/../b": false, "..": true, "a\\": false} {
		if got := validPrefix(p); got != want {
			t.Errorf("validPrefix(%q) = %v, want %v", p, got, want)
		}
	}
}
