"""The iris model: an SVC trained on scikit-learn's bundled iris data set.

Metadata and schemas are class attributes, so protoreg can register and check the model without
training it. Training happens once, deterministically, when the model is instantiated; no
pickle is shipped.

``predict_batch`` answers many inputs with one classifier call: scikit-learn spends most of a
``predict`` call validating its arguments (about the same for 1 row as for 32), so the server
batches concurrent calls through it. The scaling is folded into two arrays applied with NumPy, so
the batch costs one ``SVC.predict``, not a pipeline of two estimators.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

from ml_base import MLModel
from pydantic import BaseModel, Field


class Species(str, Enum):
    """Iris species the model can predict."""

    setosa = "setosa"
    versicolor = "versicolor"
    virginica = "virginica"


class IrisInput(BaseModel):
    """Four measurements of one iris flower, in centimetres."""

    sepal_length: float = Field(ge=0.0, le=50.0, description="Length of the sepal in centimetres.")
    sepal_width: float = Field(ge=0.0, le=50.0, description="Width of the sepal in centimetres.")
    petal_length: float = Field(ge=0.0, le=50.0, description="Length of the petal in centimetres.")
    petal_width: float = Field(ge=0.0, le=50.0, description="Width of the petal in centimetres.")


class IrisOutput(BaseModel):
    """The predicted species."""

    species: Species = Field(description="Predicted species of the flower.")


class IrisModel(MLModel):
    """Support vector classifier over the four classic iris measurements."""

    qualified_name = "iris_model"
    display_name = "Iris Model"
    description = "Predicts the species of an iris flower from its sepal and petal measurements."
    version = "1.0.0"
    input_schema = IrisInput
    output_schema = IrisOutput

    def __init__(self) -> None:
        from sklearn import datasets
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVC

        iris = datasets.load_iris()
        # SVC with a fixed random_state is deterministic; scaling keeps it sensible for inputs
        # far from the training data (all zeros included).
        self._classifier = make_pipeline(StandardScaler(), SVC(kernel="rbf", random_state=0))
        self._classifier.fit(iris.data, iris.target)
        scaler, self._svc = self._classifier[0], self._classifier[1]
        self._mean, self._scale = scaler.mean_, scaler.scale_
        self._species = [Species(name) for name in iris.target_names]

    def predict(self, data: BaseModel) -> IrisOutput:
        if not isinstance(data, IrisInput):
            data = IrisInput.model_validate(data.model_dump() if isinstance(data, BaseModel) else data)
        return self.predict_batch([data])[0]

    def predict_batch(self, inputs: Sequence[IrisInput]) -> list[IrisOutput]:
        import numpy as np
        from sklearn import config_context

        rows = np.array(
            [[d.sepal_length, d.sepal_width, d.petal_length, d.petal_width] for d in inputs], dtype=float
        )
        # the inputs are validated already (finite, 0 to 50), so scikit-learn need not look again
        with config_context(assume_finite=True):
            labels = self._svc.predict((rows - self._mean) / self._scale)
        return [IrisOutput(species=self._species[int(label)]) for label in labels]
