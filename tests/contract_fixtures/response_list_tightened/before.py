from pydantic import BaseModel, Field


class Input(BaseModel):
    age: int


class Output(BaseModel):
    labels: list[str] = Field(default_factory=list, max_length=10)
