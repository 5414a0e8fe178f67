package resync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	udiff "github.com/aymanbagabas/go-udiff"
)

const (
	// maxOutput bounds what one command may print on stdout (status
	// queries, config files read over ssh): more is an error, not a
	// memory blow-up.
	maxOutput = 16 << 20
	// maxStderr is how much of a failed command's stderr its error keeps.
	maxStderr = 4 << 10
	// backupSuffix names the backup EditFile keeps beside the file until
	// it is restored. One that is still there means an earlier run did not
	// finish its cleanup: EditFile refuses to edit the file then.
	backupSuffix = ".seedship-backup"
	// tempSuffix names the temporary file of an atomic write over ssh.
	tempSuffix = ".seedship-tmp"
)

// Session is how adapters touch the world; it implements dry run and the
// step log, and keeps the undo stack of file edits. The zero value is
// usable (no configuration: local host only, output discarded). A Session
// is safe for concurrent use.
type Session struct {
	// DryRun makes Do and EditFile print what they would do and change
	// nothing; Query and ReadFile still run (they only read).
	DryRun bool
	// Out gets one line per step; in dry run every argv and a unified
	// diff of every file edit. Nil discards.
	Out io.Writer
	// Config gives the hosts (how to reach them) and executables' paths.
	Config *Config
	// Now is the clock of mark points (nil: time.Now).
	Now func() time.Time

	mu   sync.Mutex
	undo []*fileEdit // EditFile's restores, oldest first
	side Side        // set by RunCapture and RunExtend
}

// Side is which half of the procedure a session runs.
type Side string

// The sides: [RunCapture] runs the capture side (on the system that
// captures the seed), [RunExtend] the extend side.
const (
	SideCapture Side = "capture"
	SideExtend  Side = "extend"
)

// Side is the side the session runs ("" before RunCapture or RunExtend
// set it): adapters whose Preflight or Cleanup differ per side ask it.
func (s *Session) Side() Side {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.side
}

func (s *Session) setSide(side Side) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.side = side
}

// fileEdit is one file EditFile changed (or, in dry run, would have).
type fileEdit struct {
	host, path, backup string
	original, written  []byte
	revert             func(cur []byte) ([]byte, error) // for a file changed since; nil: refuse
	dry                bool
}

// NewSession is a session over cfg writing its step log to out.
func NewSession(cfg *Config, out io.Writer, dryRun bool) *Session {
	return &Session{DryRun: dryRun, Out: out, Config: cfg}
}

// Logf writes one line to the step log.
func (s *Session) Logf(format string, args ...any) {
	out := s.Out
	if out == nil {
		return
	}
	msg := strings.TrimRight(fmt.Sprintf(format, args...), "\n")
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintln(out, msg)
}

// Warnf writes a warning line to the step log, for what the operator must
// not miss (a full resync starting, a coarse bitmap).
func (s *Session) Warnf(format string, args ...any) {
	s.Logf("WARNING: "+format, args...)
}

// Time is the session's clock in UTC.
func (s *Session) Time() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

// Query runs a read-only command on host ("" = this system) and returns
// its stdout; it runs in dry run too. Errors wrap [ErrStep] (see
// [CommandError]).
func (s *Session) Query(ctx context.Context, host string, argv ...string) ([]byte, error) {
	return s.run(ctx, host, nil, argv)
}

// Do runs a changing command on host ("" = this system), after logging
// its argv; in dry run it only logs the argv and returns nothing. Errors
// name the argv, include the command's stderr (trimmed) and wrap
// [ErrStep]; an interrupted command's error also wraps the context's.
func (s *Session) Do(ctx context.Context, host string, argv ...string) ([]byte, error) {
	if s.DryRun {
		s.Logf("would run %s", describe(host, argv))
		return nil, nil
	}
	s.Logf("run %s", describe(host, argv))
	return s.run(ctx, host, nil, argv)
}

// ReadFile reads path on host ("" = this system, otherwise `cat` over the
// host's ssh); read-only, it runs in dry run too.
func (s *Session) ReadFile(ctx context.Context, host, path string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	remote, err := s.remote(host)
	if err != nil {
		return nil, err
	}
	if !remote {
		data, err := readLocal(path)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrStep, err)
		}
		return data, nil
	}
	return s.run(ctx, host, nil, []string{"cat", "--", path})
}

