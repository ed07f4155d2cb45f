package bench

// peer:nginx: where bench finds nginx, and the configuration it writes for each
// trial (peers/nginx/README.md explains every setting). nginx cannot say which port
// it got: it is given a free one, and bench waits until it accepts there.

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"concbench/internal/testfiles"
	"concbench/peers/nginx"
)

// nginxFallback is where nginx is looked for when it is not on PATH (Debian's
// /usr/sbin is not on every user's PATH). A variable for the tests.
var nginxFallback = "/usr/sbin/nginx"

// findNginx is the nginx PeerOptions names, else nginx on PATH, else
// nginxFallback.
func findNginx(o PeerOptions, _ string) (string, error) {
	if o.Nginx != "" {
		return findFile("nginx", o.Nginx, "")
	}
	if p, err := exec.LookPath("nginx"); err == nil {
		return p, nil
	}
	if _, err := os.Stat(nginxFallback); err == nil {
		return nginxFallback, nil
	}
	return "", fmt.Errorf("%w: nginx is not on PATH nor at %s (make deps installs it)", ErrPeerNotInstalled, nginxFallback)
}

// prepareNginx writes the trial's configuration, for a free loopback port, and
// records nginx's version and where the configuration is.
func prepareNginx(r *Runner, c Cell, bin string, run *PeerRun) (args []string, addr string, err error) {
	run.Version = nginxVersion(bin)
	if addr, err = freePort(r.listenHost()); err != nil {
		return nil, "", err
	}
	conf, err := r.writeNginxConfig(c, addr)
	if err != nil {
		return nil, "", err
	}
	run.Config, _ = filepath.Rel(r.Store.Dir, conf)
	return []string{"-c", conf, "-p", filepath.Dir(conf) + "/"}, addr, nil
}

// freePort picks a free TCP port on host for a peer that cannot report the one
// it was given (nginx): bind port 0, read it, close. Another process could take
// it before the peer binds it; the peer then fails to start and says so.
func freePort(host string) (string, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// nginxVersion is "nginx/1.22.1", from `nginx -v`; "" if it cannot tell.
func nginxVersion(bin string) string {
	out, err := exec.Command(bin, "-v").CombinedOutput()
	if err != nil {
		return ""
	}
	_, v, ok := strings.Cut(strings.TrimSpace(string(out)), "version: ")
	if !ok {
		return ""
	}
	return v
}

// writeNginxConfig renders the trial's configuration into RUNDIR/peers/nginx/ (the
// prefix nginx is started with: pid file, error log and temporary directories go
// there) and generates the standard test files into the root it serves.
func (r *Runner) writeNginxConfig(c Cell, addr string) (string, error) {
	prefix, err := filepath.Abs(filepath.Join(r.Store.Dir, "peers", "nginx"))
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Join(prefix, "tmp"), 0o755); err != nil {
		return "", err
	}
	root := r.Peers.Root
	if root == "" {
		root = testfiles.DefaultDir()
	}
	if root, err = filepath.Abs(root); err != nil {
		return "", err
	}
	if err := testfiles.Generate(root); err != nil {
		return "", fmt.Errorf("generating the test files in %s: %w", root, err)
	}
	nc := NginxConfig{Listen: addr, Root: root, Prefix: prefix, WorkerConnections: max(1024, c.Conns+128)}
	nc.RlimitNofile = 2*nc.WorkerConnections + 64
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) == nil && os.Geteuid() != 0 {
		nc.RlimitNofile = int(min(uint64(nc.RlimitNofile), rl.Max))
	}
	if os.Geteuid() == 0 {
		if u, err := user.Current(); err == nil {
			nc.User = u.Username
		}
	}
	conf := filepath.Join(prefix, "nginx.conf")
	if err := writeFileAtomic(conf, []byte(nc.Render())); err != nil {
		return "", err
	}
	return conf, nil
}

// NginxConfig is what bench writes into nginx.conf for a peer:nginx trial: the
// fields of the template peers/nginx/nginx.conf.tmpl. peers/nginx/README.md says
// what each setting is and why; peers/nginx/nginx.conf is the template rendered
// with example values (kept equal to Render by a test).
type NginxConfig struct {
	Listen string // 127.0.0.1:PORT
	Root   string // absolute: the directory the Go servers serve
	Prefix string // absolute: pid file, error log and temporary directories
	// WorkerConnections bounds the worker's connections (listening socket
	// included); RlimitNofile is its descriptor limit (a file being sent holds one).
	WorkerConnections int
	RlimitNofile      int
	// User is the user the worker runs as when nginx is started as root; ""
	// leaves nginx's default (nobody).
	User string
}

// Render is the configuration file's text.
func (c NginxConfig) Render() string {
	var b strings.Builder
	if err := nginx.Template.Execute(&b, c); err != nil {
		// The template is embedded, over plain fields: it cannot fail.
		return "# " + err.Error() + "\n"
	}
	return b.String()
}
