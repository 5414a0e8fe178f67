package s3

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"

	"github.com/minio/minio-go/v7"

	"github.com/seedship/seedship/store"
)

// kind is a sentinel that also matches store.ErrPermanent.
type kind struct{ msg string }

func (k *kind) Error() string { return k.msg }

// Is makes every kind match store.ErrPermanent.
func (k *kind) Is(target error) bool { return target == store.ErrPermanent }

// Sentinels wrapped by the errors of this package. Each also matches
// [store.ErrPermanent], so errors.Is(err, store.ErrPermanent) holds for all
// of them.
var (
	// ErrUnreachable is wrapped by the error of [New] when the endpoint
	// cannot be reached: the name does not resolve, the connection is
	// refused or the service does not answer within the check's timeout.
	// Only New reports it; the same failure in a later call is a plain
	// transient error, for store/retry to retry.
	ErrUnreachable error = &kind{"s3: endpoint unreachable"}

	// ErrNoBucket is wrapped when the bucket does not exist.
	ErrNoBucket error = &kind{"s3: bucket does not exist"}

	// ErrAccessDenied is wrapped when the server refuses the credentials
	// (InvalidAccessKeyId, SignatureDoesNotMatch, ExpiredToken) or the
	// operation (AccessDenied, any HTTP 403).
	ErrAccessDenied error = &kind{"s3: access denied"}

	// ErrInvalidKey is wrapped when a key is not a clean, slash-separated
	// relative name: empty, absolute, or with an empty, "." or ".." element,
	// a backslash or a NUL byte.
	ErrInvalidKey error = &kind{"s3: invalid key"}
)

// opError is the error of one operation: what, where, why, and what to do.
type opError struct {
	op   string // "put", "get", ...
	loc  string // "s3://bucket/prefix/key"
	kind error  // nil (transient), a sentinel above, store.ErrNotExist, store.ErrNoSpace or store.ErrPermanent
	err  error  // the cause
	hint string // what to do, or ""
}

func (e *opError) Error() string {
	var b strings.Builder
	b.WriteString("s3 ")
	b.WriteString(e.op)
	b.WriteString(" ")
	b.WriteString(e.loc)
	b.WriteString(": ")
	b.WriteString(oneLine(errText(e.err)))
	if e.hint != "" {
		b.WriteString(": ")
		b.WriteString(e.hint)
	}
	return b.String()
}

// Unwrap returns the kind and the cause, for errors.Is and errors.As.
func (e *opError) Unwrap() []error {
	if e.kind == nil {
		return []error{e.err}
	}
	return []error{e.kind, e.err}
}

// errText renders minio's error responses with their code and status, which
// their Message alone leaves out.
func errText(err error) string {
	var er minio.ErrorResponse
	if !errors.As(err, &er) || er.Code == "" {
		return err.Error()
	}
	status := ""
	if er.StatusCode != 0 {
		status = "HTTP " + strconv.Itoa(er.StatusCode)
	}
	// Replies without a body (HEAD) have the status line as their code.
	code := er.Code
	if strings.HasPrefix(code, strconv.Itoa(er.StatusCode)+" ") {
		code = ""
	}
	msg := er.Message
	if msg == er.Code || strings.HasPrefix(msg, strconv.Itoa(er.StatusCode)+" ") {
		msg = ""
	}
	detail := strings.Trim(code+", "+status, ", ")
	switch {
	case msg != "" && detail != "":
		return msg + " (" + detail + ")"
	case msg != "":
		return msg
	case code != "":
		return detail
	default:
		return status + " " + http.StatusText(er.StatusCode)
	}
}

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	return strings.Join(strings.Fields(s), " ")
}

// Hints for the errors a user can fix.
const (
	hintCredentials = "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and the bucket's policy"
	hintBucket      = "create the bucket (e.g. aws s3 mb) or fix the bucket name"
	hintClock       = "the system clock is wrong; fix it (e.g. enable NTP)"
	hintTLS         = "the server's certificate is not trusted; set AWS_CA_BUNDLE to its CA's PEM file"
	hintScheme      = "the endpoint speaks plain HTTP; write it as http://host:port"
	hintNoSpace     = "the bucket or its server is full; free space or raise the quota, then resume"
)