// EditFile rewrites path on host with edit(old) atomically (temp file,
// fsync, rename; owner and mode kept) after saving a backup beside it
// (PATH.seedship-backup), and registers the restore of the original on
// the session's undo stack ([Session.RestoreAll] runs it). An edit that
// changes nothing is not made. A backup left by an earlier run that did
// not finish is refused: the error says how to restore it. In dry run it
// prints a unified diff and changes nothing. Errors wrap [ErrStep].
func (s *Session) EditFile(ctx context.Context, host, path string, edit func(old []byte) ([]byte, error)) error {
	return s.EditFileReversible(ctx, host, path, edit, nil)
}

// EditFileReversible is [Session.EditFile] with a way back for a file
// that someone else changed between the edit and its restore: there the
// restore writes revert(current) instead of refusing (the original bytes
// would throw the other change away). revert nil: refuse, keep the backup
// and say so.
func (s *Session) EditFileReversible(ctx context.Context, host, path string, edit, revert func(old []byte) ([]byte, error)) error {
	old, err := s.ReadFile(ctx, host, path)
	if err != nil {
		return err
	}
	updated, err := edit(bytes.Clone(old))
	if err != nil {
		return fmt.Errorf("%w: edit %s: %w", ErrStep, where(host, path), err)
	}
	if bytes.Equal(old, updated) {
		s.Logf("unchanged %s", where(host, path))
		return nil
	}
	fe := &fileEdit{host: host, path: path, backup: path + backupSuffix, original: old, written: updated, revert: revert, dry: s.DryRun}
	if s.DryRun {
		s.Logf("would edit %s (backup %s):\n%s", where(host, path), fe.backup, unifiedDiff(host, path, old, updated))
		s.push(fe)
		return nil
	}
	s.Logf("edit %s (backup %s):\n%s", where(host, path), fe.backup, unifiedDiff(host, path, old, updated))
	if err := s.writeBackup(ctx, fe); err != nil {
		return err
	}
	// Registered before the write: if the write fails half-way the
	// restore still runs (and finds either the original or our bytes).
	s.push(fe)
	if err := s.writeAtomic(ctx, host, path, updated); err != nil {
		return err
	}
	return nil
}

// RestoreAll undoes every EditFile of the session, newest first, on every
// host, collecting errors (errors.Join). Each restore checks the file
// first: still what EditFile wrote, it gets its original bytes back; still
// the original, only the backup goes; changed by someone else, the revert
// of EditFileReversible runs or the restore is refused with the backup
// kept. A restore that failed stays on the stack, so calling RestoreAll
// again retries it. In dry run it prints the diffs of the restores.
func (s *Session) RestoreAll(ctx context.Context) error {
	s.mu.Lock()
	pending := s.undo
	s.undo = nil
	s.mu.Unlock()
	var errs []error
	var failed []*fileEdit
	for i := len(pending) - 1; i >= 0; i-- {
		fe := pending[i]
		if err := s.restore(ctx, fe); err != nil {
			errs = append(errs, err)
			failed = append([]*fileEdit{fe}, failed...)
		}
	}
	if len(failed) > 0 {
		s.mu.Lock()
		s.undo = append(failed, s.undo...)
		s.mu.Unlock()
	}
	return errors.Join(errs...)
}

// Pending is the number of file edits RestoreAll has still to undo.
func (s *Session) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.undo)
}

func (s *Session) push(fe *fileEdit) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.undo = append(s.undo, fe)
}

func (s *Session) restore(ctx context.Context, fe *fileEdit) error {
	loc := where(fe.host, fe.path)
	if fe.dry {
		s.Logf("would restore %s:\n%s", loc, unifiedDiff(fe.host, fe.path, fe.written, fe.original))
		return nil
	}
	cur, err := s.ReadFile(ctx, fe.host, fe.path)
	if err != nil {
		return fmt.Errorf("restore %s: %w (the original is in %s)", loc, err, fe.backup)
	}
	var want []byte
	switch {
	case bytes.Equal(cur, fe.original):
		// The edit never landed; only the backup is left to remove.
	case bytes.Equal(cur, fe.written):
		want = fe.original
	case fe.revert != nil:
		want, err = fe.revert(bytes.Clone(cur))
		if err != nil {
			return fmt.Errorf("%w: restore %s: changed since seedship edited it and the revert failed: %w (the original is in %s)", ErrStep, loc, err, fe.backup)
		}
		s.Warnf("%s changed since seedship edited it: reverting only seedship's change", loc)
	default:
		return fmt.Errorf("%w: restore %s: changed since seedship edited it: not overwritten; compare it with %s, restore by hand, then delete the backup", ErrStep, loc, fe.backup)
	}
	if want != nil && !bytes.Equal(cur, want) {
		s.Logf("restore %s:\n%s", loc, unifiedDiff(fe.host, fe.path, cur, want))
		if err := s.writeAtomic(ctx, fe.host, fe.path, want); err != nil {
			return fmt.Errorf("restore %s: %w (the original is in %s)", loc, err, fe.backup)
		}
	}
	if err := s.removeBackup(ctx, fe); err != nil {
		return fmt.Errorf("restore %s: restored, but %w", loc, err)
	}
	return nil
}

