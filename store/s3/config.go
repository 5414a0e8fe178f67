package s3

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Defaults for the zero values of [Config].
const (
	DefaultPartSize    = 16 << 20 // bytes per part of a multipart upload
	DefaultConnections = 4        // parallel requests a caller should use
	DefaultEndpoint    = "https://s3.amazonaws.com"
	DefaultDialTimeout = 5 * time.Second
	// DefaultStallTimeout is how long a transfer may make no progress
	// before it is aborted as stalled (see Config.StallTimeout).
	DefaultStallTimeout = 30 * time.Second

	// MinPartSize and MaxPartSize are S3's limits on the size of a part
	// other than the last one.
	MinPartSize = 5 << 20
	MaxPartSize = 5 << 30
)

// PathStyle chooses how the bucket appears in request URLs.
type PathStyle int

const (
	// PathStyleAuto uses virtual-host style for Amazon and Google endpoints
	// and path style for every other endpoint (minio-go's detection).
	PathStyleAuto PathStyle = iota
	// PathStyleOn always puts the bucket in the path:
	// https://endpoint/bucket/key.
	PathStyleOn
	// PathStyleOff always puts the bucket in the host name:
	// https://bucket.endpoint/key.
	PathStyleOff
)

// String returns "auto", "path" or "virtual".
func (p PathStyle) String() string {
	switch p {
	case PathStyleOn:
		return "path"
	case PathStyleOff:
		return "virtual"
	default:
		return "auto"
	}
}

// ParsePathStyle parses "auto" (or ""), "path" (or "true") and "virtual" (or
// "false", "dns"), as a command line flag gives them.
func ParsePathStyle(s string) (PathStyle, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "auto":
		return PathStyleAuto, nil
	case "path", "true", "on", "1":
		return PathStyleOn, nil
	case "virtual", "virtual-host", "dns", "false", "off", "0":
		return PathStyleOff, nil
	}
	return PathStyleAuto, fmt.Errorf("s3: invalid path style %q: want auto, path or virtual", s)
}

// Config says where a store's objects live and how to reach them. The zero
// value of each optional field means its documented default; New does not
// modify the Config it is given.
type Config struct {
	// Bucket is the bucket name (required).
	Bucket string
	// Prefix is the object-name prefix under which keys are stored, without
	// leading or trailing slashes; "" stores keys at the top of the bucket.
	// Key k is stored as Prefix + "/" + k.
	Prefix string

	// Endpoint is the URL of the S3 service, such as
	// "https://s3.eu-west-1.amazonaws.com" or "http://127.0.0.1:7070". TLS is
	// used unless the scheme is "http"; a bare "host:port" means https.
	// Empty means DefaultEndpoint.
	Endpoint string
	// Region is the signing region. Empty lets minio-go ask the bucket for
	// its location (one extra request, then cached).
	Region string

	// AccessKey, SecretKey and SessionToken are static credentials. When
	// AccessKey is empty, New reads the shared credentials and config files
	// (CredentialsFile, Profile), then, when UseIAM is set, the instance or
	// container metadata service; with none found, requests are anonymous.
	AccessKey    string
	SecretKey    string
	SessionToken string
	// Profile is the profile to read from the shared files; empty means
	// AWS_PROFILE, then "default".
	Profile string
	// CredentialsFile is the shared credentials file; empty means
	// AWS_SHARED_CREDENTIALS_FILE, then ~/.aws/credentials merged with
	// ~/.aws/config.
	CredentialsFile string
	// UseIAM adds the EC2 instance metadata, ECS container and EKS web
	// identity providers to the credential chain. It is off by default
	// because the EC2 provider contacts 169.254.169.254, which on a machine
	// outside AWS only costs time.
	UseIAM bool

	// CABundle is a PEM file of extra certificate authorities to trust,
	// added to the system pool (AWS_CA_BUNDLE). A file that does not exist
	// is ignored; one that exists but holds no certificate is an error.
	CABundle string

	// PathStyle chooses path or virtual-host addressing; see [PathStyle].
	PathStyle PathStyle

	// PartSize is the size of each part of a multipart upload, and the
	// largest object sent in a single PUT. Zero means DefaultPartSize; it
	// must lie in [MinPartSize, MaxPartSize]. Each Put in flight holds one
	// buffer of this size, and S3 allows 10,000 parts, so the largest object
	// is 10,000 × PartSize (156 GiB at the default).
	PartSize int64

	// Connections is the number of requests the store serves well in
	// parallel, reported by [Store.Connections] to size worker pools. Zero
	// means DefaultConnections.
	Connections int

	// DialTimeout bounds each TCP connect; zero means DefaultDialTimeout.
	DialTimeout time.Duration

	// StallTimeout is how long a transfer may move no byte before it is
	// aborted with an error wrapping [ErrStalled], which is transient:
	// a response body that stops (a stalled GET, which store/retry then
	// resumes from the byte reached) or a request body the connection
	// stops taking. Zero means DefaultStallTimeout; negative disables the
	// check. The wait for response headers is bounded separately (one
	// minute), as a server may take a while to complete an upload.
	StallTimeout time.Duration

	// LockRefresh and LockStale are the lease of the writer lock (see
	// [Store.Lock]): the holder rewrites its lock every LockRefresh, and a
	// lock not rewritten for LockStale is taken over. Zero means
	// DefaultLockRefresh and DefaultLockStale; LockStale must exceed
	// LockRefresh several times over for a live holder to keep its lock
	// through a few failed refreshes.
	LockRefresh, LockStale time.Duration
}

