"""The synchronous path: POST /v1/models/{model}/predict, same runtime and routing; /metrics."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import Any

from fastapi import FastAPI, HTTPException, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from modelbus_inference.metrics import Metrics
from modelbus_inference.predict import score_rows
from modelbus_inference.serving import ModelManager
from modelbus_inference.validation import ContractFields, Rejected


class Instance(BaseModel):
    """One row to score."""

    key: str | None = Field(
        default=None,
        description="Entity or request id; the same key always takes the same variant. "
        "Without one, the row is routed at random.",
    )
    features: dict[str, float | int | str | bool | None] = Field(
        description="Feature values, named as in the model's data contract."
    )


class PredictBody(BaseModel):
    """Rows to score in one call."""

    instances: list[Instance] = Field(min_length=1, max_length=10_000)


class Prediction(BaseModel):
    """One row's answer."""

    key: str
    version: int
    variant: str
    scores: list[float]
    label: int


class PredictResponse(BaseModel):
    """Answers in the order of the instances."""

    model: str
    predictions: list[Prediction]


def create_app(
    model: str, models: ModelManager, fields: ContractFields, metrics: Metrics
) -> FastAPI:
    """The worker's HTTP API."""
    app = FastAPI(
        title="modelbus inference",
        description="Synchronous predictions with the same models and canary routing as the "
        "Kafka stream, plus this worker's Prometheus metrics at /metrics.",
    )

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        """This worker's Prometheus metrics."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    def healthz(response: Response) -> dict[str, Any]:
        """Whether a model is served, which versions, and whether the stream makes progress.

        503 with a reason when, while streaming, no transaction committed and the loop was
        not idle for longer than the stall setting (an outage, or clients being rebuilt).
        """
        serving = models.serving
        healthy, progress = metrics.progress.report()
        if not healthy:
            response.status_code = 503
        return {
            "model": model,
            "serving": serving is not None,
            "routes": [] if serving is None else [asdict(r) for r in serving.table.routes],
            "progressing": healthy,
            **progress,
        }

    @app.post("/v1/models/{name}/predict", response_model=PredictResponse)
    def predict(name: str, body: PredictBody) -> PredictResponse:
        """Score rows with the model the routing table picks for each key."""
        if name != model:
            raise HTTPException(404, f"this worker serves {model!r}, not {name!r}")
        serving = models.serving
        if serving is None:
            raise HTTPException(503, f"no version of {model!r} is loaded yet")
        try:
            rows = [fields.coerce(instance.features) for instance in body.instances]
            for row in rows:
                fields.check_values(row)
        except Rejected as rejected:
            raise HTTPException(422, rejected.reason) from rejected
        keys = [instance.key or str(uuid.uuid4()) for instance in body.instances]
        metrics.requests.labels(model).inc(len(rows))
        answers = score_rows(serving, [key.encode() for key in keys], rows)
        failed = next((a for a in answers if a.scores is None), None)
        if failed is not None:
            metrics.model_errors.labels(model, str(failed.version)).inc()
            raise HTTPException(500, failed.error or "model error")
        return PredictResponse(
            model=model,
            predictions=[
                Prediction(
                    key=key,
                    version=a.version,
                    variant=a.variant,
                    scores=a.scores or [],
                    label=a.label,
                )
                for key, a in zip(keys, answers, strict=True)
            ],
        )

    return app
