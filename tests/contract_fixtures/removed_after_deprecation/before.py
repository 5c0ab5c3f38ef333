from pydantic import BaseModel, Field


class Input(BaseModel):
    age: int
    nickname: str | None = Field(None, deprecated="no model reads it")


class Output(BaseModel):
    score: float