// String returns the store location, "s3://bucket/prefix".
func (c Config) String() string {
	if c.Prefix == "" {
		return "s3://" + c.Bucket
	}
	return "s3://" + c.Bucket + "/" + c.Prefix
}

// ParseURL parses "s3://bucket" or "s3://bucket/some/prefix" into a Config
// holding Bucket and Prefix only. It is strict, because a URL that is
// silently rewritten stores an image somewhere the operator did not name:
// the bucket must be one S3 accepts (see checkBucketName), and the prefix
// may have one trailing slash but no empty, "." or ".." element, no
// backslash and no control character. Query strings, fragments and user
// information are refused. Each error is one line naming the URL and the
// fix.
func ParseURL(rawURL string) (Config, error) {
	bad := func(why, fix string) (Config, error) {
		return Config{}, fmt.Errorf("s3: invalid URL %q: %s; %s", rawURL, why, fix)
	}
	rest, ok := strings.CutPrefix(rawURL, "s3://")
	if !ok {
		if len(rawURL) >= 5 && strings.EqualFold(rawURL[:5], "s3://") {
			return bad("the scheme must be lower-case", "write s3://"+rawURL[5:])
		}
		return bad("not an S3 URL", "write s3://bucket or s3://bucket/prefix")
	}
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		return bad("it has a query string or fragment", "remove everything from "+strconv.Quote(rest[i:i+1]))
	}
	bucket, prefix, _ := strings.Cut(rest, "/")
	if strings.Contains(bucket, "@") {
		return bad("credentials do not belong in the URL", "remove the part before @ and set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)")
	}
	if bucket == "" {
		return bad("no bucket name", "write s3://bucket or s3://bucket/prefix")
	}
	if err := checkBucketName(bucket); err != nil {
		return bad(err.Error(), "use the bucket's exact name")
	}
	if prefix == "/" {
		return bad("the prefix has an empty element (a doubled slash)", "write "+strconv.Quote("s3://"+bucket))
	}
	prefix = strings.TrimSuffix(prefix, "/")
	if prefix != "" {
		for e := range strings.SplitSeq(prefix, "/") {
			why := ""
			switch {
			case e == "":
				why = "the prefix has an empty element (a doubled slash)"
			case e == "." || e == "..":
				why = fmt.Sprintf("the prefix has a %q element", e)
			case strings.ContainsFunc(e, func(r rune) bool { return r == '\\' || unicode.IsControl(r) }):
				why = "the prefix has a backslash or control character"
			}
			if why != "" {
				return bad(why, suggestPrefix(bucket, prefix))
			}
		}
	}
	return Config{Bucket: bucket, Prefix: prefix}, nil
}

// suggestPrefix is the fix for a prefix with empty or "." elements: the
// URL without them. Other faults have no safe rewrite.
func suggestPrefix(bucket, prefix string) string {
	var elems []string
	for e := range strings.SplitSeq(prefix, "/") {
		switch {
		case e == "" || e == ".":
		case e == ".." || strings.ContainsFunc(e, func(r rune) bool { return r == '\\' || unicode.IsControl(r) }):
			return "write the prefix without it"
		default:
			elems = append(elems, e)
		}
	}
	return "write " + strconv.Quote("s3://"+path.Join(append([]string{bucket}, elems...)...))
}

// cleanPrefix trims slashes, folds repeated ones and refuses "." and "..".
// It accepts a Config.Prefix written by a program; URLs from operators go
// through the stricter ParseURL.
func cleanPrefix(prefix string) (string, error) {
	var elems []string
	for e := range strings.SplitSeq(prefix, "/") {
		switch e {
		case "":
			continue
		case ".", "..":
			return "", fmt.Errorf("prefix %q has a %q element", prefix, e)
		}
		elems = append(elems, e)
	}
	return path.Join(elems...), nil
}

