"""The JSON the API takes and returns, as pydantic models: what ``/docs`` (OpenAPI) shows."""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field


class PredictJSON(BaseModel):
    """``POST /v1/predict`` with ``Content-Type: application/json``."""

    model_config = ConfigDict(extra="forbid")
    images: list[str] = Field(..., description="Images as base64 of their file bytes (PNG, "
                              "JPEG, ...), or data URLs (data:image/png;base64,...).")


class ClassProbability(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    class_: str = Field(..., alias="class", description="Class name.")
    probability: float


class Prediction(BaseModel):
    image: str = Field(..., description="The upload's file name, or images[i] for JSON.")
    predicted: str = Field(..., description="The most probable class.")
    top: list[ClassProbability] = Field(..., description="The top_k classes, most probable first.")
    probabilities: list[float] = Field(..., description="Probability of every class, in the "
                                       "order of /v1/model's classes.")
    input_png: Optional[str] = Field(None, description="With ?input=true: base64 PNG of the "
                                     "28x28 uint8 input the model received.")


class PredictResponse(BaseModel):
    model: str
    dataset: str
    classes: list[str]
    predictions: list[Prediction]


class Batching(BaseModel):
    enabled: bool
    max_batch: int = Field(..., description="Images per forward pass, at most.")
    max_wait_ms: float = Field(..., description="How long a batch waits for more requests.")


class Stats(BaseModel):
    requests: int = Field(..., description="Prediction requests run since start.")
    images: int
    batches: int = Field(..., description="Forward passes run: fewer than requests when batched.")
    largest_batch: int
    mean_batch: float


class Limits(BaseModel):
    max_image_bytes: int
    max_request_bytes: int
    max_images: int = Field(..., description="Images per request, at most.")
    max_pixels: int = Field(..., description="Pixels per image (width x height), at most.")


class Follow(BaseModel):
    seconds: float = Field(..., description="--follow-best: seconds between looks at the best run.")
    swaps: int = Field(..., description="Times a better model was swapped in.")
    checks: int
    last_error: Optional[str] = None


class Checkpoint(BaseModel):
    path: str
    sha256: str


class ModelInfo(BaseModel):
    model: str = Field(..., description="Model name in the registry (cnn-tracker models).")
    dataset: str
    classes: list[str]
    parameters: int
    epoch: Optional[int] = None
    metrics: dict[str, float] = Field(..., description="The metrics stored in the checkpoint.")
    checkpoint: Checkpoint
    artifact: Optional[str] = Field(None, description="W&B artifact reference, when known.")
    run: Optional[dict[str, Any]] = Field(None, description="The run it came from, when known.")
    source: str = Field(..., description="SOURCE as given to cnn-tracker serve.")
    device: str
    batching: Batching
    stats: Stats
    limits: Limits
    follow: Optional[Follow] = Field(None, description="With --follow-best: the live model is "
                                     "the one described above.")


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str = Field(..., description="ready, loading or failed.")
    model: Optional[str] = None
    detail: Optional[str] = None


class ErrorResponse(BaseModel):
    error: str = Field(..., description="A short code, e.g. not_an_image, image_too_large.")
    detail: str = Field(..., description="What is wrong and what to send instead.")