// remote reports whether host is reached over ssh.
func (s *Session) remote(host string) (bool, error) {
	if host == "" {
		return false, nil
	}
	if s.Config == nil {
		return false, fmt.Errorf("%w: host %q: no configuration with hosts", ErrConfig, host)
	}
	h, err := s.Config.Host(host)
	if err != nil {
		return false, err
	}
	return len(h.SSH) > 0, nil
}

// command is the argv that runs argv on host: itself locally, or the
// host's ssh prefix followed by argv as one shell-quoted word (ssh hands
// the remote shell a single string, so every word is quoted).
func (s *Session) command(host string, argv []string) ([]string, error) {
	if len(argv) == 0 || argv[0] == "" {
		return nil, fmt.Errorf("%w: empty command", ErrStep)
	}
	if host == "" {
		return argv, nil
	}
	if s.Config == nil {
		return nil, fmt.Errorf("%w: host %q: no configuration with hosts", ErrConfig, host)
	}
	h, err := s.Config.Host(host)
	if err != nil {
		return nil, err
	}
	if len(h.SSH) == 0 {
		return argv, nil
	}
	full := append([]string(nil), h.SSH...)
	return append(full, shellJoin(argv)), nil
}

// run executes argv on host with stdin, returning stdout.
func (s *Session) run(ctx context.Context, host string, stdin []byte, argv []string) ([]byte, error) {
	full, err := s.command(host, argv)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, &CommandError{Host: host, Argv: argv, Err: err}
	}
	cmd := exec.CommandContext(ctx, full[0], full[1:]...)
	// A command that ignores the kill of its context (or leaves a child
	// holding the pipes) must not hang the cleanup.
	cmd.WaitDelay = 5 * time.Second
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	stdout := &cappedBuffer{max: maxOutput}
	stderr := &cappedBuffer{max: maxStderr}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err = cmd.Run()
	if err == nil && stdout.over {
		err = fmt.Errorf("printed more than %d bytes", maxOutput)
	}
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = fmt.Errorf("%w (%v)", ctxErr, err)
		}
		msg := strings.TrimSpace(stderr.String())
		if stderr.over {
			msg += " [stderr cut]"
		}
		return nil, &CommandError{Host: host, Argv: argv, Stderr: msg, Err: err}
	}
	return stdout.Bytes(), nil
}

// CommandError is a command that failed: it matches [ErrStep] with
// errors.Is, and unwraps to the cause (an *exec.ExitError, or the
// context's error when interrupted).
type CommandError struct {
	Host   string   // "" = this system
	Argv   []string // as the adapter gave it (without the ssh prefix)
	Stderr string   // trimmed, at most 4 KiB
	Err    error
}

// Error names the host and argv, the cause and the stderr, on one line.
func (e *CommandError) Error() string {
	msg := fmt.Sprintf("%s: %v", describe(e.Host, e.Argv), e.Err)
	if e.Stderr != "" {
		msg += ": " + strings.Join(strings.Fields(e.Stderr), " ")
	}
	return msg
}

// Unwrap gives ErrStep and the cause.
func (e *CommandError) Unwrap() []error { return []error{ErrStep, e.Err} }

// writeBackup saves fe.original as fe.backup, refusing one that exists.
func (s *Session) writeBackup(ctx context.Context, fe *fileEdit) error {
	remote, err := s.remote(fe.host)
	if err != nil {
		return err
	}
	if !remote {
		if err := writeLocalExclusive(fe.path, fe.backup, fe.original); err != nil {
			return fmt.Errorf("%w: back up %s: %w", ErrStep, fe.path, err)
		}
		return nil
	}
	// cp -p keeps owner and mode; the test makes a leftover backup (an
	// earlier run that died) fail instead of being overwritten.
	script := `set -e; if [ -e "$2" ] || [ -L "$2" ]; then echo "backup $2 exists: an earlier seedship run did not finish: compare it with $1, restore by hand, then delete it" >&2; exit 17; fi; cp -p -- "$1" "$2"; sync`
	if _, err := s.run(ctx, fe.host, nil, []string{"sh", "-c", script, "sh", fe.path, fe.backup}); err != nil {
		return fmt.Errorf("back up %s: %w", where(fe.host, fe.path), err)
	}
	return nil
}

