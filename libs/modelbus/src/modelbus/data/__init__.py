"""Generated data for the demo models (never downloaded) and reference-dataset files."""

from modelbus.data.credit import CREDIT_FEATURES, generate_credit
from modelbus.data.reference import (
    ReferenceData,
    ensure_reference,
    file_sha256,
    read_reference,
    write_reference,
)

__all__ = [
    "CREDIT_FEATURES",
    "ReferenceData",
    "ensure_reference",
    "file_sha256",
    "generate_credit",
    "read_reference",
    "write_reference",
]