// checkBucketName applies the rules of Amazon S3 for general purpose bucket
// names: 3 to 63 characters of lower-case letters, digits, '.' and '-',
// beginning and ending with a letter or digit, no two adjacent periods,
// not shaped like an IP address, and none of the reserved prefixes and
// suffixes. Other servers accept a subset of these names at least.
func checkBucketName(b string) error {
	if len(b) < 3 || len(b) > 63 {
		return fmt.Errorf("bucket name %q must have 3 to 63 characters", b)
	}
	for _, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '.', c == '-':
		case c >= 'A' && c <= 'Z':
			return fmt.Errorf("bucket name %q has the upper-case letter %q (S3 bucket names are lower-case)", b, c)
		default:
			return fmt.Errorf("bucket name %q has the invalid character %q (S3 allows a-z, 0-9, '.' and '-')", b, c)
		}
	}
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
	switch {
	case !alnum(b[0]) || !alnum(b[len(b)-1]):
		return fmt.Errorf("bucket name %q must begin and end with a letter or digit", b)
	case strings.Contains(b, ".."):
		return fmt.Errorf("bucket name %q has two adjacent periods", b)
	case net.ParseIP(b) != nil:
		return fmt.Errorf("bucket name %q is shaped like an IP address", b)
	}
	for _, p := range []string{"xn--", "sthree-", "amzn-s3-demo-"} {
		if strings.HasPrefix(b, p) {
			return fmt.Errorf("bucket name %q begins with the reserved %q", b, p)
		}
	}
	for _, sfx := range []string{"-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"} {
		if strings.HasSuffix(b, sfx) {
			return fmt.Errorf("bucket name %q ends with the reserved %q", b, sfx)
		}
	}
	return nil
}

// ConfigFromEnv parses rawURL with [ParseURL] and completes the Config from
// the environment, following the AWS CLI's conventions:
//
//	AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN  static credentials
//	AWS_PROFILE, AWS_SHARED_CREDENTIALS_FILE                   shared credentials file
//	AWS_REGION, then AWS_DEFAULT_REGION                        region
//	AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL                  endpoint
//	AWS_CA_BUNDLE                                              extra trusted CAs
//
// UseIAM is set when AWS_CONTAINER_CREDENTIALS_RELATIVE_URI,
// AWS_CONTAINER_CREDENTIALS_FULL_URI or AWS_WEB_IDENTITY_TOKEN_FILE is set,
// that is when a container or pod says credentials are to be had there.
// Callers override fields (from flags) after this returns.
func ConfigFromEnv(rawURL string) (Config, error) {
	return configFromEnv(rawURL, os.Getenv)
}

func configFromEnv(rawURL string, getenv func(string) string) (Config, error) {
	cfg, err := ParseURL(rawURL)
	if err != nil {
		return Config{}, err
	}
	first := func(names ...string) string {
		for _, n := range names {
			if v := strings.TrimSpace(getenv(n)); v != "" {
				return v
			}
		}
		return ""
	}
	cfg.AccessKey = first("AWS_ACCESS_KEY_ID")
	cfg.SecretKey = first("AWS_SECRET_ACCESS_KEY")
	cfg.SessionToken = first("AWS_SESSION_TOKEN")
	cfg.Profile = first("AWS_PROFILE")
	cfg.CredentialsFile = first("AWS_SHARED_CREDENTIALS_FILE")
	cfg.Region = first("AWS_REGION", "AWS_DEFAULT_REGION")
	cfg.Endpoint = first("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
	cfg.CABundle = first("AWS_CA_BUNDLE")
	cfg.UseIAM = first("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE") != ""
	return cfg, nil
}

// endpoint splits Config.Endpoint into minio-go's host[:port] and TLS flag.
func (c Config) endpoint() (host string, secure bool, err error) {
	e := c.Endpoint
	if e == "" {
		e = DefaultEndpoint
	}
	if !strings.Contains(e, "://") {
		e = "https://" + e
	}
	u, err := url.Parse(e)
	if err != nil {
		return "", false, fmt.Errorf("s3: invalid endpoint %q: %w", c.Endpoint, err)
	}
	switch u.Scheme {
	case "https":
		secure = true
	case "http":
	default:
		return "", false, fmt.Errorf("s3: invalid endpoint %q: scheme must be http or https", c.Endpoint)
	}
	if u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return "", false, fmt.Errorf("s3: invalid endpoint %q: want scheme://host[:port] with no path", c.Endpoint)
	}
	return u.Host, secure, nil
}

// endpointURL is the endpoint as messages show it.
func (c Config) endpointURL() string {
	host, secure, err := c.endpoint()
	if err != nil {
		return c.Endpoint
	}
	if secure {
		return "https://" + host
	}
	return "http://" + host
}
