"""A real Nginx (Debian's, with the stream module) on a temporary prefix, driven by the agent's adapter."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

from hecate_agent.targets.nginx_streams import NginxSettings, NginxStreams

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"

MAIN_CONF = """\
load_module {module};
daemon off;
worker_processes 2;
pid {prefix}/logs/nginx.pid;
error_log {prefix}/logs/error.log notice;
events {{ worker_connections 1024; }}
stream {{
    include {stream_dir}/*.conf;
}}
"""


def nginx_available() -> bool:
    return Path(NGINX).exists() and Path(STREAM_MODULE).exists()


class NginxInstance:
    def __init__(self, prefix: Path, *, include: bool = True) -> None:
        self.prefix = prefix
        (prefix / "conf").mkdir(parents=True)
        (prefix / "logs").mkdir()
        self.stream_dir = prefix / "streams.d"
        self.conf = prefix / "conf" / "nginx.conf"
        text = MAIN_CONF.format(module=STREAM_MODULE, prefix=prefix, stream_dir=self.stream_dir)
        if not include:
            text = text.replace(f"    include {self.stream_dir}/*.conf;\n", "    # no include\n")
        self.conf.write_text(text)
        base = (NGINX, "-p", str(prefix), "-c", str(self.conf))
        self.settings = NginxSettings(
            stream_dir=self.stream_dir,
            test_command=(*base, "-t", "-q"),
            reload_command=(*base, "-s", "reload"),
            dump_command=(*base, "-T", "-q"),
            pid_file=prefix / "logs" / "nginx.pid",
            error_log=prefix / "logs" / "error.log",
        )
        self.adapter = NginxStreams(self.settings)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [NGINX, "-p", str(self.prefix), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        from tests.support.servers import wait_until

        if not wait_until(lambda: self.settings.pid_file.exists() and bool(self.adapter.workers(self.process.pid))):
            raise RuntimeError(f"nginx did not start: {self.process.stderr.read() if self.process.stderr else ''}")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGQUIT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
