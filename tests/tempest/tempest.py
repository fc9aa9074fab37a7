"""Run OpenStack Tempest (in .venv-tempest, made by scripts/tempest-dev) and read its results.

``init`` makes a fresh workspace; ``write_conf`` its tempest.conf for a Glance-only cloud
(dynamic credentials, no networks, identity v3, glance the only service, Glance's image
features); ``run`` runs ``tempest run`` there and returns every test id's outcome with its
traceback or skip reason, read from the run's subunit stream.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("TEMPEST_DEV_VENV", ROOT / ".venv-tempest"))
RUN_TIMEOUT = 1800  # seconds; a base run takes 3-4 minutes on two cores

# Reads a subunit v2 stream on stdin, prints {test id: {status, reason, traceback}} as JSON.
# Runs in .venv-tempest, whose python-subunit and testtools ferry's .venv does not have.
_PARSE_SUBUNIT = """
import json, sys
import subunit, testtools
tests = {}
def done(test):
    details = test["details"]
    text = {k: details[k].as_text() for k in ("traceback", "reason") if k in details}
    tests[test["id"]] = {"status": test["status"], **text}
result = testtools.StreamToDict(done)
result.startTestRun()
subunit.ByteStreamToStreamResult(sys.stdin.buffer, non_subunit_name="stdout").run(result)
result.stopTestRun()
json.dump(tests, sys.stdout)
"""


@dataclass
class Outcome:
    """One test id's result: ``success``, ``fail``, ``skip`` (stestr's words) and why."""

    status: str
    reason: str = ""
    traceback: str = ""


@dataclass
class Results:
    tests: dict[str, Outcome] = field(default_factory=dict)
    workspace: Path | None = None

    def ids(self, status: str) -> list[str]:
        return sorted(t for t, o in self.tests.items() if o.status == status)

    @property
    def passed(self) -> list[str]:
        return self.ids("success")

    @property
    def failed(self) -> list[str]:
        """Failed tests, and failed class fixtures (``setUpClass (...)``: none of the class's
        tests ran), and unexpected successes."""
        return sorted(
            t for t, o in self.tests.items() if o.status in ("fail", "uxsuccess", "inprogress")
        )

    @property
    def skipped(self) -> list[str]:
        return self.ids("skip")

    def summary(self) -> str:
        counts = Counter(o.status for o in self.tests.values())
        line = (
            f"tempest: {len(self.passed)} passed, {len(self.failed)} failed, "
            f"{len(self.skipped)} skipped"
        )
        others = {s: n for s, n in counts.items() if s not in ("success", "fail", "skip")}
        return line + (f" (other: {others})" if others else "")

    def report(self) -> str:
        """The summary, then every failure with its traceback's gist, then the skips."""
        out = [self.summary(), f"workspace: {self.workspace}", ""]
        for test in self.failed:
            out.append(f"FAILED {test}")
            out += ["    " + ln for ln in gist(self.tests[test].traceback)]
            out.append("")
        for test in self.skipped:
            out.append(f"skipped {test}: {self.tests[test].reason.strip()[:200]}")
        return "\n".join(out)


def gist(traceback: str, tail: int = 6) -> list[str]:
    """A traceback's frames in Tempest's tests (where in the test it failed) and its last
    lines (the error, and what the server answered); the client library's frames go."""
    lines = traceback.rstrip().splitlines()
    keep = []
    for i, line in enumerate(lines[:-tail]):
        if line.lstrip().startswith("File ") and "/tempest/api/" in line:
            keep += lines[i : i + 2]
    return [*keep, "...", *lines[-tail:]] if keep else lines[-tail:]


def installed() -> bool:
    return (VENV / "bin" / "tempest").exists()


def write_conf(
    path: Path,
    *,
    keystone_url: str,
    admin_password: str,
    http_image: str,
    http_qcow2_image: str,
    extended: bool,
    lock_path: Path,
    log_file: Path,
) -> None:
    """tempest.conf for ferry's central behind Keystone. ``extended`` turns on what ferry does
    beyond Glance's base set: an http store (named ``web``), show_multiple_locations, store
    weights and the image cache."""
    on = "True"
    extra = "True" if extended else "False"
    conf = f"""\
[DEFAULT]
log_file = {log_file}
use_stderr = False

[oslo_concurrency]
lock_path = {lock_path}

[auth]
use_dynamic_credentials = True
create_isolated_networks = False
admin_username = admin
admin_password = {admin_password}
admin_project_name = admin
admin_domain_name = Default
default_credentials_domain_name = Default

[identity]
uri_v3 = {keystone_url}
auth_version = v3
region = RegionOne
v3_endpoint_type = public

[identity-feature-enabled]
api_v2 = False

[service_available]
glance = True
cinder = False
neutron = False
nova = False
swift = False
horizon = False

[image]
region = RegionOne
endpoint_type = public
http_image = {http_image}
http_qcow2_image = {http_qcow2_image}
build_timeout = 120
image_caching_enabled = {extra}

[image-feature-enabled]
api_v2 = True
import_image = {on}
os_glance_reserved = {on}
do_secure_hash = {on}
image_format_enforcement = {on}
manage_locations = {extra}
http_store_enabled = {extra}
store_weight_enabled = {extra}

[enforce_scope]
glance = True
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)  # holds the Keystone admin's password
    path.write_text(conf)


def init(workspace: Path) -> Path:
    """A fresh workspace (a fresh .stestr: stestr would balance workers by an earlier run's
    timings); returns where its tempest.conf goes."""
    if workspace.exists():
        shutil.rmtree(workspace)
    workspace.parent.mkdir(parents=True, exist_ok=True)
    # --workspace-path: the default registry (~/.tempest/workspace.yaml) refuses a second
    # workspace of the same name.
    registry = workspace.parent / f"{workspace.name}-workspaces.yaml"
    subprocess.run(
        [str(VENV / "bin" / "tempest"), "init", "--workspace-path", str(registry), str(workspace)],
        check=True, capture_output=True, timeout=120, env=_env(),
    )  # fmt: skip
    return workspace / "etc" / "tempest.conf"


def _env() -> dict[str, str]:
    """Tempest reads ./etc/tempest.conf of its workspace, and no client settings of ours."""
    drop = ("TEMPEST_CONFIG", "OS_")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def run(workspace: Path, regex: str, concurrency: int = 2) -> Results:
    """``tempest run --regex REGEX`` in ``workspace`` and its results, test by test."""
    bin_dir = VENV / "bin"
    log = workspace / "tempest-run.log"
    with open(log, "wb") as out:
        subprocess.run(
            [str(bin_dir / "tempest"), "run", "--regex", regex,
             "--concurrency", str(concurrency)],
            cwd=workspace, stdout=out, stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT, env=_env(),
        )  # fmt: skip
    stream = subprocess.run(
        [str(bin_dir / "stestr"), "last", "--subunit"],
        cwd=workspace, capture_output=True, timeout=300, env=_env(),
    )  # fmt: skip
    if not stream.stdout:
        raise RuntimeError(f"tempest ran no test; see {log}:\n{log.read_text()[-5000:]}")
    parsed = subprocess.run(
        [str(bin_dir / "python"), "-c", _PARSE_SUBUNIT],
        input=stream.stdout, capture_output=True, check=True, timeout=300,
    )  # fmt: skip
    tests = {
        test: Outcome(o["status"], o.get("reason", ""), o.get("traceback", ""))
        for test, o in json.loads(parsed.stdout).items()
    }
    return Results(tests, workspace)
