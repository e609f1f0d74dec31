"""Training wall time and peak memory on 50k credit rows -> benchmarks/results/training.json.

    python -m benchmarks.training [--rows 50000] [--repeats 3]

Measures, in this process and with the trainer's default settings (8 epochs, MLP 64-32, batch
256, 1 torch thread): ``fit_model`` (stratified split, preprocessing fit + transform, training,
holdout evaluation, profile) repeated, then one whole job (snapshot assembly, training,
package, MLflow logging to a throwaway SQLite store). Peak memory is the resident-set high-water
mark (VmHWM), reset before each measured phase via /proc/self/clear_refs, so it is the peak of
that phase, imports and data included.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import write_result
from modelbus.data import generate_credit, write_reference
from modelbus.events import load_contract, new_meta
from modelbus.events import types as t
from modelbus_trainer.bootstrap import JobPlanner, train_params
from modelbus_trainer.config import Settings
from modelbus_trainer.job import run_job
from modelbus_trainer.training import fit_model


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _digest(weights: dict) -> str:
    digest = hashlib.sha256()
    for name in sorted(weights):
        digest.update(name.encode() + weights[name].tobytes())
    return digest.hexdigest()


def main() -> None:
    """Run the benchmark and write the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    started = time.perf_counter()
    rows, labels = generate_credit(args.rows, seed=args.seed)
    generation_s = time.perf_counter() - started
    contract = load_contract("credit")
    settings = Settings()
    params = train_params(settings)

    fits: list[dict[str, Any]] = []
    for repeat in range(args.repeats):
        peak_reset = _reset_peak()
        rss_before = _status_bytes("VmRSS")
        epochs: list[float] = []
        began = time.perf_counter()
        fit = fit_model(
            rows, labels, contract, params, seed=args.seed,
            progress=lambda _epoch, _loss, elapsed_s, seen=epochs: seen.append(elapsed_s),
        )  # fmt: skip
        wall_s = time.perf_counter() - began
        fits.append(
            {
                "repeat": repeat,
                "wall_s": round(wall_s, 3),
                "train_loop_s": round(epochs[-1], 3),
                "rss_before_bytes": rss_before,
                "peak_rss_bytes": _status_bytes("VmHWM") if peak_reset else None,
                "peak_minus_before_bytes": (_status_bytes("VmHWM") - rss_before)
                if peak_reset
                else None,
                "weights_digest": _digest(fit.trained.weights()),
                "metrics": {k: round(v, 5) for k, v in fit.metrics.items()},
            }
        )
        print(f"fit {repeat}: {wall_s:.2f}s, peak {fits[-1]['peak_rss_bytes']} bytes")

    with tempfile.TemporaryDirectory() as scratch:
        run_dir = Path(scratch)
        job_settings = settings.model_copy(
            update={
                "run_dir": run_dir,
                "mlflow_tracking_uri": f"sqlite:///{run_dir}/mlflow.db",
                "mlflow_artifact_root": run_dir / "mlartifacts",
                "reference_rows": args.rows,
                "max_rows": args.rows,
                "production_rows": 0,
            }
        )
        write_reference(job_settings.reference_path("credit"), rows, labels)
        request = t.TrainingRequested(meta=new_meta("benchmark"), model="credit",
                                      reason="benchmark", requested_by="benchmark",
                                      seed=args.seed, max_rows=None)  # fmt: skip
        spec = JobPlanner(job_settings, read_production=False)(request, None)
        peak_reset = _reset_peak()
        began = time.perf_counter()
        outcome = run_job(spec)
        job_s = time.perf_counter() - began
        if not outcome.ok:
            raise SystemExit(f"the job failed: {outcome.stage}: {outcome.reason}")
        job = {
            "wall_s": round(job_s, 3),
            "peak_rss_bytes": _status_bytes("VmHWM") if peak_reset else None,
            "note": "first MLflow use in this process: includes its import and DB creation",
        }
        print(f"whole job: {job_s:.2f}s")

    walls = [fit["wall_s"] for fit in fits]
    path = write_result(
        "training",
        {
            "rows": args.rows,
            "features": 9,
            "encoded_columns": 43,
            "params": params.as_strings(),
            "data_generation_s": round(generation_s, 3),
            "fit_model": {
                "repeats": fits,
                "wall_s_median": statistics.median(walls),
                "wall_s_min": min(walls),
                "peak_rss_bytes_max": max((f["peak_rss_bytes"] or 0) for f in fits) or None,
                "weights_identical_across_repeats": len({f["weights_digest"] for f in fits}) == 1,
            },
            "whole_job": job,
            "notes": [
                "repeat 0 includes torch's one-time lazy initialisation (the first optimizer "
                "use imports more of torch), so the median is the figure to quote",
                "RSS includes the interpreter, torch, pandas and the 50k rows as Python dicts",
                "2 shared CPU cores; other processes ran at the same time, so times are noisy",
            ],
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
