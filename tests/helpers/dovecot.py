"""A real Dovecot IMAP server in a temp dir for the email_imap tests (no systemd; as root it runs as nobody).
How to install it: tests/README.md."""

from __future__ import annotations

import grp
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
TEMPLATE = Path(__file__).parent.parent / "imap" / "dovecot.conf.in"
AS_ROOT = os.geteuid() == 0
USERS, PASSWORD = 500, "secret"


class Dovecot:
    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="dovecot-"))
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.host, self.port = s.getsockname()
        s.close()
        self.pw = pwd.getpwnam("nobody") if AS_ROOT else pwd.getpwuid(os.geteuid())
        for d in ("run", "state", "home"):
            (self.root / d).mkdir()
        (self.root / "passwd").write_text("".join(f"leads{n}@example.test:{{PLAIN}}{PASSWORD}\n"
                                                  for n in range(1, USERS + 1)))
        conf = TEMPLATE.read_text()
        for k, v in dict(ROOT=self.root, USER=self.pw.pw_name, GROUP=grp.getgrgid(self.pw.pw_gid).gr_name,
                         UID=self.pw.pw_uid, GID=self.pw.pw_gid, PORT=self.port).items():
            conf = conf.replace(f"@{k}@", str(v))
        self.conf, self.users, self.proc = self.root / "dovecot.conf", itertools.count(1), None
        self.conf.write_text(conf)
        self.chown()

    def chown(self):
        for p in [self.root, *self.root.rglob("*")] if AS_ROOT else []:
            os.chown(p, self.pw.pw_uid, self.pw.pw_gid)

    def start(self, timeout: float = 10.0) -> Dovecot:
        drop = dict(user=self.pw.pw_uid, group=self.pw.pw_gid, extra_groups=[]) if AS_ROOT else {}
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", str(self.conf)], start_new_session=True, **drop)
        end = time.monotonic() + timeout
        while time.monotonic() < end and self.proc.poll() is None:
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as s:
                    if s.recv(64).startswith(b"* OK"):
                        return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"dovecot did not start: see {self.root}/dovecot.log")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)

    def add_user(self) -> dict:
        # The users exist before the server starts: Dovecot may not notice a passwd-file changed twice within a
        # second (seen here: every second new user refused), so none is added while it runs.
        n = next(self.users)
        if n > USERS:
            raise RuntimeError(f"only {USERS} test mailboxes were created")
        return dict(host=self.host, port=self.port, user=f"leads{n}@example.test", password=PASSWORD)

    def deliver(self, user: str, raw: bytes, folder: str = "INBOX") -> None:
        md = self.root / "home" / user.split("@")[0] / "Maildir" / ("" if folder == "INBOX" else "." + folder)
        for sub in ("tmp", "new", "cur"):
            (md / sub).mkdir(parents=True, exist_ok=True)
        tmp = md / "tmp" / f"{time.time_ns()}.P{os.getpid()}.test"
        tmp.write_bytes(raw)
        tmp.chmod(0o644)
        self.chown()
        tmp.rename(md / "new" / tmp.name)

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
