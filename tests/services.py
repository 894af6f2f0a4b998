"""Real Postgres, Redis and nginx servers for the tests, each on a free loopback port in a temporary directory.

Like Anvil, they are Debian's own programs (``./dev`` installs the ``postgresql``, ``redis-server``
and ``nginx`` packages), started by the test session and stopped after it; nothing is mocked and no
system-wide service is used. Postgres refuses to run as root, so as root its cluster is made and run
as the ``postgres`` system user the package created.

    with PostgresServer.start() as pg:
        url = pg.create_database()          # a fresh, empty database
    with RedisServer.start() as redis:
        redis.restart()                     # same port, nothing kept
    with NginxServer.start(DEPLOY_NGINX_CONF, {"lunark-a:8080": a_url, ...}) as nginx:
        nginx.served()                      # which process answered each request (its access log)
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from typing import Any

from lunark.chain.anvil import free_port

__all__ = ["DEPLOY_NGINX_CONF", "NginxServer", "PostgresServer", "RedisServer"]

_START_TIMEOUT = 30.0


def _program(name: str, *patterns: str) -> str:
    found = shutil.which(name) or next((p for pattern in patterns for p in sorted(glob.glob(pattern))[::-1]), None)
    if found is None:
        raise RuntimeError(
            f"{name} is not installed: the tests need Debian's postgresql, redis-server and nginx packages "
            "(./dev test installs them; or as root: apt-get install -y postgresql redis-server nginx)."
        )
    return found


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port}:\n{log.read_text(errors='replace')[-3000:]}")


def _stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class PostgresServer:
    """A throwaway Postgres cluster: ``initdb`` into a temporary directory, ``postgres`` on a free port.

    Durability is off (``fsync``, ``full_page_writes``): it lives as long as the test session.
    Connections are trusted on loopback as the ``postgres`` superuser.
    """

    def __init__(self, directory: Path, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.directory = directory
        self.port = port
        self.proc = proc
        self.log = log
        self._databases = count(1)

    @property
    def url(self) -> str:
        """The maintenance database (``postgres``)."""
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    @classmethod
    @contextlib.contextmanager
    def start(cls) -> Iterator[PostgresServer]:
        initdb = _program("initdb", "/usr/lib/postgresql/*/bin/initdb")
        postgres = _program("postgres", "/usr/lib/postgresql/*/bin/postgres")
        # Not under pytest's tmp_path: its parents are private to root, and the server runs as postgres.
        directory = Path(tempfile.mkdtemp(prefix="lunark-pg-"))
        as_user: dict[str, Any] = {}
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(directory, user.pw_uid, user.pw_gid)
            as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        data, log = directory / "data", directory / "postgres.log"
        proc: subprocess.Popen[bytes] | None = None
        try:
            subprocess.run(
                [initdb, "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"],
                check=True, capture_output=True, cwd=directory, **as_user,
            )
            port = free_port()
            with open(log, "wb") as out:
                proc = subprocess.Popen(
                    [postgres, "-D", str(data), "-p", str(port), "-k", str(directory),
                     "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "full_page_writes=off",
                     "-c", "max_connections=400", "-c", "shared_buffers=64MB"],
                    stdout=out, stderr=subprocess.STDOUT, cwd=directory, start_new_session=True, **as_user,
                )
            _wait_for_port(port, proc, log, "postgres")
            server = cls(directory, port, proc, log)
            server._wait_ready()
            yield server
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"initdb failed: {exc.stderr.decode(errors='replace')[-3000:]}") from exc
        finally:
            _stop(proc, signal.SIGINT)  # "fast" shutdown: disconnect clients, no waiting for them
            shutil.rmtree(directory, ignore_errors=True)

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            try:
                with psycopg.connect(self.url, connect_timeout=2):
                    return
            except psycopg.OperationalError:  # "the database system is starting up"
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = f"lunark_{os.getpid()}_{next(self._databases)}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.database_url(name)

    def drop_database(self, url: str) -> None:
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class RedisServer:
    """A throwaway ``redis-server`` on a free loopback port, nothing persisted; ``restart`` keeps the port."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = directory / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    @contextlib.contextmanager
    def start(cls) -> Iterator[RedisServer]:
        directory = Path(tempfile.mkdtemp(prefix="lunark-redis-"))
        server = cls(directory, free_port())
        try:
            server.run()
            yield server
        finally:
            server.stop()
            shutil.rmtree(directory, ignore_errors=True)

    def run(self) -> None:
        program = _program("redis-server", "/usr/bin/redis-server")
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [program, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(self.directory), "--protected-mode", "no", "--daemonize", "no"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        _wait_for_port(self.port, self.proc, self.log, "redis-server")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        _stop(self.proc, sig)
        self.proc = None

    def restart(self) -> None:
        """Kill it (SIGKILL: its clients see the connection drop) and start it again on the same port."""
        self.stop(signal.SIGKILL)
        self.run()


DEPLOY_NGINX_CONF = Path(__file__).resolve().parent.parent / "deploy" / "nginx.conf"
"""The load balancer's site of docs/deployment.md: the one file compose mounts and the hand-run path copies."""

# The main configuration around the site: everything nginx would otherwise keep under /var (its pid,
# logs, temporary files) is in the server's own directory, so it runs beside any system nginx. The
# access log names the upstream that answered each request.
_NGINX_MAIN = """\
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 256; }}
http {{
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    log_format upstreams '$upstream_addr|$status|$request';
    access_log {dir}/access.log upstreams;
    include {dir}/site.conf;
}}
"""


def render_site(text: str, replacements: dict[str, str]) -> str:
    """The site's text with each ``old: new`` replaced, as docs/deployment.md's ``sed`` line does.

    Every ``old`` must occur in the text: a renamed upstream or a changed ``listen`` fails here
    instead of leaving nginx pointing at nothing."""
    for old, new in replacements.items():
        if old not in text:
            raise RuntimeError(f"{old!r} is not in the nginx site; it has:\n{text}")
        text = text.replace(old, new)
    return text


class NginxServer:
    """Debian's nginx running a site file (deploy/nginx.conf) with its addresses replaced.

    ``replacements`` map text of the site to what it becomes here (the compose service names to the
    test's processes, ``listen 8080;`` to a free loopback port). Runs in the foreground as a child of
    the test; as root its worker runs as ``nobody``, so its temporary directories are open to it.
    """

    def __init__(self, directory: Path, port: int, proc: subprocess.Popen[bytes]) -> None:
        self.directory = directory
        self.port = port
        self.proc = proc
        self.access_log = directory / "access.log"
        self.error_log = directory / "error.log"

    @property
    def address(self) -> str:
        """host:port, as a browser's address bar and a sign-in message's domain name it."""
        return f"localhost:{self.port}"

    @classmethod
    @contextlib.contextmanager
    def start(cls, site: Path, replacements: dict[str, str], *, port: int | None = None) -> Iterator[NginxServer]:
        """``port``: the one a stopped nginx had (a balancer restarted with another site); else a free one."""
        program = _program("nginx", "/usr/sbin/nginx")
        directory = Path(tempfile.mkdtemp(prefix="lunark-nginx-"))
        directory.chmod(0o755)
        for temp in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (directory / temp).mkdir(mode=0o777)
            (directory / temp).chmod(0o777)  # whatever the umask: the worker may be another user
        port = port or free_port()
        (directory / "site.conf").write_text(render_site(site.read_text(), {
            **replacements, "listen 8080;": f"listen 127.0.0.1:{port};",
        }))
        (directory / "nginx.conf").write_text(_NGINX_MAIN.format(dir=directory))
        log = directory / "stderr.log"
        proc: subprocess.Popen[bytes] | None = None
        try:
            # -e: the error log before the configuration is read (the default is under /var/log).
            argv = [program, "-p", str(directory), "-c", str(directory / "nginx.conf"),
                    "-e", str(directory / "error.log")]
            checked = subprocess.run([*argv, "-t"], capture_output=True)
            if checked.returncode != 0:
                raise RuntimeError(f"nginx -t rejected the site:\n{checked.stderr.decode(errors='replace')}")
            with open(log, "wb") as out:
                proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            _wait_for_port(port, proc, directory / "error.log", "nginx")
            yield cls(directory, port, proc)
        finally:
            _stop(proc)  # SIGTERM, a fast shutdown: open WebSockets are closed, not waited for
            shutil.rmtree(directory, ignore_errors=True)

    def served(self) -> list[tuple[str, int, str]]:
        """Every proxied request finished so far, in order: (the upstream that answered it, status,
        request line). nginx logs a request when it ends (a WebSocket when it closes); one it retried
        on another upstream (the first refused the connection) is logged with the last one."""
        lines = self.access_log.read_text().splitlines() if self.access_log.exists() else []
        requests = []
        for line in lines:
            upstreams, status, request = line.split("|", 2)
            requests.append((upstreams.split(", ")[-1], int(status), request))
        return requests
