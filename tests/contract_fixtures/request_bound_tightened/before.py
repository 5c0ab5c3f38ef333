from pydantic import BaseModel, Field


class Input(BaseModel):
    age: int = Field(ge=0)


class Output(BaseModel):
    score: float
