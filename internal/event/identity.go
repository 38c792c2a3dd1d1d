package event

// Identity is who a socket's owner is beyond its process (with
// --cgroup-fields): what the owner's cgroup v2 path says. The live side
// reads it from /proc (internal/cgroup, through the pipeline's Source); a
// replay reads it back from the record. A value of its own here so that
// the pure packages can hold it without importing the I/O that finds it.
type Identity struct {
	Path        string // as /proc/PID/cgroup shows it: "/system.slice/nginx.service"
	ContainerID string // 64 hex digits, or "" when the path is not a container's
	Unit        string // the innermost systemd service or scope, or ""
}
