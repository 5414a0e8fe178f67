package s3

import (
	"fmt"
	"net/url"
	"os"
	"path"
	"strings"
	"time"
)

// Defaults for the zero values of [Config].
const (
	DefaultPartSize    = 16 << 20 // bytes per part of a multipart upload
	DefaultConnections = 4        // parallel requests a caller should use
	DefaultEndpoint    = "https://s3.amazonaws.com"
	DefaultDialTimeout = 5 * time.Second

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
}

// String returns the store location, "s3://bucket/prefix".
func (c Config) String() string {
	if c.Prefix == "" {
		return "s3://" + c.Bucket
	}
	return "s3://" + c.Bucket + "/" + c.Prefix
}

// ParseURL parses "s3://bucket" or "s3://bucket/some/prefix" into a Config
// holding Bucket and Prefix only. Slashes around the prefix are dropped and
// repeated slashes folded; "." and ".." elements are refused.
func ParseURL(rawURL string) (Config, error) {
	rest, ok := strings.CutPrefix(rawURL, "s3://")
	if !ok {
		return Config{}, fmt.Errorf("s3: invalid URL %q: want s3://bucket/prefix", rawURL)
	}
	if strings.ContainsAny(rest, "?#") {
		return Config{}, fmt.Errorf("s3: invalid URL %q: query and fragment are not supported", rawURL)
	}
	bucket, prefix, _ := strings.Cut(rest, "/")
	if bucket == "" {
		return Config{}, fmt.Errorf("s3: invalid URL %q: no bucket name", rawURL)
	}
	if err := checkBucketName(bucket); err != nil {
		return Config{}, fmt.Errorf("s3: invalid URL %q: %w", rawURL, err)
	}
	prefix, err := cleanPrefix(prefix)
	if err != nil {
		return Config{}, fmt.Errorf("s3: invalid URL %q: %w", rawURL, err)
	}
	return Config{Bucket: bucket, Prefix: prefix}, nil
}

// cleanPrefix trims slashes, folds repeated ones and refuses "." and "..".
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

// checkBucketName applies S3's rules for bucket names loosely: 3 to 63
// characters of lower-case letters, digits, '.', '-' and '_' (some servers
// allow upper case and underscores; the server has the last word).
func checkBucketName(b string) error {
	if len(b) < 3 || len(b) > 63 {
		return fmt.Errorf("bucket name %q must have 3 to 63 characters", b)
	}
	for _, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '-', c == '_':
		default:
			return fmt.Errorf("bucket name %q has the invalid character %q", b, c)
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
