"""Artifact classes: files a step writes or reads, addressed by URI, with metadata.

A component declares an artifact with ``Output[Dataset]`` or ``Input[Model]``. At run time
the step receives an instance whose ``path`` is a local file path to write or read; the
runtime stores it under the artifact root and passes its record (name, URI, metadata) on.

Example:
    >>> m = Metrics(name="scores", uri="/tmp/x/scores")
    >>> m.log_metric("accuracy", 0.9)
    >>> m.metadata
    {'accuracy': 0.9}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

__all__ = [
    "ARTIFACT_TYPES",
    "HTML",
    "Artifact",
    "ClassificationMetrics",
    "Dataset",
    "Markdown",
    "Metrics",
    "Model",
    "SlicedClassificationMetrics",
]


class Artifact:
    """A file or directory produced or consumed by a step.

    Attributes:
        name: the output or input name it is bound to.
        uri: where it is stored (a local path or any ``pyarrow.fs`` URI).
        metadata: JSON-serialisable facts about it, kept in the run's records.
    """

    schema_title: ClassVar[str] = "system.Artifact"

    def __init__(
        self,
        name: str = "",
        uri: str = "",
        metadata: dict[str, Any] | None = None,
        *,
        path: str | None = None,
    ) -> None:
        self.name = name
        self.uri = uri
        self.metadata: dict[str, Any] = dict(metadata or {})
        self._path = path

    @property
    def path(self) -> str:
        """A local path to read or write; equals ``uri`` on a local artifact root.

        Inside a running step, an artifact made from ``dsl.get_uri()`` gets a local path
        the runtime stores when the step returns it.
        """
        if self._path is not None:
            return self._path
        from raypipe.dsl.step_context import local_path_of

        return local_path_of(self.uri) or self.uri

    @path.setter
    def path(self, value: str) -> None:
        self._path = value

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, uri={self.uri!r})"

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and isinstance(other, Artifact)
            and (self.name, self.uri, self.metadata) == (other.name, other.uri, other.metadata)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable metadata


class Dataset(Artifact):
    """A data set: a file or directory of data."""

    schema_title = "system.Dataset"


class Model(Artifact):
    """A trained model: weights, a checkpoint directory, a serialised estimator."""

    schema_title = "system.Model"

    @property
    def framework(self) -> str:
        """The framework that made it (``metadata["framework"]``, KFP's field)."""
        return str(self.metadata.get("framework", ""))

    @framework.setter
    def framework(self, value: str) -> None:
        self.metadata["framework"] = value


class HTML(Artifact):
    """An HTML page to show as a step's visual output."""

    schema_title = "system.HTML"


class Markdown(Artifact):
    """A Markdown document to show as a step's visual output."""

    schema_title = "system.Markdown"


class Metrics(Artifact):
    """Scalar metrics of a step, kept in ``metadata``.

    Example:
        >>> m = Metrics()
        >>> m.log_metric("loss", 0.25)
        >>> m.metadata["loss"]
        0.25
    """

    schema_title = "system.Metrics"

    def log_metric(self, metric: str, value: float) -> None:
        """Record one scalar metric."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"metric {metric!r} must be a number, got {type(value).__name__}")
        self.metadata[metric] = value


class ClassificationMetrics(Artifact):
    """A classifier's ROC curve and confusion matrix, kept in ``metadata`` (KFP's layout).

    Example:
        >>> cm = ClassificationMetrics()
        >>> cm.log_confusion_matrix(["cat", "dog"], [[8, 2], [1, 9]])
        >>> cm.metadata["confusionMatrix"]["rows"][1]
        {'row': [1, 9]}
    """

    schema_title = "system.ClassificationMetrics"

    def log_roc_data_point(self, fpr: float, tpr: float, threshold: float) -> None:
        """Add one point of the ROC curve."""
        points = self.metadata.setdefault("confidenceMetrics", [])
        points.append(
            {
                "confidenceThreshold": float(threshold),
                "recall": float(tpr),
                "falsePositiveRate": float(fpr),
            }
        )

    def log_roc_curve(
        self, fpr: Sequence[float], tpr: Sequence[float], threshold: Sequence[float]
    ) -> None:
        """Record a whole ROC curve from three equally long sequences."""
        if not len(fpr) == len(tpr) == len(threshold):
            raise ValueError(
                f"fpr, tpr and threshold must have the same length, got "
                f"{len(fpr)}, {len(tpr)} and {len(threshold)}"
            )
        for f, t, th in zip(fpr, tpr, threshold, strict=True):
            self.log_roc_data_point(f, t, th)

    def set_confusion_matrix_categories(self, categories: Sequence[str]) -> None:
        """Start an empty confusion matrix over ``categories``."""
        n = len(categories)
        self.metadata["confusionMatrix"] = {
            "annotationSpecs": [{"displayName": c} for c in categories],
            "rows": [{"row": [0] * n} for _ in range(n)],
        }

    def log_confusion_matrix_row(self, row_category: str, row: Sequence[int]) -> None:
        """Set the counts of one actual class across predicted classes."""
        index = self._category_index(row_category)
        self.metadata["confusionMatrix"]["rows"][index] = {"row": [int(x) for x in row]}

    def log_confusion_matrix_cell(self, row_category: str, col_category: str, value: int) -> None:
        """Set one count of the confusion matrix."""
        r, c = self._category_index(row_category), self._category_index(col_category)
        self.metadata["confusionMatrix"]["rows"][r]["row"][c] = int(value)

    def log_confusion_matrix(
        self, categories: Sequence[str], matrix: Sequence[Sequence[int]]
    ) -> None:
        """Record a whole confusion matrix (rows are actual, columns predicted classes)."""
        if len(matrix) != len(categories) or any(len(r) != len(categories) for r in matrix):
            raise ValueError(f"matrix must be {len(categories)}x{len(categories)}")
        self.set_confusion_matrix_categories(categories)
        for category, row in zip(categories, matrix, strict=True):
            self.log_confusion_matrix_row(category, row)

    def _category_index(self, category: str) -> int:
        specs = self.metadata.get("confusionMatrix", {}).get("annotationSpecs", [])
        names = [s["displayName"] for s in specs]
        if category not in names:
            raise ValueError(f"unknown category {category!r}; categories are {names}")
        return names.index(category)


class SlicedClassificationMetrics(Artifact):
    """:class:`ClassificationMetrics` per slice of the data (KFP's layout in ``metadata``).

    Example:
        >>> m = SlicedClassificationMetrics()
        >>> m.log_confusion_matrix("women", ["yes", "no"], [[5, 1], [2, 7]])
        >>> m.metadata["evaluationSlices"][0]["slice"]
        'women'
    """

    schema_title = "system.SlicedClassificationMetrics"

    def _slice(self, name: str) -> ClassificationMetrics:
        slices = self.metadata.setdefault("evaluationSlices", [])
        for entry in slices:
            if entry["slice"] == name:
                return ClassificationMetrics(metadata=entry["sliceClassificationMetrics"])
        return ClassificationMetrics()

    def _store(self, name: str, metrics: ClassificationMetrics) -> None:
        slices = self.metadata.setdefault("evaluationSlices", [])
        entry = {"slice": name, "sliceClassificationMetrics": metrics.metadata}
        for index, existing in enumerate(slices):
            if existing["slice"] == name:
                slices[index] = entry
                return
        slices.append(entry)

    def log_roc_reading(self, slice: str, threshold: float, tpr: float, fpr: float) -> None:
        """Add one ROC point to ``slice``."""
        metrics = self._slice(slice)
        metrics.log_roc_data_point(fpr, tpr, threshold)
        self._store(slice, metrics)

    def load_roc_readings(self, slice: str, readings: Sequence[Sequence[float]]) -> None:
        """Add ROC points to ``slice``, each ``[threshold, tpr, fpr]``."""
        for threshold, tpr, fpr in readings:
            self.log_roc_reading(slice, threshold, tpr, fpr)

    def set_confusion_matrix_categories(self, slice: str, categories: Sequence[str]) -> None:
        """Start an empty confusion matrix of ``slice``."""
        metrics = self._slice(slice)
        metrics.set_confusion_matrix_categories(categories)
        self._store(slice, metrics)

    def log_confusion_matrix_row(self, slice: str, row_category: str, row: Sequence[int]) -> None:
        """Set one row of the confusion matrix of ``slice``."""
        metrics = self._slice(slice)
        metrics.log_confusion_matrix_row(row_category, row)
        self._store(slice, metrics)

    def log_confusion_matrix_cell(
        self, slice: str, row_category: str, col_category: str, value: int
    ) -> None:
        """Set one count of the confusion matrix of ``slice``."""
        metrics = self._slice(slice)
        metrics.log_confusion_matrix_cell(row_category, col_category, value)
        self._store(slice, metrics)

    def log_confusion_matrix(
        self, slice: str, categories: Sequence[str], matrix: Sequence[Sequence[int]]
    ) -> None:
        """Record the whole confusion matrix of ``slice``."""
        metrics = self._slice(slice)
        metrics.log_confusion_matrix(categories, matrix)
        self._store(slice, metrics)

    load_confusion_matrix = log_confusion_matrix  # KFP's name for it


ARTIFACT_TYPES: dict[str, type[Artifact]] = {
    cls.__name__: cls
    for cls in (
        Artifact,
        Dataset,
        Model,
        Metrics,
        ClassificationMetrics,
        SlicedClassificationMetrics,
        HTML,
        Markdown,
    )
}