func (s *Session) removeBackup(ctx context.Context, fe *fileEdit) error {
	remote, err := s.remote(fe.host)
	if err != nil {
		return err
	}
	if !remote {
		if err := os.Remove(fe.backup); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: remove backup: %w", ErrStep, err)
		}
		return syncDir(filepath.Dir(fe.backup))
	}
	_, err = s.run(ctx, fe.host, nil, []string{"rm", "-f", "--", fe.backup})
	return err
}

// writeAtomic replaces path on host with data: temp file beside it,
// fsync, rename, keeping owner and mode.
func (s *Session) writeAtomic(ctx context.Context, host, path string, data []byte) error {
	remote, err := s.remote(host)
	if err != nil {
		return err
	}
	if !remote {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := writeLocalAtomic(path, data); err != nil {
			return fmt.Errorf("%w: write %s: %w", ErrStep, path, err)
		}
		return nil
	}
	// cp -p makes the temp file with the original's owner and mode; cat
	// then truncates and fills it from stdin.
	script := `set -e; cp -p -- "$1" "$2"; cat > "$2"; sync; mv -f -- "$2" "$1"; sync`
	if _, err := s.run(ctx, host, data, []string{"sh", "-c", script, "sh", path, path + tempSuffix}); err != nil {
		return fmt.Errorf("write %s: %w", where(host, path), err)
	}
	return nil
}

func readLocal(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxOutput+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxOutput {
		return nil, fmt.Errorf("%s is larger than %d bytes: not a configuration file", path, maxOutput)
	}
	return data, nil
}

// writeLocalExclusive creates dst (which must not exist) with data and
// the owner and mode of like, durably.
func writeLocalExclusive(like, dst string, data []byte) error {
	fi, err := os.Stat(like)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("backup %s exists: an earlier seedship run did not finish: compare it with %s, restore by hand, then delete it", dst, like)
	}
	if err != nil {
		return err
	}
	if err := fillAndSync(f, fi, data); err != nil {
		os.Remove(dst)
		return err
	}
	return syncDir(filepath.Dir(dst))
}

// writeLocalAtomic replaces path with data through a temp file in the
// same directory, keeping owner and mode.
func writeLocalAtomic(path string, data []byte) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".seedship-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if err := fillAndSync(f, fi, data); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

// fillAndSync writes data to f, gives it fi's mode and owner, fsyncs and
// closes it.
func fillAndSync(f *os.File, fi os.FileInfo, data []byte) error {
	_, err := f.Write(data)
	if err == nil {
		err = f.Chmod(fi.Mode().Perm())
	}
	if err == nil {
		err = keepOwner(f, fi)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}

// unifiedDiff is the unified diff of a file edit, labelled with the host.
func unifiedDiff(host, path string, old, updated []byte) string {
	label := path
	if host != "" {
		label = host + ":" + path
	}
	return strings.TrimRight(udiff.Unified("a/"+label, "b/"+label, string(old), string(updated)), "\n")
}

// where names path on host for messages.
func where(host, path string) string {
	if host == "" {
		return path
	}
	return host + ":" + path
}

// describe is argv on host as a copyable shell line.
func describe(host string, argv []string) string {
	if host == "" {
		return shellJoin(argv)
	}
	return "on " + host + ": " + shellJoin(argv)
}

// shellJoin quotes each word for a POSIX shell and joins them.
func shellJoin(argv []string) string {
	words := make([]string, len(argv))
	for i, w := range argv {
		words[i] = shellQuote(w)
	}
	return strings.Join(words, " ")
}

func shellQuote(w string) string {
	if w != "" && strings.Trim(w, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,@+%") == "" {
		return w
	}
	return "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
}

// cappedBuffer keeps the first max bytes written to it and notes
// whether more came (the writer is never failed: a command blocked on a
// full pipe would hang instead of failing).
type cappedBuffer struct {
	bytes.Buffer
	max  int
	over bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	room := b.max - b.Len()
	if len(p) > room {
		b.over = true
		if room > 0 {
			b.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return b.Buffer.Write(p)
}
