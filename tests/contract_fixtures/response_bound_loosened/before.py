from pydantic import BaseModel, Field


class Input(BaseModel):
    age: int


class Output(BaseModel):
    score: float = Field(ge=0.0, le=1.0)
