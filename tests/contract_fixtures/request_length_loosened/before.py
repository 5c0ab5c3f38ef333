from pydantic import BaseModel, Field


class Input(BaseModel):
    name: str = Field(min_length=2, max_length=10)


class Output(BaseModel):
    score: float