// transientCodes are S3 error codes that a later attempt can get past, even
// when their HTTP status is a 4xx.
var transientCodes = map[string]bool{
	"RequestTimeout":            true,
	"SlowDown":                  true,
	"InternalError":             true,
	"ServiceUnavailable":        true,
	"OperationAborted":          true,
	"BadDigest":                 true, // the body was damaged in transit
	"XAmzContentSHA256Mismatch": true,
	"IncompleteBody":            true,
	"UnexpectedEOF":             true, // minio-go's own, for a short read
}

// credentialCodes are S3 error codes that mean the credentials or the
// permissions are wrong.
var credentialCodes = map[string]bool{
	"AccessDenied":                 true,
	"InvalidAccessKeyId":           true,
	"SignatureDoesNotMatch":        true,
	"ExpiredToken":                 true,
	"InvalidToken":                 true,
	"TokenRefreshRequired":         true,
	"AllAccessDisabled":            true,
	"AccountProblem":               true,
	"InvalidSecurity":              true,
	"MissingSecurityHeader":        true,
	"NotSignedUp":                  true,
	"AuthorizationHeaderMalformed": true,
	"XAdminUserNotFound":           true, // versitygw, for an unknown access key (HTTP 404)
}

// translateError classifies err from minio-go for operation op on loc. The
// result wraps store.ErrNotExist for a missing object, one of this package's
// sentinels (all matching store.ErrPermanent) for what retrying cannot fix,
// and nothing extra for transient failures. Context errors stay
// recognisable with errors.Is.
func translateError(op, loc string, err error) error {
	if err == nil {
		return nil
	}
	var oe *opError
	if errors.As(err, &oe) {
		return err // already translated
	}
	e := &opError{op: op, loc: loc, err: err}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return e
	}
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		e.hint, e.kind = classifyResponse(op, er)
		return e
	}
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	switch {
	case errors.As(err, &ua), errors.As(err, &hn), errors.As(err, &ci):
		e.kind, e.hint = store.ErrPermanent, hintTLS
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		e.kind, e.hint = store.ErrPermanent, hintScheme
	}
	return e
}

// classifyResponse returns the hint and kind for an S3 error response.
func classifyResponse(op string, er minio.ErrorResponse) (string, error) {
	switch {
	case er.Code == "NoSuchBucket":
		return hintBucket, ErrNoBucket
	case er.Code == "NoSuchKey", er.StatusCode == http.StatusNotFound && (er.Code == "" || er.Code == "NotFound" || strings.HasPrefix(er.Code, "404")):
		// NoSuchKey, or a 404 without an error body (a HEAD).
		return "", store.ErrNotExist
	case er.Code == "NoSuchUpload":
		// The multipart upload vanished (aborted by a lifecycle rule?):
		// a new attempt of the whole Put starts a new one.
		return "", nil
	case er.Code == "RequestTimeTooSkewed":
		return hintClock, store.ErrPermanent
	case er.Code == "XMinioStorageFull", er.Code == "QuotaExceeded", er.StatusCode == http.StatusInsufficientStorage:
		// Full, not wrong: resumable once space is freed (store.ErrNoSpace).
		return hintNoSpace, store.ErrNoSpace
	case er.Code == "SignatureDoesNotMatch" && op == "put":
		// Over plain HTTP each chunk of an upload is signed, so a body
		// damaged in transit shows up as a bad signature. New has already
		// proved the keys good.
		return "", nil
	case credentialCodes[er.Code], er.StatusCode == http.StatusForbidden, er.StatusCode == http.StatusUnauthorized:
		return hintCredentials, ErrAccessDenied
	case transientCodes[er.Code]:
		return "", nil
	case er.StatusCode >= 500, er.StatusCode == http.StatusRequestTimeout, er.StatusCode == http.StatusTooManyRequests:
		return "", nil
	case er.StatusCode >= 400:
		return "", store.ErrPermanent
	case er.StatusCode == 0:
		// Raised by minio-go itself before or after a request.
		switch er.Code {
		case "InvalidArgument", "InvalidBucketName", "XMinioInvalidObjectName", "EntityTooLarge", "EntityTooSmall":
			return "", store.ErrPermanent
		}
	}
	return "", nil
}

// isUnreachable reports whether err means that no HTTP exchange with the
// endpoint took place: name resolution or the connection failed.
func isUnreachable(err error) bool {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return true
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH)
}
