"""Small network helpers shared by the end-to-end tests, the soak test and
the ingest benchmark (each starts real servers on 127.0.0.1)."""
import socket


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks
    it; the caller's server binds it next, so a race is possible but rare,
    and a failed bind is reported by the server's start-up check)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
