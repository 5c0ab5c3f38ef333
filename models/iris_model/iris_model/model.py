"""The iris model: an SVC trained on scikit-learn's bundled iris data set.

Metadata and schemas are class attributes, so protoreg can register and check the model without
training it. Training happens once, deterministically, when the model is instantiated; no
pickle is shipped.
"""

from __future__ import annotations

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
        self._names = [Species(name) for name in iris.target_names]

    def predict(self, data: BaseModel) -> IrisOutput:
        if not isinstance(data, IrisInput):
            data = IrisInput.model_validate(data.model_dump() if isinstance(data, BaseModel) else data)
        row = [[data.sepal_length, data.sepal_width, data.petal_length, data.petal_width]]
        label = int(self._classifier.predict(row)[0])
        return IrisOutput(species=self._names[label])
