"""`mlflow models serve` on the logged package predicts exactly what modelbus's loader does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from modelbus.data import generate_credit
from modelbus.packaging import load_package, package_sha256, verify_package
from modelbus_trainer.bootstrap import JobPlanner
from modelbus_trainer.config import Settings
from modelbus_trainer.job import run_job
from tests.support.events import training_requested
from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]


class NotReady(Exception):
    pass


def _ping(url: str) -> None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            if response.status != 200:
                raise NotReady(response.status)
    except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
        raise NotReady(str(error)) from error


def _stop(server: subprocess.Popen) -> None:
    """SIGTERM the server's process group (uvicorn and its worker), SIGKILL if it lingers."""
    if server.poll() is not None:
        return
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("serve")
    settings = Settings(
        run_dir=run_dir,
        mlflow_tracking_uri=f"sqlite:///{run_dir}/mlflow.db",
        mlflow_artifact_root=run_dir / "mlartifacts",
        reference_rows=3_000,
        production_rows=0,
        epochs=3,
        repo_dir=REPO,
    )
    spec = JobPlanner(settings, read_production=False)(training_requested(), None)
    outcome = run_job(spec)
    assert outcome.ok, outcome.reason
    return settings, outcome


def test_the_package_in_mlflow_is_the_one_announced(trained) -> None:
    _, outcome = trained
    manifest = verify_package(outcome.artifact_uri, expected_sha256=outcome.artifact_sha256)
    assert package_sha256(outcome.artifact_uri) == outcome.artifact_sha256
    assert manifest.lineage == outcome.lineage
    assert outcome.model_uri.startswith("models:/m-")


@pytest.mark.timeout(240)
def test_mlflow_models_serve_and_the_modelbus_loader_agree_on_1000_rows(trained) -> None:
    settings, outcome = trained
    rows, _ = generate_credit(1_000, seed=99, covariate_shift=0.3)
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "MODELBUS_TORCH_THREADS": "1",
        # MLflow execs `uvicorn` by name: the venv's bin must be on PATH even when not activated.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", outcome.model_uri,
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        for attempt in Retrying(
            stop=stop_after_delay(150),
            wait=wait_fixed(0.5),
            retry=retry_if_exception_type(NotReady),
            reraise=True,
        ):
            with attempt:
                if server.poll() is not None:
                    output = server.stdout.read().decode() if server.stdout else ""
                    pytest.fail(f"mlflow models serve exited {server.returncode}:\n{output}")
                _ping(f"http://127.0.0.1:{port}/ping")
        columns = list(rows[0])
        body = json.dumps(
            {
                "dataframe_split": {
                    "columns": columns,
                    "data": [[r[c] for c in columns] for r in rows],
                }
            }
        ).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            served = np.asarray(json.loads(response.read())["predictions"], dtype=np.float32)
    finally:
        _stop(server)

    local = load_package(outcome.artifact_uri, threads=1).predict_rows(rows)
    assert served.shape == (1_000, 2)
    np.testing.assert_array_equal(served, local)
