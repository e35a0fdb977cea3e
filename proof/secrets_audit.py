"""Proof: no secret of the product shows up in anything it writes or serves during a whole run: not in a log, a page, a
metrics output, a capture, a command's output or the bridge's outbox.

How: the whole product as `make demo` runs it, but with distinctive secrets: the real CRM (`callcenter serve`, on a
SQLite file with the demo data), the real bridge (`callcenter bridge run`, extended and external logs on) and the
simulated PBX (its AMI on a loopback port). The secrets: the AMI password (pbxsim's user, the bridge's `secret_file`),
the bridge secret (made by `callcenter add-bridge`), the CRM's Django SECRET_KEY, the three users' passwords (set to
fresh random ones), and the one-time token of the bridge page's login link. Then, while calls flow: good and bad CRM
logins (a wrong password, another user's password), the Call Center screen and every admin list and change page, dial
and busy commands (CRM -> bridge -> AMI), the bridge's login link, its settings, errors and dead-letter pages, a bad
and a good login there (the bridge secret typed), the used link again, /metrics and /health of both, a `callcenter
bridge capture` of the AMI port, `callcenter bridge check` and `errors`. Every file the run wrote (CRM and bridge
output, the bridge's log files, its outbox, the capture, each command's stdout and stderr, every page and metrics
answer saved as fetched, and the in-process simulator's log) is searched for each secret in plain text, URL-encoded
(%XX and +) and base64 (standard and URL-safe, at each of the three byte alignments, so a secret inside a longer
encoded text is found too).

Not searched, and why: the files that hold a secret on purpose (the AMI and bridge secret files; the bridge's settings
file only names them, and is searched) and the login-link command's own stdout (printing the link is its job). The
CRM's database file is searched separately: it must hold the bridge secret (the CRM signs and checks with it, so it is
stored as it is) and no other secret; users' passwords are stored as salted hashes, never in plain or encoded form.

Figure: secrets x forms x files searched, and the occurrences found: PASS at 0 (and the database holding only the
bridge secret). Unit-level: tests/test_secrets_scanner.py plants a secret in each form and the scanner finds it.
"""

from __future__ import annotations

import argparse
import base64
import logging
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import quote, quote_plus

NAME = "secrets_audit"


# ---- the scanner ----------------------------------------------------------------------------------------------------


def needles(secret: str) -> dict[str, bytes]:
    """The forms a secret could take in a file: plain, URL-encoded, and base64 (standard and URL-safe) at each byte
    alignment (only the characters that depend on the secret alone, so an encoded longer text holding it matches)."""
    raw = secret.encode("utf-8")
    found = {"plain": raw, "url-encoded": quote(secret, safe="").encode(), "form-encoded": quote_plus(secret).encode()}
    for offset in range(3):
        for label, encode in (("base64", base64.b64encode), ("base64url", base64.urlsafe_b64encode)):
            encoded = encode(b"\0" * offset + raw)
            start = 4 if offset else 0
            end = len(encoded) - 4 if len(encoded) - start > 8 else len(encoded)
            found[f"{label}+{offset}"] = encoded[start:end].rstrip(b"=")
    unique: dict[str, bytes] = {}
    for label, needle in found.items():
        if needle and needle not in unique.values():
            unique[label] = needle
    return unique


def scan(files: Iterable[Path], named_secrets: dict[str, str]) -> list[tuple[str, str, Path, int]]:
    """Every (secret name, form, file, occurrences) with at least one occurrence."""
    forms = {name: needles(secret) for name, secret in named_secrets.items()}
    hits = []
    for path in files:
        data = path.read_bytes()
        for name, by_form in forms.items():
            for form, needle in by_form.items():
                count = data.count(needle)
                if count:
                    hits.append((name, form, path, count))
    return hits


def files_under(root: Path, skip: Sequence[Path] = ()) -> list[Path]:
    skipped = {path.resolve() for path in skip}
    return sorted(path for path in root.rglob("*") if path.is_file() and path.resolve() not in skipped)


