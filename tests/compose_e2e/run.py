"""`make compose-e2e`: the compose stack built, started, faulted and run end to end on a real Docker engine,
then a second host that runs only gpu-queue workers. Prints each step's seconds and the image sizes.

Not part of `make test` (a first build downloads about 3.3 GB of CUDA torch and the run takes 30 minutes on
two cores). It installs Debian's docker.io where no engine answers and apt-get can, starts the engine and
stops it afterwards when it started it, and builds local stand-ins for the official base images
(standins/build.sh): no image registry is reachable from the development machines.

The stack runs as the compose project `fracatlas-e2e` on a data root of its own, so that a user's stack and
data are never touched. The second host is a second compose project whose containers sit on a Docker network
of their own and reach the first host only through the addresses the first host publishes, as a second
server would; both mount the same data root, as over NFS. A third host with a data root of its own is
refused by name.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT))  # run as a script: the project's packages from this checkout

from services.docker.stack import compose_command, run_compose  # noqa: E402
from services.launcher import service_states  # noqa: E402
from shared.basic_auth import basic_auth_header  # noqa: E402
from shared.settings import Settings  # noqa: E402

PY = sys.executable
PROJECT_NAME = "fracatlas-e2e"
HOSTS_NETWORK = "fracatlas-e2e-hosts"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
RUN_TIMEOUT_S = 3600
IMAGES = (
    "fracatlas-jobs:0.1.0",
    "fracatlas-jobs-mlflow:0.1.0",
    "fracatlas-jobs-pacs:0.1.0",
    "fracatlas-jobs-viewer:0.1.0",
)
VOLUMES = ("redis-data", "postgres-data")

timings: list[tuple[str, float]] = []


def step(name: str, action: Callable[[], object]) -> object:
    print(f"--- {name}", flush=True)
    started = time.monotonic()
    result = action()
    timings.append((name, time.monotonic() - started))
    print(f"    {name}: {timings[-1][1]:.1f} s", flush=True)
    return result


def sh(*command: str, env: dict[str, str] | None = None, check: bool = True, capture: bool = False) -> str:
    result = subprocess.run(command, cwd=PROJECT, env=env, text=True, capture_output=capture)
    if check and result.returncode != 0:
        output = f"{result.stdout or ''}{result.stderr or ''}"
        raise SystemExit(f"failed ({result.returncode}): {' '.join(command)}\n{output}")
    return result.stdout if capture else ""


def engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def start_engine() -> subprocess.Popen | None:
    """None where an engine answers already; else the dockerd this run started (stopped at the end)."""
    if engine_answers():
        return None
    if shutil.which("dockerd") is None:
        if shutil.which("apt-get") is None:
            raise SystemExit("no Docker engine answers and apt-get is not here to install docker.io")
        sh("apt-get", "update", "-q")
        sh("apt-get", "install", "-y", "-q", "--no-install-recommends", "docker.io", "iptables", "debootstrap")
    log = open(tempfile.gettempdir() + "/fracatlas-e2e-dockerd.log", "w")  # noqa: SIM115 - kept open for dockerd
    daemon = subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while not engine_answers():
        if time.monotonic() > deadline or daemon.poll() is not None:
            raise SystemExit(f"dockerd did not start; see {log.name}")
        time.sleep(1)
    return daemon


class Stack:
    """The first host: the project's own launcher (`make up`, `make dispatch`, `make down`) on an isolated
    data root and compose project, and its compose helpers (services/docker/stack.py) for the faults."""

    def __init__(self, data_root: Path, publish: str) -> None:
        self.data_root = data_root
        self.publish = publish
        # This process's environment too: the compose helpers pass it on to compose.
        os.environ.update({"DATA_ROOT": str(data_root), "COMPOSE_PROJECT_NAME": PROJECT_NAME})
        if HOST_CA_BUNDLE.is_file():  # this machine's TLS-intercepting proxy's CA is in the host's bundle
            os.environ["BUILD_CA_BUNDLE"] = str(HOST_CA_BUNDLE)
        self.env = dict(os.environ)
        self.settings = Settings()

    def launcher(self, *args: str, check: bool = True, capture: bool = False) -> str:
        return sh(PY, "-m", "services.launcher", *args, env=self.env, check=check, capture=capture)

    def up(self) -> None:
        self.launcher("up", "--publish", self.publish, "--pacs")

    def compose(self, *args: str, capture: bool = False, check: bool = True) -> str:
        result = run_compose(self.settings, *args, check=False, capture=capture)
        if check and result.returncode != 0:
            raise SystemExit(f"failed ({result.returncode}): compose {' '.join(args)}\n{result.stdout}{result.stderr}")
        return result.stdout if capture else ""

    @property
    def secrets_file(self) -> Path:
        return self.data_root / "compose" / "secrets.env"

    def secret(self, name: str) -> str:
        for line in self.secrets_file.read_text().splitlines():
            key, _, value = line.partition("=")
            if key == name:
                return value
        raise KeyError(name)

    def dispatch(self, *args: str) -> dict:
        """`dispatch ... --json` inside the running flower container (same image, the stack's settings)."""
        out = self.compose("exec", "-T", "flower", "dispatch", *args, "--json", capture=True)
        return json.loads(out)

    def run(self, ref: str) -> dict:
        return self.dispatch("show", ref)

    def container_pid(self, service: str) -> int:
        container = self.compose("ps", "-q", service, capture=True).strip()
        return int(sh("docker", "inspect", "-f", "{{.State.Pid}}", container, capture=True).strip())

    def health(self) -> dict[str, str]:
        return service_states(self.settings)


def wait_for(what: str, condition: Callable[[], object], timeout_s: float, every_s: float = 3.0) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            found = condition()
        except (SystemExit, json.JSONDecodeError, KeyError):
            found = None  # a container restarting, a service not answering yet
        if found:
            return found
        time.sleep(every_s)
    raise SystemExit(f"timed out after {timeout_s:.0f} s waiting for {what}")


def running_job(stack: Stack, ref: str, kind: str) -> dict | None:
    run = stack.run(ref)
    return next((job for job in run["jobs"] if job["kind"] == kind and job["state"] == "running"), None)


def mlflow_api(stack: Stack, path: str, body: dict | None = None) -> dict:
    """MLflow's REST API on the first host, as its admin."""
    request = urllib.request.Request(
        f"http://127.0.0.1:5000/api/2.0/mlflow/{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers={
            "Content-Type": "application/json",
            **basic_auth_header(f"fracatlas:{stack.secret('MLFLOW_ADMIN_PASSWORD')}"),
        },
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


def fold_curve_in_mlflow(stack: Stack, run: dict, fold_name: str) -> list[float]:
    """The train_loss curve of a run's job in MLflow, as the first host's server holds it."""
    parent = run["artifacts"]["mlflow"].rsplit("/runs/", 1)[1]
    experiment = mlflow_api(stack, f"runs/get?run_id={parent}")["run"]["info"]["experiment_id"]
    found = mlflow_api(
        stack,
        "runs/search",
        {"experiment_ids": [experiment], "filter": f"tags.mlflow.parentRunId = '{parent}'"},
    )
    job = next((r for r in found.get("runs", []) if r["info"].get("run_name") == fold_name), None)
    if job is None:
        return []
    history = mlflow_api(stack, f"metrics/get-history?run_id={job['info']['run_id']}&metric_key=train_loss")
    return [point["value"] for point in history.get("metrics", [])]


def status_of(url: str, user: str | None = None, password: str | None = None) -> int:
    request = urllib.request.Request(url, headers=basic_auth_header(f"{user}:{password}") if user is not None else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def check_auth(stack: Stack) -> None:
    flower_user, _, flower_password = stack.secret("FLOWER_BASIC_AUTH").partition(":")
    mlflow = "http://127.0.0.1:5000/api/2.0/mlflow/experiments/search?max_results=1"
    seen = {
        "flower without credentials": status_of("http://127.0.0.1:5555/"),
        "flower with credentials": status_of("http://127.0.0.1:5555/", flower_user, flower_password),
        "mlflow without credentials": status_of(mlflow),
        "mlflow with credentials": status_of(mlflow, "fracatlas", stack.secret("MLFLOW_ADMIN_PASSWORD")),
    }
    print("    " + ", ".join(f"{name}: {code}" for name, code in seen.items()))
    expected = [401, 200, 401, 200]
    if list(seen.values()) != expected:
        raise SystemExit(f"authentication: expected {expected}, got {seen}")


def check_pacs_and_viewer(stack: Stack) -> None:
    """PACS=1 in compose: a DICOM radiograph of a made-up patient uploaded with `dispatch pacs upload` from the
    data root; the viewer (another container) answers its link and the study through /dicom-web on its origin,
    behind the PACS's login, published on this host's 127.0.0.1 and on the PUBLISH address."""
    sys.path.insert(0, str(PROJECT / "tests"))
    import numpy as np
    from dicom_files import dicom_from

    server = json.loads((stack.data_root / "stack" / "pacs_server").read_text())
    user, password = server["user"], server["password"]
    folder = stack.data_root / "e2e-dicom"
    folder.mkdir(exist_ok=True)
    dicom_from(np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1)), folder / "dx.dcm")
    for path in (folder, folder / "dx.dcm"):
        os.chown(path, 1000, 1000)
    uploaded = stack.dispatch("pacs", "upload", "/data/e2e-dicom")
    [link] = uploaded["viewer"]
    viewer = f"http://{stack.publish}:3000"
    seen = {
        "viewer without login": status_of("http://127.0.0.1:3000/"),
        "viewer with login": status_of("http://127.0.0.1:3000/", user, password),
        "its link, on the PUBLISH address": status_of(link, user, password),
        "orthanc with a wrong login": status_of("http://127.0.0.1:8042/dicom-web/studies", user, "wrong"),
    }
    print(f"    uploaded {uploaded['instances']} instance(s); link {link.split('/studies/')[0]}/studies/...")
    print("    " + ", ".join(f"{name}: {code}" for name, code in seen.items()))
    if not link.startswith(f"{viewer}/studies/") or list(seen.values()) != [401, 200, 200, 401]:
        raise SystemExit(f"PACS and viewer: expected a link under {viewer}/studies/ and 401, 200, 200, 401: {seen}")
    request = urllib.request.Request(
        "http://127.0.0.1:3000/dicom-web/studies", headers=basic_auth_header(f"{user}:{password}")
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        studies = json.load(answer)
    if len(studies) != 1:
        raise SystemExit(f"the viewer's /dicom-web lists {len(studies)} studies, not the one uploaded")


def check_health(stack: Stack) -> None:
    states = stack.health()
    print("    " + ", ".join(f"{name} {state}" for name, state in sorted(states.items())))
    unhealthy = {name: s for name, s in states.items() if s not in ("healthy", "exited") and name != "dispatch"}
    if unhealthy:
        raise SystemExit(f"not healthy: {unhealthy}")


def demo_with_faults(stack: Stack) -> str:
    """The demo through the stack, with a worker stopped, Redis killed, PostgreSQL restarted and the whole
    stack taken down and up while it runs; returns the run's ref."""
    ref = stack.dispatch("demo")["ref"]
    print(f"    demo run {ref}")
    job = wait_for(
        "a cpu-queue job running",
        lambda: (
            running_job(stack, ref, "convert")
            or running_job(stack, ref, "plan")
            or running_job(stack, ref, "preprocess")
        ),
        600,
        1,
    )
    step(
        f"cpu-worker stopped during {job['name']}",
        lambda: (stack.compose("stop", "cpu-worker"), time.sleep(5), stack.compose("start", "cpu-worker")),
    )
    fold = wait_for("a fold running", lambda: running_job(stack, ref, "fold"), 1500, 2)
    pid = stack.container_pid("redis")
    step(
        f"redis kill -9 during {fold['name']}",
        lambda: (
            sh("kill", "-9", str(pid)),
            wait_for("redis back", lambda: stack.health().get("redis") == "healthy", 120, 1),
        ),
    )
    step("postgres restarted", lambda: stack.compose("restart", "postgres"))
    wait_for(
        "a later job running",
        lambda: (
            running_job(stack, ref, "fold")
            or running_job(stack, ref, "evaluate")
            or running_job(stack, ref, "classifier")
            or running_job(stack, ref, "channel")
        ),
        900,
        2,
    )
    step("make down / make up mid-run", lambda: (stack.launcher("down"), stack.up()))
    final = wait_for(
        f"{ref} to end",
        lambda: (lambda r: r if r["state"] not in ("queued", "running") else None)(stack.run(ref)),
        RUN_TIMEOUT_S,
        10,
    )
    if final["state"] != "succeeded":
        raise SystemExit(f"{ref} ended {final['state']}: {final.get('error')}")
    names = [job["name"] for job in final["jobs"]]
    if len(names) != len(set(names)) or any(job["state"] != "succeeded" for job in final["jobs"]):
        raise SystemExit(f"{ref}: every job once and succeeded, got {[(j['name'], j['state']) for j in final['jobs']]}")
    print("    " + ", ".join(f"{job['name']} (attempt {job['attempt']})" for job in final["jobs"]))
    print("    metrics: " + json.dumps({k: v for k, v in final["metrics"].items() if "dice" in k.lower()})[:400])
    return ref


def network_gateway(name: str) -> str:
    if subprocess.run(["docker", "network", "inspect", name], capture_output=True).returncode != 0:
        sh("docker", "network", "create", name, capture=True)
    return sh("docker", "network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", name, capture=True).strip()


def worker_host(stack: Stack, name: str, data_root: Path, first_host: str) -> Callable[..., str]:
    """A second host: `make worker-host` output as a compose project on the hosts network, with the stack's
    passwords and FIRST_HOST in its .env. Returns its compose runner."""
    folder = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    compose_file = folder / "worker-host.yml"
    sh(PY, "-m", "services.launcher", "worker-host", "--out", str(compose_file), env=stack.env)
    content = compose_file.read_text() + f"networks:\n  default:\n    name: {HOSTS_NETWORK}\n    external: true\n"
    compose_file.write_text(content)
    env_file = folder / ".env"
    env_file.write_text(stack.secrets_file.read_text() + f"FIRST_HOST={first_host}\n")
    compose = compose_command()
    env = {**os.environ, "HOST_DATA_ROOT": str(data_root), "COMPOSE_PROJECT_NAME": name}

    def run(*args: str, capture: bool = False) -> str:
        return sh(*compose, "--env-file", str(env_file), "-f", str(compose_file), *args, env=env, capture=capture)

    return run


def two_hosts(stack: Stack, first_host: str, dataset_id: int) -> None:
    host_b = worker_host(stack, f"{PROJECT_NAME}-b", stack.data_root, first_host)
    stack.compose("stop", "gpu-worker-0")  # the first host's gpu worker: the fold can only run on the second
    # The demo trained fold 1 already: without it, the worker host trains it from the start.
    for trained in (stack.data_root / "nnUNet_results").glob(f"Dataset{dataset_id}_*/*/fold_1"):
        shutil.rmtree(trained)
    step("worker host up", lambda: host_b("up", "-d"))
    try:
        ref = stack.dispatch(
            "train", "--dataset-id", str(dataset_id), "--folds", "1", "--epochs", "2", "--iterations", "5"
        )["ref"]
        final = wait_for(
            f"{ref} on the worker host",
            lambda: (lambda r: r if r["state"] not in ("queued", "running") else None)(stack.run(ref)),
            1800,
            5,
        )
        fold = next(job for job in final["jobs"] if job["kind"] == "fold")
        b_hostname = host_b("exec", "-T", "gpu-worker-0", "hostname", capture=True).strip()
        print(f"    {ref}: {final['state']}; fold 1 ran on {fold['worker']} (the worker host is {b_hostname})")
        if final["state"] != "succeeded" or not fold["worker"].endswith(f"@{b_hostname}"):
            raise SystemExit(f"{ref}: expected the fold to succeed on the worker host, got {fold}")
        if fold["metrics"].get("mode") != "trained":
            raise SystemExit(f"{ref}: the worker host did not train fold 1 from the start: {fold['metrics']}")
        curve = wait_for("the fold's curve in MLflow", lambda: fold_curve_in_mlflow(stack, final, "fold 1"), 120)
        print(f"    MLflow on the first host: fold 1's train_loss for {len(curve)} epochs, sent by the worker host")
        if len(curve) != 2:
            raise SystemExit(f"{ref}: expected 2 epochs of fold 1 in MLflow, got {curve}")
        checkpoints = list((stack.data_root / "nnUNet_results").rglob("fold_1/checkpoint_final.pth"))
        if not checkpoints:
            raise SystemExit("the worker host's checkpoint is not in the shared data root")
        print(f"    checkpoint on the shared data root: {checkpoints[0].relative_to(stack.data_root)}")
    finally:
        host_b("down")
        stack.compose("start", "gpu-worker-0")
    # A host whose data root is not the shared one is refused by name.
    other_root = Path(tempfile.mkdtemp(prefix="fracatlas-e2e-other-root-"))
    os.chown(other_root, 1000, 1000)
    host_c = worker_host(stack, f"{PROJECT_NAME}-c", other_root, first_host)
    host_c("up", "-d")
    try:
        logs = wait_for(
            "the refusal in host C's log",
            lambda: (lambda text: text if "refusing to start" in text else None)(host_c("logs", capture=True)),
            180,
            3,
        )
        line = next(line for line in logs.splitlines() if "refusing to start" in line)
        print(f"    host C: {line.split('|', 1)[-1].strip()[:300]}")
    finally:
        host_c("down")


def image_sizes() -> None:
    """Each image's size, and no build extra (a site's CA, a pip.conf) in either."""
    for image in IMAGES:
        size = int(sh("docker", "image", "inspect", "-f", "{{.Size}}", image, capture=True).strip())
        extras = sh("docker", "run", "--rm", image, "ls", "/app/services/docker", capture=True).split()
        print(f"    {image}: {size / 1e9:.2f} GB; /app/services/docker holds {' '.join(extras)}")
        if "build-extras" in extras:
            raise SystemExit(f"{image} ships services/docker/build-extras")


def main() -> None:
    daemon = step("engine", start_engine)
    data_root = Path(tempfile.mkdtemp(prefix="fracatlas-e2e-"))
    try:
        step("base image stand-ins", lambda: sh("bash", "tests/compose_e2e/standins/build.sh"))
        # A run that died before its clean-up left its project's volumes: a fresh database for this one.
        sh("docker", "volume", "rm", "-f", *(f"{PROJECT_NAME}_{v}" for v in VOLUMES), check=False, capture=True)
        stack = Stack(data_root, network_gateway(HOSTS_NETWORK))
        step("make up (build, start, all healthy)", stack.up)
        step("image sizes; no build extras shipped", image_sizes)
        step("Flower and MLflow: 401 without credentials, 200 with", lambda: check_auth(stack))
        step("PACS=1: an upload, its link and the study on the viewer's origin", lambda: check_pacs_and_viewer(stack))
        ref = step("demo through the stack, with faults", lambda: demo_with_faults(stack))
        step("health after the run", lambda: check_health(stack))
        dataset_id = stack.run(str(ref))["params"].get("dataset_id", 990)
        step(
            "two hosts: a fold on the worker host; another data root refused",
            lambda: two_hosts(stack, stack.publish, dataset_id),
        )
        step("make down", lambda: stack.launcher("down"))
    finally:
        if (data_root / "compose" / "secrets.env").exists():
            Stack(data_root, "").compose("down", "-v", check=False)
        sh("docker", "network", "rm", HOSTS_NETWORK, check=False, capture=True)
        if daemon is not None:
            daemon.terminate()
            daemon.wait(60)
        print("\nstep | seconds\n--- | ---")
        for name, seconds in timings:
            print(f"{name} | {seconds:.1f}")


if __name__ == "__main__":
    main()