# ---- the run -------------------------------------------------------------------------------------------------------


class Saver:
    """Keeps every page, metrics answer and command output of the run as a file, to be searched."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.count = 0

    def save(self, label: str, data: bytes) -> Path:
        self.count += 1
        path = self.directory / f"{self.count:04d}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', label)[:80]}"
        path.write_bytes(data)
        return path

    def response(self, label: str, response: object) -> object:
        # What the product answered: status, headers and body (not the URL asked for: a login link is ours to know).
        headers = "".join(f"{k}: {v}\n" for k, v in response.headers.items())  # type: ignore[attr-defined]
        self.save(label, f"{response.status_code}\n{headers}\n".encode()  # type: ignore[attr-defined]
                  + response.content)  # type: ignore[attr-defined]
        return response


def run_command(saver: Saver, label: str, args: list[str], env: dict[str, str] | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    from proof._stack import ROOT

    done = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, timeout=timeout, check=False)  # noqa: S603
    saver.save(f"{label}.stdout", done.stdout)
    saver.save(f"{label}.stderr", done.stderr)
    return done


def _password_hash(password: str) -> str:
    from django.conf import settings

    if not settings.configured:
        settings.configure()
    from django.contrib.auth.hashers import make_password

    return make_password(password)


def crm_session(saver: Saver, url: str, username: str, password: str, *, expect_ok: bool) -> object:
    import httpx

    client = httpx.Client(base_url=url, follow_redirects=False, timeout=60, trust_env=False)
    saver.response(f"crm-login-page-{username}", client.get("/login/"))
    answer = client.post("/login/", data={"username": username, "password": password,
                                          "csrfmiddlewaretoken": client.cookies["csrftoken"]},
                         headers={"Referer": f"{url}/login/"})
    saver.response(f"crm-login-{username}-{'good' if expect_ok else 'bad'}", answer)
    if (answer.status_code == 302) != expect_ok:
        raise RuntimeError(f"the CRM login of {username} answered {answer.status_code}, expected "
                           f"{'a redirect' if expect_ok else 'a refusal'}")
    return client


def drive_crm(saver: Saver, url: str, passwords: dict[str, str]) -> None:
    """Bad logins (a wrong password, another user's password), good ones, the screen, the admin's pages, commands."""
    crm_session(saver, url, "alice", "not-" + passwords["alice"], expect_ok=False)
    crm_session(saver, url, "bob", passwords["alice"], expect_ok=False)
    crm_session(saver, url, "nobody", passwords["carol"], expect_ok=False)
    agent = crm_session(saver, url, "alice", passwords["alice"], expect_ok=True)
    admin = crm_session(saver, url, "carol", passwords["carol"], expect_ok=True)
    for path in ("/", "/callcenter/", "/callcenter/calls/", "/callcenter/status/", "/resources/me/options/",
                 "/callcenter/contacts/?q=a", "/bridge/v1/health"):
        saver.response(f"crm-agent{path}", agent.get(path))  # type: ignore[attr-defined]
    htmx = {"HX-Request": "true", "X-CSRFToken": agent.cookies["csrftoken"],  # type: ignore[attr-defined]
            "Referer": f"{url}/callcenter/"}
    for path, data in (("/callcenter/busy/", {"busy": "on"}), ("/callcenter/busy/", {"busy": "off"}),
                       ("/callcenter/dial/", {"number": "2101234567"}), ("/callcenter/hangup/", {}),
                       ("/callcenter/dial/", {"number": "<script>"})):
        saver.response(f"crm-command{path}", agent.post(path, data=data, headers=htmx))  # type: ignore[attr-defined]
    index = admin.get("/admin/")  # type: ignore[attr-defined]
    saver.response("crm-admin-index", index)
    lists = sorted(set(re.findall(r'href="(/admin/[a-z_]+/[a-z_]+/)"', index.text)))
    for path in ["/", "/callcenter/", "/resources/", "/settings/call-center/", *lists]:
        page = admin.get(path)  # type: ignore[attr-defined]
        saver.response(f"crm-admin{path}", page)
        if path in lists:
            for change in sorted(set(re.findall(rf'href="({re.escape(path)}\d+/change/)', page.text)))[:3]:
                saver.response(f"crm-admin{change}", admin.get(change))  # type: ignore[attr-defined]


def drive_bridge_page(saver: Saver, bridge: object, bridge_secret: str, env: dict[str, str]) -> str:
    """The login link (its token returned), the settings pages, /metrics and /health, a bad and a good login by the
    secret, and the used link again."""
    import httpx

    from proof._stack import CALLCENTER

    done = subprocess.run([*CALLCENTER, "bridge", "login-link", "--config", str(bridge.config)],  # type: ignore[attr-defined]  # noqa: S603
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    saver.save("bridge-login-link.stderr", done.stderr.encode())
    link = done.stdout.strip()
    match = re.search(r"[?&]token=([^&\s]+)", link)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"callcenter bridge login-link failed ({done.returncode}): {done.stderr}")
    base = f"http://127.0.0.1:{bridge.port}"  # type: ignore[attr-defined]
    client = httpx.Client(base_url=base, follow_redirects=False, timeout=60, trust_env=False)
    saver.response("bridge-login-link-open", client.get(link.removeprefix(base)))
    for path in ("/", "/settings", "/settings?system=asterisk", "/errors", "/dead-letters", "/metrics", "/health"):
        saver.response(f"bridge{path}", client.get(path))
    for attempt, token in (("bad", "wrong-" + bridge_secret[:6]), ("good", bridge_secret)):
        fresh = httpx.Client(base_url=base, follow_redirects=False, timeout=60, trust_env=False)
        form = fresh.get("/login")
        saver.response(f"bridge-login-form-{attempt}", form)
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        answer = fresh.post("/login", data={"csrf": csrf.group(1) if csrf else "", "token": token},
                            headers={"Origin": base})
        saver.response(f"bridge-login-{attempt}", answer)
        if (answer.status_code == 303 or answer.status_code == 302) != (attempt == "good"):
            raise RuntimeError(f"the bridge page's {attempt} login answered {answer.status_code}")
    saver.response("bridge-login-link-again", client.get(link.removeprefix(base)))
    return match.group(1)


def run(options: argparse.Namespace, results: object, workdir: Path) -> None:
    from proof._stack import (
        CALLCENTER,
        SECRET_KEY,
        BridgeProcess,
        CrmServer,
        PbxThread,
        crm_environment,
        database,
        log,
        prepare_crm,
        settle,
    )
    from proof.ring_group_race import execute

    run_dir = workdir / "run"
    run_dir.mkdir()
    saver = Saver(run_dir / "fetched")
    # The simulator runs in this process: its log (the product's loggers, not this script's HTTP client) to a file.
    handler = logging.FileHandler(run_dir / "pbxsim-in-process.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    product_log = logging.getLogger("callcenter")
    product_log.addHandler(handler)
    product_log.setLevel(logging.DEBUG)
    ami_secret = "ami-pw-" + secrets.token_urlsafe(18)
    passwords = {user: f"{user}-pw-" + secrets.token_urlsafe(12) for user in ("alice", "bob", "carol")}
    with database("sqlite", run_dir) as db:
        secret_file = prepare_crm(db, run_dir)
        bridge_secret = secret_file.read_text(encoding="utf-8").strip()
        for user, password in passwords.items():
            execute(db, f"UPDATE auth_user SET password = '{_password_hash(password)}' WHERE username = '{user}'")
        crm = CrmServer(db, run_dir)
        crm.env["CALLCENTER_LOG_LEVEL"] = "DEBUG"  # everything the CRM would ever log
        pbx = PbxThread(["100", "101", "199"], ami_secret, ring=0.5)
        bridge = BridgeProcess(run_dir, crm_port=crm.port, secret_file=secret_file, ami_port=pbx.port,
                               ami_secret=ami_secret)
        bridge.config.write_text(bridge.config.read_text().replace('"extended_log" = false', "")
                                 .replace("extended_log = false", "extended_log = true"))
        execute(db, f"UPDATE resources_resource SET service_address = '127.0.0.1', service_port = {bridge.port}, "
                    f"internal_address = '127.0.0.1', internal_port = {crm.port}")
        crm.start()
        bridge.start()
        try:
            pbx.set_rate(4.0)
            log("calls flowing; driving the CRM")
            drive_crm(saver, crm.url, passwords)
            log("the bridge's page")
            token = drive_bridge_page(saver, bridge, bridge_secret, crm_environment(db))
            log("a capture of the AMI port")
            capture_file = run_dir / "ami-capture.raw"
            run_command(saver, "bridge-capture", [*CALLCENTER, "bridge", "capture", "--host", "127.0.0.1", "--port",
                                                  str(pbx.port), "--user", "crm", "--secret-file",
                                                  str(run_dir / "ami.secret"), str(capture_file), "--seconds", "4"])
            if not capture_file.exists() or capture_file.stat().st_size == 0:
                raise RuntimeError("the capture recorded nothing")
            time.sleep(2 if options.quick else 10)
            pbx.set_rate(0)
            settle(pbx, bridge, db)
            saver.response("bridge-metrics-end", _get(f"http://127.0.0.1:{bridge.port}/metrics"))
            for command in ("check", "errors"):  # the settings as printed (secrets as ***), the error log
                done = run_command(saver, f"bridge-{command}", [*CALLCENTER, "bridge", command, "--config",
                                                                 str(bridge.config)])
                if done.returncode != 0:
                    raise RuntimeError(f"callcenter bridge {command} failed: {done.stderr[-500:]!r}")
            calls = db.query("SELECT count(*) FROM calls_call")[0][0]
            log(f"{calls} calls stored")
        finally:
            bridge.stop()
            crm.stop()
            pbx.close()
            product_log.removeHandler(handler)
            handler.close()
    named = {"AMI password": ami_secret, "bridge secret": bridge_secret, "Django SECRET_KEY": SECRET_KEY,
             "bridge page login-link token": token, **{f"{user}'s password": pw for user, pw in passwords.items()}}
    database_files = sorted(run_dir.glob("crm.sqlite3*"))
    on_purpose = [secret_file, run_dir / "ami.secret", *database_files]
    searched = files_under(run_dir, skip=on_purpose)
    hits = scan(searched, named)
    for name, form, path, count in hits:
        log(f"FOUND {name} ({form}) {count}x in {path.relative_to(run_dir)}")
    forms = sum(len(needles(secret)) for secret in named.values())
    results.add(f"{len(named)} secrets ({', '.join(named)}) in the logs, pages, metrics, capture, command outputs "  # type: ignore[attr-defined]
                "and outbox of a whole run",
                f"{sum(hit[3] for hit in hits)} occurrences in {len(searched)} files x {forms} forms "
                f"(plain, URL-encoded, base64 x 3 alignments)", not hits)
    in_database = {(name, form) for name, form, _path, _count in scan(database_files, named)}
    unexpected = sorted({name for name, _form in in_database} - {"bridge secret"})
    results.add("the CRM's database holds the bridge secret (it signs with it) and no other secret; passwords only "  # type: ignore[attr-defined]
                "as salted hashes",
                f"bridge secret stored: {'yes' if ('bridge secret', 'plain') in in_database else 'no'}; other "
                f"secrets found: {', '.join(unexpected) or 'none'}", not unexpected)


def _get(url: str) -> object:
    import httpx

    return httpx.get(url, timeout=30, trust_env=False)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # --quick and --keep only


def main(argv: Sequence[str] | None = None) -> int:
    from proof._stack import run_proof_module

    return run_proof_module(NAME, __doc__ or "", add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
